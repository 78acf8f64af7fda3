package ledger_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/vigie-sante/vigie/ledger"
	"github.com/vigie-sante/vigie/ledger/event"
	"github.com/vigie-sante/vigie/ledger/ledgertest"
	"github.com/vigie-sante/vigie/ledger/verify"
)

var ctx = context.Background()

func access(patient string, n int) ledger.Entry {
	return ledger.Entry{
		Kind:    event.KindAccess,
		Patient: ledgertest.Patient(patient),
		Service: "hospital-his",
		Payload: json.RawMessage(fmt.Sprintf(`{"decision":"allow","n":%d}`, n)),
		Actor:   "10000000001",
	}
}

func record(t *testing.T, l *ledger.Ledger, e ledger.Entry) *ledger.Recorded {
	t.Helper()
	r, err := l.Record(ctx, e)
	if err != nil {
		t.Fatalf("Record: %v", err)
	}
	return r
}

// verifyHistory verifies a patient's whole history the way a patient's
// tool does, with ledger/verify only: checkpoint signature, every body
// against its commitment, every inclusion proof, and the chain.
func verifyHistory(t *testing.T, env *ledgertest.Env, patient string, wantEvents int) *ledger.History {
	t.Helper()
	h, err := env.Ledger.History(ctx, ledgertest.Patient(patient), 1, 10000, 0)
	if err != nil {
		t.Fatalf("History: %v", err)
	}
	cp, err := verify.OpenCheckpoint(h.Checkpoint, env.CheckpointKey)
	if err != nil {
		t.Fatalf("OpenCheckpoint: %v", err)
	}
	if len(h.Events) != wantEvents {
		t.Fatalf("history of %s: %d events, want %d", patient, len(h.Events), wantEvents)
	}
	var links []verify.Link
	for _, e := range h.Events {
		if e.Erased {
			if err := verify.VerifyInclusion(e.Index, cp.Size, verify.MerkleLeafHash(e.Commitment), e.Proof, cp.Hash); err != nil {
				t.Errorf("erased event %d: inclusion: %v", e.Index, err)
			}
			continue
		}
		b, err := verify.VerifyEvent(e.Body, e.Salt, e.Commitment)
		if err != nil {
			t.Fatalf("event %d: %v", e.Index, err)
		}
		links = append(links, verify.LinkOf(b, e.Commitment))
		if e.Index >= cp.Size {
			r, err := verify.OpenReceipt(e.Receipt, env.ReceiptKey)
			if err != nil || r.Index != e.Index || r.Commitment != e.Commitment {
				t.Errorf("event %d: receipt %+v, %v", e.Index, r, err)
			}
			continue
		}
		if err := verify.VerifyInclusion(e.Index, cp.Size, verify.MerkleLeafHash(e.Commitment), e.Proof, cp.Hash); err != nil {
			t.Errorf("event %d: inclusion: %v", e.Index, err)
		}
	}
	if len(links) == len(h.Events) {
		if err := verify.VerifyChain(links); err != nil {
			t.Errorf("chain of %s: %v", patient, err)
		}
	}
	return h
}

func TestRecordProveVerify(t *testing.T) {
	for _, backend := range []string{"SQLite", "PostgreSQL"} {
		t.Run(backend, func(t *testing.T) {
			opts := ledgertest.Options{}
			if backend == "PostgreSQL" {
				opts.PostgreSQL = ledgertest.Postgres(t)
			}
			env := ledgertest.New(t, opts)
			var last *ledger.Recorded
			for i := range 5 {
				last = record(t, env.Ledger, access("alice", i))
				record(t, env.Ledger, access("bob", i))
			}
			rules := record(t, env.Ledger, ledger.Entry{Kind: event.KindRulesChange, Service: "admin", Payload: json.RawMessage(`{"version":"2026-1"}`)})
			r, err := verify.OpenReceipt(last.Receipt, env.ReceiptKey)
			if err != nil {
				t.Fatalf("OpenReceipt: %v", err)
			}
			if r.Index != last.Index || r.Commitment != last.Commitment || r.Deadline.Sub(r.Time) != 10*time.Second {
				t.Errorf("receipt = %+v, want index %d", r, last.Index)
			}
			waitCtx, cancel := context.WithTimeout(ctx, time.Minute)
			defer cancel()
			if err := env.Ledger.WaitCheckpoint(waitCtx, rules.Index); err != nil {
				t.Fatalf("WaitCheckpoint: %v", err)
			}
			verifyHistory(t, env, "alice", 5)
			verifyHistory(t, env, "bob", 5)

			// Leaves clip to the checkpoint and match the commitments.
			leaves, err := env.Ledger.Leaves(ctx, 0, 1000)
			if err != nil || len(leaves) != 11 {
				t.Fatalf("Leaves = %d, %v; want 11", len(leaves), err)
			}
			var rb verify.RootBuilder
			for _, lv := range leaves {
				c, err := verify.ParseLeafValue(lv)
				if err != nil {
					t.Fatal(err)
				}
				rb.Append(verify.MerkleLeafHash(c))
			}
			note, _, err := env.Ledger.LatestCheckpoint(ctx)
			if err != nil {
				t.Fatal(err)
			}
			cp, err := verify.OpenCheckpoint(note, env.CheckpointKey)
			if err != nil {
				t.Fatal(err)
			}
			if rb.Root() != cp.Hash {
				t.Errorf("root of the served leaves %x, checkpoint %x", rb.Root(), cp.Hash)
			}
			// Lookup by commitment, as auditors and patients do.
			index, proof, err := env.Ledger.InclusionProofOf(ctx, last.Commitment, cp.Size)
			if err != nil || index != last.Index {
				t.Fatalf("InclusionProofOf = %d, %v; want %d", index, err, last.Index)
			}
			if err := verify.VerifyInclusion(index, cp.Size, verify.MerkleLeafHash(last.Commitment), proof, cp.Hash); err != nil {
				t.Errorf("InclusionProofOf's proof: %v", err)
			}
			if _, _, err := env.Ledger.InclusionProofOf(ctx, event.Hash{1}, cp.Size); !errors.Is(err, ledger.ErrNotFound) {
				t.Errorf("InclusionProofOf(unknown) = %v, want ErrNotFound", err)
			}
		})
	}
}

