package auth

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
)

// ServiceCert names a service that authenticates with a TLS client
// certificate.
type ServiceCert struct {
	// Name is the certificate's identity: its first URI SAN (e.g.
	// "spiffe://hospital-a.example/dpi") if it has one, else its first DNS
	// SAN. The Subject's common name is not used.
	Name string
	// Service is the service's principal name (see CheckSubject).
	Service string
	// Organizations are the FINESS numbers the service may speak for: at
	// least one.
	Organizations []string
}

// AuthenticatorConfig configures an Authenticator.
type AuthenticatorConfig struct {
	// Verifier verifies bearer tokens. Nil: bearer tokens are refused
	// (unless Verifiers).
	Verifier *Verifier
	// Verifiers verify the tokens of several issuers (professionals,
	// patients), each with its audience, keys and claims: a token goes to
	// the one of its iss. Issuers must differ. With Verifier, that one is
	// one more.
	Verifiers []*Verifier
	// Services are the services allowed to authenticate with a client
	// certificate. The certificate itself is verified by the TLS stack
	// (tls.Config.ClientCAs, with ClientAuth VerifyClientCertIfGiven or
	// stricter): a certificate without a verified chain is ignored.
	Services []ServiceCert
}

// Authenticator authenticates calls from their credentials. Safe for
// concurrent use.
type Authenticator struct {
	verifiers map[string]*Verifier // by issuer
	services  map[string]*Identity // by certificate name
}

// NewAuthenticator returns an Authenticator.
func NewAuthenticator(cfg AuthenticatorConfig) (*Authenticator, error) {
	a := &Authenticator{verifiers: map[string]*Verifier{}, services: map[string]*Identity{}}
	for _, v := range append(cfg.Verifiers, cfg.Verifier) {
		if v == nil {
			continue
		}
		if _, dup := a.verifiers[v.Issuer()]; dup {
			return nil, fmt.Errorf("auth: issuer %q is listed twice", v.Issuer())
		}
		a.verifiers[v.Issuer()] = v
	}
	for _, s := range cfg.Services {
		if s.Name == "" {
			return nil, errors.New("auth: a ServiceCert has no Name")
		}
		if _, dup := a.services[s.Name]; dup {
			return nil, fmt.Errorf("auth: certificate name %q is listed twice", s.Name)
		}
		id, err := newIdentity(RoleService, s.Service, s.Organizations, MethodMTLS)
		if err != nil {
			return nil, fmt.Errorf("auth: service %q: %w", s.Name, err)
		}
		a.services[s.Name] = id
	}
	return a, nil
}

// Authenticate returns the identity of a call from its Authorization
// header value (empty if none) and its TLS connection state (nil for a
// connection without TLS).
//
// A bearer token, when there is one, is the identity; a call without one
// is a service's if its client certificate has a verified chain and is on
// the allow-list. Otherwise Authenticate returns ErrNoCredentials (public
// methods accept such calls). A bad token is an error even when a
// certificate would do: a caller never gets another identity than the one
// it presented.
func (a *Authenticator) Authenticate(ctx context.Context, authorization string, state *tls.ConnectionState) (*Identity, error) {
	if authorization != "" {
		v, token, err := a.verifier(authorization)
		if err != nil {
			return nil, err
		}
		return v.Verify(ctx, token)
	}
	if state != nil && len(state.VerifiedChains) > 0 && len(state.PeerCertificates) > 0 {
		if id, ok := a.services[CertName(state.PeerCertificates[0])]; ok {
			return id, nil
		}
	}
	return nil, ErrNoCredentials
}

// verifier returns the bearer token of an Authorization header value and
// the verifier of its issuer.
func (a *Authenticator) verifier(authorization string) (*Verifier, string, error) {
	token, err := BearerToken(authorization)
	if err != nil {
		return nil, "", err
	}
	if len(a.verifiers) == 0 {
		return nil, "", fmt.Errorf("%w: bearer tokens are not accepted here", ErrMalformed)
	}
	if len(a.verifiers) == 1 {
		// The one verifier checks the iss with the signature: no need to
		// parse the token first (a cached token is then a hash and a
		// lookup).
		for _, v := range a.verifiers {
			return v, token, nil
		}
	}
	// The iss read before verification only picks the verifier, which
	// checks it again with the signature.
	iss := peekIssuer(token)
	v, ok := a.verifiers[iss]
	if !ok && iss == "" {
		return nil, "", fmt.Errorf("%w: not a signed JWT with an iss", ErrMalformed)
	}
	if !ok {
		return nil, "", fmt.Errorf("%w: the token's issuer is not one this service trusts", ErrIssuer)
	}
	return v, token, nil
}

// ProviderSubject returns the pair (issuer, sub) of a patient's bearer
// token whose issuer enrols its patients, verified as Authenticate does
// but without the enrolment lookup (Verifier.ProviderSubject): for the
// enrolment step only.
func (a *Authenticator) ProviderSubject(ctx context.Context, authorization string) (issuer, subject string, err error) {
	if authorization == "" {
		return "", "", ErrNoCredentials
	}
	v, token, err := a.verifier(authorization)
	if err != nil {
		return "", "", err
	}
	return v.ProviderSubject(ctx, token)
}

// BearerToken returns the token of an Authorization header value of the
// Bearer scheme (RFC 6750; the scheme is case-insensitive).
func BearerToken(authorization string) (string, error) {
	scheme, token, ok := strings.Cut(authorization, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", fmt.Errorf("%w: want Authorization: Bearer <token>", ErrMalformed)
	}
	token = strings.TrimLeft(token, " ")
	if token == "" || strings.ContainsAny(token, " \t") {
		return "", fmt.Errorf("%w: want Authorization: Bearer <token>", ErrMalformed)
	}
	return token, nil
}

// CertName returns the identity of a client certificate, as
// ServiceCert.Name: its first URI SAN, else its first DNS SAN, else "".
func CertName(c *x509.Certificate) string {
	if len(c.URIs) > 0 {
		return c.URIs[0].String()
	}
	if len(c.DNSNames) > 0 {
		return c.DNSNames[0]
	}
	return ""
}
