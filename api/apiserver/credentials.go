package apiserver

import (
	"context"
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
)

// EmbeddedIssuer returns the embedded issuer of the keys directory,
// creating its key at first use. A key readable by others than its
// owner is refused.
func EmbeddedIssuer(keysDir string) (*auth.Issuer, error) { return embeddedIssuer(keysDir, true) }

// embeddedIssuer is EmbeddedIssuer; without create, a missing key is an
// error naming the file.
func embeddedIssuer(keysDir string, create bool) (*auth.Issuer, error) {
	key, err := keys.IssuerKey(filepath.Join(keysDir, keys.IssuerKeyFile), create)
	if err != nil {
		return nil, noCreateHint(err)
	}
	return auth.NewIssuer(auth.IssuerConfig{Issuer: EmbeddedIssuerName, Audience: EmbeddedAudience, Key: key})
}

// noCreateHint says, of a key file missing on a node that makes none,
// where it comes from.
func noCreateHint(err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: a node with --trillian makes no key; copy the keys directory of the data directory vigie init ran on", err)
	}
	return err
}

// authenticator returns the calls' authenticator: bearer tokens of
// cfg.Issuer or cfg.Issuers, or of the embedded issuer; client
// certificates of the services of cfg.ServicesFile.
func authenticator(ctx context.Context, cfg Config, keysDir string, create bool, enrolments auth.Enrolments) (*auth.Authenticator, error) {
	var vs []*auth.Verifier
	if cfg.Issuer != "" || len(cfg.Issuers) > 0 {
		var err error
		if vs, err = verifiers(ctx, cfg, enrolments); err != nil {
			return nil, err
		}
	} else {
		iss, err := embeddedIssuer(keysDir, create)
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

// portalOIDC returns the portal's sign-in providers: Issuer with
// ClientID, or every issuer of Issuers with a ClientID, in their order.
func portalOIDC(cfg Config, keysDir string, create bool) ([]portal.OIDCConfig, error) {
	type client struct{ issuer, id, name, secretFile string }
	var clients []client
	if cfg.ClientID != "" {
		clients = append(clients, client{cfg.Issuer, cfg.ClientID, "", cfg.ClientSecretFile})
	}
	for _, ic := range cfg.Issuers {
		if ic.ClientID != "" {
			clients = append(clients, client{ic.Issuer, ic.ClientID, ic.Name, ic.ClientSecretFile})
		}
	}
	if len(clients) == 0 {
		return nil, nil
	}
	if len(clients) == 1 && clients[0].secretFile == "" {
		clients[0].secretFile = cfg.ClientSecretFile
	}
	// A key of its own: the page-token key authenticates something else.
	key, err := secretFile(filepath.Join(keysDir, keys.PortalCookieFile), create)
	if err != nil {
		return nil, err
	}
	var out []portal.OIDCConfig
	for _, cl := range clients {
		c := portal.OIDCConfig{
			Name:        cl.name,
			Issuer:      cl.issuer,
			ClientID:    cl.id,
			RedirectURL: strings.TrimSuffix(cfg.PublicURL, "/") + portal.Prefix + "oidc/callback",
			CookieKey:   key,
		}
		if cl.secretFile != "" {
			field := "ClientSecretFile"
			if cl.secretFile != cfg.ClientSecretFile {
				field = "Issuers"
			}
			if err := keys.CheckPrivate(cl.secretFile); err != nil {
				return nil, &FieldError{Field: field, Err: err}
			}
			b, err := os.ReadFile(cl.secretFile)
			if err != nil {
				return nil, &FieldError{Field: field, Err: err}
			}
			if c.ClientSecret = strings.TrimSpace(string(b)); c.ClientSecret == "" {
				return nil, &FieldError{Field: field, Err: fmt.Errorf("%s is empty", cl.secretFile)}
			}
		}
		out = append(out, c)
	}
	return out, nil
}

// secretFile reads a secret file of the keys directory, creating it if
// absent only if create is true.
func secretFile(path string, create bool) ([]byte, error) {
	if create {
		return keys.SecretFile(path)
	}
	b, err := keys.SecretFileNoCreate(path)
	return b, noCreateHint(err)
}
