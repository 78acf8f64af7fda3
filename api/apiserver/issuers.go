package apiserver

import (
	"context"
	"fmt"
	"time"

	"github.com/vigie-sante/vigie/api/auth"
)

// IssuerConfig is one OpenID Connect issuer whose tokens are accepted,
// and how its claims give a caller's identity (auth.VerifierConfig says
// what each mapping field means). docs/identity.md shows the mappings of
// Pro Santé Connect and FranceConnect.
type IssuerConfig struct {
	// Issuer is the issuer's URL, a SecureURL; its JWKS is discovered
	// unless JWKSURL. Required.
	Issuer string
	// Audience is what its tokens must carry. Required.
	Audience string
	// JWKSURL is its JWKS, if it publishes no discovery document.
	JWKSURL string
	// ClientID is the portal's client at this issuer: the portal offers
	// to sign in there (professionals' and patients' providers at once,
	// each a button named Name). Needs PublicURL and HTTPAddr.
	ClientID string
	// Name is the sign-in button's label (default: the issuer's host).
	Name string
	// ClientSecretFile holds the client secret of ClientID (owner-only);
	// empty for a public client (PKCE), or Config.ClientSecretFile when
	// this is the only issuer with a ClientID.
	ClientSecretFile string

	// Role is the role of every token of the issuer; exclusive with
	// RoleClaim and RoleValues.
	Role auth.Role
	// RoleClaim and RoleValues: the claim of the role and, for a
	// provider's own codes, the role of each code.
	RoleClaim  string
	RoleValues map[string]auth.Role
	// Organizations (fixed) or OrganizationsClaim: the FINESS numbers of
	// services and DPOs.
	Organizations      []string
	OrganizationsClaim string
	// RPPSClaim and RPPSPrefix: the claim of a professional's RPPS.
	RPPSClaim, RPPSPrefix string
	// PatientSubject: how a patient's token names the patient (default
	// auth.PatientINS); INSClaim: the claim of the INS, with
	// auth.PatientINSClaim.
	PatientSubject auth.PatientSubject
	INSClaim       string
}

// verifierConfig returns the mapping part of auth.VerifierConfig.
func (ic IssuerConfig) verifierConfig() auth.VerifierConfig {
	return auth.VerifierConfig{
		Issuer:             ic.Issuer,
		Audience:           ic.Audience,
		Role:               ic.Role,
		RoleClaim:          ic.RoleClaim,
		RoleValues:         ic.RoleValues,
		Organizations:      ic.Organizations,
		OrganizationsClaim: ic.OrganizationsClaim,
		RPPSClaim:          ic.RPPSClaim,
		RPPSPrefix:         ic.RPPSPrefix,
		PatientSubject:     ic.PatientSubject,
		INSClaim:           ic.INSClaim,
	}
}

// validateIssuers checks c.Issuers: a *FieldError on "Issuers" whose
// message names the issuer (by position and URL: an issuer's URL is
// public) and its field.
func (c *Config) validateIssuers() error {
	bad := func(i int, ic IssuerConfig, msg string) error {
		return &FieldError{Field: "Issuers", Err: fmt.Errorf("issuer %d (%s): %s", i+1, ic.Issuer, msg)}
	}
	seen := map[string]bool{}
	clients := 0
	for i, ic := range c.Issuers {
		switch {
		case ic.Issuer == "":
			return bad(i, ic, "issuer: required")
		case !auth.SecureURL(ic.Issuer):
			return bad(i, ic, "issuer: want https URLs (http only on a loopback host): the token signing keys come from there")
		case ic.JWKSURL != "" && !auth.SecureURL(ic.JWKSURL):
			return bad(i, ic, "jwks_url: want https URLs (http only on a loopback host): the token signing keys come from there")
		case ic.Audience == "":
			return bad(i, ic, "audience: required")
		case seen[ic.Issuer]:
			return bad(i, ic, "issuer: listed twice")
		case ic.ClientID != "" && c.PublicURL == "":
			return bad(i, ic, "client_id needs PublicURL (the provider sends the browser back to <public URL>/portal/oidc/callback)")
		case ic.ClientID != "" && c.HTTPAddr == "":
			return bad(i, ic, "client_id needs HTTPAddr (the portal)")
		case ic.ClientSecretFile != "" && ic.ClientID == "":
			return bad(i, ic, "client_secret_file needs client_id")
		case ic.ClientSecretFile != "" && c.ClientSecretFile != "":
			return bad(i, ic, "client_secret_file: exclusive with ClientSecretFile (--oidc-client-secret-file)")
		case len(ic.Name) > 64:
			return bad(i, ic, "name: at most 64 bytes")
		}
		seen[ic.Issuer] = true
		if ic.ClientID != "" {
			clients++
		}
		// The mapping's rules are auth's: checked by the one home.
		vc := ic.verifierConfig()
		vc.Keys = &auth.StaticKeys{}
		if _, err := auth.NewVerifier(vc); err != nil {
			return bad(i, ic, err.Error())
		}
	}
	if clients > 1 && c.ClientSecretFile != "" {
		return &FieldError{Field: "ClientSecretFile", Err: fmt.Errorf("%d issuers have a client_id: give each its client_secret_file in Issuers", clients)}
	}
	return nil
}

// portalIssuer returns the issuer and the client of the portal's
// sign-in, or empty strings for none.
func (c *Config) portalIssuer() (issuer, clientID string) {
	if c.ClientID != "" {
		return c.Issuer, c.ClientID
	}
	for _, ic := range c.Issuers {
		if ic.ClientID != "" {
			return ic.Issuer, ic.ClientID
		}
	}
	return "", ""
}

func (c *Config) portalClientID() string { _, id := c.portalIssuer(); return id }

// verifiers returns a verifier for each issuer of cfg (Issuers, or
// Issuer), with the node's enrolments.
func verifiers(ctx context.Context, cfg Config, enrolments auth.Enrolments) ([]*auth.Verifier, error) {
	issuers := cfg.Issuers
	if len(issuers) == 0 {
		issuers = []IssuerConfig{{Issuer: cfg.Issuer, Audience: cfg.Audience, JWKSURL: cfg.JWKSURL}}
	}
	var vs []*auth.Verifier
	for _, ic := range issuers {
		url := ic.JWKSURL
		field := "Issuer"
		if len(cfg.Issuers) > 0 {
			field = "Issuers"
		}
		if url == "" {
			dctx, cancel := context.WithTimeout(ctx, 15*time.Second)
			d, err := auth.Discover(dctx, nil, ic.Issuer)
			cancel()
			if err != nil {
				return nil, &FieldError{Field: field, Err: err}
			}
			url = d.JWKSURI
		}
		keys, err := auth.NewRemoteKeys(auth.RemoteKeysConfig{URL: url})
		if err != nil {
			return nil, err
		}
		vc := ic.verifierConfig()
		vc.Keys, vc.Enrolments = keys, enrolments
		v, err := auth.NewVerifier(vc)
		if err != nil {
			return nil, &FieldError{Field: field, Err: err}
		}
		vs = append(vs, v)
	}
	return vs, nil
}
