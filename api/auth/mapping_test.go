package auth

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"

	"github.com/vigie-sante/vigie/consent/ident"
)

// enrolmentsMap is an in-memory Enrolments.
type enrolmentsMap map[[2]string]string

func (m enrolmentsMap) Patient(_ context.Context, iss, sub string) (ident.INS, error) {
	ins, ok := m[[2]string{iss, sub}]
	if !ok {
		return ident.INS{}, ErrNotEnrolled
	}
	return ident.ParseINS(ins)
}

// pscClaims are claims shaped like Pro Santé Connect's (docs/identity.md):
// no role, the national identifier with its "8" prefix.
func pscClaims(f *fixture) map[string]any {
	c := f.claims()
	delete(c, "role")
	delete(c, "orgs")
	c["sub"] = "f:550dc1c8-d97b-4b1e-ac8c-8eb4471cf9dd:ANS20220526"
	c["SubjectNameID"] = "810001234567"
	c["SubjectRole"] = []string{"10^1.2.250.1.213.1.1.5.5"}
	c["SubjectOrganization"] = "Centre hospitalier de test"
	return c
}

// fcClaims are claims shaped like FranceConnect's identité pivot: a
// per-service sub (64 hex digits), no role, no INS.
func fcClaims(f *fixture) map[string]any {
	c := f.claims()
	delete(c, "role")
	delete(c, "orgs")
	c["sub"] = strings.Repeat("ab", 32)
	c["given_name"] = "Angela Claire Louise"
	c["family_name"] = "DUBOIS"
	c["birthdate"] = "1962-08-24"
	c["gender"] = "female"
	c["birthplace"] = "75107"
	c["birthcountry"] = "99100"
	return c
}

