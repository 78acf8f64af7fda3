// Package pgtest gives tests a fresh PostgreSQL database on the throwaway
// cluster that scripts/test.sh starts (make test). The cluster's URL comes
// from the environment variable VIGIE_TEST_POSTGRES.
//
// Without it a test skips with a message saying so, except under CI
// (CI=true), where a test that cannot reach PostgreSQL fails: CI must run
// every test.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// EnvVar names the environment variable holding the cluster's URL.
const EnvVar = "VIGIE_TEST_POSTGRES"

// URL returns the cluster's URL, or skips t (fails it under CI) if there
// is none.
func URL(t testing.TB) string {
	t.Helper()
	u := os.Getenv(EnvVar)
	if u == "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not set: PostgreSQL tests cannot be skipped under CI (run make test)", EnvVar)
		}
		t.Skipf("PostgreSQL tests skipped: %s is not set (make test starts a cluster)", EnvVar)
	}
	return u
}

// NewDatabase creates an empty database for t, dropped when t ends, and
// returns its URL. Its transactions default to SERIALIZABLE, as on
// CockroachDB.
func NewDatabase(t testing.TB) string {
	t.Helper()
	base := URL(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		if os.Getenv("CI") != "true" {
			t.Skipf("PostgreSQL tests skipped: cannot connect to %s: %v", EnvVar, err)
		}
		t.Fatalf("connect to test cluster: %v", err)
	}
	defer conn.Close(ctx)
	b := make([]byte, 6)
	rand.Read(b)
	name := "vigie_test_" + hex.EncodeToString(b)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create test database: %v", err)
	}
	if _, err := conn.Exec(ctx, "ALTER DATABASE "+name+" SET default_transaction_isolation = 'serializable'"); err != nil {
		t.Fatalf("configure test database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, base)
		if err != nil {
			t.Logf("drop test database %s: %v", name, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Logf("drop test database %s: %v", name, err)
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("parse %s: %v", EnvVar, err)
	}
	u.Path = "/" + name
	return u.String()
}
