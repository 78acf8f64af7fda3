package ledger_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
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

// clock is a clock the test moves.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// downLog fails every send while down is set: Trillian unreachable.
type downLog struct {
	ledger.Log
	down  *atomic.Bool
	calls *atomic.Int64
}

func (d downLog) AddSequenced(ctx context.Context, first uint64, values [][]byte) ([]ledger.AddOutcome, error) {
	d.calls.Add(1)
	if d.down.Load() {
		return nil, errors.New("injected: connection refused")
	}
	return d.Log.AddSequenced(ctx, first, values)
}

// TestReadyReportsStalledSender: a sender that keeps failing with events
// waiting makes the ledger not ready after SendStallAfter (30s by
// default), and ready again at the first send that succeeds.
func TestReadyReportsStalledSender(t *testing.T) {
	clk := &clock{t: time.Now()}
	var down atomic.Bool
	var calls atomic.Int64
	down.Store(true)
	env := ledgertest.New(t, ledgertest.Options{
		Now:     clk.Now,
		WrapLog: func(l ledger.Log) ledger.Log { return downLog{Log: l, down: &down, calls: &calls} },
	})
	// Nothing to send: an unreachable log is not a failure yet.
	time.Sleep(300 * time.Millisecond)
	clk.Advance(time.Minute)
	if n := calls.Load(); n != 0 {
		t.Fatalf("%d sends with an empty outbox", n)
	}
	if err := env.Ledger.Ready(); err != nil {
		t.Fatalf("Ready with an empty outbox = %v, want nil", err)
	}

	record(t, env.Ledger, access("alice", 1))
	waitFor(t, "two failed sends", func() bool { return calls.Load() >= 2 })
	clk.Advance(29 * time.Second)
	if err := env.Ledger.Ready(); err != nil {
		t.Errorf("Ready after 29s of failed sends = %v, want nil", err)
	}
	clk.Advance(2 * time.Second)
	if err := env.Ledger.Ready(); !errors.Is(err, ledger.ErrSendStalled) {
		t.Errorf("Ready after 31s of failed sends = %v, want ErrSendStalled", err)
	}

	down.Store(false)
	waitFor(t, "the ledger to be ready again once the log answers", func() bool { return env.Ledger.Ready() == nil })
}

