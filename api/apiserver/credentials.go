package apiserver

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/vigie-sante/vigie/api/auth"
	"github.com/vigie-sante/vigie/api/gateway/portal"
	"github.com/vigie-sante/vigie/ledger/keys"
)

// The embedded token issuer, for trying Vigie out without an OpenID
// Connect provider: `vigie token` mints its tokens, and the service
// trusts them when Config.Issuer is empty. Its key is
// <keys dir>/token-issuer.key (PEM, PKCS #8, owner-only), created at
// first use.
const (
	EmbeddedIssuerName = "vigie-embedded"
	// EmbeddedAudience is the audience of the embedded issuer's tokens,
	// and the default audience of an OpenID Connect issuer's.
	EmbeddedAudience = "vigie"
	issuerKeyFile    = "token-issuer.key"
)

// EmbeddedIssuer returns the embedded issuer of the keys directory,
// creating its key at first use. A key readable by others than its
// owner is refused.
func EmbeddedIssuer(keysDir string) (*auth.Issuer, error) {
	key, err := issuerKey(filepath.Join(keysDir, issuerKeyFile))
	if err != nil {
		return nil, err
	}
	return auth.NewIssuer(auth.IssuerConfig{Issuer: EmbeddedIssuerName, Audience: EmbeddedAudience, Key: key})
}

// issuerKey reads the issuer's key, creating it if absent.
func issuerKey(path string) (ed25519.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		key, err := auth.GenerateIssuerKey()
		if err != nil {
			return nil, err
		}
		pem, err := auth.MarshalIssuerKey(key)
		if err != nil {
			return nil, err
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, fmt.Errorf("keys: %w", err)
		}
		if err := keys.WriteNew(path, pem, 0o600); err != nil {
			return nil, err
		}
		return key, nil
	}
	if err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	if err := keys.CheckPrivate(path); err != nil {
		return nil, err
	}
	key, err := auth.ParseIssuerKey(b)
	if err != nil {
		return nil, fmt.Errorf("keys: %s: %w", path, err)
	}
	return key, nil
}

// authenticator returns the calls' authenticator: bearer tokens of
// cfg.Issuer or cfg.Issuers, or of the embedded issuer; client
// certificates of the services of cfg.ServicesFile.
func authenticator(ctx context.Context, cfg Config, keysDir string, enrolments auth.Enrolments) (*auth.Authenticator, error) {
	var vs []*auth.Verifier
	if cfg.Issuer != "" || len(cfg.Issuers) > 0 {
		var err error
		if vs, err = verifiers(ctx, cfg, enrolments); err != nil {
			return nil, err
		}
	} else {
		iss, err := EmbeddedIssuer(keysDir)
		if err != nil {
			return nil, err
		}
		v, err := auth.NewVerifier(auth.VerifierConfig{Issuer: iss.Issuer(), Audience: iss.Audience(), Keys: iss.Keys()})
		if err != nil {
			return nil, err
		}
		vs = []*auth.Verifier{v}
	}
	var services []auth.ServiceCert
	if cfg.ServicesFile != "" {
		b, err := os.ReadFile(cfg.ServicesFile)
		if err != nil {
			return nil, &FieldError{Field: "ServicesFile", Err: err}
		}
		var list []struct {
			Name          string   `json:"name"`
			Service       string   `json:"service"`
			Organizations []string `json:"organizations"`
		}
		if err := json.Unmarshal(b, &list); err != nil {
			return nil, &FieldError{Field: "ServicesFile", Err: fmt.Errorf("%s: %w", cfg.ServicesFile, err)}
		}
		for _, s := range list {
			services = append(services, auth.ServiceCert{Name: s.Name, Service: s.Service, Organizations: s.Organizations})
		}
	}
	a, err := auth.NewAuthenticator(auth.AuthenticatorConfig{Verifiers: vs, Services: services})
	if err != nil {
		return nil, &FieldError{Field: "ServicesFile", Err: err}
	}
	return a, nil
}

// serverTLS returns the TLS configuration of the gRPC API: the server's
// certificate and, with clientCA, client certificates verified when given
// (services may authenticate with one, others with tokens).
func serverTLS(certFile, keyFile, clientCA string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, &FieldError{Field: "CertFile", Err: err}
	}
	c := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12, NextProtos: []string{"h2", "http/1.1"}}
	if clientCA != "" {
		pem, err := os.ReadFile(clientCA)
		if err != nil {
			return nil, &FieldError{Field: "ClientCAFile", Err: err}
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, &FieldError{Field: "ClientCAFile", Err: fmt.Errorf("%s holds no PEM certificate", clientCA)}
		}
		c.ClientCAs, c.ClientAuth = pool, tls.VerifyClientCertIfGiven
	}
	return c, nil
}

// portalOIDC returns the portal's OpenID Connect sign-in configuration,
// or nil without cfg.ClientID.
func portalOIDC(cfg Config, keysDir string) (*portal.OIDCConfig, error) {
	issuer, clientID := cfg.portalIssuer()
	if clientID == "" {
		return nil, nil
	}
	// A key of its own: the page-token key authenticates something else.
	key, err := keys.SecretFile(filepath.Join(keysDir, "portal-oidc-cookie.key"))
	if err != nil {
		return nil, err
	}
	c := &portal.OIDCConfig{
		Issuer:      issuer,
		ClientID:    clientID,
		RedirectURL: strings.TrimSuffix(cfg.PublicURL, "/") + portal.Prefix + "oidc/callback",
		CookieKey:   key,
	}
	if cfg.ClientSecretFile != "" {
		if err := keys.CheckPrivate(cfg.ClientSecretFile); err != nil {
			return nil, &FieldError{Field: "ClientSecretFile", Err: err}
		}
		b, err := os.ReadFile(cfg.ClientSecretFile)
		if err != nil {
			return nil, &FieldError{Field: "ClientSecretFile", Err: err}
		}
		if c.ClientSecret = strings.TrimSpace(string(b)); c.ClientSecret == "" {
			return nil, &FieldError{Field: "ClientSecretFile", Err: fmt.Errorf("%s is empty", cfg.ClientSecretFile)}
		}
	}
	return c, nil
}
