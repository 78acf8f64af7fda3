package ledger_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vigie-sante/vigie/ledger"
	"github.com/vigie-sante/vigie/ledger/ledgertest"
	"github.com/vigie-sante/vigie/ledger/sqldb"
)

// faultStore injects the two failures a store can have: failed and not
// persisted, and failed but persisted (the commit's outcome unknown to the
// caller).
type faultStore struct {
	ledger.Store
	mu                          sync.Mutex
	failNotPersisted, failAfter int
}

func (f *faultStore) take(n *int) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if *n > 0 {
		*n--
		return true
	}
	return false
}

func (f *faultStore) ReadWrite(ctx context.Context, fn func(context.Context, ledger.StoreTx) error) error {
	if f.take(&f.failNotPersisted) {
		return errors.New("injected: database unavailable")
	}
	err := f.Store.ReadWrite(ctx, fn)
	if err == nil && f.take(&f.failAfter) {
		return fmt.Errorf("%w: injected: connection lost during COMMIT", sqldb.ErrCommitUnknown)
	}
	return err
}

func TestRecordFailsClosed(t *testing.T) {
	fs := &faultStore{}
	env := ledgertest.New(t, ledgertest.Options{NoStart: true, WrapStore: func(s ledger.Store) ledger.Store { fs.Store = s; return fs }})

	fs.failNotPersisted = 1
	if r, err := env.Ledger.Record(ctx, access("alice", 1)); err == nil {
		t.Fatalf("Record with the store down = %+v, want an error", r)
	}
	if st := state(t, env); st.NextIndex != 0 {
		t.Errorf("a failed Record stored %d events", st.NextIndex)
	}

	// Failed but persisted, with a key: the ledger finds the event by its
	// key and answers with it, once.
	e := access("alice", 2)
	e.Key = ledger.Key{Service: "hospital-his", RequestID: "r1"}
	fs.failAfter = 1
	r, err := env.Ledger.Record(ctx, e)
	if err != nil {
		t.Fatalf("Record whose commit was lost = %v, want the event found by its key", err)
	}
	if r.Duplicate || r.Index != 0 {
		t.Errorf("Record after a lost commit = index %d duplicate %v, want index 0, not a duplicate", r.Index, r.Duplicate)
	}
	again, err := env.Ledger.Record(ctx, e)
	if err != nil || again.Index != r.Index || !again.Duplicate {
		t.Errorf("retry = %+v, %v; want the same event", again, err)
	}

	// Failed but persisted, without a key: the outcome cannot be told, so
	// the answer is an error, never a success the caller cannot trust.
	fs.failAfter = 1
	if _, err := env.Ledger.Record(ctx, access("alice", 3)); !errors.Is(err, sqldb.ErrCommitUnknown) {
		t.Errorf("Record without a key whose commit was lost = %v, want ErrCommitUnknown", err)
	}
}

// conflictLog answers that another leaf holds an index.
type conflictLog struct {
	ledger.Log
	at uint64
}

func (c conflictLog) AddSequenced(ctx context.Context, first uint64, values [][]byte) ([]ledger.AddOutcome, error) {
	out, err := c.Log.AddSequenced(ctx, first, values)
	if err == nil && c.at >= first && c.at < first+uint64(len(values)) {
		out[c.at-first] = ledger.AddOutcome{Conflict: []byte("\x01somebody else's leaf....................")}
	}
	return out, err
}

func TestSenderStopsOnConflict(t *testing.T) {
	env := ledgertest.New(t, ledgertest.Options{WrapLog: func(l ledger.Log) ledger.Log { return conflictLog{Log: l, at: 2} }})
	for i := range 5 {
		record(t, env.Ledger, access("alice", i))
	}
	waitFor(t, "the sender to report the conflict", func() bool { return errors.Is(env.Ledger.Ready(), ledger.ErrLogConflict) })
	if st := state(t, env); st.SentSize > 2 {
		t.Errorf("sent size %d: the sender went past the conflict at 2", st.SentSize)
	}
	wantSecurityEvent(t, env, "log_conflict")
}

