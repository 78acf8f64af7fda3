package ledger_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"sync/atomic"
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

// failingErasureRecord is a store where writing an erasure's event fails
// while failing is set: the erasure's record cannot be written.
type failingErasureRecord struct {
	ledger.Store
	failing *atomic.Bool
}

type failingErasureTx struct {
	ledger.StoreTx
	failing *atomic.Bool
}

func (s failingErasureRecord) Update(ctx context.Context, f func(ctx context.Context, tx ledger.StoreTx) error) error {
	return s.Store.Update(ctx, func(ctx context.Context, tx ledger.StoreTx) error { return f(ctx, failingErasureTx{tx, s.failing}) })
}

func (tx failingErasureTx) InsertEvent(ctx context.Context, e ledger.EventRow) error {
	if e.Kind == event.KindErasure && tx.failing.Load() {
		return errors.New("injected: the erasure's record cannot be written")
	}
	return tx.StoreTx.InsertEvent(ctx, e)
}

// TestErasureIsAtomic: an erasure and its record commit together. When
// the record cannot be written, nothing is erased and the erasure stays
// due; the next run erases and records it, and the patient's chain says
// so right after the erased events.
func TestErasureIsAtomic(t *testing.T) {
	failing := new(atomic.Bool)
	env := ledgertest.New(t, ledgertest.Options{WrapStore: func(s ledger.Store) ledger.Store { return failingErasureRecord{s, failing} }})
	alice := ledgertest.Patient("alice")
	for i := range 2 {
		record(t, env.Ledger, access("alice", i))
	}
	if _, _, err := env.Ledger.RequestErasure(ctx, alice, time.Unix(0, 0), "patient", ""); err != nil {
		t.Fatal(err)
	}
	before := state(t, env)
	failing.Store(true)
	if n, err := env.Ledger.RunDueErasures(ctx); err == nil || n != 0 {
		t.Fatalf("a run whose erasure fails = %d, %v; want an error", n, err)
	}
	if after := state(t, env); after.NextIndex != before.NextIndex {
		t.Errorf("a failed erasure recorded %d events", after.NextIndex-before.NextIndex)
	}
	h, err := env.Ledger.History(ctx, alice, 1, 100, 0)
	if err != nil || len(h.Events) != 3 {
		t.Fatalf("history after a failed erasure: %d events, %v", len(h.Events), err)
	}
	for _, e := range h.Events {
		if e.Erased {
			t.Errorf("event %d erased by an erasure that failed", e.Seq)
		}
	}

	failing.Store(false)
	if n, err := env.Ledger.RunDueErasures(ctx); err != nil || n != 1 {
		t.Fatalf("the next run = %d, %v; want 1", n, err)
	}
	h, err = env.Ledger.History(ctx, alice, 1, 100, 0)
	if err != nil || len(h.Events) != 4 {
		t.Fatalf("history after the erasure: %d events, %v", len(h.Events), err)
	}
	for _, e := range h.Events[:3] {
		if !e.Erased {
			t.Errorf("event %d not erased", e.Seq)
		}
	}
	done := h.Events[3]
	b, err := event.Parse(done.Body)
	var r ledger.ErasureRecord
	if err != nil || b.Kind != event.KindErasure || json.Unmarshal(b.Payload, &r) != nil || r.State != "done" || r.Erased != 3 {
		t.Errorf("the event after the erased ones = %s (%v), want the erasure's record of 3 events", done.Body, err)
	}
}

// TestHistoryProvesFreshlyErasedEvents: events erased before any
// checkpoint covered them have no time left to sign a receipt with; the
// history waits for a checkpoint that covers them, and every erased event
// comes with its inclusion proof.
func TestHistoryProvesFreshlyErasedEvents(t *testing.T) {
	env := ledgertest.New(t, ledgertest.Options{CheckpointInterval: time.Second})
	alice := ledgertest.Patient("alice")
	first := record(t, env.Ledger, access("bob", 0))
	if err := env.Ledger.WaitCheckpoint(ctx, first.Index); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		record(t, env.Ledger, access("alice", i))
	}
	if _, _, err := env.Ledger.RequestErasure(ctx, alice, time.Unix(0, 0), "patient", ""); err != nil {
		t.Fatal(err)
	}
	if n, err := env.Ledger.RunDueErasures(ctx); err != nil || n != 1 {
		t.Fatalf("RunDueErasures = %d, %v", n, err)
	}
	h, err := env.Ledger.History(ctx, alice, 1, 100, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range h.Events {
		if e.Erased && (e.Index >= h.CheckpointSize || e.Proof == nil) {
			t.Errorf("erased event %d (leaf %d) without a proof: checkpoint size %d", e.Seq, e.Index, h.CheckpointSize)
		}
	}
}
