package auth

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// DefaultAlgorithms are the signature algorithms a Verifier accepts by
// default. "none" and the HMAC algorithms (a shared secret cannot tell the
// issuer from a verifier) are never accepted.
var DefaultAlgorithms = []jose.SignatureAlgorithm{jose.EdDSA, jose.ES256, jose.ES384, jose.RS256, jose.PS256}

// VerifierConfig configures a Verifier. Issuer, Audience and Keys are
// required.
type VerifierConfig struct {
	// Issuer is the only iss accepted (compared exactly).
	Issuer string
	// Audience must be one of the token's aud.
	Audience string
	// Keys finds the issuer's verification keys.
	Keys KeySource
	// Algorithms are the signature algorithms accepted. Default
	// DefaultAlgorithms; HS256, HS384, HS512 and "none" are refused.
	Algorithms []jose.SignatureAlgorithm
	// Role is the role of every token of Issuer (a provider of patients
	// only: "patient"), for a provider that emits no role claim. Exclusive
	// with RoleClaim and RoleValues.
	Role Role
	// RoleClaim and OrganizationsClaim name the claims of the role (a
	// string; with RoleValues, also an array of strings) and of the
	// organisations (an array of FINESS numbers). Default "role" and
	// "orgs".
	RoleClaim, OrganizationsClaim string
	// RoleValues maps values of RoleClaim to roles, for a provider whose
	// claim holds its own codes; the values of the claim must then map to
	// exactly one role (values not listed are ignored). Empty: the claim's
	// value is a role's name.
	RoleValues map[string]Role
	// Organizations are the FINESS numbers of every service or DPO of
	// Issuer (a hospital's own provider), instead of OrganizationsClaim.
	Organizations []string
	// RPPSClaim names the claim of a professional's national identifier:
	// RPPSPrefix then eleven digits (Pro Santé Connect's SubjectNameID is
	// "8" and the RPPS). With it, tokens of other roles than patient must
	// carry it, and the identity's subject is "rpps:" and the RPPS.
	// Empty: none.
	RPPSClaim, RPPSPrefix string
	// PatientSubject says how a patient's token names the patient.
	// Default PatientINS; PatientEnrolled needs Enrolments (without it,
	// every patient's token is refused with ErrNotEnrolled).
	PatientSubject PatientSubject
	// INSClaim names the claim of the INS, for PatientINSClaim.
	INSClaim string
	// Enrolments finds the patient of an (iss, sub) pair, for
	// PatientEnrolled.
	Enrolments Enrolments
	// Leeway is the clock skew tolerated on exp, nbf and iat. Default 30s.
	Leeway time.Duration
	// MaxTokenSize is the longest token accepted, in bytes. Default 8192.
	MaxTokenSize int
	// CacheSize bounds the verified tokens kept, so that a token is
	// verified once, not at every call. Default 65536; negative disables
	// the cache.
	CacheSize int
	// CacheTTL is how long a verified token is trusted without being
	// verified again (it is never trusted past its exp): it bounds how
	// long a key removed from the issuer's key set keeps working. Default
	// 5 minutes.
	CacheTTL time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

func (c *VerifierConfig) validate() error {
	switch {
	case c.Issuer == "":
		return errors.New("auth: VerifierConfig.Issuer is required")
	case c.Audience == "":
		return errors.New("auth: VerifierConfig.Audience is required")
	case c.Keys == nil:
		return errors.New("auth: VerifierConfig.Keys is required")
	}
	if len(c.Algorithms) == 0 {
		c.Algorithms = DefaultAlgorithms
	}
	for _, a := range c.Algorithms {
		switch a {
		case jose.HS256, jose.HS384, jose.HS512, "none", "":
			return fmt.Errorf("auth: algorithm %q is not accepted", a)
		}
	}
	if err := c.validateMapping(); err != nil {
		return err
	}
	if c.RoleClaim == "" {
		c.RoleClaim = defaultRoleClaim
	}
	if c.OrganizationsClaim == "" {
		c.OrganizationsClaim = defaultOrganizationsClaim
	}
	if c.Leeway <= 0 {
		c.Leeway = 30 * time.Second
	}
	if c.MaxTokenSize <= 0 {
		c.MaxTokenSize = 8192
	}
	if c.CacheSize == 0 {
		c.CacheSize = 65536
	}
	if c.CacheTTL <= 0 {
		c.CacheTTL = 5 * time.Minute
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}

// The default names of the claims of the role and of the organizations
// (the embedded [Issuer] writes them).
const (
	defaultRoleClaim          = "role"
	defaultOrganizationsClaim = "orgs"
)

// Verifier verifies bearer tokens and returns the identities they carry.
// It is safe for concurrent use.
type Verifier struct {
	cfg     VerifierConfig
	mapping claimMapping
	cache   *tokenCache
}

// NewVerifier returns a Verifier.
func NewVerifier(cfg VerifierConfig) (*Verifier, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	v := &Verifier{cfg: cfg, mapping: claimMapping{
		issuer:             cfg.Issuer,
		role:               cfg.Role,
		roleClaim:          cfg.RoleClaim,
		roleValues:         cfg.RoleValues,
		orgs:               cfg.Organizations,
		organizationsClaim: cfg.OrganizationsClaim,
		rppsClaim:          cfg.RPPSClaim,
		rppsPrefix:         cfg.RPPSPrefix,
		patients:           cfg.PatientSubject,
		insClaim:           cfg.INSClaim,
		enrolments:         cfg.Enrolments,
	}}
	if cfg.CacheSize > 0 {
		v.cache = newTokenCache(cfg.CacheSize)
	}
	return v, nil
}

// Verify checks a bearer token (the compact JWS, without "Bearer ") and
// returns its identity. Errors wrap one of the package's sentinels
// (ErrMalformed, ErrExpired...) and never quote the token.
//
// A token verified before is found in a cache until its exp or CacheTTL,
// whichever comes first; exp and nbf are checked again at every call.
func (v *Verifier) Verify(ctx context.Context, token string) (*Identity, error) {
	if token == "" {
		return nil, ErrNoCredentials
	}
	if len(token) > v.cfg.MaxTokenSize {
		return nil, fmt.Errorf("%w: longer than %d bytes", ErrMalformed, v.cfg.MaxTokenSize)
	}
	now := v.cfg.Now()
	var h [sha256.Size]byte
	if v.cache != nil {
		h = sha256.Sum256([]byte(token))
		if e, ok := v.cache.get(h); ok {
			switch {
			case !now.Before(e.verifiedUntil):
				// Verify again below: the key may have been removed.
			case now.Before(e.notBefore):
				return nil, ErrNotYetValid
			default:
				return e.id, nil
			}
		}
	}
	id, exp, nbf, err := v.verify(ctx, token, now)
	if err != nil {
		return nil, err
	}
	if v.cache != nil {
		until := exp.Add(v.cfg.Leeway)
		if ttl := now.Add(v.cfg.CacheTTL); ttl.Before(until) {
			until = ttl
		}
		v.cache.put(h, cacheEntry{id: id, verifiedUntil: until, notBefore: nbf.Add(-v.cfg.Leeway)})
	}
	return id, nil
}

// verify does the work of Verify, and returns the token's exp and nbf.
func (v *Verifier) verify(ctx context.Context, token string, now time.Time) (_ *Identity, exp, nbf time.Time, err error) {
	sub, extra, exp, nbf, err := v.verifyToken(ctx, token, now)
	if err != nil {
		return nil, exp, nbf, err
	}
	id, err := v.mapping.identity(ctx, sub, extra)
	return id, exp, nbf, err
}

// verifyToken checks token's signature, issuer, audience and times, and
// returns its sub, its claims, exp and nbf.
func (v *Verifier) verifyToken(ctx context.Context, token string, now time.Time) (sub string, extra map[string]json.RawMessage, exp, nbf time.Time, err error) {
	fail := func(err error) (string, map[string]json.RawMessage, time.Time, time.Time, error) {
		return "", nil, exp, nbf, err
	}
	jws, err := jose.ParseSignedCompact(token, v.cfg.Algorithms)
	if err != nil {
		if _, ok := errors.AsType[*jose.ErrUnexpectedSignatureAlgorithm](err); ok {
			return fail(ErrAlgorithm)
		}
		return fail(fmt.Errorf("%w: not a compact JWS", ErrMalformed))
	}
	if len(jws.Signatures) != 1 {
		return fail(fmt.Errorf("%w: want exactly one signature", ErrMalformed))
	}
	hdr := jws.Signatures[0].Header
	if typ, ok := hdr.ExtraHeaders[jose.HeaderType].(string); ok && !strings.EqualFold(typ, "JWT") && !strings.EqualFold(typ, "at+jwt") {
		return fail(fmt.Errorf("%w: typ is not JWT", ErrMalformed))
	}
	key, err := v.cfg.Keys.Key(ctx, hdr.KeyID)
	if err != nil {
		return fail(err)
	}
	if key.Algorithm != "" && key.Algorithm != hdr.Algorithm {
		return fail(fmt.Errorf("%w: the key is for %s", ErrAlgorithm, key.Algorithm))
	}
	if key.Use != "" && key.Use != "sig" {
		return fail(fmt.Errorf("%w: the key is not a signing key", ErrUnknownKey))
	}
	if err := CheckKeyStrength(key); err != nil {
		return fail(fmt.Errorf("%w: %w", ErrUnknownKey, err))
	}
	payload, err := jws.Verify(key.Key)
	if err != nil {
		return fail(ErrSignature)
	}
	var std jwt.Claims
	if json.Unmarshal(payload, &std) != nil || json.Unmarshal(payload, &extra) != nil {
		return fail(fmt.Errorf("%w: claims are not a JSON object", ErrMalformed))
	}
	if std.Expiry == nil {
		return fail(fmt.Errorf("%w: no exp", ErrMalformed))
	}
	err = std.ValidateWithLeeway(jwt.Expected{Issuer: v.cfg.Issuer, AnyAudience: jwt.Audience{v.cfg.Audience}, Time: now}, v.cfg.Leeway)
	switch {
	case errors.Is(err, jwt.ErrInvalidIssuer):
		return fail(ErrIssuer)
	case errors.Is(err, jwt.ErrInvalidAudience):
		return fail(ErrAudience)
	case errors.Is(err, jwt.ErrExpired):
		return fail(ErrExpired)
	case errors.Is(err, jwt.ErrNotValidYet), errors.Is(err, jwt.ErrIssuedInTheFuture):
		return fail(ErrNotYetValid)
	case err != nil:
		return fail(fmt.Errorf("%w: claims", ErrMalformed))
	}
	exp = std.Expiry.Time()
	if std.NotBefore != nil {
		nbf = std.NotBefore.Time()
	}
	return std.Subject, extra, exp, nbf, nil
}

// verifyClaims checks token as Verify does, short of the mapping, and
// returns its sub and its other claims. It bypasses the cache.
func (v *Verifier) verifyClaims(ctx context.Context, token string) (string, map[string]json.RawMessage, error) {
	if token == "" {
		return "", nil, ErrNoCredentials
	}
	if len(token) > v.cfg.MaxTokenSize {
		return "", nil, fmt.Errorf("%w: longer than %d bytes", ErrMalformed, v.cfg.MaxTokenSize)
	}
	sub, extra, _, _, err := v.verifyToken(ctx, token, v.cfg.Now())
	return sub, extra, err
}

// ProviderSubject checks a patient's token of an issuer whose patients
// are enrolled (PatientEnrolled) as Verify does, short of the enrolment
// lookup, and returns the pair (issuer, sub) to enrol: the one way to an
// unenrolled patient's sub, for the enrolment step alone. A token of
// another issuer, or not mapped to the patient role, is refused (ErrRole,
// ErrSubject). The sub is the caller's to keep out of logs and errors.
func (v *Verifier) ProviderSubject(ctx context.Context, token string) (issuer, subject string, err error) {
	if v.mapping.patients != PatientEnrolled {
		return "", "", fmt.Errorf("%w: issuer %s names its patients in its tokens: there is nothing to enrol", ErrSubject, v.cfg.Issuer)
	}
	sub, extra, err := v.verifyClaims(ctx, token)
	if err != nil {
		return "", "", err
	}
	role, err := v.mapping.mapRole(extra)
	if err != nil {
		return "", "", err
	}
	if role != RolePatient {
		return "", "", fmt.Errorf("%w: only a patient enrols (the token maps to %s)", ErrRole, role)
	}
	if sub == "" || len(sub) > MaxProviderSubjectLen {
		return "", "", fmt.Errorf("%w: sub must be 1 to %d bytes", ErrSubject, MaxProviderSubjectLen)
	}
	return v.cfg.Issuer, sub, nil
}

// Issuer returns the issuer whose tokens v accepts.
func (v *Verifier) Issuer() string { return v.cfg.Issuer }

// cacheEntry is a verified token.
type cacheEntry struct {
	id            *Identity
	verifiedUntil time.Time // exp (plus leeway), or CacheTTL after verification
	notBefore     time.Time // nbf (minus leeway)
}

// tokenCache keeps verified tokens by hash, in two generations: a lookup
// that finds a token in the old generation moves it to the new one, and
// when the new generation is full it becomes the old one (the old one is
// dropped). Tokens in use stay; tokens no longer used leave after two
// generations. Safe for concurrent use.
type tokenCache struct {
	mu       sync.Mutex
	size     int // per generation
	cur, old map[[sha256.Size]byte]cacheEntry
}

func newTokenCache(size int) *tokenCache {
	size = max(size/2, 1)
	return &tokenCache{size: size, cur: make(map[[sha256.Size]byte]cacheEntry)}
}

func (c *tokenCache) get(h [sha256.Size]byte) (cacheEntry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.cur[h]; ok {
		return e, true
	}
	e, ok := c.old[h]
	if ok {
		delete(c.old, h)
		c.putLocked(h, e)
	}
	return e, ok
}

func (c *tokenCache) put(h [sha256.Size]byte, e cacheEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.putLocked(h, e)
}

func (c *tokenCache) putLocked(h [sha256.Size]byte, e cacheEntry) {
	if len(c.cur) >= c.size {
		c.old, c.cur = c.cur, make(map[[sha256.Size]byte]cacheEntry, c.size)
	}
	c.cur[h] = e
}

// len returns the number of tokens kept.
func (c *tokenCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.cur) + len(c.old)
}