// lyingLog reports a root that is not the tree of the ledger's leaves, and
// counts the calls (one per round of the checkpointer).
type lyingLog struct {
	ledger.Log
	roots *atomic.Int64
}

func (l lyingLog) Root(ctx context.Context) (ledger.LogRoot, error) {
	l.roots.Add(1)
	r, err := l.Log.Root(ctx)
	if r.Size > 0 {
		r.Hash[0] ^= 1
	}
	return r, err
}

func TestCheckpointerRefusesAnotherTree(t *testing.T) {
	var roots atomic.Int64
	env := ledgertest.New(t, ledgertest.Options{WrapLog: func(l ledger.Log) ledger.Log { return lyingLog{l, &roots} }})
	record(t, env.Ledger, access("alice", 1))
	waitFor(t, "the checkpointer to refuse", func() bool { return errors.Is(env.Ledger.Ready(), ledger.ErrInconsistent) })
	if note, size, err := env.Ledger.LatestCheckpoint(ctx); err == nil && size > 0 {
		t.Errorf("a checkpoint of size %d was signed over a tree that is not the ledger's:\n%s", size, note)
	}
	wantSecurityEvent(t, env, "inconsistent_log")
	// Found again at every round, stored once: ten more rounds (counted,
	// not slept: a busy machine runs fewer per second).
	after := roots.Load() + 10
	waitFor(t, "ten more rounds of the checkpointer", func() bool { return roots.Load() >= after })
	if n := countSecurityEvents(t, env); n != 1 {
		t.Errorf("%d security events stored for one inconsistency, want 1", n)
	}
}

// TestCheckpointerChecksSavedRange: a compact range saved with the latest
// checkpoint that is not that checkpoint's tree (a hash altered or gone in
// the store) is a security event naming the range, not the log, and nothing
// more is signed.
func TestCheckpointerChecksSavedRange(t *testing.T) {
	for _, tc := range []struct {
		name  string
		alter func(rng []byte) []byte
	}{
		{"hash altered", func(rng []byte) []byte { rng[0] ^= 1; return rng }},
		{"hash missing", func(rng []byte) []byte { return rng[32:] }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := ledgertest.New(t, ledgertest.Options{})
			for i := range 3 {
				record(t, env.Ledger, access("alice", i))
			}
			if err := env.Ledger.WaitCheckpoint(ctx, 2); err != nil {
				t.Fatal(err)
			}
			_, size, err := env.Ledger.LatestCheckpoint(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if err := env.DB.ReadWrite(ctx, func(ctx context.Context, tx sqldb.Tx) error {
				var rng []byte
				if err := tx.QueryRow(ctx, "SELECT range_hashes FROM checkpoints WHERE size = $1", int64(size)).Scan(&rng); err != nil {
					return err
				}
				_, err := tx.Exec(ctx, "UPDATE checkpoints SET range_hashes = $1 WHERE size = $2", tc.alter(rng), int64(size))
				return err
			}); err != nil {
				t.Fatal(err)
			}
			record(t, env.Ledger, access("alice", 3))
			waitFor(t, "the checkpointer to refuse", func() bool { return errors.Is(env.Ledger.Ready(), ledger.ErrInconsistent) })
			if _, after, err := env.Ledger.LatestCheckpoint(ctx); err != nil || after != size {
				t.Errorf("latest checkpoint: size %d, %v; want %d, the one before the range was altered", after, err, size)
			}
			var evs []ledger.SecurityEvent
			if err := env.Store.Read(ctx, func(ctx context.Context, tx ledger.StoreReader) error {
				var err error
				evs, err = tx.SecurityEvents(ctx, 10)
				return err
			}); err != nil {
				t.Fatal(err)
			}
			if len(evs) != 1 {
				t.Fatalf("%d security events, want 1", len(evs))
			}
			if e := evs[0]; e.Kind != "inconsistent_log" || !strings.Contains(e.Detail, "saved range") || len(e.Evidence) == 0 {
				t.Errorf("security event %q: %s\n%s\nwant inconsistent_log naming the saved range, with evidence", e.Kind, e.Detail, e.Evidence)
			}
		})
	}
}

