package auth

import (
	"encoding/json"

	"github.com/go-jose/go-jose/v4"
)

// PeekClaims reads the role and organizations of a bearer token WITHOUT
// verifying it: for a client choosing what to ask a server (vigie audit:
// which audit, which organization by default), never for a decision,
// which only the server's [Verifier] makes. It reads the claims as a
// Verifier with the default claim names does (organizations only for a
// role bound to them), and returns the zero role for anything else.
func PeekClaims(token string) (Role, []string) {
	jws, err := jose.ParseSignedCompact(token, DefaultAlgorithms)
	if err != nil || len(jws.Signatures) != 1 {
		return "", nil
	}
	var claims map[string]json.RawMessage
	if json.Unmarshal(jws.UnsafePayloadWithoutVerification(), &claims) != nil {
		return "", nil
	}
	var role Role
	if json.Unmarshal(claims[defaultRoleClaim], &role) != nil || !role.Valid() {
		return "", nil
	}
	var orgs []string
	if raw, ok := claims[defaultOrganizationsClaim]; ok && role.BoundToOrganizations() {
		if json.Unmarshal(raw, &orgs) != nil {
			return role, nil
		}
	}
	return role, orgs
}

// peekIssuer returns the iss of a token WITHOUT verifying it, to choose
// the Verifier that will; "" if there is none.
func peekIssuer(token string) string {
	jws, err := jose.ParseSignedCompact(token, DefaultAlgorithms)
	if err != nil || len(jws.Signatures) != 1 {
		return ""
	}
	var claims struct {
		Issuer string `json:"iss"`
	}
	if json.Unmarshal(jws.UnsafePayloadWithoutVerification(), &claims) != nil {
		return ""
	}
	return claims.Issuer
}
