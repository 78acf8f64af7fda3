package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// TestRemoteKeysRedirectedFetch is the attack of issue 10: the issuer's
// jwks_uri (http on loopback) answers 302 to a plain-http URL elsewhere,
// which serves the attacker's key; a regulator token signed with it must
// be refused.
func TestRemoteKeysRedirectedFetch(t *testing.T) {
	attackerKey, attackerPub := newSigningKey(t, "evil")
	var attackerHits atomic.Int32
	attacker := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		attackerHits.Add(1)
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{attackerPub}})
	}))
	t.Cleanup(attacker.Close)
	issuer := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://jwks.attacker.invalid/jwks", http.StatusFound)
	}))
	t.Cleanup(issuer.Close)

	// Every connection but to the issuer reaches the attacker's server,
	// as the redirect would on a network the attacker controls.
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		if addr != strings.TrimPrefix(issuer.URL, "http://") {
			addr = strings.TrimPrefix(attacker.URL, "http://")
		}
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}
	client := &http.Client{Transport: tr}
	keys, err := NewRemoteKeys(RemoteKeysConfig{URL: issuer.URL + "/jwks", Client: client})
	if err != nil {
		t.Fatal(err)
	}
	v, err := NewVerifier(VerifierConfig{Issuer: issuer.URL, Audience: "vigie", Keys: keys, CacheSize: -1})
	if err != nil {
		t.Fatal(err)
	}
	tok := sign(t, jose.EdDSA, attackerKey, "evil", map[string]any{
		"iss": issuer.URL, "aud": "vigie", "sub": "cnil", "role": "regulator", "exp": time.Now().Add(time.Hour).Unix(),
	})
	id, err := v.Verify(context.Background(), tok)
	if err == nil {
		t.Fatalf("Verify(token signed by the key behind a redirect) = %v, want an error", id)
	}
	if !errors.Is(err, ErrKeys) {
		t.Errorf("Verify = %v, want ErrKeys (the key set cannot be had)", err)
	}
	if n := attackerHits.Load(); n != 0 {
		t.Errorf("the redirect target was fetched %d times", n)
	}
}

func TestProviderClientRedirects(t *testing.T) {
	final := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"ok":true}`))
	}))
	t.Cleanup(final.Close)
	localhostFinal := strings.Replace(final.URL, "127.0.0.1", "localhost", 1)
	redirectTo := func(target string, code int) *httptest.Server {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, target, code)
		}))
		t.Cleanup(s.Close)
		return s
	}
	tlsDown := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, final.URL, http.StatusFound)
	}))
	t.Cleanup(tlsDown.Close)
	loop := httptest.NewServer(nil)
	loop.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, loop.URL+r.URL.Path+"x", http.StatusFound)
	})
	t.Cleanup(loop.Close)

	tests := []struct {
		name   string
		method string
		url    string
		base   *http.Client
		ok     bool
	}{
		{"to http on localhost", "GET", redirectTo(localhostFinal, http.StatusFound).URL, nil, true},
		{"to http on another host", "GET", redirectTo("http://jwks.attacker.invalid/jwks", http.StatusFound).URL, nil, false},
		{"to another scheme", "GET", redirectTo("ftp://127.0.0.1/jwks", http.StatusFound).URL, nil, false},
		{"from https to http loopback", "GET", tlsDown.URL, tlsDown.Client(), false},
		{"a POST, 307", "POST", redirectTo(final.URL, http.StatusTemporaryRedirect).URL, nil, false},
		{"a POST, 302", "POST", redirectTo(final.URL, http.StatusFound).URL, nil, false},
		{"more than 5", "GET", loop.URL + "/", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(tt.method, tt.url, strings.NewReader("code=secret"))
			if err != nil {
				t.Fatal(err)
			}
			var v struct{ OK bool }
			err = ProviderJSON(ProviderClient(tt.base), req, 0, &v)
			if tt.ok && (err != nil || !v.OK) {
				t.Errorf("ProviderJSON = %v, %+v; want the redirect followed", err, v)
			}
			if !tt.ok && !errors.Is(err, errRedirect) {
				t.Errorf("ProviderJSON = %v, want the redirect refused", err)
			}
		})
	}
}

func TestProviderClientTimeout(t *testing.T) {
	if c := ProviderClient(nil); c.Timeout != ProviderTimeout {
		t.Errorf("ProviderClient(nil).Timeout = %v, want %v", c.Timeout, ProviderTimeout)
	}
	if c := ProviderClient(&http.Client{Timeout: time.Hour}); c.Timeout != ProviderTimeout {
		t.Errorf("ProviderClient(1h).Timeout = %v, want %v", c.Timeout, ProviderTimeout)
	}
	block := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{`))
		w.(http.Flusher).Flush()
		<-block // the body never ends
	}))
	t.Cleanup(slow.Close)
	t.Cleanup(func() { close(block) })
	req, _ := http.NewRequest("GET", slow.URL, nil)
	start := time.Now()
	err := ProviderJSON(ProviderClient(&http.Client{Timeout: 200 * time.Millisecond}), req, 0, new(any))
	if err == nil || time.Since(start) > 5*time.Second {
		t.Errorf("ProviderJSON on an answer that never ends = %v after %v, want a timeout", err, time.Since(start))
	}
}

