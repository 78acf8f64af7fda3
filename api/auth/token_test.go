package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// Made-up INS values with valid keys (consent/ident's golden vectors).
const (
	testINS        = "137047624348415"
	testINSCorsica = "185052A01234579"
)

// testClock is a settable clock.
type testClock struct{ t time.Time }

func (c *testClock) now() time.Time          { return c.t }
func (c *testClock) advance(d time.Duration) { c.t = c.t.Add(d) }

func newClock() *testClock {
	return &testClock{t: time.Date(2026, 11, 28, 22, 0, 0, 0, time.UTC)}
}

// fixture is an issuer and a verifier that trusts it.
type fixture struct {
	clock    *testClock
	key      ed25519.PrivateKey
	issuer   *Issuer
	verifier *Verifier
}

func newFixture(t testing.TB, modify ...func(*VerifierConfig)) *fixture {
	t.Helper()
	f := &fixture{clock: newClock()}
	_, f.key, _ = ed25519.GenerateKey(rand.Reader)
	var err error
	f.issuer, err = NewIssuer(IssuerConfig{Issuer: "https://vigie.test", Audience: "vigie", Key: f.key, Now: f.clock.now})
	if err != nil {
		t.Fatal(err)
	}
	cfg := VerifierConfig{Issuer: "https://vigie.test", Audience: "vigie", Keys: f.issuer.Keys(), Now: f.clock.now}
	for _, m := range modify {
		m(&cfg)
	}
	f.verifier, err = NewVerifier(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) mint(t testing.TB, r TokenRequest) string {
	t.Helper()
	tok, err := f.issuer.Mint(r)
	if err != nil {
		t.Fatalf("Mint(%+v): %v", r, err)
	}
	return tok
}

// sign returns a token with any header and claims, signed by key.
func sign(t testing.TB, alg jose.SignatureAlgorithm, key any, kid string, claims map[string]any) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithType("JWT")
	if kid != "" {
		opts = opts.WithHeader("kid", kid)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	jws, err := s.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// claims returns valid claims for the fixture's verifier.
func (f *fixture) claims() map[string]any {
	now := f.clock.now().Unix()
	return map[string]any{
		"iss": "https://vigie.test", "aud": "vigie", "sub": "hospital-a",
		"iat": now, "nbf": now, "exp": now + 3600,
		"role": "service", "orgs": []string{"750712184"},
	}
}

func (f *fixture) kid() string { return f.issuer.Keys().Keys[0].KeyID }

func TestVerifyAccepts(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		name      string
		req       TokenRequest
		principal string
		orgs      []string
	}{
		{"service", TokenRequest{Role: RoleService, Subject: "hospital-a", Organizations: []string{"750712184", "2A0000018"}}, "service:hospital-a", []string{"2A0000018", "750712184"}},
		{"patient", TokenRequest{Role: RolePatient, Subject: testINS}, "patient", nil},
		{"patient in Corsica", TokenRequest{Role: RolePatient, Subject: testINSCorsica}, "patient", nil},
		{"auditor", TokenRequest{Role: RoleAuditor, Subject: "witness-1"}, "auditor:witness-1", nil},
		{"dpo", TokenRequest{Role: RoleDPO, Subject: "alice@chu.example", Organizations: []string{"750712184"}}, "dpo:alice@chu.example", []string{"750712184"}},
		{"regulator", TokenRequest{Role: RoleRegulator, Subject: "cnil"}, "regulator:cnil", nil},
		{"admin", TokenRequest{Role: RoleAdmin, Subject: "ops"}, "admin:ops", nil},
		{"organisations ignored for a patient", TokenRequest{Role: RolePatient, Subject: testINS, Organizations: []string{"750712184"}}, "patient", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := f.verifier.Verify(context.Background(), f.mint(t, tt.req))
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if id.Role() != tt.req.Role || id.Principal() != tt.principal || id.Method() != MethodBearer {
				t.Errorf("Verify = %v %q %v, want %v %q bearer", id.Role(), id.Principal(), id.Method(), tt.req.Role, tt.principal)
			}
			if got := id.Organizations(); strings.Join(got, ",") != strings.Join(tt.orgs, ",") {
				t.Errorf("Organizations() = %v, want %v", got, tt.orgs)
			}
			p, ok := id.Patient()
			if ok != (tt.req.Role == RolePatient) || (ok && p.Canonical() != tt.req.Subject) {
				t.Errorf("Patient() = %v, %v; want the subject exactly for a patient", ok, p.IsZero())
			}
		})
	}
}

