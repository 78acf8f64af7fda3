// Package auth says who is calling Vigie, and in which role.
//
// A caller is authenticated in one of two ways:
//
//   - a bearer token: a JWT ([RFC 7519]) signed by the configured issuer,
//     verified against its keys ([Verifier]; weak keys are refused, see
//     [CheckKeyStrength]): the JWKS of an OpenID Connect issuer
//     ([Discover], [RemoteKeys]: fetched, cached and refreshed when keys
//     rotate, through the one client of every call to the provider,
//     [ProviderClient]) or the keys of Vigie's own embedded issuer
//     ([Issuer], [StaticKeys]);
//   - a TLS client certificate, for services only, verified by the TLS
//     stack against the configured client CAs and named on an allow-list
//     ([Authenticator]).
//
// Either way the result is an [Identity]: a [Role] (service, patient,
// auditor, dpo, regulator, admin), a principal, the organisations (FINESS
// numbers) a service or a DPO is bound to and, for a patient, their INS,
// which never prints ([PatientID]).
//
// Tokens carry the claims iss, aud, sub, exp (required), nbf and iat
// (checked when present), role (required) and orgs (the FINESS numbers of
// a service or a DPO). A patient's sub is their INS. docs/api.md describes
// them for integrators. Identity providers as they are (Pro Santé
// Connect, FranceConnect) emit other claims: each issuer has its own
// mapping ([VerifierConfig]: a fixed role or a claim and its codes, fixed
// organisations, the RPPS from a claim), several issuers are trusted at
// once ([AuthenticatorConfig.Verifiers]), and a patient whose provider
// gives no INS is found through an enrolment of their (iss, sub) pair
// ([Enrolments]), never by taking the sub as an INS. docs/identity.md
// describes the shapes assumed.
//
// The package knows nothing of gRPC or HTTP: package api/server takes the
// credentials from a call and puts the Identity in its context
// ([NewContext], [FromContext]).
//
// [RFC 7519]: https://www.rfc-editor.org/rfc/rfc7519
package auth

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"github.com/vigie-sante/vigie/consent/ident"
)

// Role is what a caller may do. docs/api.md has the authorization matrix
// of every method and role.
type Role string

// The roles.
const (
	// RoleService is a calling service (hospital software, the DMP,
	// pharmacy software): it asks for access decisions, for the
	// organisations it is bound to.
	RoleService Role = "service"
	// RolePatient is a patient, for their own consent and history only.
	RolePatient Role = "patient"
	// RoleAuditor reads the log itself: checkpoints, proofs, leaves; no
	// event bodies.
	RoleAuditor Role = "auditor"
	// RoleDPO is a data protection officer: reads the events of their
	// organisations and reviews their break-glass accesses.
	RoleDPO Role = "dpo"
	// RoleRegulator (the CNIL) reads every event and reviews break-glass
	// accesses.
	RoleRegulator Role = "regulator"
	// RoleAdmin loads national rules and has patients' events erased.
	RoleAdmin Role = "admin"
)

// Roles are the roles, in a fixed order.
var Roles = []Role{RoleService, RolePatient, RoleAuditor, RoleDPO, RoleRegulator, RoleAdmin}

// Valid reports whether r is one of Roles.
func (r Role) Valid() bool { return slices.Contains(Roles, r) }

// BoundToOrganizations reports whether callers of this role act for
// organisations, and must name at least one: services and DPOs.
func (r Role) BoundToOrganizations() bool { return r == RoleService || r == RoleDPO }

// Method is how a caller proved who they are.
type Method string

// The authentication methods.
const (
	MethodBearer Method = "bearer" // a bearer token (JWT)
	MethodMTLS   Method = "mtls"   // a TLS client certificate
)

