package main

import (
	"math"
	"strings"
	"testing"

	"github.com/vigie-sante/vigie/api/auth"
)

// TestAPIConfig: without TLS, Vigie listens on loopback only; flags that
// need others are refused with a message naming them.
func TestAPIConfig(t *testing.T) {
	base := func() apiConfig {
		return apiConfig{grpcAddr: "127.0.0.1:8081", httpAddr: "127.0.0.1:8080", oidcAudience: "vigie", drainTimeout: 1}
	}
	for _, tc := range []struct {
		name   string
		change func(c *apiConfig)
		want   string // "" for valid
	}{
		{"loopback", func(c *apiConfig) {}, ""},
		{"localhost and IPv6 loopback", func(c *apiConfig) { c.grpcAddr, c.httpAddr = "localhost:1", "[::1]:2" }, ""},
		{"no HTTP", func(c *apiConfig) { c.httpAddr = "" }, ""},
		{"every interface without TLS", func(c *apiConfig) { c.grpcAddr = ":8081" }, "--grpc-addr"},
		{"a LAN address without TLS", func(c *apiConfig) { c.httpAddr = "10.0.0.5:8080" }, "--http-addr"},
		{"a host name without TLS", func(c *apiConfig) { c.httpAddr = "vigie.example:8080" }, "requires TLS"},
		{"every interface with TLS", func(c *apiConfig) { c.grpcAddr, c.tlsCert, c.tlsKey = ":8081", "c", "k" }, ""},
		{"cert without key", func(c *apiConfig) { c.tlsCert = "c" }, "--tls-key"},
		{"client CA without TLS", func(c *apiConfig) { c.clientCA = "ca" }, "--tls-client-ca"},
		{"mTLS services without client CA", func(c *apiConfig) { c.tlsCert, c.tlsKey, c.mtlsServices = "c", "k", "s.json" }, "--mtls-services"},
		{"JWKS without issuer", func(c *apiConfig) { c.oidcJWKS = "https://x/jwks" }, "--oidc-issuer"},
		{"issuer over http", func(c *apiConfig) { c.oidcIssuer = "http://idp.example" }, "want https URLs"},
		{"JWKS over http", func(c *apiConfig) { c.oidcIssuer, c.oidcJWKS = "https://idp.example", "http://idp.example/jwks" }, "want https URLs"},
		{"portal sign-in", func(c *apiConfig) {
			c.oidcIssuer, c.oidcClientID, c.publicURL = "https://idp.example", "vigie", "https://vigie.example"
		}, ""},
		{"portal sign-in, confidential client on loopback http", func(c *apiConfig) {
			c.oidcIssuer, c.oidcClientID, c.oidcSecret, c.publicURL = "https://idp.example", "vigie", "secret", "http://127.0.0.1:8080/"
		}, ""},
		{"client ID without issuer", func(c *apiConfig) { c.oidcClientID, c.publicURL = "vigie", "https://vigie.example" }, "--oidc-client-id needs --oidc-issuer"},
		{"client ID without public URL", func(c *apiConfig) { c.oidcIssuer, c.oidcClientID = "https://idp.example", "vigie" }, "--oidc-client-id needs --public-url"},
		{"client ID without HTTP", func(c *apiConfig) {
			c.oidcIssuer, c.oidcClientID, c.publicURL, c.httpAddr = "https://idp.example", "vigie", "https://vigie.example", ""
		}, "--http-addr"},
		{"secret without client ID", func(c *apiConfig) { c.oidcIssuer, c.oidcSecret = "https://idp.example", "secret" }, "--oidc-client-secret-file needs --oidc-client-id"},
		{"public URL over http beyond loopback", func(c *apiConfig) { c.publicURL = "http://vigie.example" }, "--public-url"},
		{"public URL with a path", func(c *apiConfig) { c.publicURL = "https://vigie.example/vigie" }, "--public-url"},
		{"public URL with a query", func(c *apiConfig) { c.publicURL = "https://vigie.example/?a=b" }, "--public-url"},
		{"public URL not http", func(c *apiConfig) { c.publicURL = "ftp://vigie.example" }, "--public-url"},
		{"public URL relative", func(c *apiConfig) { c.publicURL = "vigie.example" }, "--public-url"},
		{"public URL on localhost", func(c *apiConfig) { c.publicURL = "http://localhost:8080" }, ""},
		{"negative erasure delay", func(c *apiConfig) { c.erasureDelay = -1 }, "--erasure-delay"},
	} {
		c := base()
		tc.change(&c)
		err := c.validate()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v, want valid", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: %v, want an error naming %s", tc.name, err, tc.want)
		}
	}
}

func TestRateLimitFlag(t *testing.T) {
	var r rateLimits
	if err := r.Set("service=5000:10000, patient=off,anonymous=1.5:3"); err != nil {
		t.Fatal(err)
	}
	if l := r[auth.RoleService]; l.PerSecond != 5000 || l.Burst != 10000 {
		t.Errorf("service = %+v", l)
	}
	if l := r[auth.RolePatient]; !math.IsInf(l.PerSecond, 1) {
		t.Errorf("patient = %+v, want unlimited", l)
	}
	if l := r[""]; l.PerSecond != 1.5 || l.Burst != 3 {
		t.Errorf("anonymous = %+v", l)
	}
	if got := r.String(); got != "anonymous=1.5:3,patient=off,service=5000:10000" {
		t.Errorf("String() = %q", got)
	}
	// "off", as --help says: no limit for anyone.
	var off rateLimits
	if err := off.Set("off"); err != nil {
		t.Fatalf("Set(off): %v", err)
	}
	for _, role := range append(auth.Roles, "") {
		if l, ok := off[role]; !ok || !math.IsInf(l.PerSecond, 1) {
			t.Errorf("off: role %q = %+v, want unlimited", role, l)
		}
	}
	for _, bad := range []string{"service", "nurse=1:1", "off,service=1:1", "of", "service=0:1", "service=1:0", "service=x:1", "service=1", "service=Inf:1"} {
		var r rateLimits
		if err := r.Set(bad); err == nil {
			t.Errorf("Set(%q) accepted", bad)
		}
	}
}