func TestIdempotentRecord(t *testing.T) {
	env := ledgertest.New(t, ledgertest.Options{})
	e := access("alice", 1)
	e.Key = ledger.Key{Service: "hospital-his", RequestID: "req-1"}
	first := record(t, env.Ledger, e)
	if first.Duplicate {
		t.Errorf("first Record reported a duplicate")
	}
	e.Payload = json.RawMessage(`{"decision":"allow","n":2}`) // a retry returns the first answer whatever it carries
	again := record(t, env.Ledger, e)
	if !again.Duplicate || again.Index != first.Index || string(again.Receipt) != string(first.Receipt) || string(again.Body) != string(first.Body) {
		t.Errorf("retry = index %d duplicate %v, want the first event %d", again.Index, again.Duplicate, first.Index)
	}

	// Concurrent retries of one new key: one event.
	e.Key.RequestID = "req-2"
	var wg sync.WaitGroup
	results := make([]*ledger.Recorded, 20)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := env.Ledger.Record(ctx, e)
			if err != nil {
				t.Error(err)
				return
			}
			results[i] = r
		}()
	}
	wg.Wait()
	originals := 0
	for _, r := range results {
		if r == nil {
			continue
		}
		if r.Index != results[0].Index {
			t.Errorf("concurrent retries got indices %d and %d", r.Index, results[0].Index)
		}
		if !r.Duplicate {
			originals++
		}
	}
	if originals != 1 {
		t.Errorf("%d of the concurrent calls recorded a new event, want 1", originals)
	}
	st := state(t, env)
	if st.NextIndex != 2 {
		t.Errorf("%d events recorded, want 2", st.NextIndex)
	}

	// A used key for another patient, or another kind of event, is not a
	// retry: refused, nothing recorded, and the first event (another
	// patient's) is not handed out. Alone, or racing in one batch.
	bob := access("bob", 1)
	bob.Key = ledger.Key{Service: "hospital-his", RequestID: "req-1"}
	read := access("alice", 3)
	read.Kind, read.Key = event.KindLedgerRead, bob.Key
	for _, reused := range []ledger.Entry{bob, read} {
		if r, err := env.Ledger.Record(ctx, reused); !errors.Is(err, ledger.ErrKeyReused) || r != nil {
			t.Errorf("Record(%s of another patient or kind) = %+v, %v; want ErrKeyReused", reused.Key.RequestID, r, err)
		}
	}
	bob.Key.RequestID, read.Key.RequestID = "req-3", "req-3"
	alice := access("alice", 4)
	alice.Key = bob.Key
	var bobErr, aliceErr error
	var bobRes, aliceRes *ledger.Recorded
	wg.Add(2)
	go func() { defer wg.Done(); bobRes, bobErr = env.Ledger.Record(ctx, bob) }()
	go func() { defer wg.Done(); aliceRes, aliceErr = env.Ledger.Record(ctx, alice) }()
	wg.Wait()
	if (bobErr == nil) == (aliceErr == nil) {
		t.Errorf("two patients under one new key: %v and %v, want one recorded and one ErrKeyReused", bobErr, aliceErr)
	}
	for _, err := range []error{bobErr, aliceErr} {
		if err != nil && !errors.Is(err, ledger.ErrKeyReused) {
			t.Errorf("the second patient under one key: %v, want ErrKeyReused", err)
		}
	}
	if (bobRes != nil && bobRes.Duplicate) || (aliceRes != nil && aliceRes.Duplicate) {
		t.Errorf("a patient got another's event as a retry")
	}
	if n, err := env.Ledger.ChainLength(ctx, ledgertest.Patient("bob")); err != nil || (n == 1) != (bobErr == nil) {
		t.Errorf("bob's chain has %d events (%v) after Record returned %v", n, err, bobErr)
	}
	if st := state(t, env); st.NextIndex != 3 {
		t.Errorf("%d events recorded, want 3", st.NextIndex)
	}
}

