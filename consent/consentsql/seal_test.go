package consentsql_test

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/vigie-sante/vigie/consent"
	"github.com/vigie-sante/vigie/consent/consentsql"
	"github.com/vigie-sante/vigie/consent/ladonpolicy"
	"github.com/vigie-sante/vigie/consent/nationalrules"
	"github.com/vigie-sante/vigie/ledger"
	"github.com/vigie-sante/vigie/ledger/ledgertest"
	"github.com/vigie-sante/vigie/ledger/sqldb"
)

// openWith is open with options, and the store's start-up conversion run
// as a node runs it.
func openWith(t *testing.T, backend string, opts ledgertest.Options) (*consentsql.Store, *ledgertest.Env) {
	t.Helper()
	opts.Migrations, opts.EraseAlso = consentsql.Migrations, consentsql.EraseRows
	if backend == "PostgreSQL" {
		opts.PostgreSQL = ledgertest.Postgres(t)
	}
	env := ledgertest.New(t, opts)
	s := consentsql.New(env.DB, env.Ledger)
	if _, err := s.SealPlaintext(ctx); err != nil {
		t.Fatal(err)
	}
	return s, env
}

// secretDirectives are directives whose ids and document ids must never be
// stored in clear.
var secretDirectives = []consent.Directive{
	{ID: "hide-ivg-report", Kind: consent.HideDocument, Document: "doc-ivg-report-4242"},
	{ID: "block-dr-x", Kind: consent.BlockProfessional, Professional: physician},
}

