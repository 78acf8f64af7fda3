package main

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/vigie-sante/vigie/api/auth"
	"github.com/vigie-sante/vigie/cmd/vigie/internal/node"
	"github.com/vigie-sante/vigie/ledger/keys"
)

// The embedded token issuer, for trying Vigie out without an OpenID
// Connect provider: `vigie token` mints its tokens, and the server trusts
// them when no other issuer is configured. Its key is
// <data dir>/keys/token-issuer.key (PEM, PKCS #8, mode 0600), created at
// first use.
const (
	embeddedIssuer = "vigie-embedded"
	tokenAudience  = "vigie"
	issuerKeyFile  = "token-issuer.key"
)

func runToken(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("token", stderr)
	dataDir := fs.String("data-dir", "vigie-data", "directory of Vigie's files (the issuer's key is in its keys/)")
	role := fs.String("role", "", "the caller's role: "+rolesList())
	sub := fs.String("sub", "", "the subject: a patient's INS, or the principal's name ([A-Za-z0-9._:@-])")
	orgs := fs.String("org", "", "comma-separated FINESS numbers the service or DPO acts for")
	ttl := fs.Duration("ttl", time.Hour, "the token's lifetime (at most 720h)")
	if code, done := parseFlags(fs, args); done {
		return code
	}
	if *role == "" || *sub == "" {
		fmt.Fprintln(stderr, "vigie token: --role and --sub are required")
		fs.Usage()
		return exitUsage
	}
	dir, err := node.PrepareDataDir(*dataDir)
	if err != nil {
		fmt.Fprintf(stderr, "vigie token: %v\n", err)
		return exitFailure
	}
	issuer, err := embeddedTokenIssuer(filepath.Join(dir, "keys"))
	if err != nil {
		fmt.Fprintf(stderr, "vigie token: %v\n", err)
		return exitFailure
	}
	var organizations []string
	if *orgs != "" {
		organizations = strings.Split(*orgs, ",")
	}
	tok, err := issuer.Mint(auth.TokenRequest{Role: auth.Role(*role), Subject: *sub, Organizations: organizations, TTL: *ttl})
	if err != nil {
		fmt.Fprintf(stderr, "vigie token: %v\n", err)
		return exitFailure
	}
	fmt.Fprintln(stdout, tok)
	return exitOK
}

func rolesList() string {
	names := make([]string, len(auth.Roles))
	for i, r := range auth.Roles {
		names[i] = string(r)
	}
	return strings.Join(names, ", ")
}

// embeddedTokenIssuer returns the embedded issuer of the keys directory,
// creating its key at first use.
func embeddedTokenIssuer(keysDir string) (*auth.Issuer, error) {
	key, err := issuerKey(filepath.Join(keysDir, issuerKeyFile))
	if err != nil {
		return nil, err
	}
	return auth.NewIssuer(auth.IssuerConfig{Issuer: embeddedIssuer, Audience: tokenAudience, Key: key})
}

// issuerKey reads the issuer's key, creating it if absent. A key readable
// by others than its owner is refused.
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
