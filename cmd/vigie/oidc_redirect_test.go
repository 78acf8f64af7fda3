package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// TestOIDCRedirectedJWKS is the attack of issue 10, section 1, against
// vigie serve: the provider's discovery document names a jwks_uri on
// loopback that answers 302 to a plain-http URL on another host, which a
// network attacker answers (here, through HTTP_PROXY, which Go's client
// uses for any host but loopback) with the attacker's key. A regulator
// token signed by that key must be refused, and the redirect not even
// followed.
func TestOIDCRedirectedJWKS(t *testing.T) {
	attackerKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	var attackerHits atomic.Int32
	attacker := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		attackerHits.Add(1)
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
			{Key: &attackerKey.PublicKey, KeyID: "evil", Algorithm: string(jose.ES256), Use: "sig"},
		}})
	}))
	t.Cleanup(attacker.Close)
	var provider *httptest.Server
	provider = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/.well-known/openid-configuration":
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(map[string]string{
				"issuer":                 provider.URL,
				"jwks_uri":               provider.URL + "/jwks",
				"authorization_endpoint": provider.URL + "/authorize",
				"token_endpoint":         provider.URL + "/token",
			})
		case "/jwks":
			http.Redirect(w, r, "http://jwks.attacker.invalid/jwks", http.StatusFound)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(provider.Close)
	// The serve process inherits the environment: a request to
	// jwks.attacker.invalid goes to the attacker's server.
	t.Setenv("HTTP_PROXY", attacker.URL)
	t.Setenv("http_proxy", attacker.URL)
	t.Setenv("NO_PROXY", "")
	t.Setenv("no_proxy", "")

	e := startE2E(t, "--oidc-issuer", provider.URL, "--oidc-audience", "vigie")
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: attackerKey},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", "evil"))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.Signed(signer).Claims(map[string]any{
		"iss": provider.URL, "aud": "vigie", "sub": "cnil", "role": "regulator",
		"exp": time.Now().Add(time.Hour).Unix(),
	}).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	code, body := e.http().do("POST", "/v1/audit/events:search", tok, `{}`)
	if code == http.StatusOK {
		t.Fatalf("a regulator token signed by the key behind the redirect was accepted: %s", body)
	}
	if code != http.StatusUnauthorized && code != http.StatusServiceUnavailable {
		t.Errorf("SearchEvents with the attacker's token = %d %s, want 401 or 503", code, body)
	}
	if n := attackerHits.Load(); n != 0 {
		t.Errorf("vigie serve followed the redirect to the attacker (%d requests)", n)
	}
}