func TestClaimMapping(t *testing.T) {
	psc := func(c *VerifierConfig) {
		c.Role, c.Organizations, c.RPPSClaim, c.RPPSPrefix = RoleDPO, []string{"750712184"}, "SubjectNameID", "8"
	}
	fc := func(c *VerifierConfig) {
		c.Role, c.PatientSubject = RolePatient, PatientEnrolled
		c.Enrolments = enrolmentsMap{{"https://vigie.test", strings.Repeat("ab", 32)}: testINS}
	}
	insClaim := func(c *VerifierConfig) { c.Role, c.PatientSubject, c.INSClaim = RolePatient, PatientINSClaim, "ins" }
	codes := func(c *VerifierConfig) {
		c.RoleClaim, c.RoleValues = "SubjectRole", map[string]Role{"10^1.2.250.1.213.1.1.5.5": RoleService}
		c.Organizations = []string{"750712184"}
	}
	tests := []struct {
		name    string
		cfg     func(*VerifierConfig)
		claims  func(*fixture) map[string]any
		want    string // Identity.String
		rpps    string
		wantErr error
		errHas  string // the error names what is missing
	}{
		{"Pro Santé Connect: fixed role, RPPS", psc, pscClaims, "dpo:rpps:10001234567 (bearer)", "10001234567", nil, ""},
		{"Pro Santé Connect: no national identifier", psc, func(f *fixture) map[string]any { return withClaims(pscClaims(f), "SubjectNameID", nil) }, "", "", ErrSubject, "SubjectNameID"},
		{"Pro Santé Connect: ADELI, not RPPS", psc, func(f *fixture) map[string]any { return withClaims(pscClaims(f), "SubjectNameID", "0123456789") }, "", "", ErrSubject, "prefix"},
		{"Pro Santé Connect without a mapping: no role", nil, pscClaims, "", "", ErrRole, "no claim role"},
		{"role from the provider's codes", codes, pscClaims, "service:f:550dc1c8-d97b-4b1e-ac8c-8eb4471cf9dd:ANS20220526 (bearer)", "", nil, ""},
		{"provider's code not mapped", codes, func(f *fixture) map[string]any { return withClaims(pscClaims(f), "SubjectRole", []string{"21^x"}) }, "", "", ErrRole, "maps to no role"},
		{"FranceConnect: enrolled patient", fc, fcClaims, "patient (bearer)", "", nil, ""},
		{"FranceConnect: not enrolled", fc, func(f *fixture) map[string]any { return withClaims(fcClaims(f), "sub", strings.Repeat("cd", 32)) }, "", "", ErrNotEnrolled, "no enrolment"},
		{"FranceConnect: no enrolment store", func(c *VerifierConfig) { fc(c); c.Enrolments = nil }, fcClaims, "", "", ErrNotEnrolled, "keeps no enrolments"},
		{"FranceConnect's sub is never an INS", func(c *VerifierConfig) { c.Role = RolePatient }, fcClaims, "", "", ErrSubject, ""},
		{"FranceConnect without a mapping: no role", nil, fcClaims, "", "", ErrRole, "no claim role"},
		{"INS in a trusted claim", insClaim, func(f *fixture) map[string]any { return withClaims(fcClaims(f), "ins", testINS) }, "patient (bearer)", "", nil, ""},
		{"trusted INS claim missing", insClaim, fcClaims, "", "", ErrSubject, "claim ins"},
		{"trusted INS claim not an INS", insClaim, func(f *fixture) map[string]any { return withClaims(fcClaims(f), "ins", "DUBOIS") }, "", "", ErrSubject, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mods := []func(*VerifierConfig){}
			if tt.cfg != nil {
				mods = append(mods, tt.cfg)
			}
			f := newFixture(t, mods...)
			claims := tt.claims(f)
			id, err := f.verifier.Verify(context.Background(), sign(t, jose.EdDSA, f.key, f.kid(), claims))
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || !strings.Contains(fmt.Sprint(err), tt.errHas) {
					t.Fatalf("Verify = %v, %v; want error %v naming %q", id, err, tt.wantErr, tt.errHas)
				}
				for _, v := range []string{claims["sub"].(string), testINS, "DUBOIS", "810001234567"} {
					if strings.Contains(err.Error(), v) {
						t.Errorf("error %q quotes a claim's value", err)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if id.String() != tt.want || id.RPPS().String() != tt.rpps {
				t.Errorf("Verify = %v (RPPS %q), want %s (RPPS %q)", id, id.RPPS(), tt.want, tt.rpps)
			}
			if p, ok := id.Patient(); ok && p.Canonical() != testINS {
				t.Errorf("enrolled patient = another INS")
			}
		})
	}
}

func TestNewVerifierChecksMapping(t *testing.T) {
	tests := []struct {
		name string
		cfg  func(*VerifierConfig)
	}{
		{"unknown fixed role", func(c *VerifierConfig) { c.Role = "doctor" }},
		{"fixed role and role claim", func(c *VerifierConfig) { c.Role, c.RoleClaim = RolePatient, "r" }},
		{"role value to no role", func(c *VerifierConfig) { c.RoleValues = map[string]Role{"x": "doctor"} }},
		{"organisation not a FINESS", func(c *VerifierConfig) { c.Organizations = []string{"75"} }},
		{"prefix without claim", func(c *VerifierConfig) { c.RPPSPrefix = "8" }},
		{"unknown patient subject", func(c *VerifierConfig) { c.PatientSubject = "sub" }},
		{"INS claim without its patient subject", func(c *VerifierConfig) { c.INSClaim = "ins" }},
		{"patient subject without its INS claim", func(c *VerifierConfig) { c.PatientSubject = PatientINSClaim }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := VerifierConfig{Issuer: "https://vigie.test", Audience: "vigie", Keys: &StaticKeys{}}
			tt.cfg(&cfg)
			if _, err := NewVerifier(cfg); err == nil {
				t.Error("NewVerifier accepted it")
			}
		})
	}
}