func state(t *testing.T, env *ledgertest.Env) ledger.State {
	t.Helper()
	var st ledger.State
	if err := env.Store.Read(ctx, func(ctx context.Context, tx ledger.StoreReader) error {
		var err error
		st, err = tx.State(ctx)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return st
}

func TestConsentVersionGuard(t *testing.T) {
	env := ledgertest.New(t, ledgertest.Options{})
	e := access("alice", 1)
	e.CheckConsent, e.ConsentVersion = true, 0
	record(t, env.Ledger, e)

	applied := 0
	change := ledger.Entry{
		Kind:          event.KindConsentChange,
		Patient:       ledgertest.Patient("alice"),
		Service:       "patient",
		Payload:       json.RawMessage(`{"version":1}`),
		ConsentChange: &ledger.ConsentChange{Expected: 0, Next: 1},
		Apply: func(ctx context.Context, stx ledger.StoreTx) error {
			applied++
			return nil
		},
	}
	record(t, env.Ledger, change)
	if applied == 0 {
		t.Errorf("the consent change's Apply did not run")
	}
	before := state(t, env).NextIndex
	if _, err := env.Ledger.Record(ctx, e); !errors.Is(err, ledger.ErrConsentChanged) {
		t.Errorf("Record decided under version 0 after a change = %v, want ErrConsentChanged", err)
	}
	if _, err := env.Ledger.Record(ctx, change); !errors.Is(err, ledger.ErrConsentChanged) {
		t.Errorf("a second change from version 0 = %v, want ErrConsentChanged", err)
	}
	if after := state(t, env).NextIndex; after != before {
		t.Errorf("a refused Record stored %d events", after-before)
	}
	e.ConsentVersion = 1
	record(t, env.Ledger, e)
	// A failing Apply fails its entry only, and stores nothing of it.
	bad := change
	bad.ConsentChange = &ledger.ConsentChange{Expected: 1, Next: 2}
	bad.Apply = func(context.Context, ledger.StoreTx) error { return errors.New("boom") }
	if _, err := env.Ledger.Record(ctx, bad); err == nil {
		t.Errorf("Record with a failing Apply succeeded")
	}
	record(t, env.Ledger, e)
}

// TestChainsUnderConcurrency records from many goroutines for a few
// patients: every chain is gap-free and every index is used once.
func TestChainsUnderConcurrency(t *testing.T) {
	env := ledgertest.New(t, ledgertest.Options{})
	const workers, each = 32, 20
	patients := []string{"p1", "p2", "p3"}
	var wg sync.WaitGroup
	for g := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if _, err := env.Ledger.Record(ctx, access(patients[(g+i)%len(patients)], i)); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := env.Ledger.WaitCheckpoint(ctx, workers*each-1); err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, p := range patients {
		h := verifyHistory(t, env, p, countFor(p, patients, workers, each))
		total += len(h.Events)
	}
	if total != workers*each {
		t.Errorf("%d events in the histories, want %d", total, workers*each)
	}
}

func countFor(p string, patients []string, workers, each int) int {
	n := 0
	for g := range workers {
		for i := range each {
			if patients[(g+i)%len(patients)] == p {
				n++
			}
		}
	}
	return n
}

func TestErase(t *testing.T) {
	env := ledgertest.New(t, ledgertest.Options{})
	for i := range 3 {
		record(t, env.Ledger, access("alice", i))
		record(t, env.Ledger, access("bob", i))
	}
	n, err := env.Ledger.Erase(ctx, ledgertest.Patient("alice"))
	if err != nil || n != 3 {
		t.Fatalf("Erase = %d, %v; want 3", n, err)
	}
	// A checkpoint beyond the erasure's record: one that covers an event
	// recorded after it (asking for the latest checkpoint instead failed
	// when none was signed yet, on a loaded machine).
	mark := record(t, env.Ledger, access("carol", 0))
	if err := env.Ledger.WaitCheckpoint(ctx, mark.Index); err != nil {
		t.Fatal(err)
	}
	h := verifyHistory(t, env, "alice", 4)
	for i, e := range h.Events[:3] {
		if !e.Erased || e.Body != nil || e.Seq != uint64(i+1) {
			t.Errorf("erased event %d = %+v, want a placeholder", i, e)
		}
	}
	b, err := verify.VerifyEvent(h.Events[3].Body, h.Events[3].Salt, h.Events[3].Commitment)
	if err != nil || b.Seq != 4 || b.Prev != h.Events[2].Commitment || !verify.IsErasureDone(b) {
		t.Errorf("the event after the erased ones: %+v, %v; want the erasure's record, seq 4, linked to the last erased one", b, err)
	}
	verifyHistory(t, env, "bob", 3)
}