func TestVerifyRejects(t *testing.T) {
	f := newFixture(t)
	_, otherKey, _ := ed25519.GenerateKey(rand.Reader)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	with := func(changes map[string]any) map[string]any {
		c := f.claims()
		for k, v := range changes {
			if v == nil {
				delete(c, k)
			} else {
				c[k] = v
			}
		}
		return c
	}
	now := f.clock.now().Unix()
	b64 := base64.RawURLEncoding.EncodeToString
	claimsJSON, _ := json.Marshal(f.claims())
	tests := []struct {
		name  string
		token string
		want  error
	}{
		{"no token", "", ErrNoCredentials},
		{"expired", sign(t, jose.EdDSA, f.key, f.kid(), with(map[string]any{"exp": now - 3600, "iat": now - 7200, "nbf": now - 7200})), ErrExpired},
		{"expired beyond the leeway", sign(t, jose.EdDSA, f.key, f.kid(), with(map[string]any{"exp": now - 31})), ErrExpired},
		{"not yet valid", sign(t, jose.EdDSA, f.key, f.kid(), with(map[string]any{"nbf": now + 600})), ErrNotYetValid},
		{"issued in the future", sign(t, jose.EdDSA, f.key, f.kid(), with(map[string]any{"iat": now + 600, "nbf": nil})), ErrNotYetValid},
		{"wrong audience", sign(t, jose.EdDSA, f.key, f.kid(), with(map[string]any{"aud": "another-service"})), ErrAudience},
		{"no audience", sign(t, jose.EdDSA, f.key, f.kid(), with(map[string]any{"aud": nil})), ErrAudience},
		{"wrong issuer", sign(t, jose.EdDSA, f.key, f.kid(), with(map[string]any{"iss": "https://evil.example"})), ErrIssuer},
		{"alg none", b64([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + b64(claimsJSON) + ".", ErrAlgorithm},
		{"alg none with a signature", b64([]byte(`{"alg":"none","typ":"JWT","kid":"`+f.kid()+`"}`)) + "." + b64(claimsJSON) + "." + b64([]byte("x")), ErrAlgorithm},
		{"HS256 with the public key as secret", sign(t, jose.HS256, []byte(f.issuer.Keys().Keys[0].Key.(ed25519.PublicKey)), f.kid(), f.claims()), ErrAlgorithm},
		{"wrong key, same kid", sign(t, jose.EdDSA, otherKey, f.kid(), f.claims()), ErrSignature},
		{"ES256 token naming an EdDSA key", sign(t, jose.ES256, ecKey, f.kid(), f.claims()), ErrAlgorithm},
		{"unknown kid", sign(t, jose.EdDSA, otherKey, "some-other-key", f.claims()), ErrUnknownKey},
		{"unknown role", sign(t, jose.EdDSA, f.key, f.kid(), with(map[string]any{"role": "superuser"})), ErrRole},
		{"no role", sign(t, jose.EdDSA, f.key, f.kid(), with(map[string]any{"role": nil})), ErrRole},
		{"role not a string", sign(t, jose.EdDSA, f.key, f.kid(), with(map[string]any{"role": []string{"admin"}})), ErrRole},
		{"role in another case", sign(t, jose.EdDSA, f.key, f.kid(), with(map[string]any{"role": "Admin"})), ErrRole},
		{"no exp", sign(t, jose.EdDSA, f.key, f.kid(), with(map[string]any{"exp": nil})), ErrMalformed},
		{"malformed: garbage", "not-a-token", ErrMalformed},
		{"malformed: two parts", b64([]byte(`{"alg":"EdDSA"}`)) + "." + b64(claimsJSON), ErrMalformed},
		{"garbage signature", b64([]byte(`{"alg":"EdDSA","kid":"`+f.kid()+`"}`)) + "." + b64(claimsJSON) + "." + b64(make([]byte, 64)), ErrSignature},
		{"malformed: signed claims not JSON", signRaw(t, f, []byte("hello")), ErrMalformed},
		{"malformed: signed claims an array", signRaw(t, f, []byte(`[1,2]`)), ErrMalformed},
		{"malformed: too long", strings.Repeat("a", 9000), ErrMalformed},
		{"malformed: JSON serialization", `{"payload":"` + b64(claimsJSON) + `","signatures":[]}`, ErrMalformed},
		{"malformed: typ", signTyp(t, f, "JOSE+JSON"), ErrMalformed},
		{"patient with an invalid INS key", sign(t, jose.EdDSA, f.key, f.kid(), with(map[string]any{"role": "patient", "sub": "137047624348416", "orgs": nil})), ErrSubject},
		{"patient with no subject", sign(t, jose.EdDSA, f.key, f.kid(), with(map[string]any{"role": "patient", "sub": nil, "orgs": nil})), ErrSubject},
		{"subject with a quote", sign(t, jose.EdDSA, f.key, f.kid(), with(map[string]any{"sub": `a"b`})), ErrSubject},
		{"service without organisations", sign(t, jose.EdDSA, f.key, f.kid(), with(map[string]any{"orgs": nil})), ErrOrganizations},
		{"dpo without organisations", sign(t, jose.EdDSA, f.key, f.kid(), with(map[string]any{"role": "dpo", "orgs": []string{}})), ErrOrganizations},
		{"organisation not a FINESS", sign(t, jose.EdDSA, f.key, f.kid(), with(map[string]any{"orgs": []string{"75071218"}})), ErrOrganizations},
		{"organisation with a wrong FINESS key", sign(t, jose.EdDSA, f.key, f.kid(), with(map[string]any{"orgs": []string{"750712185"}})), ErrOrganizations},
		{"organisations not an array", sign(t, jose.EdDSA, f.key, f.kid(), with(map[string]any{"orgs": "750712184"})), ErrOrganizations},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := f.verifier.Verify(context.Background(), tt.token)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Verify = %v, %v; want error %v", id, err, tt.want)
			}
			if tt.token != "" && len(tt.token) > 20 && strings.Contains(err.Error(), tt.token[:20]) {
				t.Errorf("error %q quotes the token", err)
			}
		})
	}
}

