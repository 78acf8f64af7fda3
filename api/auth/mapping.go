package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/vigie-sante/vigie/consent/ident"
)

// PatientSubject says how a patient's token names the patient.
type PatientSubject string

// The ways a patient's token names the patient.
const (
	// PatientINS: the token's sub is the patient's INS (Vigie's embedded
	// issuer, a provider that asserts the INS). The default.
	PatientINS PatientSubject = "ins"
	// PatientEnrolled: the token's sub is the provider's own identifier
	// of the person (FranceConnect's per-service sub), never an INS; the
	// patient is the one the pair (iss, sub) was enrolled for
	// ([Enrolments]).
	PatientEnrolled PatientSubject = "enrolled"
	// PatientINSClaim: the INS is in a claim of the provider that the
	// operator trusts to have verified it (VerifierConfig.INSClaim: a
	// hospital's own provider that checked it against the INSi
	// teleservice); the sub is not used.
	PatientINSClaim PatientSubject = "ins_claim"
)

// Valid reports whether p is one of the ways above.
func (p PatientSubject) Valid() bool {
	return p == PatientINS || p == PatientEnrolled || p == PatientINSClaim
}

// ErrNotEnrolled is returned, wrapped, for a patient's token of an issuer
// whose patients are enrolled (PatientEnrolled) when its (iss, sub) pair
// is linked to no patient. Callers test for it with errors.Is; api/server
// turns it into Unauthenticated.
var ErrNotEnrolled = errors.New("patient not enrolled")

// Enrolments finds the patient an (issuer, subject) pair was enrolled
// for. Implementations MUST return an error wrapping ErrNotEnrolled when
// the pair is linked to no patient, MUST NOT put the subject or an INS in
// an error, and MUST be safe for concurrent use. A call may be retried.
type Enrolments interface {
	Patient(ctx context.Context, issuer, subject string) (ident.INS, error)
}

// MaxProviderSubjectLen is the longest sub of a provider whose patients
// are enrolled (FranceConnect's is 64 hexadecimal characters).
const MaxProviderSubjectLen = 255

// claimMapping turns a verified token's claims into an identity: the
// part of VerifierConfig that says which claim, or which fixed value,
// gives the role, the organisations, the RPPS and the patient.
type claimMapping struct {
	issuer             string
	role               Role
	roleClaim          string
	roleValues         map[string]Role
	orgs               []string
	organizationsClaim string
	rppsClaim          string
	rppsPrefix         string
	patients           PatientSubject
	insClaim           string
	enrolments         Enrolments
}

// validate checks the mapping of c (after defaults).
func (c *VerifierConfig) validateMapping() error {
	if c.Role != "" && !c.Role.Valid() {
		return fmt.Errorf("auth: VerifierConfig.Role: unknown role (want one of %s)", rolesText())
	}
	if c.Role != "" && (c.RoleClaim != "" || len(c.RoleValues) > 0) {
		return errors.New("auth: VerifierConfig.Role is exclusive with RoleClaim and RoleValues")
	}
	for k, r := range c.RoleValues {
		if k == "" || !r.Valid() {
			return fmt.Errorf("auth: VerifierConfig.RoleValues: an empty value or an unknown role (want one of %s)", rolesText())
		}
	}
	for _, o := range c.Organizations {
		if _, err := ident.ParseFINESS(o); err != nil {
			return fmt.Errorf("auth: VerifierConfig.Organizations: %w", err)
		}
	}
	if c.RPPSPrefix != "" && c.RPPSClaim == "" {
		return errors.New("auth: VerifierConfig.RPPSPrefix needs RPPSClaim")
	}
	if c.PatientSubject == "" {
		c.PatientSubject = PatientINS
	}
	if !c.PatientSubject.Valid() {
		return fmt.Errorf("auth: VerifierConfig.PatientSubject: want %q, %q or %q", PatientINS, PatientEnrolled, PatientINSClaim)
	}
	if (c.PatientSubject == PatientINSClaim) != (c.INSClaim != "") {
		return fmt.Errorf("auth: VerifierConfig.INSClaim goes with PatientSubject %q, and only with it", PatientINSClaim)
	}
	return nil
}

func rolesText() string {
	var s []string
	for _, r := range Roles {
		s = append(s, string(r))
	}
	return strings.Join(s, ", ")
}

