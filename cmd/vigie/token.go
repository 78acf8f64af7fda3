package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/vigie-sante/vigie/api/apiserver"
	"github.com/vigie-sante/vigie/api/auth"
	"github.com/vigie-sante/vigie/cmd/vigie/internal/node"
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
	issuer, err := apiserver.EmbeddedIssuer(node.KeysDir(dir))
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