func TestVerifyLeeway(t *testing.T) {
	f := newFixture(t)
	now := f.clock.now().Unix()
	c := f.claims()
	c["exp"], c["nbf"] = now-20, now+20 // within the 30s leeway
	if _, err := f.verifier.Verify(context.Background(), sign(t, jose.EdDSA, f.key, f.kid(), c)); err != nil {
		t.Errorf("Verify of a token within the leeway = %v, want nil", err)
	}
}

// signRaw signs any payload with the fixture's key.
func signRaw(t *testing.T, f *fixture, payload []byte) string {
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.EdDSA, Key: f.key}, (&jose.SignerOptions{}).WithHeader("kid", f.kid()))
	if err != nil {
		t.Fatal(err)
	}
	jws, err := s.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := jws.CompactSerialize()
	return tok
}

func signTyp(t *testing.T, f *fixture, typ string) string {
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.EdDSA, Key: f.key},
		(&jose.SignerOptions{}).WithType(jose.ContentType(typ)).WithHeader("kid", f.kid()))
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := json.Marshal(f.claims())
	jws, err := s.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := jws.CompactSerialize()
	return tok
}

func TestVerifyES256FromStaticKeys(t *testing.T) {
	clock := newClock()
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	keys := &StaticKeys{Keys: []jose.JSONWebKey{{Key: &ecKey.PublicKey, KeyID: "k1", Algorithm: string(jose.ES256), Use: "sig"}}}
	v, err := NewVerifier(VerifierConfig{Issuer: "https://idp.example", Audience: "vigie", Keys: keys, Now: clock.now})
	if err != nil {
		t.Fatal(err)
	}
	now := clock.now().Unix()
	claims := map[string]any{"iss": "https://idp.example", "aud": []string{"other", "vigie"}, "sub": "bob", "exp": now + 60, "role": "regulator"}
	id, err := v.Verify(context.Background(), sign(t, jose.ES256, ecKey, "k1", claims))
	if err != nil || id.Principal() != "regulator:bob" {
		t.Fatalf("Verify = %v, %v; want regulator:bob", id, err)
	}
	// The key says ES256: an EdDSA token naming it is refused, whatever
	// its signature.
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	if _, err := v.Verify(context.Background(), sign(t, jose.EdDSA, edKey, "k1", claims)); !errors.Is(err, ErrAlgorithm) {
		t.Errorf("EdDSA token for an ES256 key: Verify error = %v, want ErrAlgorithm", err)
	}
}

