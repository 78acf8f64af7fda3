package ledger_test

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/vigie-sante/vigie/ledger"
	"github.com/vigie-sante/vigie/ledger/event"
	"github.com/vigie-sante/vigie/ledger/ledgertest"
)

// staleDue is a store whose DueErasures can answer with a list read
// earlier: what a run sees when another run erased the patient meanwhile.
type staleDue struct {
	ledger.Store
	mu    sync.Mutex
	stale []ledger.Erasure
}

type staleReader struct {
	ledger.StoreReader
	s *staleDue
}

func (r staleReader) DueErasures(ctx context.Context, now time.Time, limit int) ([]ledger.Erasure, error) {
	r.s.mu.Lock()
	defer r.s.mu.Unlock()
	if r.s.stale != nil {
		return r.s.stale, nil
	}
	return r.StoreReader.DueErasures(ctx, now, limit)
}

func (s *staleDue) View(ctx context.Context, f func(ctx context.Context, tx ledger.StoreReader) error) error {
	return s.Store.View(ctx, func(ctx context.Context, tx ledger.StoreReader) error { return f(ctx, staleReader{tx, s}) })
}

// TestErasureRunsOnce: a run that saw an erasure due after another run
// carried it out (the background loop, and a request's own run when
// there is no delay) does nothing: one "done" event, one step of the
// consent version.
func TestErasureRunsOnce(t *testing.T) {
	stale := &staleDue{}
	env := ledgertest.New(t, ledgertest.Options{WrapStore: func(s ledger.Store) ledger.Store { stale.Store = s; return stale }})
	for i := range 3 {
		record(t, env.Ledger, access("alice", i))
	}
	if _, _, err := env.Ledger.RequestErasure(ctx, ledgertest.Patient("alice"), time.Unix(0, 0), "patient", ""); err != nil {
		t.Fatal(err)
	}
	var seen []ledger.Erasure
	if err := env.Store.View(ctx, func(ctx context.Context, tx ledger.StoreReader) error {
		var err error
		seen, err = tx.DueErasures(ctx, time.Now(), 10)
		return err
	}); err != nil || len(seen) != 1 {
		t.Fatalf("due erasures = %v, %v", seen, err)
	}
	if n, err := env.Ledger.RunDueErasures(ctx); err != nil || n != 1 {
		t.Fatalf("first run = %d, %v; want 1", n, err)
	}
	stale.mu.Lock()
	stale.stale = seen
	stale.mu.Unlock()
	if n, err := env.Ledger.RunDueErasures(ctx); err != nil || n != 0 {
		t.Errorf("a run that saw the erasure due before it ran = %d, %v; want 0", n, err)
	}
	h, err := env.Ledger.History(ctx, ledgertest.Patient("alice"), 1, 100, 0)
	if err != nil {
		t.Fatal(err)
	}
	done := 0
	for _, e := range h.Events {
		if e.Erased {
			continue
		}
		b, err := event.Parse(e.Body)
		if err != nil {
			t.Fatal(err)
		}
		var r ledger.ErasureRecord
		if b.Kind == event.KindErasure && json.Unmarshal(b.Payload, &r) == nil && r.State == "done" {
			done++
			if r.Erased != 4 {
				t.Errorf("the erasure erased %d events, want 4 (three accesses and the request)", r.Erased)
			}
		}
	}
	if done != 1 {
		t.Errorf("%d erasure-done events, want 1", done)
	}
	var p ledger.PatientRow
	if err := env.Store.View(ctx, func(ctx context.Context, tx ledger.StoreReader) error {
		p, err = tx.Patient(ctx, env.Ledger.Pseudonym(ledgertest.Patient("alice")))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if p.ConsentVersion != 1 {
		t.Errorf("consent version after one erasure = %d, want 1", p.ConsentVersion)
	}
}