// TestCheckpointerRefusesALongerTree: leaves in the log's tree beyond the
// events the ledger recorded (someone else writing to the tree) are a
// security event with the sizes as evidence, and nothing is signed.
func TestCheckpointerRefusesALongerTree(t *testing.T) {
	env := ledgertest.New(t, ledgertest.Options{})
	record(t, env.Ledger, access("alice", 1))
	r := record(t, env.Ledger, access("alice", 2))
	if err := env.Ledger.WaitCheckpoint(ctx, r.Index); err != nil {
		t.Fatal(err)
	}
	var foreign event.Hash
	foreign[0] = 0xee
	if _, err := env.Log.AddSequenced(ctx, 2, [][]byte{verify.LeafValue(foreign)}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the checkpointer to refuse", func() bool { return errors.Is(env.Ledger.Ready(), ledger.ErrInconsistent) })
	if _, size, err := env.Ledger.LatestCheckpoint(ctx); err != nil || size != 2 {
		t.Errorf("latest checkpoint: size %d, %v; want 2, the ledger's own", size, err)
	}
	var evs []ledger.SecurityEvent
	if err := env.Store.Read(ctx, func(ctx context.Context, tx ledger.StoreReader) error {
		var err error
		evs, err = tx.SecurityEvents(ctx, 10)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if len(evs) == 0 {
		t.Fatal("no security event")
	}
	e := evs[0]
	if e.Kind != "inconsistent_log" || !strings.Contains(e.Detail, "3 leaves") || !strings.Contains(e.Detail, "recorded 2") || !bytes.Contains(e.Evidence, []byte("next index 2")) {
		t.Errorf("security event %q: %s\n%s\nwant inconsistent_log naming both sizes", e.Kind, e.Detail, e.Evidence)
	}
}

// TestAlteredBodyIsCorrupt: an event whose sealed body was altered in the
// store fails History and OpenEvent with a *CorruptEventError naming its
// leaf index and sequence number, and nothing of the body.
func TestAlteredBodyIsCorrupt(t *testing.T) {
	env := ledgertest.New(t, ledgertest.Options{})
	record(t, env.Ledger, access("alice", 1))
	keyed := access("alice", 2)
	keyed.Key = ledger.Key{Service: "hospital-his", RequestID: "altered"}
	r := record(t, env.Ledger, keyed)
	record(t, env.Ledger, access("bob", 1))
	if err := env.DB.ReadWrite(ctx, func(ctx context.Context, tx sqldb.Tx) error {
		var sealed []byte
		if err := tx.QueryRow(ctx, "SELECT sealed FROM events WHERE leaf_index = $1", int64(r.Index)).Scan(&sealed); err != nil {
			return err
		}
		sealed[20] ^= 1
		_, err := tx.Exec(ctx, "UPDATE events SET sealed = $1 WHERE leaf_index = $2", sealed, int64(r.Index))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	check := func(what string, err error) {
		t.Helper()
		var ce *ledger.CorruptEventError
		if !errors.As(err, &ce) || !errors.Is(err, ledger.ErrCorrupt) || ce.Index != r.Index || ce.Seq != 2 {
			t.Errorf("%s of an altered body = %v, want a CorruptEventError at leaf %d, sequence number 2", what, err, r.Index)
		}
	}
	_, err := env.Ledger.History(ctx, ledgertest.Patient("alice"), 1, 10, 0)
	check("History", err)
	// A retry of the altered event fails alone: the entries it shares a
	// transaction with are recorded.
	var wg sync.WaitGroup
	errs := make([]error, 16)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i == 0 {
				_, errs[i] = env.Ledger.Record(ctx, keyed)
			} else {
				_, errs[i] = env.Ledger.Record(ctx, access("carol", i))
			}
		}()
	}
	wg.Wait()
	if !errors.Is(errs[0], ledger.ErrCorrupt) {
		t.Errorf("a retry of an altered event = %v, want ErrCorrupt", errs[0])
	}
	for _, err := range errs[1:] {
		if err != nil {
			t.Errorf("an entry recorded beside the retry of an altered event: %v", err)
		}
	}
	row, err := env.Ledger.EventByCommitment(ctx, r.Commitment)
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = env.Ledger.OpenEvent(ctx, row)
	check("OpenEvent", err)
	verifyHistory(t, env, "bob", 1)
}

// TestAlteredKeyFailsOnlyItsPatient: a patient whose wrapped data key was
// altered in the store cannot record, and nobody else sharing the
// transaction is failed with them.
func TestAlteredKeyFailsOnlyItsPatient(t *testing.T) {
	gate := &gatedStore{held: make(chan struct{}), release: make(chan struct{})}
	env := ledgertest.New(t, ledgertest.Options{NoStart: true, WrapStore: func(s ledger.Store) ledger.Store { gate.Store = s; return gate }})
	record(t, env.Ledger, access("bob", 0))
	bob := env.Ledger.Pseudonym(ledgertest.Patient("bob"))
	if err := env.DB.ReadWrite(ctx, func(ctx context.Context, tx sqldb.Tx) error {
		var wrapped []byte
		if err := tx.QueryRow(ctx, "SELECT wrapped_key FROM patients WHERE pseudonym = $1", bob[:]).Scan(&wrapped); err != nil {
			return err
		}
		wrapped[len(wrapped)-1] ^= 1
		_, err := tx.Exec(ctx, "UPDATE patients SET wrapped_key = $1 WHERE pseudonym = $2", wrapped, bob[:])
		return err
	}); err != nil {
		t.Fatal(err)
	}
	// One held transaction, then bob's call and carol's queued behind it:
	// they run in one batch.
	gate.armed.Store(true)
	entries := []ledger.Entry{access("zed", 0), access("bob", 1)}
	for i := range 8 {
		entries = append(entries, access("carol", i))
	}
	recs := make([]*ledger.Recorded, len(entries))
	errs := make([]error, len(entries))
	var wg sync.WaitGroup
	for i, e := range entries {
		wg.Add(1)
		go func() { defer wg.Done(); recs[i], errs[i] = env.Ledger.Record(ctx, e) }()
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
	if !errors.Is(errs[1], ledger.ErrCorrupt) {
		t.Errorf("Record for the patient whose key was altered = %v, want ErrCorrupt", errs[1])
	}
	for i := 2; i < len(entries); i++ {
		if errs[i] != nil {
			t.Fatalf("a Record beside the altered patient's: %v", errs[i])
		}
		if !recs[i].Time.Equal(recs[2].Time) {
			t.Fatalf("the calls were not recorded in one batch: the test proves nothing")
		}
	}
}

// downStore fails every transaction while down is set: the database
// cannot write (a full disk, a lost connection).
type downStore struct {
	ledger.Store
	down    atomic.Bool
	updates atomic.Int64
}

func (d *downStore) ReadWrite(ctx context.Context, f func(context.Context, ledger.StoreTx) error) error {
	d.updates.Add(1)
	if d.down.Load() {
		return errors.New("injected: database or disk is full")
	}
	return d.Store.ReadWrite(ctx, f)
}

// TestReadyReportsFailingRecords: the ledger is not ready once recording
// has failed on storage errors RecordFailures times in a row for
// RecordFailFor (3 and 5s by default), never for a caller's bad input or
// a consent-version retry; while not ready, Ready probes the store once
// no failure was seen for RecordFailFor, and the ledger is ready again as
// soon as a probe or a Record commits.
func TestReadyReportsFailingRecords(t *testing.T) {
	clk := &clock{t: time.Now()}
	ds := &downStore{}
	env := ledgertest.New(t, ledgertest.Options{NoStart: true, Now: clk.Now, WrapStore: func(s ledger.Store) ledger.Store { ds.Store = s; return ds }})
	l := env.Ledger
	wantReady := func(what string, want error) {
		t.Helper()
		if err := l.Ready(); !errors.Is(err, want) && !(want == nil && err == nil) {
			t.Fatalf("Ready %s = %v, want %v", what, err, want)
		}
	}
	fail := func(n int) {
		t.Helper()
		for i := range n {
			if r, err := l.Record(ctx, access("bob", i)); err == nil {
				t.Fatalf("Record with the store down = %+v, want an error", r)
			}
		}
	}

	// Refusals that are no storage fault, however many and long.
	bad := access("alice", 1)
	bad.Service = ""
	record(t, l, access("alice", 0))
	stale := access("alice", 2)
	stale.CheckConsent, stale.ConsentVersion = true, 7
	for range 10 {
		if _, err := l.Record(ctx, bad); !errors.Is(err, ledger.ErrInvalidEntry) {
			t.Fatalf("Record of a bad entry = %v, want ErrInvalidEntry", err)
		}
		if _, err := l.Record(ctx, stale); !errors.Is(err, ledger.ErrConsentChanged) {
			t.Fatalf("Record under a stale consent = %v, want ErrConsentChanged", err)
		}
		clk.Advance(time.Second)
	}
	wantReady("after bad entries and consent retries", nil)

	// Failures broken by a success do not add up.
	ds.down.Store(true)
	fail(2)
	clk.Advance(time.Minute)
	ds.down.Store(false)
	record(t, l, access("carol", 0))
	ds.down.Store(true)
	fail(2)
	wantReady("after two failures, a success and two failures", nil)

	// Three in a row, for five seconds.
	fail(1)
	wantReady("right after the third failure in a row", nil)
	clk.Advance(4 * time.Second)
	fail(1)
	wantReady("4s after the first failure", nil)
	clk.Advance(time.Second)
	wantReady("5s after the first failure", ledger.ErrRecordFailing)

	// While the store is down, a probe fails and the ledger stays not
	// ready; probes are 5s apart.
	clk.Advance(5 * time.Second)
	before := ds.updates.Load()
	wantReady("while the store is down", ledger.ErrRecordFailing)
	if ds.updates.Load() == before {
		t.Fatal("Ready did not probe the store 5s after the last failure")
	}
	ds.down.Store(false)
	before = ds.updates.Load()
	wantReady("right after a failed probe, the store back", ledger.ErrRecordFailing)
	if ds.updates.Load() != before {
		t.Fatal("Ready probed the store less than 5s after the last failure")
	}
	clk.Advance(5 * time.Second)
	wantReady("once a probe commits", nil)
	record(t, l, access("bob", 9))

	// A Record that commits makes it ready at once.
	ds.down.Store(true)
	fail(3)
	clk.Advance(5 * time.Second)
	wantReady("after 5s of failures again", ledger.ErrRecordFailing)
	ds.down.Store(false)
	record(t, l, access("dave", 0))
	wantReady("once a Record commits", nil)
}

// TestRecordAllOneTransaction: RecordAll records its entries, of as many
// patients, in one transaction; an invalid entry fails alone.
func TestRecordAllOneTransaction(t *testing.T) {
	ds := &downStore{}
	env := ledgertest.New(t, ledgertest.Options{NoStart: true, WrapStore: func(s ledger.Store) ledger.Store { ds.Store = s; return ds }})
	var entries []ledger.Entry
	for i := range 10 {
		entries = append(entries, access(fmt.Sprintf("patient-%d", i), 0))
	}
	bad := access("nobody", 0)
	bad.Service = ""
	entries = append(entries[:5:5], append([]ledger.Entry{bad}, entries[5:]...)...)
	before := ds.updates.Load()
	recs, err := env.Ledger.RecordAll(ctx, entries)
	if !errors.Is(err, ledger.ErrInvalidEntry) {
		t.Errorf("RecordAll with an invalid entry = %v, want ErrInvalidEntry", err)
	}
	if n := ds.updates.Load() - before; n != 1 {
		t.Errorf("RecordAll of 10 entries ran %d transactions, want 1", n)
	}
	if recs[5] != nil {
		t.Errorf("the invalid entry was recorded: %+v", recs[5])
	}
	var next uint64
	for i, r := range recs {
		if i == 5 {
			continue
		}
		if r == nil || r.Index != next || r.Receipt == nil || !r.Time.Equal(recs[0].Time) {
			t.Fatalf("RecordAll result %d = %+v, want index %d with a receipt, at the time of the others", i, r, next)
		}
		next++
	}
}