// Errors of authentication. They are wrapped with detail that never
// contains a token or an INS; api/server turns all of them into
// Unauthenticated. Callers test for them with errors.Is.
var (
	// ErrNoCredentials: the call carries neither a bearer token nor a
	// client certificate on the allow-list.
	ErrNoCredentials = errors.New("no credentials")
	// ErrMalformed: the token or the Authorization header cannot be
	// parsed, or a required claim is missing.
	ErrMalformed = errors.New("malformed token")
	// ErrAlgorithm: the token's signature algorithm is not accepted
	// ("none" never is).
	ErrAlgorithm = errors.New("signature algorithm not accepted")
	// ErrUnknownKey: no key of the issuer has the token's key ID.
	ErrUnknownKey = errors.New("unknown signing key")
	// ErrSignature: the signature does not verify.
	ErrSignature = errors.New("invalid signature")
	// ErrExpired: the token's exp is past.
	ErrExpired = errors.New("token expired")
	// ErrNotYetValid: the token's nbf (or iat) is in the future.
	ErrNotYetValid = errors.New("token not valid yet")
	// ErrIssuer: the token's iss is not the configured issuer.
	ErrIssuer = errors.New("wrong issuer")
	// ErrAudience: the token's aud does not name this service.
	ErrAudience = errors.New("wrong audience")
	// ErrRole: the role claim is absent or not one of Roles.
	ErrRole = errors.New("unknown role")
	// ErrSubject: the subject is not valid for the role (a patient's must
	// be a valid INS).
	ErrSubject = errors.New("invalid subject")
	// ErrOrganizations: a service or DPO without organisations, or an
	// organisation that is not a FINESS number.
	ErrOrganizations = errors.New("invalid organizations")
	// ErrKeys: the issuer's keys could not be fetched.
	ErrKeys = errors.New("issuer keys unavailable")
)

// MaxSubjectLen is the longest subject (principal name) accepted.
const MaxSubjectLen = 128

// MaxOrganizations is the most organisations one identity may be bound to.
const MaxOrganizations = 256

// Identity is an authenticated caller. It is immutable, and shared between
// the calls of one token or one certificate.
//
// An Identity never prints a patient's INS: String, Format (every verb),
// LogValue and MarshalJSON show the role and the principal only.
type Identity struct {
	role    Role
	subject string // the principal's name; empty for a patient
	patient PatientID
	orgs    []string   // sorted, distinct
	rpps    ident.RPPS // a professional's, when the issuer gives it
	method  Method
	key     string // see Key
}

// newIdentity checks and assembles an identity. For a patient, subject is
// the INS in its canonical spelling (consent/ident's ParseINS: tokens
// carry that one).
func newIdentity(role Role, subject string, orgs []string, method Method) (*Identity, error) {
	if !role.Valid() {
		return nil, ErrRole
	}
	id := &Identity{role: role, method: method}
	if role == RolePatient {
		ins, err := ident.ParseINS(subject)
		if err != nil {
			// The ident errors never contain the number.
			return nil, fmt.Errorf("%w: %w", ErrSubject, err)
		}
		id.patient = PatientID{ins: ins}
		id.key = "patient:" + patientKey(ins.Canonical())
	} else {
		if err := CheckSubject(subject); err != nil {
			return nil, err
		}
		id.subject = subject
		id.key = string(role) + ":" + subject
	}
	if role.BoundToOrganizations() {
		if len(orgs) == 0 {
			return nil, fmt.Errorf("%w: a %s must be bound to at least one organization", ErrOrganizations, role)
		}
		if len(orgs) > MaxOrganizations {
			return nil, fmt.Errorf("%w: more than %d", ErrOrganizations, MaxOrganizations)
		}
		for _, o := range orgs {
			if _, err := ident.ParseFINESS(o); err != nil {
				return nil, fmt.Errorf("%w: %w", ErrOrganizations, err)
			}
		}
		id.orgs = slices.Compact(slices.Sorted(slices.Values(orgs)))
	}
	return id, nil
}

// Role returns the caller's role.
func (id *Identity) Role() Role { return id.role }

// RPPS returns the professional's RPPS number, when the token's issuer
// gives it (VerifierConfig.RPPSClaim); the zero RPPS otherwise.
func (id *Identity) RPPS() ident.RPPS { return id.rpps }

// Method returns how the caller authenticated.
func (id *Identity) Method() Method { return id.method }

// Subject returns the principal's name: a service's name, a user's
// identifier at the issuer. It is empty for a patient, whose subject is
// their INS ([Identity.Patient]).
func (id *Identity) Subject() string { return id.subject }

// Principal returns who the caller is, in a form fit for logs and for
// the ledger's records: "<role>:<subject>" (e.g. "service:hospital-a",
// "dpo:alice"), and "patient" for every patient, since a patient's
// subject is their INS.
func (id *Identity) Principal() string {
	if id.role == RolePatient {
		return string(RolePatient)
	}
	return string(id.role) + ":" + id.subject
}

// Key returns a string that tells callers apart, for in-memory maps such
// as rate limiters: the principal, and for a patient a keyed hash of the
// INS under a secret drawn at process start. It must not be logged or
// stored: it is stable only within the process.
func (id *Identity) Key() string { return id.key }