// rawConsents returns the consents table's stored consent column.
func rawConsents(t *testing.T, env *ledgertest.Env) [][]byte {
	t.Helper()
	var out [][]byte
	err := env.DB.Read(ctx, func(ctx context.Context, tx sqldb.Tx) error {
		out = nil
		rows, err := tx.Query(ctx, "SELECT consent FROM consents ORDER BY version")
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var b []byte
			if err := rows.Scan(&b); err != nil {
				return err
			}
			out = append(out, b)
		}
		return rows.Err()
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestConsentsSealed: a stored consent holds none of its directives in
// clear, reads back whole, and a sealed version moved to another row does
// not open.
func TestConsentsSealed(t *testing.T) {
	for _, backend := range []string{"SQLite", "PostgreSQL"} {
		t.Run(backend, func(t *testing.T) {
			store, env := openWith(t, backend, ledgertest.Options{})
			for v := int64(0); v < 2; v++ {
				if _, err := store.UpdateConsent(ctx, patient, v, secretDirectives, consent.Change{Time: time.Now(), Author: "patient"}); err != nil {
					t.Fatal(err)
				}
			}
			raw := rawConsents(t, env)
			if len(raw) != 2 {
				t.Fatalf("%d consent rows, want 2", len(raw))
			}
			for i, b := range raw {
				for _, secret := range []string{"hide-ivg-report", "doc-ivg-report-4242", "block-dr-x", physician.String(), "hide-document"} {
					if bytes.Contains(b, []byte(secret)) {
						t.Errorf("consent row %d holds %q in clear", i+1, secret)
					}
				}
			}
			c, err := store.Consent(ctx, patient)
			if err != nil || c.Version != 2 || len(c.Directives) != 2 || c.Directives[0].Document != "doc-ivg-report-4242" {
				t.Fatalf("Consent = %+v, %v; want version 2 with its directives", c, err)
			}
			if h, err := store.ConsentHistory(ctx, patient, 1, 10); err != nil || len(h) != 2 || h[0].Directives[0].ID != "hide-ivg-report" {
				t.Fatalf("ConsentHistory = %+v, %v", h, err)
			}
			// Version 1's ciphertext under version 2: refused.
			err = env.DB.ReadWrite(ctx, func(ctx context.Context, tx sqldb.Tx) error {
				_, err := tx.Exec(ctx, "UPDATE consents SET consent = $1 WHERE version = 2", raw[0])
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := store.Consent(ctx, patient); !errors.Is(err, ledger.ErrCorrupt) {
				t.Errorf("Consent with a moved ciphertext = %v, want ErrCorrupt", err)
			}
		})
	}
}

// TestSealPlaintext: consents stored in clear by an earlier version are
// sealed once, and read back the same.
func TestSealPlaintext(t *testing.T) {
	for _, backend := range []string{"SQLite", "PostgreSQL"} {
		t.Run(backend, func(t *testing.T) {
			store, env := openWith(t, backend, ledgertest.Options{})
			rec, err := store.UpdateConsent(ctx, patient, 0, secretDirectives, consent.Change{Time: time.Now(), Author: "patient"})
			if err != nil {
				t.Fatal(err)
			}
			// What the earlier version stored: the canonical form in clear,
			// and no record of the sealing.
			plain, err := consent.FormatConsent(rec.Consent)
			if err != nil {
				t.Fatal(err)
			}
			err = env.DB.ReadWrite(ctx, func(ctx context.Context, tx sqldb.Tx) error {
				if _, err := tx.Exec(ctx, "UPDATE consents SET consent = $1", plain); err != nil {
					return err
				}
				_, err := tx.Exec(ctx, "DELETE FROM ledger_meta WHERE name = 'consents-sealed'")
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			if ran, err := store.SealPlaintext(ctx); err != nil || !ran {
				t.Fatalf("SealPlaintext = %v, %v; want it to run", ran, err)
			}
			if ran, err := store.SealPlaintext(ctx); err != nil || ran {
				t.Fatalf("SealPlaintext again = %v, %v; want nothing to do", ran, err)
			}
			if raw := rawConsents(t, env); len(raw) != 1 || bytes.Contains(raw[0], []byte("doc-ivg-report-4242")) {
				t.Errorf("consent row after SealPlaintext still in clear")
			}
			c, err := store.Consent(ctx, patient)
			if err != nil || c.Version != 1 || len(c.Directives) != 2 || c.Directives[0].Document != "doc-ivg-report-4242" {
				t.Errorf("Consent after SealPlaintext = %+v, %v", c, err)
			}
		})
	}
}

// TestRetryAfterErasure: a request id recorded before the patient's
// erasure is recognised after it: the retry is refused, and nothing is
// decided or recorded again.
func TestRetryAfterErasure(t *testing.T) {
	for _, backend := range []string{"SQLite", "PostgreSQL"} {
		t.Run(backend, func(t *testing.T) {
			store, env := openWith(t, backend, ledgertest.Options{})
			svc := newService(t, store)
			if _, err := svc.UpdateConsent(ctx, patient, 0, []consent.Directive{{ID: "b1", Kind: consent.BlockProfessional, Professional: physician}}, "patient"); err != nil {
				t.Fatal(err)
			}
			if d, _, err := svc.Check(ctx, request("before-erasure")); err != nil || d.Effect != consent.Deny {
				t.Fatalf("Check = %v, %v; want DENY", d.Effect, err)
			}
			if _, _, err := env.Ledger.RequestErasure(ctx, patient, time.Unix(0, 0), "patient", ""); err != nil {
				t.Fatal(err)
			}
			if n, err := env.Ledger.RunDueErasures(ctx); err != nil || n != 1 {
				t.Fatalf("RunDueErasures = %d, %v", n, err)
			}
			before := nextIndex(t, env)
			_, _, err := svc.Check(ctx, request("before-erasure"))
			if !errors.Is(err, consent.ErrRequestErased) {
				t.Errorf("retry after the erasure = %v, want ErrRequestErased", err)
			}
			if after := nextIndex(t, env); after != before {
				t.Errorf("the retry recorded %d events, want none", after-before)
			}
		})
	}
}

// TestRetryAfterRetention: within the retention period a retry gets the
// first answer, even after the consent changed; after it, the retry is
// refused, never decided again under the same id.
func TestRetryAfterRetention(t *testing.T) {
	for _, backend := range []string{"SQLite", "PostgreSQL"} {
		t.Run(backend, func(t *testing.T) {
			var mu sync.Mutex
			now := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
			clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
			advance := func(d time.Duration) { mu.Lock(); defer mu.Unlock(); now = now.Add(d) }
			store, env := openWith(t, backend, ledgertest.Options{Now: clock, RequestIDRetention: time.Hour})
			svc := newService(t, store)
			if d, _, err := svc.Check(ctx, request("r1")); err != nil || d.Effect != consent.Allow {
				t.Fatalf("Check = %v, %v; want ALLOW", d.Effect, err)
			}
			if _, err := svc.UpdateConsent(ctx, patient, 0, []consent.Directive{{ID: "b1", Kind: consent.BlockProfessional, Professional: physician}}, "patient"); err != nil {
				t.Fatal(err)
			}
			advance(59 * time.Minute)
			if d, _, err := svc.Check(ctx, request("r1")); err != nil || d.Effect != consent.Allow {
				t.Fatalf("retry within the retention = %v, %v; want the first ALLOW", d.Effect, err)
			}
			advance(2 * time.Minute)
			before := nextIndex(t, env)
			if d, _, err := svc.Check(ctx, request("r1")); !errors.Is(err, consent.ErrRequestExpired) {
				t.Errorf("retry after the retention = %v, %v; want ErrRequestExpired", d.Effect, err)
			}
			if after := nextIndex(t, env); after != before {
				t.Errorf("the expired retry recorded %d events, want none", after-before)
			}
			// A new request id is decided under the consent in force.
			if d, _, err := svc.Check(ctx, request("r2")); err != nil || d.Effect != consent.Deny {
				t.Errorf("new request = %v, %v; want DENY", d.Effect, err)
			}
		})
	}
}

func newService(t *testing.T, store *consentsql.Store) *consent.Service {
	t.Helper()
	svc, err := consent.NewService(ctx, consent.Config{
		Store: store, Recorder: store,
		Engine: ladonpolicy.NewEngine(ladonpolicy.Options{}),
		Rules:  nationalrules.Illustrative(),
	})
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

func nextIndex(t *testing.T, env *ledgertest.Env) uint64 {
	t.Helper()
	var st ledger.State
	err := env.Store.Read(ctx, func(ctx context.Context, tx ledger.StoreReader) error {
		var err error
		st, err = tx.State(ctx)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return st.NextIndex
}
