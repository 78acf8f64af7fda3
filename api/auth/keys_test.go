package auth

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// jwksServer is an OpenID Connect issuer's discovery document and JWKS,
// whose keys the test changes.
type jwksServer struct {
	*httptest.Server
	mu      sync.Mutex
	keys    []jose.JSONWebKey
	fetches int
	down    bool
}

func newJWKSServer(t *testing.T) *jwksServer {
	s := &jwksServer{}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]string{"issuer": s.URL, "jwks_uri": s.URL + "/jwks"})
	})
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.fetches++
		if s.down {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/jwk-set+json")
		json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: s.keys})
	})
	s.Server = httptest.NewServer(mux)
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) set(keys ...jose.JSONWebKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys = keys
}

func (s *jwksServer) setDown(down bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.down = down
}

func (s *jwksServer) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fetches
}

func newSigningKey(t *testing.T, kid string) (ed25519.PrivateKey, jose.JSONWebKey) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return priv, jose.JSONWebKey{Key: pub, KeyID: kid, Algorithm: string(jose.EdDSA), Use: "sig"}
}

func TestRemoteKeysRotation(t *testing.T) {
	srv := newJWKSServer(t)
	clock := newClock()
	k1, pub1 := newSigningKey(t, "k1")
	k2, pub2 := newSigningKey(t, "k2")
	srv.set(pub1)

	ctx := context.Background()
	d, err := Discover(ctx, srv.Client(), srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := NewRemoteKeys(RemoteKeysConfig{URL: d.JWKSURI, Client: srv.Client(), Now: clock.now, MaxAge: time.Hour, MinRefresh: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	v, err := NewVerifier(VerifierConfig{Issuer: srv.URL, Audience: "vigie", Keys: keys, Now: clock.now, CacheSize: -1})
	if err != nil {
		t.Fatal(err)
	}
	claims := func() map[string]any {
		return map[string]any{"iss": srv.URL, "aud": "vigie", "sub": "cnil", "role": "regulator", "exp": clock.now().Add(time.Hour).Unix()}
	}
	verify := func(key ed25519.PrivateKey, kid string) error {
		_, err := v.Verify(ctx, sign(t, jose.EdDSA, key, kid, claims()))
		return err
	}

	if err := verify(k1, "k1"); err != nil {
		t.Fatalf("k1: %v", err)
	}
	if err := verify(k1, "k1"); err != nil || srv.count() != 1 {
		t.Fatalf("k1 again: %v with %d fetches, want nil and 1 (keys are cached)", err, srv.count())
	}

	// The issuer rotates: k2 is published. A token naming k2 makes the
	// verifier fetch again, once per MinRefresh.
	srv.set(pub1, pub2)
	clock.advance(2 * time.Minute)
	if err := verify(k2, "k2"); err != nil || srv.count() != 2 {
		t.Fatalf("k2 after rotation: %v with %d fetches, want nil and 2", err, srv.count())
	}
	if err := verify(k2, "k3"); !errors.Is(err, ErrUnknownKey) || srv.count() != 2 {
		t.Errorf("unknown kid within MinRefresh: %v with %d fetches, want ErrUnknownKey and no fetch", err, srv.count())
	}

	// k1 is withdrawn: after MaxAge the keys are fetched again and k1
	// stops working.
	srv.set(pub2)
	clock.advance(time.Hour)
	if err := verify(k1, "k1"); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("withdrawn k1 after MaxAge: %v, want ErrUnknownKey", err)
	}
	if err := verify(k2, "k2"); err != nil {
		t.Errorf("k2: %v", err)
	}

	// The issuer is down: the keys fetched before keep working.
	srv.setDown(true)
	clock.advance(2 * time.Hour)
	if err := verify(k2, "k2"); err != nil {
		t.Errorf("k2 while the issuer is down: %v, want nil (old keys kept)", err)
	}
}

func TestRemoteKeysUnavailable(t *testing.T) {
	srv := newJWKSServer(t)
	srv.setDown(true)
	clock := newClock()
	keys, err := NewRemoteKeys(RemoteKeysConfig{URL: srv.URL + "/jwks", Client: srv.Client(), Now: clock.now})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := keys.Key(context.Background(), "k1"); !errors.Is(err, ErrKeys) {
		t.Errorf("Key with the issuer down = %v, want ErrKeys", err)
	}
	if _, err := keys.Key(context.Background(), "k1"); !errors.Is(err, ErrKeys) || srv.count() != 1 {
		t.Errorf("Key again = %v after %d fetches, want ErrKeys and no new fetch within MinRefresh", err, srv.count())
	}
	srv.setDown(false)
	_, pub := newSigningKey(t, "k1")
	srv.set(pub)
	clock.advance(time.Minute)
	if _, err := keys.Key(context.Background(), "k1"); err != nil {
		t.Errorf("Key once the issuer is back = %v", err)
	}
}

func TestRemoteKeysIgnoresPrivateAndSymmetricKeys(t *testing.T) {
	srv := newJWKSServer(t)
	priv, _ := newSigningKey(t, "private")
	srv.set(
		jose.JSONWebKey{Key: priv, KeyID: "private", Algorithm: string(jose.EdDSA)},
		jose.JSONWebKey{Key: []byte("0123456789abcdef0123456789abcdef"), KeyID: "hmac", Algorithm: string(jose.HS256)},
	)
	keys, err := NewRemoteKeys(RemoteKeysConfig{URL: srv.URL + "/jwks", Client: srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	for _, kid := range []string{"private", "hmac"} {
		if _, err := keys.Key(context.Background(), kid); err == nil {
			t.Errorf("Key(%q) of a JWKS with only private or symmetric keys: no error", kid)
		}
	}
}

func TestDiscoverIssuerMismatch(t *testing.T) {
	srv := newJWKSServer(t)
	if _, err := Discover(context.Background(), srv.Client(), srv.URL+"/other"); err == nil {
		t.Error("Discover for an issuer the document does not name: no error")
	}
}
