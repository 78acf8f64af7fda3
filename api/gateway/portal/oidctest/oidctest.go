// Package oidctest is a fake OpenID Connect provider for tests of the
// portal's sign-in: discovery, an authorization endpoint that sends the
// browser straight back with a code, a token endpoint that checks the
// PKCE verifier (S256), the redirect_uri and the client, and a JWKS.
// Fault hooks let a test tamper with the state or the PKCE challenge.
package oidctest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// Provider is a running fake provider. Its fields are set before the
// flow they change; it is safe for concurrent use.
type Provider struct {
	// Issuer is the provider's issuer URL (its httptest server).
	Issuer string
	// ClientID is the only client accepted; ClientSecret, if not empty,
	// must be sent to the token endpoint.
	ClientID, ClientSecret string

	mu     sync.Mutex
	key    *ecdsa.PrivateKey
	sub    string
	claims map[string]any
	codes  map[string]grant
	issued []string
	hooks  Hooks
	srv    *httptest.Server
}

// Hooks are the faults a test injects.
type Hooks struct {
	// TamperState changes the state sent back to the client.
	TamperState bool
	// WrongChallenge makes the provider remember another PKCE challenge
	// than the client sent, so that the client's verifier fails.
	WrongChallenge bool
	// Deny answers the authorization request with error=access_denied.
	Deny bool
	// WrongNonce puts another nonce in the ID token than the client sent.
	WrongNonce bool
}

type grant struct {
	clientID, redirectURI, challenge, nonce string
}

// New starts a provider for clientID, whose tokens name subject sub and
// carry the extra claims (e.g. "role": "patient"). It stops at the end of
// the test.
func New(t testing.TB, clientID, sub string, claims map[string]any) *Provider {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p := &Provider{ClientID: clientID, key: key, sub: sub, claims: claims, codes: map[string]grant{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", p.discovery)
	mux.HandleFunc("GET /jwks", p.jwks)
	mux.HandleFunc("GET /authorize", p.authorize)
	mux.HandleFunc("POST /token", p.token)
	p.srv = httptest.NewServer(mux)
	t.Cleanup(p.srv.Close)
	p.Issuer = p.srv.URL
	return p
}

// SetHooks replaces the faults injected.
func (p *Provider) SetHooks(h Hooks) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.hooks = h
}

// Issued returns the tokens and codes the provider has given out, so that
// a test can look for them where they must not be.
func (p *Provider) Issued() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.issued...)
}

// Token returns a token signed by the provider for sub with the claims,
// with aud the client: what the provider's ID tokens look like.
func (p *Provider) Token(sub string, claims map[string]any, nonce string) (string, error) {
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: p.key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", "k1"))
	if err != nil {
		return "", err
	}
	now := time.Now()
	std := jwt.Claims{Issuer: p.Issuer, Subject: sub, Audience: jwt.Audience{p.ClientID},
		IssuedAt: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(now.Add(time.Hour))}
	extra := map[string]any{}
	for k, v := range claims {
		extra[k] = v
	}
	if nonce != "" {
		extra["nonce"] = nonce
	}
	return jwt.Signed(signer).Claims(std).Claims(extra).Serialize()
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func (p *Provider) discovery(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{
		"issuer":                                p.Issuer,
		"authorization_endpoint":                p.Issuer + "/authorize",
		"token_endpoint":                        p.Issuer + "/token",
		"jwks_uri":                              p.Issuer + "/jwks",
		"response_types_supported":              []string{"code"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": []string{"ES256"},
		"code_challenge_methods_supported":      []string{"S256"},
	})
}

func (p *Provider) jwks(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
		{Key: &p.key.PublicKey, KeyID: "k1", Algorithm: string(jose.ES256), Use: "sig"},
	}})
}

// authorize signs the user in at once and sends them back with a code.
func (p *Provider) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	redirect, err := url.Parse(q.Get("redirect_uri"))
	switch {
	case err != nil || redirect.Host == "":
		http.Error(w, "bad redirect_uri", http.StatusBadRequest)
		return
	case q.Get("client_id") != p.ClientID:
		http.Error(w, "unknown client", http.StatusBadRequest)
		return
	}
	back := url.Values{"state": {q.Get("state")}}
	p.mu.Lock()
	hooks := p.hooks
	p.mu.Unlock()
	if hooks.TamperState {
		back.Set("state", q.Get("state")+"x")
	}
	switch {
	case hooks.Deny:
		back.Set("error", "access_denied")
	case q.Get("response_type") != "code" || q.Get("scope") != "openid" || q.Get("code_challenge_method") != "S256" ||
		q.Get("code_challenge") == "" || q.Get("nonce") == "" || q.Get("state") == "":
		back.Set("error", "invalid_request")
	default:
		code := random()
		challenge := q.Get("code_challenge")
		if hooks.WrongChallenge {
			sum := sha256.Sum256([]byte("another verifier"))
			challenge = base64.RawURLEncoding.EncodeToString(sum[:])
		}
		p.mu.Lock()
		p.codes[code] = grant{clientID: q.Get("client_id"), redirectURI: q.Get("redirect_uri"), challenge: challenge, nonce: q.Get("nonce")}
		p.issued = append(p.issued, code)
		p.mu.Unlock()
		back.Set("code", code)
	}
	redirect.RawQuery = back.Encode()
	http.Redirect(w, r, redirect.String(), http.StatusFound)
}

// token redeems a code once, after checking the PKCE verifier, the
// redirect_uri and the client.
func (p *Provider) token(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request"})
		return
	}
	f := r.PostForm
	p.mu.Lock()
	g, ok := p.codes[f.Get("code")]
	delete(p.codes, f.Get("code"))
	p.mu.Unlock()
	sum := sha256.Sum256([]byte(f.Get("code_verifier")))
	switch {
	case f.Get("grant_type") != "authorization_code":
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "unsupported_grant_type"})
		return
	case f.Get("client_id") != p.ClientID || (p.ClientSecret != "" && f.Get("client_secret") != p.ClientSecret):
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_client"})
		return
	case !ok || g.clientID != f.Get("client_id") || g.redirectURI != f.Get("redirect_uri") ||
		base64.RawURLEncoding.EncodeToString(sum[:]) != g.challenge:
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_grant"})
		return
	}
	p.mu.Lock()
	if p.hooks.WrongNonce {
		g.nonce += "x"
	}
	p.mu.Unlock()
	idToken, err := p.Token(p.sub, p.claims, g.nonce)
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "server_error"})
		return
	}
	access := random() // opaque: the client must use the ID token
	p.mu.Lock()
	p.issued = append(p.issued, idToken, access)
	p.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"id_token": idToken, "access_token": access, "token_type": "Bearer", "expires_in": 3600})
}

func random() string {
	b := make([]byte, 24)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