// TestAuthenticatorSeveralIssuers: a token goes to the verifier of its
// iss, with that issuer's audience and claims; another issuer's token is
// refused.
func TestAuthenticatorSeveralIssuers(t *testing.T) {
	pros := newFixture(t, func(c *VerifierConfig) {
		c.Issuer, c.Audience, c.Role, c.Organizations = "https://psc.test", "vigie-pro", RoleDPO, []string{"750712184"}
	})
	patients := newFixture(t, func(c *VerifierConfig) {
		c.Issuer, c.Audience, c.Role = "https://fc.test", "vigie-fc", RolePatient
	})
	a, err := NewAuthenticator(AuthenticatorConfig{Verifiers: []*Verifier{pros.verifier, patients.verifier}})
	if err != nil {
		t.Fatal(err)
	}
	pro := withClaims(pscClaims(pros), "iss", "https://psc.test", "aud", "vigie-pro")
	pat := withClaims(fcClaims(patients), "iss", "https://fc.test", "aud", "vigie-fc", "sub", testINS)
	for _, tt := range []struct {
		name, token, want string
		wantErr           error
	}{
		{"professional", sign(t, jose.EdDSA, pros.key, pros.kid(), pro), "dpo:f:550dc1c8-d97b-4b1e-ac8c-8eb4471cf9dd:ANS20220526 (bearer)", nil},
		{"patient", sign(t, jose.EdDSA, patients.key, patients.kid(), pat), "patient (bearer)", nil},
		{"patient's token signed by the other issuer's key", sign(t, jose.EdDSA, pros.key, pros.kid(), pat), "", ErrUnknownKey},
		{"professional's token with the patients' audience", sign(t, jose.EdDSA, pros.key, pros.kid(), withClaims(pscClaims(pros), "iss", "https://psc.test", "aud", "vigie-fc")), "", ErrAudience},
		{"unknown issuer", sign(t, jose.EdDSA, pros.key, pros.kid(), withClaims(pscClaims(pros), "iss", "https://other.test")), "", ErrIssuer},
		{"not a JWT", "abc", "", ErrMalformed},
	} {
		t.Run(tt.name, func(t *testing.T) {
			id, err := a.Authenticate(context.Background(), "Bearer "+tt.token, nil)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Authenticate = %v, %v; want error %v", id, err, tt.wantErr)
				}
				return
			}
			if err != nil || id.String() != tt.want {
				t.Fatalf("Authenticate = %v, %v; want %s", id, err, tt.want)
			}
		})
	}
	if _, err := NewAuthenticator(AuthenticatorConfig{Verifiers: []*Verifier{pros.verifier, pros.verifier}}); err == nil {
		t.Error("NewAuthenticator accepted an issuer twice")
	}
}

// withClaims sets claims of c (nil deletes), and returns c.
func withClaims(c map[string]any, kv ...any) map[string]any {
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(c, kv[i].(string))
		} else {
			c[kv[i].(string)] = kv[i+1]
		}
	}
	return c
}

// TestProviderSubject: the enrolment step gets the (issuer, sub) of a
// verified patient's token of an issuer that enrols its patients, and
// nothing else.
func TestProviderSubject(t *testing.T) {
	fcf := newFixture(t, func(c *VerifierConfig) {
		c.Issuer, c.Audience, c.Role, c.PatientSubject = "https://fc.test", "vigie-fc", RolePatient, PatientEnrolled
	})
	ins := newFixture(t, func(c *VerifierConfig) { c.Issuer, c.Role = "https://ins.test", RolePatient })
	a, err := NewAuthenticator(AuthenticatorConfig{Verifiers: []*Verifier{fcf.verifier, ins.verifier}})
	if err != nil {
		t.Fatal(err)
	}
	sub := strings.Repeat("ab", 32)
	fcTok := func(kv ...any) string {
		c := withClaims(fcClaims(fcf), append([]any{"iss", "https://fc.test", "aud", "vigie-fc"}, kv...)...)
		return sign(t, jose.EdDSA, fcf.key, fcf.kid(), c)
	}
	iss, got, err := a.ProviderSubject(context.Background(), "Bearer "+fcTok())
	if err != nil || iss != "https://fc.test" || got != sub {
		t.Fatalf("ProviderSubject = %q, %q, %v; want the issuer and the sub", iss, got, err)
	}
	for _, tt := range []struct {
		name, authorization string
		want                error
	}{
		{"no token", "", ErrNoCredentials},
		{"expired", "Bearer " + fcTok("exp", 1), ErrExpired},
		{"another audience", "Bearer " + fcTok("aud", "vigie-pro"), ErrAudience},
		{"signed by another key", "Bearer " + sign(t, jose.EdDSA, ins.key, fcf.kid(), withClaims(fcClaims(fcf), "iss", "https://fc.test", "aud", "vigie-fc")), ErrSignature},
		{"an issuer whose tokens name the patient", "Bearer " + sign(t, jose.EdDSA, ins.key, ins.kid(), withClaims(fcClaims(ins), "iss", "https://ins.test", "sub", testINS)), ErrSubject},
		{"sub too long", "Bearer " + fcTok("sub", strings.Repeat("a", MaxProviderSubjectLen+1)), ErrSubject},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := a.ProviderSubject(context.Background(), tt.authorization)
			if !errors.Is(err, tt.want) {
				t.Fatalf("ProviderSubject = %v, want %v", err, tt.want)
			}
			if strings.Contains(err.Error(), sub) {
				t.Errorf("the error quotes the sub: %v", err)
			}
		})
	}
}
