package auth

import (
	"encoding/base64"
	"slices"
	"testing"
	"time"
)

func TestPeekClaims(t *testing.T) {
	key, err := GenerateIssuerKey()
	if err != nil {
		t.Fatal(err)
	}
	iss, err := NewIssuer(IssuerConfig{Issuer: "i", Audience: "a", Key: key})
	if err != nil {
		t.Fatal(err)
	}
	mint := func(r TokenRequest) string {
		r.TTL = time.Hour
		tok, err := iss.Mint(r)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	// unsigned builds a token with these claims and a signature of nothing.
	unsigned := func(claims string) string {
		enc := base64.RawURLEncoding.EncodeToString
		return enc([]byte(`{"alg":"EdDSA"}`)) + "." + enc([]byte(claims)) + "." + enc([]byte("not a signature"))
	}
	for _, c := range []struct {
		name  string
		token string
		role  Role
		orgs  []string
	}{
		{"dpo", mint(TokenRequest{Role: RoleDPO, Subject: "d", Organizations: []string{"750712184", "130783236"}}), RoleDPO, []string{"750712184", "130783236"}},
		{"regulator", mint(TokenRequest{Role: RoleRegulator, Subject: "r"}), RoleRegulator, nil},
		{"unverified, read all the same", unsigned(`{"role":"dpo","orgs":["750712184"]}`), RoleDPO, []string{"750712184"}},
		// As the Verifier: organizations only for a role bound to them.
		{"orgs of a regulator ignored", unsigned(`{"role":"regulator","orgs":["750712184"]}`), RoleRegulator, nil},
		{"unknown role", unsigned(`{"role":"root","orgs":["750712184"]}`), "", nil},
		{"role not a string", unsigned(`{"role":["dpo"]}`), "", nil},
		{"no role", unsigned(`{"orgs":["750712184"]}`), "", nil},
		{"claims not JSON", unsigned(`role=dpo`), "", nil},
		{"two parts", "eyJhbGciOiJFZERTQSJ9.eyJyb2xlIjoiZHBvIn0", "", nil},
		{"alg none", base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none"}`)) + ".eyJyb2xlIjoiZHBvIn0.", "", nil},
		{"empty", "", "", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			role, orgs := PeekClaims(c.token)
			if role != c.role || !slices.Equal(orgs, c.orgs) {
				t.Errorf("PeekClaims = %q, %v, want %q, %v", role, orgs, c.role, c.orgs)
			}
		})
	}
}
