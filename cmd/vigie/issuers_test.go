package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vigie-sante/vigie/api/auth"
)

// issuersJSON are Pro Santé Connect's and FranceConnect's mappings, as
// docs/operations.md shows them.
const issuersJSON = `[
  {"issuer": "https://psc.example", "audience": "vigie-psc", "role": "dpo",
   "organizations": ["750712184"], "rpps_claim": "SubjectNameID", "rpps_prefix": "8"},
  {"issuer": "https://fc.example", "audience": "vigie-fc", "client_id": "vigie-fc",
   "role": "patient", "patient_subject": "enrolled"}
]`

func writeFile(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "issuers.json")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestIssuersFlag: --issuers is read strictly; every refusal names the
// key or the field, never a value of the file.
func TestIssuersFlag(t *testing.T) {
	base := func() apiConfig {
		return apiConfig{grpcAddr: "127.0.0.1:8081", httpAddr: "127.0.0.1:8080", oidcAudience: "vigie", drainTimeout: 1, publicURL: "https://vigie.example"}
	}
	c := base()
	c.issuersFile = writeFile(t, issuersJSON)
	if err := c.validate(); err != nil {
		t.Fatalf("validate: %v", err)
	}
	cfg := c.config(nil)
	if len(cfg.Issuers) != 2 || cfg.Issuers[0].RPPSPrefix != "8" || cfg.Issuers[1].PatientSubject != auth.PatientEnrolled || cfg.Issuers[1].ClientID != "vigie-fc" {
		t.Errorf("Issuers = %+v", cfg.Issuers)
	}
	for _, tc := range []struct {
		name, file string
		change     func(c *apiConfig)
		want       string
	}{
		{"unknown key", `[{"issuer": "https://psc.example", "audience": "a", "rol": "secret-value"}]`, nil, `unknown field "rol"`},
		{"a string where a list goes", `[{"issuer": "https://psc.example", "audience": "a", "organizations": "secret-value"}]`, nil, "organizations: want a JSON"},
		{"not JSON", `[{"issuer": secret-value}]`, nil, "not JSON"},
		{"two values", `[] []`, nil, "more than one"},
		{"no issuer", `[]`, nil, "lists no issuer"},
		{"an issuer without audience", `[{"issuer": "https://psc.example"}]`, nil, "--issuers: issuer 1 (https://psc.example): audience: required"},
		{"an unknown role", `[{"issuer": "https://psc.example", "audience": "a", "role": "secret-value"}]`, nil, "unknown role"},
		{"with --oidc-issuer", issuersJSON, func(c *apiConfig) { c.oidcIssuer = "https://idp.example" }, "--issuers: exclusive"},
		{"client ID without public URL", issuersJSON, func(c *apiConfig) { c.publicURL = "" }, "client_id needs PublicURL"},
	} {
		c := base()
		c.issuersFile = writeFile(t, tc.file)
		if tc.change != nil {
			tc.change(&c)
		}
		err := c.validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error with %q", tc.name, err, tc.want)
		} else if strings.Contains(err.Error(), "secret-value") {
			t.Errorf("%s: %v quotes the file", tc.name, err)
		}
	}
	c = base()
	c.issuersFile = filepath.Join(t.TempDir(), "absent.json")
	if err := c.validate(); err == nil || !strings.Contains(err.Error(), "--issuers") {
		t.Errorf("absent file: %v", err)
	}
}
