package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/vigie-sante/vigie/api/apiserver"
	"github.com/vigie-sante/vigie/api/auth"
)

// maxIssuersFile bounds the --issuers file.
const maxIssuersFile = 1 << 20

// issuerEntry is one issuer of the --issuers file (docs/operations.md,
// "Identity providers"; docs/identity.md for the shapes).
type issuerEntry struct {
	Issuer             string               `json:"issuer"`
	Audience           string               `json:"audience"`
	JWKSURL            string               `json:"jwks_url"`
	ClientID           string               `json:"client_id"`
	Name               string               `json:"name"`
	ClientSecretFile   string               `json:"client_secret_file"`
	Role               auth.Role            `json:"role"`
	RoleClaim          string               `json:"role_claim"`
	RoleValues         map[string]auth.Role `json:"role_values"`
	Organizations      []string             `json:"organizations"`
	OrganizationsClaim string               `json:"organizations_claim"`
	RPPSClaim          string               `json:"rpps_claim"`
	RPPSPrefix         string               `json:"rpps_prefix"`
	PatientSubject     auth.PatientSubject  `json:"patient_subject"`
	INSClaim           string               `json:"ins_claim"`
}

// readIssuers reads the --issuers file: a JSON array of issuerEntry,
// strictly (an unknown key is refused, naming it). Errors name the file
// and the field, never a value.
func readIssuers(path string) ([]apiserver.IssuerConfig, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("--issuers: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxIssuersFile+1))
	if err != nil {
		return nil, fmt.Errorf("--issuers: %w", err)
	}
	if len(b) > maxIssuersFile {
		return nil, fmt.Errorf("--issuers: %s is larger than %d bytes", path, maxIssuersFile)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var entries []issuerEntry
	if err := dec.Decode(&entries); err != nil {
		return nil, fmt.Errorf("--issuers: %s: %w", path, jsonFieldError(err))
	}
	if dec.More() {
		return nil, fmt.Errorf("--issuers: %s: more than one JSON value", path)
	}
	if len(entries) == 0 {
		return nil, fmt.Errorf("--issuers: %s lists no issuer", path)
	}
	out := make([]apiserver.IssuerConfig, len(entries))
	for i, e := range entries {
		out[i] = apiserver.IssuerConfig(e)
	}
	return out, nil
}

// jsonFieldError rewrites encoding/json's errors so that they name the
// field and never quote the file's text.
func jsonFieldError(err error) error {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te):
		return fmt.Errorf("field %s: want a JSON %s", te.Field, te.Type)
	case errors.As(err, &se):
		return fmt.Errorf("not JSON (byte %d)", se.Offset)
	}
	return err // "json: unknown field \"name\"" names the key, not a value
}