func TestProviderJSONAnswers(t *testing.T) {
	tests := []struct {
		name, contentType, body string
		max                     int64
		types                   []string
		ok                      bool
	}{
		{"JSON", "application/json; charset=utf-8", `{}`, 0, nil, true},
		{"no content type", "", `{}`, 0, nil, false},
		{"HTML", "text/html", `{}`, 0, nil, false},
		{"JWK set where JSON is wanted", "application/jwk-set+json", `{}`, 0, nil, false},
		{"JWK set where accepted", "application/jwk-set+json", `{}`, 0, []string{"application/jwk-set+json", "application/json"}, true},
		{"too large", "application/json", `{"a":"` + strings.Repeat("x", 100) + `"}`, 64, nil, false},
		{"not JSON", "application/json", `{`, 0, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header()["Content-Type"] = nil
				if tt.contentType != "" {
					w.Header().Set("Content-Type", tt.contentType)
				}
				w.Write([]byte(tt.body))
			}))
			defer srv.Close()
			req, _ := http.NewRequest("GET", srv.URL, nil)
			var v map[string]any
			err := ProviderJSON(ProviderClient(nil), req, tt.max, &v, tt.types...)
			if (err == nil) != tt.ok {
				t.Errorf("ProviderJSON = %v, want ok %v", err, tt.ok)
			}
			if err != nil && strings.Contains(err.Error(), "xxxx") {
				t.Errorf("the error quotes the answer: %v", err)
			}
		})
	}
}

// TestDiscoverContentType: the API's discovery took a document without
// a content type, the portal's did not; the one discovery keeps the
// stricter rule.
func TestDiscoverContentType(t *testing.T) {
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header()["Content-Type"] = nil
		json.NewEncoder(w).Encode(map[string]string{"issuer": srv.URL, "jwks_uri": srv.URL + "/jwks"})
	}))
	t.Cleanup(srv.Close)
	if _, err := Discover(context.Background(), nil, srv.URL); err == nil {
		t.Error("Discover of a document without a content type: no error")
	}
}

func TestDiscoverInsecureEndpoints(t *testing.T) {
	for _, field := range []string{"jwks_uri", "authorization_endpoint", "token_endpoint"} {
		t.Run(field, func(t *testing.T) {
			var srv *httptest.Server
			srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				doc := map[string]string{"issuer": srv.URL, "jwks_uri": srv.URL + "/jwks", "authorization_endpoint": srv.URL + "/authorize", "token_endpoint": srv.URL + "/token"}
				doc[field] = "http://idp.example/" + field
				w.Header().Set("Content-Type", "application/json")
				json.NewEncoder(w).Encode(doc)
			}))
			defer srv.Close()
			if _, err := Discover(context.Background(), nil, srv.URL); err == nil || !strings.Contains(err.Error(), field) {
				t.Errorf("Discover with an http %s elsewhere = %v, want an error naming it", field, err)
			}
		})
	}
}