func countSecurityEvents(t *testing.T, env *ledgertest.Env) int {
	t.Helper()
	var evs []ledger.SecurityEvent
	if err := env.Store.Read(ctx, func(ctx context.Context, tx ledger.StoreReader) error {
		var err error
		evs, err = tx.SecurityEvents(ctx, 100)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return len(evs)
}

func TestSenderDetectsGap(t *testing.T) {
	env := ledgertest.New(t, ledgertest.Options{NoStart: true})
	for i := range 4 {
		record(t, env.Ledger, access("alice", i))
	}
	// An event not yet sent deleted behind the ledger's back.
	if err := env.DB.ReadWrite(ctx, func(ctx context.Context, tx sqldb.Tx) error {
		_, err := tx.Exec(ctx, "DELETE FROM events WHERE leaf_index = 1")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	env.Start()
	waitFor(t, "the sender to report the gap", func() bool { return errors.Is(env.Ledger.Ready(), ledger.ErrGap) })
	if err := env.Ledger.Ready(); !strings.Contains(err.Error(), "event 1") {
		t.Errorf("Ready = %v, want it to name the missing leaf", err)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func wantSecurityEvent(t *testing.T, env *ledgertest.Env, kind string) {
	t.Helper()
	var evs []ledger.SecurityEvent
	if err := env.Store.Read(ctx, func(ctx context.Context, tx ledger.StoreReader) error {
		var err error
		evs, err = tx.SecurityEvents(ctx, 100)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	for _, e := range evs {
		if e.Kind == kind && len(e.Evidence) > 0 {
			return
		}
	}
	t.Errorf("no %s security event with evidence among %d", kind, len(evs))
}

// TestLostCommitKeepsOneOriginal: two calls with one new key in one
// transaction whose commit is lost: found by the key afterwards, one is
// the original, the other a duplicate, as when the commit succeeds.
func TestLostCommitKeepsOneOriginal(t *testing.T) {
	fs := &faultStore{}
	gate := &gatedStore{held: make(chan struct{}), release: make(chan struct{})}
	env := ledgertest.New(t, ledgertest.Options{NoStart: true, WrapStore: func(s ledger.Store) ledger.Store {
		fs.Store = s
		gate.Store = fs
		return gate
	}})
	e := access("alice", 1)
	e.Key = ledger.Key{Service: "hospital-his", RequestID: "twice"}
	gate.armed.Store(true)
	fs.failAfter = 2 // the held transaction's commit, and the batch's
	var wg sync.WaitGroup
	res := make([]*ledger.Recorded, 3)
	errs := make([]error, 3)
	for i, entry := range []ledger.Entry{access("zed", 0), e, e} {
		wg.Add(1)
		go func() { defer wg.Done(); res[i], errs[i] = env.Ledger.Record(ctx, entry) }()
		if i == 0 {
			<-gate.held
			continue
		}
		for ledger.QueuedRecords(env.Ledger) < i {
			time.Sleep(time.Millisecond)
		}
	}
	close(gate.release)
	wg.Wait()
	if errs[1] != nil || errs[2] != nil {
		t.Fatalf("the two calls: %v, %v", errs[1], errs[2])
	}
	if res[1].Index != res[2].Index || res[1].Duplicate == res[2].Duplicate {
		t.Errorf("after a lost commit: index %d duplicate %v, index %d duplicate %v; want one event, one original", res[1].Index, res[1].Duplicate, res[2].Index, res[2].Duplicate)
	}
}
