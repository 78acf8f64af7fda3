package server

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/vigie-sante/vigie/api/auth"
)

func TestPageSize(t *testing.T) {
	tests := []struct {
		in      int32
		want    int
		wantErr bool
	}{
		{0, 100, false}, {1, 1, false}, {500, 500, false},
		{501, 0, true}, {-1, 0, true}, {-2147483648, 0, true}, {2147483647, 0, true},
	}
	for _, tt := range tests {
		got, err := PageSize(tt.in, 100, 500)
		var fe *FieldError
		if got != tt.want || (err != nil) != tt.wantErr || err != nil && (!errors.As(err, &fe) || fe.Field != "page_size") {
			t.Errorf("PageSize(%d, 100, 500) = %d, %v; want %d, error %v naming page_size", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func testIdentity(t *testing.T, role auth.Role, subject string) *auth.Identity {
	t.Helper()
	iss := newTestIssuer(t)
	r := auth.TokenRequest{Role: role, Subject: subject}
	if role.BoundToOrganizations() {
		r.Organizations = []string{ourOrg}
	}
	tok, err := iss.Mint(r)
	if err != nil {
		t.Fatal(err)
	}
	a := newTestAuthenticator(t, iss)
	id, err := a.Authenticate(t.Context(), "Bearer "+tok, nil)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestPageTokens(t *testing.T) {
	key := make([]byte, PageTokenKeySize)
	key[0] = 1
	p, err := NewPageTokens(key)
	if err != nil {
		t.Fatal(err)
	}
	alice := Binding(testIdentity(t, auth.RolePatient, testINS))
	bob := Binding(testIdentity(t, auth.RolePatient, otherINS))
	const scope = "/vigie.v1.HistoryService/ListAccesses"
	values := []uint64{1234, 0, 1 << 62}
	tok := p.Seal(scope, alice, values...)
	if strings.Contains(tok, testINS) {
		t.Fatal("the token shows the INS")
	}
	got, err := p.Open(scope, alice, tok, 3)
	if err != nil || !slices.Equal(got, values) {
		t.Fatalf("Open(Seal(%v)) = %v, %v", values, got, err)
	}
	// Another node with the same key opens it.
	p2, _ := NewPageTokens(key)
	if _, err := p2.Open(scope, alice, tok, 3); err != nil {
		t.Errorf("same key, another PageTokens: %v", err)
	}

	otherKey := make([]byte, PageTokenKeySize)
	pOther, _ := NewPageTokens(otherKey)
	flipped := []byte(tok)
	flipped[3] ^= 1
	bad := []struct {
		name    string
		p       *PageTokens
		scope   string
		binding []byte
		token   string
		n       int
	}{
		{"another patient", p, scope, bob, tok, 3},
		{"another method", p, "/vigie.v1.AuditService/SearchEvents", alice, tok, 3},
		{"another key", pOther, scope, alice, tok, 3},
		{"altered", p, scope, alice, string(flipped), 3},
		{"truncated", p, scope, alice, tok[:len(tok)-2], 3},
		{"extended", p, scope, alice, tok + "AA", 3},
		{"wrong count", p, scope, alice, tok, 2},
		{"not base64", p, scope, alice, "!!!", 3},
		{"empty", p, scope, alice, "", 3},
		{"huge", p, scope, alice, strings.Repeat("A", 10000), 3},
	}
	for _, tt := range bad {
		_, err := tt.p.Open(tt.scope, tt.binding, tt.token, tt.n)
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != "page_token" {
			t.Errorf("%s: Open = %v, want a FieldError naming page_token", tt.name, err)
		}
	}
	if _, err := NewPageTokens(key[:16]); err == nil {
		t.Error("NewPageTokens with a 16-byte key: no error")
	}
	// Bindings of callers of other roles differ too.
	if slices.Equal(Binding(testIdentity(t, auth.RoleRegulator, "a")), Binding(testIdentity(t, auth.RoleRegulator, "b"))) {
		t.Error("two regulators share a binding")
	}
}

func FuzzPageTokenOpen(f *testing.F) {
	p, _ := NewPageTokens(make([]byte, PageTokenKeySize))
	f.Add(p.Seal("s", []byte("b"), 1, 2, 3), 3)
	f.Add("", 0)
	f.Fuzz(func(t *testing.T, token string, n int) {
		n = n & 7
		values, err := p.Open("s", []byte("b"), token, n)
		if err != nil {
			return
		}
		// What opens is what Seal makes: re-sealing gives the same token.
		if again := p.Seal("s", []byte("b"), values...); again != token {
			t.Errorf("Open(%q) = %v, which seals to %q", token, values, again)
		}
	})
}
