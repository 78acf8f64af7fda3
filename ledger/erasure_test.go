package ledger_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vigie-sante/vigie/ledger"
	"github.com/vigie-sante/vigie/ledger/event"
	"github.com/vigie-sante/vigie/ledger/ledgertest"
	"github.com/vigie-sante/vigie/ledger/sqldb"
	"github.com/vigie-sante/vigie/ledger/verify"
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

func (s *staleDue) Read(ctx context.Context, f func(ctx context.Context, tx ledger.StoreReader) error) error {
	return s.Store.Read(ctx, func(ctx context.Context, tx ledger.StoreReader) error { return f(ctx, staleReader{tx, s}) })
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
	if err := env.Store.Read(ctx, func(ctx context.Context, tx ledger.StoreReader) error {
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
	if err := env.Store.Read(ctx, func(ctx context.Context, tx ledger.StoreReader) error {
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

func (s failingErasureRecord) ReadWrite(ctx context.Context, f func(ctx context.Context, tx ledger.StoreTx) error) error {
	return s.Store.ReadWrite(ctx, func(ctx context.Context, tx ledger.StoreTx) error { return f(ctx, failingErasureTx{tx, s.failing}) })
}

func (tx failingErasureTx) InsertEvent(ctx context.Context, e ledger.EventRow) error {
	if e.Kind == event.KindErasure && tx.failing.Load() {
		return errors.New("injected: the erasure's record cannot be written")
	}
	return tx.StoreTx.InsertEvent(ctx, e)
}

func (tx failingErasureTx) InsertEvents(ctx context.Context, es []ledger.EventRow) error {
	for _, e := range es {
		if err := tx.InsertEvent(ctx, e); err != nil {
			return err
		}
	}
	return nil
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

// gatedStore holds the first transaction that starts while gate is open,
// so that the calls made meanwhile queue into one batch.
type gatedStore struct {
	ledger.Store
	armed   atomic.Bool
	held    chan struct{} // closed when a transaction is held
	release chan struct{}
}

func (s *gatedStore) ReadWrite(ctx context.Context, f func(ctx context.Context, tx ledger.StoreTx) error) error {
	if s.armed.CompareAndSwap(true, false) {
		close(s.held)
		<-s.release
	}
	return s.Store.ReadWrite(ctx, f)
}

// TestErasureInABatch: an erasure recorded in one transaction with other
// calls for the same patient. A decision before it in the batch is
// erased with the rest; a decision made under the consent before the
// erasure, after it in the batch, must decide again; so must a consent
// change that expects the version after the erasure (its rows would be
// deleted by the erasure, or sealed under the destroyed key); a plain event
// after it follows the erasure's record, under the new key; the chain
// verifies.
func TestErasureInABatch(t *testing.T) {
	gate := &gatedStore{held: make(chan struct{}), release: make(chan struct{})}
	// No background work: the only transactions are this test's.
	env := ledgertest.New(t, ledgertest.Options{NoStart: true, WrapStore: func(s ledger.Store) ledger.Store { gate.Store = s; return gate }})
	alice := ledgertest.Patient("alice")
	record(t, env.Ledger, access("alice", 0))
	if _, _, err := env.Ledger.RequestErasure(ctx, alice, time.Unix(0, 0), "patient", ""); err != nil {
		t.Fatal(err)
	}
	decision := func(n int) ledger.Entry {
		e := access("alice", n)
		e.CheckConsent, e.ConsentVersion = true, 0
		return e
	}

	gate.armed.Store(true)
	type result struct {
		rec *ledger.Recorded
		err error
	}
	results := make([]result, 5)
	var erased int
	var eraseErr error
	var wg sync.WaitGroup
	queued := 0
	start := func(f func()) {
		wg.Add(1)
		go func() { defer wg.Done(); f() }()
		if queued == 0 {
			<-gate.held // the first call's transaction is held
		} else {
			for ledger.QueuedRecords(env.Ledger) < queued { // queued in this order
				time.Sleep(time.Millisecond)
			}
		}
		queued++
	}
	start(func() { results[0].rec, results[0].err = env.Ledger.Record(ctx, access("zed", 0)) })
	start(func() { results[1].rec, results[1].err = env.Ledger.Record(ctx, decision(1)) })
	start(func() { erased, eraseErr = env.Ledger.RunDueErasures(ctx) })
	start(func() { results[2].rec, results[2].err = env.Ledger.Record(ctx, decision(2)) })
	start(func() { results[3].rec, results[3].err = env.Ledger.Record(ctx, access("alice", 3)) })
	applied := false
	change := ledger.Entry{
		Kind:          event.KindConsentChange,
		Patient:       alice,
		Service:       "patient",
		Payload:       json.RawMessage(`{"version":2}`),
		ConsentChange: &ledger.ConsentChange{Expected: 1, Next: 2}, // the version after the erasure
		Apply: func(context.Context, ledger.StoreTx) error {
			applied = true
			return nil
		},
	}
	start(func() { results[4].rec, results[4].err = env.Ledger.Record(ctx, change) })
	close(gate.release)
	wg.Wait()
	env.Start()

	if results[0].err != nil || results[1].err != nil || results[3].err != nil {
		t.Fatalf("Record errors: %v, %v, %v", results[0].err, results[1].err, results[3].err)
	}
	if eraseErr != nil || erased != 1 {
		t.Fatalf("RunDueErasures = %d, %v", erased, eraseErr)
	}
	// One transaction: the recorder takes one time per transaction.
	if !results[1].rec.Time.Equal(results[3].rec.Time) {
		t.Fatalf("the calls were not recorded in one batch (%v, %v): the test proves nothing", results[1].rec.Time, results[3].rec.Time)
	}
	if !errors.Is(results[4].err, ledger.ErrConsentChanged) || applied {
		t.Errorf("a consent change after the erasure in the batch = %v (applied %v), want ErrConsentChanged, not applied", results[4].err, applied)
	}
	if !errors.Is(results[2].err, ledger.ErrConsentChanged) {
		t.Errorf("a decision under the consent before the erasure, after it in the batch = %v, want ErrConsentChanged", results[2].err)
	}
	h, err := env.Ledger.History(ctx, alice, 1, 100, 0)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	var links []verify.Link
	for _, e := range h.Events {
		if e.Erased {
			kinds = append(kinds, "erased")
			links = append(links, verify.ErasedLink(e.Seq, e.Commitment))
			continue
		}
		b, err := event.Parse(e.Body)
		if err != nil {
			t.Fatal(err)
		}
		kinds = append(kinds, string(b.Kind))
		links = append(links, verify.LinkOf(b, e.Commitment))
	}
	// The first access, the request, the decision of the batch: erased;
	// then the erasure's record and the plain access.
	if got, want := strings.Join(kinds, " "), "erased erased erased erasure access"; got != want {
		t.Errorf("alice's chain: %s, want %s", got, want)
	}
	if err := verify.VerifyChain(links); err != nil {
		t.Errorf("alice's chain after an erasure in a batch: %v", err)
	}
	if h.Events[2].Index != results[1].rec.Index || h.Events[4].Index != results[3].rec.Index {
		t.Errorf("the batch's events are not where they were recorded")
	}
}

// TestErasuresDoNotBlockEachOther: an erasure that fails stays due, and
// does not hold back the others. A patient whose key no longer opens is
// not erased (a wrong KEK looks the same, and erasing would wrap the new
// key under it): that erasure stays due too.
func TestErasuresDoNotBlockEachOther(t *testing.T) {
	aliceP := ledgertest.Patient("alice")
	var alice event.Hash
	env := ledgertest.New(t, ledgertest.Options{EraseAlso: failingEraseAlso(&alice)})
	alice = env.Ledger.Pseudonym(aliceP)
	bob, carol := ledgertest.Patient("bob"), ledgertest.Patient("carol")
	for _, p := range []string{"alice", "bob", "carol"} {
		record(t, env.Ledger, access(p, 0))
	}
	for i, p := range []ledger.PatientID{aliceP, carol, bob} { // due in this order
		if _, _, err := env.Ledger.RequestErasure(ctx, p, time.Unix(int64(i), 0), "patient", ""); err != nil {
			t.Fatal(err)
		}
	}
	// Carol's wrapped key no longer opens.
	carolP := env.Ledger.Pseudonym(carol)
	if err := env.DB.ReadWrite(ctx, func(ctx context.Context, tx sqldb.Tx) error {
		_, err := tx.Exec(ctx, "UPDATE patients SET wrapped_key = $1 WHERE pseudonym = $2", make([]byte, 60), carolP[:])
		return err
	}); err != nil {
		t.Fatal(err)
	}
	n, err := env.Ledger.RunDueErasures(ctx)
	if err == nil || !strings.Contains(err.Error(), "alice's other rows") || !errors.Is(err, ledger.ErrCorrupt) {
		t.Errorf("RunDueErasures error = %v, want alice's failure and carol's", err)
	}
	if n != 1 {
		t.Errorf("RunDueErasures ran %d erasures, want 1 (bob's, past alice's and carol's failures)", n)
	}
	h, err := env.Ledger.History(ctx, bob, 1, 100, 0)
	if err != nil || len(h.Events) == 0 || !h.Events[0].Erased {
		t.Errorf("bob after the run: %+v, %v; want erased", h, err)
	}
	var due []ledger.Erasure
	if err := env.Store.Read(ctx, func(ctx context.Context, tx ledger.StoreReader) error {
		due, err = tx.DueErasures(ctx, time.Now(), 10)
		return err
	}); err != nil || len(due) != 2 {
		t.Errorf("due after the run: %d, %v; want alice's and carol's still due", len(due), err)
	}
}

// TestRunErasureOf: a request's own erasure runs whatever the others due;
// a second run finds it done.
func TestRunErasureOf(t *testing.T) {
	aliceP, bob := ledgertest.Patient("alice"), ledgertest.Patient("bob")
	var alice event.Hash
	env := ledgertest.New(t, ledgertest.Options{EraseAlso: failingEraseAlso(&alice)})
	alice = env.Ledger.Pseudonym(aliceP)
	for i, p := range []ledger.PatientID{aliceP, bob} {
		record(t, env.Ledger, access([]string{"alice", "bob"}[i], 0))
		if _, _, err := env.Ledger.RequestErasure(ctx, p, time.Unix(int64(i), 0), "patient", ""); err != nil {
			t.Fatal(err)
		}
	}
	if ran, err := env.Ledger.RunErasureOf(ctx, bob, "patient"); !ran || err != nil {
		t.Fatalf("RunErasureOf(bob) = %v, %v; want bob erased despite alice's failing erasure", ran, err)
	}
	if ran, err := env.Ledger.RunErasureOf(ctx, bob, "patient"); ran || err != nil {
		t.Errorf("RunErasureOf(bob) again = %v, %v; want nothing to do", ran, err)
	}
	if _, err := env.Ledger.RunErasureOf(ctx, aliceP, "patient"); err == nil {
		t.Error("RunErasureOf(alice) succeeded, want her failure")
	}
}

// failingEraseAlso removes nothing, and fails for *failing: the patient's
// other rows cannot be removed.
func failingEraseAlso(failing *event.Hash) func(event.Hash) func(context.Context, sqldb.Tx) error {
	return func(p event.Hash) func(context.Context, sqldb.Tx) error {
		return func(context.Context, sqldb.Tx) error {
			if p == *failing {
				return errors.New("injected: alice's other rows cannot be removed")
			}
			return nil
		}
	}
}
