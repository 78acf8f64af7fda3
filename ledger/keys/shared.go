package keys

import (
	"bytes"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// The files of a keys directory that the API reads, besides the log's
// keys. Every node of a cluster must hold the same ones (a page token or
// a sign-in cookie made by one node is checked by another): vigie init
// makes them with the others (CreateShared), and a node of a cluster
// never makes them (Load with NoCreate requires the first two; the API
// requires the issuer key when it uses it).
const (
	// PageTokenFile is the MAC key of page tokens (hex).
	PageTokenFile = "page-token.key"
	// PortalCookieFile is the MAC key of the portal's sign-in cookie
	// (hex).
	PortalCookieFile = "portal-oidc-cookie.key"
	// IssuerKeyFile is the embedded token issuer's Ed25519 key (PEM,
	// PKCS #8), used when no OpenID Connect issuer is configured.
	IssuerKeyFile = "token-issuer.key"
)

// SharedFiles are the files of CreateShared, in dir.
func SharedFiles(dir string) []string {
	return []string{filepath.Join(dir, PageTokenFile), filepath.Join(dir, PortalCookieFile), filepath.Join(dir, IssuerKeyFile)}
}

// CreateShared makes, in the keys directory dir, the shared files (those
// of SharedFiles) that do not exist yet, and checks those that do.
func CreateShared(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("keys: %w", err)
	}
	for _, f := range []string{PageTokenFile, PortalCookieFile} {
		if _, err := secretFile(filepath.Join(dir, f), true); err != nil {
			return err
		}
	}
	_, err := IssuerKey(filepath.Join(dir, IssuerKeyFile), true)
	return err
}

// SecretFileNoCreate reads the secret file that SecretFile reads, but
// never creates it: a missing file is an error naming it and wrapping
// fs.ErrNotExist.
func SecretFileNoCreate(path string) ([]byte, error) { return secretFile(path, false) }

// IssuerKey reads the Ed25519 key of path (PEM, PKCS #8), held to
// CheckPrivate. A missing file is created if create is true; otherwise
// it is an error naming it and wrapping fs.ErrNotExist.
func IssuerKey(path string, create bool) (ed25519.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		if !create {
			return nil, fmt.Errorf("keys: %s is missing: %w", path, fs.ErrNotExist)
		}
		_, key, err := ed25519.GenerateKey(nil)
		if err != nil {
			return nil, err
		}
		pem, err := MarshalPrivateKey(key)
		if err != nil {
			return nil, err
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, fmt.Errorf("keys: %w", err)
		}
		if err := WriteNew(path, pem, 0o600); err != nil {
			return nil, err
		}
		return key, nil
	}
	if err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	if err := CheckPrivate(path); err != nil {
		return nil, err
	}
	key, err := ParsePrivateKey(b)
	if err != nil {
		return nil, fmt.Errorf("keys: %s: %w", path, err)
	}
	return key, nil
}

// MarshalPrivateKey encodes an Ed25519 key as PEM (PKCS #8, "PRIVATE
// KEY").
func MarshalPrivateKey(key ed25519.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// ParsePrivateKey decodes what MarshalPrivateKey encodes.
func ParsePrivateKey(b []byte) (ed25519.PrivateKey, error) {
	block, rest := pem.Decode(b)
	if block == nil || block.Type != "PRIVATE KEY" || len(bytes.TrimSpace(rest)) != 0 {
		return nil, errors.New("issuer key: want one PEM block of type PRIVATE KEY")
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("issuer key: %w", err)
	}
	ed, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, errors.New("issuer key: not an Ed25519 key")
	}
	return ed, nil
}