func TestNewVerifierRefusesHMAC(t *testing.T) {
	for _, alg := range []jose.SignatureAlgorithm{jose.HS256, "none"} {
		_, err := NewVerifier(VerifierConfig{Issuer: "i", Audience: "a", Keys: &StaticKeys{}, Algorithms: []jose.SignatureAlgorithm{alg}})
		if err == nil {
			t.Errorf("NewVerifier with algorithm %s: no error", alg)
		}
	}
}

func TestVerifyCache(t *testing.T) {
	counting := &countingKeys{}
	f := newFixture(t, func(c *VerifierConfig) {
		counting.KeySource = c.Keys
		c.Keys = counting
		c.CacheTTL = 10 * time.Minute
	})
	tok := f.mint(t, TokenRequest{Role: RolePatient, Subject: testINS, TTL: 30 * time.Minute})
	first, err := f.verifier.Verify(context.Background(), tok)
	if err != nil {
		t.Fatal(err)
	}
	second, err := f.verifier.Verify(context.Background(), tok)
	if err != nil {
		t.Fatal(err)
	}
	if first != second || counting.n != 1 {
		t.Errorf("second Verify: same identity %v, key lookups %d; want the cached identity and 1 lookup", first == second, counting.n)
	}
	// Past CacheTTL the token is verified again.
	f.clock.advance(11 * time.Minute)
	if _, err := f.verifier.Verify(context.Background(), tok); err != nil || counting.n != 2 {
		t.Errorf("Verify after CacheTTL = %v with %d key lookups, want nil and 2", err, counting.n)
	}
	// Past exp the cached token is refused.
	f.clock.advance(20 * time.Minute)
	if _, err := f.verifier.Verify(context.Background(), tok); !errors.Is(err, ErrExpired) {
		t.Errorf("Verify after exp = %v, want ErrExpired", err)
	}
}

func TestTokenCacheBounded(t *testing.T) {
	c := newTokenCache(100)
	var keep [32]byte
	keep[0] = 0xff
	c.put(keep, cacheEntry{})
	for i := range 1000 {
		var h [32]byte
		h[1], h[2] = byte(i), byte(i>>8)
		c.put(h, cacheEntry{})
		if i%10 == 0 {
			if _, ok := c.get(keep); !ok {
				t.Fatalf("a token in use left the cache after %d others", i)
			}
		}
	}
	if n := c.len(); n > 100 {
		t.Errorf("cache holds %d tokens, want at most 100", n)
	}
}

type countingKeys struct {
	KeySource
	n int
}

func (c *countingKeys) Key(ctx context.Context, kid string) (jose.JSONWebKey, error) {
	c.n++
	return c.KeySource.Key(ctx, kid)
}

func TestMint(t *testing.T) {
	f := newFixture(t)
	bad := []struct {
		name string
		req  TokenRequest
		want error
	}{
		{"unknown role", TokenRequest{Role: "root", Subject: "x"}, ErrRole},
		{"patient with a bad INS", TokenRequest{Role: RolePatient, Subject: "137047624348416"}, ErrSubject},
		{"service without organisations", TokenRequest{Role: RoleService, Subject: "s"}, ErrOrganizations},
		{"empty subject", TokenRequest{Role: RoleAdmin}, ErrSubject},
	}
	for _, tt := range bad {
		if _, err := f.issuer.Mint(tt.req); !errors.Is(err, tt.want) {
			t.Errorf("%s: Mint error = %v, want %v", tt.name, err, tt.want)
		}
	}
	if _, err := f.issuer.Mint(TokenRequest{Role: RoleAdmin, Subject: "a", TTL: 365 * 24 * time.Hour}); err == nil {
		t.Error("Mint with a TTL over MaxTTL: no error")
	}
}

func TestIssuerKeyRoundTrip(t *testing.T) {
	key, err := GenerateIssuerKey()
	if err != nil {
		t.Fatal(err)
	}
	b, err := MarshalIssuerKey(key)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseIssuerKey(b)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Equal(key) {
		t.Error("ParseIssuerKey(MarshalIssuerKey(k)) != k")
	}
	for _, bad := range [][]byte{nil, []byte("hello"), append(b, b...), []byte("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")} {
		if _, err := ParseIssuerKey(bad); err == nil {
			t.Errorf("ParseIssuerKey(%.20q): no error", bad)
		}
	}
}