// identity returns the identity of verified claims. Errors name the
// claim that is missing or wrong, never its value.
func (m *claimMapping) identity(ctx context.Context, sub string, extra map[string]json.RawMessage) (*Identity, error) {
	role, err := m.mapRole(extra)
	if err != nil {
		return nil, err
	}
	var orgs []string
	if role.BoundToOrganizations() {
		orgs = m.orgs
		if raw, ok := extra[m.organizationsClaim]; ok && len(orgs) == 0 {
			if err := json.Unmarshal(raw, &orgs); err != nil {
				return nil, fmt.Errorf("%w: claim %s: want an array of strings", ErrOrganizations, m.organizationsClaim)
			}
		}
	}
	var rpps ident.RPPS
	if m.rppsClaim != "" && role != RolePatient {
		var s string
		if raw, ok := extra[m.rppsClaim]; !ok || json.Unmarshal(raw, &s) != nil {
			return nil, fmt.Errorf("%w: claim %s (the RPPS) is missing or not a string", ErrSubject, m.rppsClaim)
		}
		n, ok := strings.CutPrefix(s, m.rppsPrefix)
		if !ok {
			return nil, fmt.Errorf("%w: claim %s does not start with the configured prefix", ErrSubject, m.rppsClaim)
		}
		if rpps, err = ident.ParseRPPS(n); err != nil {
			return nil, fmt.Errorf("%w: claim %s: %w", ErrSubject, m.rppsClaim, err)
		}
		// The RPPS, public, names the professional: the provider's sub
		// may be opaque, or change with the provider's own accounts.
		sub = "rpps:" + rpps.String()
	}
	if role == RolePatient {
		switch m.patients {
		case PatientEnrolled:
			return m.enrolled(ctx, sub, orgs)
		case PatientINSClaim:
			var ins string
			if raw, ok := extra[m.insClaim]; !ok || json.Unmarshal(raw, &ins) != nil {
				return nil, fmt.Errorf("%w: claim %s (the INS) is missing or not a string", ErrSubject, m.insClaim)
			}
			sub = ins
		}
	}
	id, err := newIdentity(role, sub, orgs, MethodBearer)
	if err != nil {
		return nil, err
	}
	id.rpps = rpps
	return id, nil
}

// enrolled returns the identity of a patient whose sub is the provider's
// identifier, through the enrolment of (iss, sub).
func (m *claimMapping) enrolled(ctx context.Context, sub string, orgs []string) (*Identity, error) {
	if sub == "" || len(sub) > MaxProviderSubjectLen {
		return nil, fmt.Errorf("%w: sub must be 1 to %d bytes", ErrSubject, MaxProviderSubjectLen)
	}
	if m.enrolments == nil {
		return nil, fmt.Errorf("%w: this service keeps no enrolments for issuer %s", ErrNotEnrolled, m.issuer)
	}
	ins, err := m.enrolments.Patient(ctx, m.issuer, sub)
	if err != nil {
		if errors.Is(err, ErrNotEnrolled) {
			return nil, fmt.Errorf("%w: no enrolment of this sign-in at issuer %s: the patient enrols once with the code the operator gave them", ErrNotEnrolled, m.issuer)
		}
		return nil, fmt.Errorf("%w: enrolments: %w", ErrKeys, err)
	}
	return newIdentity(RolePatient, ins.Canonical(), orgs, MethodBearer)
}

// mapRole returns the role the claims give.
func (m *claimMapping) mapRole(extra map[string]json.RawMessage) (Role, error) {
	if m.role != "" {
		return m.role, nil
	}
	raw, ok := extra[m.roleClaim]
	if !ok {
		return "", fmt.Errorf("%w: no claim %s, and the issuer %s maps no fixed role", ErrRole, m.roleClaim, m.issuer)
	}
	var values []string
	var one string
	switch {
	case json.Unmarshal(raw, &one) == nil:
		values = []string{one}
	case m.roleValues != nil && json.Unmarshal(raw, &values) == nil:
		// A provider's codes may come as a list.
	default:
		return "", fmt.Errorf("%w: claim %s: want a string", ErrRole, m.roleClaim)
	}
	var roles []Role
	for _, v := range values {
		r := Role(v)
		if m.roleValues != nil {
			r = m.roleValues[v]
		}
		if r.Valid() && !slices.Contains(roles, r) {
			roles = append(roles, r)
		}
	}
	switch len(roles) {
	case 1:
		return roles[0], nil
	case 0:
		return "", fmt.Errorf("%w: claim %s maps to no role", ErrRole, m.roleClaim)
	default:
		return "", fmt.Errorf("%w: claim %s maps to several roles", ErrRole, m.roleClaim)
	}
}