// TestWeakKeys: tokens signed by weak keys are refused, whether the key
// comes from configuration or from the issuer's JWKS.
func TestWeakKeys(t *testing.T) {
	rsa1024, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	rsa2048, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	claims := map[string]any{"iss": "https://idp.example", "aud": "vigie", "sub": "cnil", "role": "regulator", "exp": time.Now().Add(time.Hour).Unix()}
	verify := func(keys KeySource, tok string) error {
		v, err := NewVerifier(VerifierConfig{Issuer: "https://idp.example", Audience: "vigie", Keys: keys, CacheSize: -1})
		if err != nil {
			t.Fatal(err)
		}
		_, err = v.Verify(context.Background(), tok)
		return err
	}
	weak := &StaticKeys{Keys: []jose.JSONWebKey{{Key: &rsa1024.PublicKey, KeyID: "weak", Algorithm: string(jose.RS256)}}}
	if err := verify(weak, sign(t, jose.RS256, rsa1024, "weak", claims)); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("Verify(token signed by an RSA-1024 key) = %v, want ErrUnknownKey", err)
	}
	strong := &StaticKeys{Keys: []jose.JSONWebKey{{Key: &rsa2048.PublicKey, KeyID: "strong", Algorithm: string(jose.RS256)}}}
	if err := verify(strong, sign(t, jose.RS256, rsa2048, "strong", claims)); err != nil {
		t.Errorf("Verify(token signed by an RSA-2048 key) = %v", err)
	}

	// From a JWKS: the weak key and a key on a curve go-jose cannot read
	// are left out; the strong one still verifies.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
			{Key: &rsa1024.PublicKey, KeyID: "weak", Algorithm: string(jose.RS256), Use: "sig"},
			{Key: &rsa2048.PublicKey, KeyID: "strong", Algorithm: string(jose.RS256), Use: "sig"},
		}})
		// A P-224 key, which go-jose does not read: it must not make the
		// whole set unreadable.
		b = []byte(strings.Replace(string(b), `"keys":[`, `"keys":[{"kty":"EC","crv":"P-224","x":"AAAA","y":"AAAA","kid":"p224"},`, 1))
		w.Header().Set("Content-Type", "application/json")
		w.Write(b)
	}))
	t.Cleanup(srv.Close)
	remote, err := NewRemoteKeys(RemoteKeysConfig{URL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	if err := verify(remote, sign(t, jose.RS256, rsa1024, "weak", claims)); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("Verify(token signed by the JWKS's RSA-1024 key) = %v, want ErrUnknownKey", err)
	}
	if err := verify(remote, sign(t, jose.RS256, rsa2048, "strong", claims)); err != nil {
		t.Errorf("Verify(token signed by the JWKS's RSA-2048 key) = %v", err)
	}
}

func TestCheckKeyStrength(t *testing.T) {
	p224, err := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p256, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, ed := newSigningKey(t, "ed")
	n2048 := new(big.Int).Lsh(big.NewInt(1), 2047)
	n2048.Add(n2048, big.NewInt(1))
	tests := []struct {
		name string
		key  any
		ok   bool
	}{
		{"RSA-2048, e=65537", &rsa.PublicKey{N: n2048, E: 65537}, true},
		{"RSA-2047", &rsa.PublicKey{N: new(big.Int).Rsh(n2048, 1), E: 65537}, false},
		{"RSA-2048, e=3", &rsa.PublicKey{N: n2048, E: 3}, false},
		{"RSA-2048, e=65538", &rsa.PublicKey{N: n2048, E: 65538}, false},
		{"P-224", &p224.PublicKey, false},
		{"P-256", &p256.PublicKey, true},
		{"Ed25519", ed.Key, true},
		{"symmetric", []byte("0123456789abcdef0123456789abcdef"), false},
		{"private", p256, false},
	}
	for _, tt := range tests {
		if err := CheckKeyStrength(jose.JSONWebKey{Key: tt.key}); (err == nil) != tt.ok {
			t.Errorf("CheckKeyStrength(%s) = %v, want ok %v", tt.name, err, tt.ok)
		}
	}
}
