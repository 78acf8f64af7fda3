package auth

import (
	"crypto"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/vigie-sante/vigie/ledger/keys"
)

// IssuerConfig configures an Issuer. Issuer, Audience and Key are
// required.
type IssuerConfig struct {
	// Issuer is the iss of the tokens; the Verifier expects the same.
	Issuer string
	// Audience is the aud of the tokens.
	Audience string
	// Key signs the tokens (EdDSA).
	Key ed25519.PrivateKey
	// TTL is the default lifetime of a token. Default 1 hour.
	TTL time.Duration
	// MaxTTL is the longest lifetime a token may be given. Default 30 days.
	MaxTTL time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Issuer mints bearer tokens with a local Ed25519 key: the embedded
// issuer, for trying Vigie out and for tests (`vigie token`). A deployment
// uses its OpenID Connect provider instead. Safe for concurrent use.
type Issuer struct {
	cfg    IssuerConfig
	keyID  string
	signer jose.Signer
	public jose.JSONWebKey
}

// NewIssuer returns an Issuer. Its key ID is the key's JWK thumbprint
// (RFC 7638), base64url.
func NewIssuer(cfg IssuerConfig) (*Issuer, error) {
	switch {
	case cfg.Issuer == "":
		return nil, errors.New("auth: IssuerConfig.Issuer is required")
	case cfg.Audience == "":
		return nil, errors.New("auth: IssuerConfig.Audience is required")
	case len(cfg.Key) != ed25519.PrivateKeySize:
		return nil, errors.New("auth: IssuerConfig.Key must be an Ed25519 private key")
	}
	if cfg.TTL <= 0 {
		cfg.TTL = time.Hour
	}
	if cfg.MaxTTL <= 0 {
		cfg.MaxTTL = 30 * 24 * time.Hour
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	pub := jose.JSONWebKey{Key: cfg.Key.Public(), Algorithm: string(jose.EdDSA), Use: "sig"}
	tp, err := pub.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("auth: key thumbprint: %w", err)
	}
	pub.KeyID = base64.RawURLEncoding.EncodeToString(tp)
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.EdDSA, Key: cfg.Key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader(jose.HeaderKey("kid"), pub.KeyID))
	if err != nil {
		return nil, fmt.Errorf("auth: signer: %w", err)
	}
	return &Issuer{cfg: cfg, keyID: pub.KeyID, signer: signer, public: pub}, nil
}

// Keys returns the issuer's public key set, for a Verifier (or to publish
// as a JWKS).
func (i *Issuer) Keys() *StaticKeys {
	return &StaticKeys{Keys: []jose.JSONWebKey{i.public}}
}

// Issuer returns the issuer's name (the tokens' iss).
func (i *Issuer) Issuer() string { return i.cfg.Issuer }

// Audience returns the tokens' aud.
func (i *Issuer) Audience() string { return i.cfg.Audience }

// TokenRequest says what a token asserts.
type TokenRequest struct {
	// Role is the caller's role. Required.
	Role Role
	// Subject is the principal's name, or a patient's INS. Required.
	Subject string
	// Organizations are the FINESS numbers of a service or a DPO
	// (required for them, ignored for other roles).
	Organizations []string
	// TTL is the token's lifetime. Default the issuer's TTL; at most its
	// MaxTTL.
	TTL time.Duration
}

// Mint returns a signed token for r, after checking it as a Verifier
// would: a token Mint returns is accepted by a Verifier with the same
// issuer, audience and keys until it expires.
func (i *Issuer) Mint(r TokenRequest) (string, error) {
	subject := r.Subject
	if _, err := newIdentity(r.Role, subject, r.Organizations, MethodBearer); err != nil {
		return "", err
	}
	ttl := r.TTL
	if ttl <= 0 {
		ttl = i.cfg.TTL
	}
	if ttl > i.cfg.MaxTTL {
		return "", fmt.Errorf("auth: a token lives at most %v", i.cfg.MaxTTL)
	}
	now := i.cfg.Now()
	std := jwt.Claims{
		Issuer:    i.cfg.Issuer,
		Subject:   subject,
		Audience:  jwt.Audience{i.cfg.Audience},
		IssuedAt:  jwt.NewNumericDate(now),
		NotBefore: jwt.NewNumericDate(now),
		Expiry:    jwt.NewNumericDate(now.Add(ttl)),
	}
	extra := struct {
		Role Role     `json:"role"`
		Orgs []string `json:"orgs,omitempty"`
	}{Role: r.Role}
	if r.Role.BoundToOrganizations() {
		extra.Orgs = r.Organizations
	}
	return jwt.Signed(i.signer).Claims(std).Claims(extra).Serialize()
}

// GenerateIssuerKey returns a new Ed25519 key for an Issuer.
func GenerateIssuerKey() (ed25519.PrivateKey, error) {
	_, key, err := ed25519.GenerateKey(nil)
	return key, err
}

// MarshalIssuerKey encodes an issuer key as PEM (PKCS #8, "PRIVATE KEY").
func MarshalIssuerKey(key ed25519.PrivateKey) ([]byte, error) { return keys.MarshalPrivateKey(key) }

// ParseIssuerKey decodes what MarshalIssuerKey encodes.
func ParseIssuerKey(b []byte) (ed25519.PrivateKey, error) { return keys.ParsePrivateKey(b) }