// Patient returns the patient's INS, for the patient role only.
func (id *Identity) Patient() (PatientID, bool) {
	return id.patient, id.role == RolePatient
}

// Organizations returns the FINESS numbers the caller is bound to, sorted
// (services and DPOs; nil for other roles). The slice is the caller's.
func (id *Identity) Organizations() []string { return slices.Clone(id.orgs) }

// SpeaksFor reports whether the caller is bound to the organisation with
// this FINESS number (compared as written: FINESS numbers have one
// spelling).
func (id *Identity) SpeaksFor(finess string) bool {
	_, ok := slices.BinarySearch(id.orgs, finess)
	return ok
}

// String returns the role, the principal and the method, never an INS.
func (id *Identity) String() string {
	if id == nil {
		return "anonymous"
	}
	return id.Principal() + " (" + string(id.method) + ")"
}

// Format prints String for every verb, so that %#v and %+v cannot reach
// the INS either.
func (id *Identity) Format(f fmt.State, _ rune) { fmt.Fprint(f, id.String()) }

// LogValue is the identity as log attributes: role, principal, method and
// organisations, never an INS.
func (id *Identity) LogValue() slog.Value {
	if id == nil {
		return slog.StringValue("anonymous")
	}
	attrs := []slog.Attr{
		slog.String("role", string(id.role)),
		slog.String("principal", id.Principal()),
		slog.String("method", string(id.method)),
	}
	if len(id.orgs) > 0 {
		attrs = append(attrs, slog.String("orgs", strings.Join(id.orgs, ",")))
	}
	return slog.GroupValue(attrs...)
}

// MarshalJSON returns String as a JSON string.
func (id *Identity) MarshalJSON() ([]byte, error) {
	return fmt.Appendf(nil, "%q", id.String()), nil
}

// PatientID is the INS of an authenticated patient, checked when the
// token was verified. It never prints: fmt (every verb), String, LogValue
// and MarshalJSON give "INS(redacted)", as consent/ident's INS, which it
// holds, does. Only Canonical returns the digits. It satisfies
// ledger.PatientID.
type PatientID struct{ ins ident.INS }

// Redacted is how a PatientID prints.
const Redacted = ident.Redacted

// Canonical returns the INS, for the few places that must have it: the
// keyed pseudonym, the patient's own consent. Never log it.
func (p PatientID) Canonical() string { return p.ins.Canonical() }

// INS returns the INS.
func (p PatientID) INS() ident.INS { return p.ins }

// IsZero reports whether there is no INS.
func (p PatientID) IsZero() bool { return p.ins.IsZero() }

// String returns Redacted.
func (p PatientID) String() string { return Redacted }

// GoString returns Redacted.
func (p PatientID) GoString() string { return Redacted }

// Format prints Redacted for every verb.
func (p PatientID) Format(f fmt.State, _ rune) { fmt.Fprint(f, Redacted) }

// LogValue returns Redacted.
func (p PatientID) LogValue() slog.Value { return slog.StringValue(Redacted) }

// MarshalJSON returns Redacted as a JSON string.
func (p PatientID) MarshalJSON() ([]byte, error) { return []byte(`"` + Redacted + `"`), nil }

// patientKeySecret keys Identity.Key for patients; drawn at process start.
var patientKeySecret = func() []byte {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic("auth: no randomness: " + err.Error()) // crypto/rand does not fail on supported platforms
	}
	return b
}()

func patientKey(ins string) string {
	m := hmac.New(sha256.New, patientKeySecret)
	m.Write([]byte(ins))
	return hex.EncodeToString(m.Sum(nil)[:16])
}

type contextKey struct{}

// NewContext returns a context that carries id.
func NewContext(ctx context.Context, id *Identity) context.Context {
	return context.WithValue(ctx, contextKey{}, id)
}

// FromContext returns the identity of the call, if it was authenticated.
func FromContext(ctx context.Context) (*Identity, bool) {
	id, ok := ctx.Value(contextKey{}).(*Identity)
	return id, ok && id != nil
}

// CheckSubject reports whether s is a valid principal name: 1 to
// MaxSubjectLen characters from [A-Za-z0-9._:@-], so that it can go into
// logs and ledger records as is.
func CheckSubject(s string) error {
	if s == "" || len(s) > MaxSubjectLen {
		return fmt.Errorf("%w: must be 1 to %d characters", ErrSubject, MaxSubjectLen)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("._:@-", c) >= 0) {
			return fmt.Errorf("%w: character %d is not one of [A-Za-z0-9._:@-]", ErrSubject, i+1)
		}
	}
	return nil
}
