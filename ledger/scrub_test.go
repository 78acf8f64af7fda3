package ledger_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/vigie-sante/vigie/ledger"
	"github.com/vigie-sante/vigie/ledger/ledgertest"
)

// TestEraseLeavesNothingOnDisk: once Erase returns, neither the database
// file nor its write-ahead log holds the patient's wrapped data key or a
// byte string of their sealed bodies (SQLite keeps deleted content in free
// space and old page versions in the WAL unless told otherwise).
// Both ways: Erase, and a scheduled erasure run with its record.
func TestEraseLeavesNothingOnDisk(t *testing.T) {
	t.Run("Erase", func(t *testing.T) {
		testEraseLeavesNothingOnDisk(t, func(env *ledgertest.Env) {
			if n, err := env.Ledger.Erase(ctx, ledgertest.Patient("alice")); err != nil || n != 5 {
				t.Fatalf("Erase = %d, %v; want 5", n, err)
			}
		})
	})
	t.Run("RunDueErasures", func(t *testing.T) {
		testEraseLeavesNothingOnDisk(t, func(env *ledgertest.Env) {
			if _, _, err := env.Ledger.RequestErasure(ctx, ledgertest.Patient("alice"), time.Unix(0, 0), "patient", ""); err != nil {
				t.Fatal(err)
			}
			if n, err := env.Ledger.RunDueErasures(ctx); err != nil || n != 1 {
				t.Fatalf("RunDueErasures = %d, %v; want 1", n, err)
			}
		})
	})
}

func testEraseLeavesNothingOnDisk(t *testing.T, erase func(env *ledgertest.Env)) {
	dir := t.TempDir()
	env := ledgertest.New(t, ledgertest.Options{Dir: dir})
	var last *ledger.Recorded
	for i := range 5 {
		record(t, env.Ledger, access("alice", i))
		last = record(t, env.Ledger, access("bob", i))
	}
	if err := env.Ledger.WaitCheckpoint(ctx, last.Index); err != nil {
		t.Fatal(err)
	}
	pseudonym := env.Ledger.Pseudonym(ledgertest.Patient("alice"))
	var secrets [][]byte
	if err := env.Store.Read(ctx, func(ctx context.Context, tx ledger.StoreReader) error {
		secrets = nil
		p, err := tx.Patient(ctx, pseudonym)
		if err != nil {
			return err
		}
		secrets = append(secrets, p.WrappedKey)
		rows, err := tx.PatientEvents(ctx, pseudonym, 1, 100)
		for _, r := range rows {
			secrets = append(secrets, r.Sealed)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if len(secrets) != 6 {
		t.Fatalf("read %d secrets, want a wrapped key and 5 sealed bodies", len(secrets))
	}
	files := []string{filepath.Join(dir, "vigie.db"), filepath.Join(dir, "vigie.db-wal")}
	// The test must be able to see them before the erasure.
	if found := scan(t, files, secrets); len(found) == 0 {
		t.Fatal("before the erasure, no secret is found in the files: the scan sees nothing")
	}

	erase(env)
	for _, f := range scan(t, files, secrets) {
		t.Errorf("after the erasure, %s", f)
	}
	verifyHistory(t, env, "bob", 5)
}

// scan reports which secrets (by their first 16 bytes) occur in which
// files.
func scan(t *testing.T, files []string, secrets [][]byte) []string {
	t.Helper()
	var found []string
	for _, name := range files {
		b, err := os.ReadFile(name)
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		for i, s := range secrets {
			if len(s) < 16 {
				t.Fatalf("secret %d is %d bytes", i, len(s))
			}
			if bytes.Contains(b, s[:16]) {
				what := "a sealed body"
				if i == 0 {
					what = "the wrapped key"
				}
				found = append(found, filepath.Base(name)+" holds "+what)
			}
		}
	}
	return found
}
