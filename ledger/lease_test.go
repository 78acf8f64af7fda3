package ledger_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/vigie-sante/vigie/ledger"
	"github.com/vigie-sante/vigie/ledger/ledgertest"
	"github.com/vigie-sante/vigie/ledger/verify"
)

var duties = []string{ledger.LeaseSender, ledger.LeaseCheckpointer, ledger.LeaseErasures}

// leaseHeld is the metric by which an operator (and the node-kill test)
// finds a duty's holder.
func leaseHeld(sender, checkpointer, erasures int) string {
	return fmt.Sprintf(`
# HELP vigie_ledger_lease_held 1 if this node holds the duty's lease (sender, checkpointer, erasures) and may act on it.
# TYPE vigie_ledger_lease_held gauge
vigie_ledger_lease_held{duty="checkpointer"} %d
vigie_ledger_lease_held{duty="erasures"} %d
vigie_ledger_lease_held{duty="sender"} %d
`, checkpointer, erasures, sender)
}

// TestLeaseFencing: a node whose leases were taken over after they
// expired cannot mark leaves sent, store a checkpoint or run a scheduled
// erasure: each write fails with ErrLeaseLost and nothing is stored. The
// same node, holding the leases again, does all three.
func TestLeaseFencing(t *testing.T) {
	for _, engine := range []string{"SQLite", "PostgreSQL"} {
		t.Run(engine, func(t *testing.T) {
			opts := ledgertest.Options{NoStart: true, LeaseTTL: 200 * time.Millisecond}
			if engine == "PostgreSQL" {
				opts.PostgreSQL = ledgertest.Postgres(t)
			}
			env := ledgertest.New(t, opts)
			a := env.Ledger
			for i := range 3 {
				record(t, a, access("alice", i))
			}
			if _, _, err := a.RequestErasure(ctx, ledgertest.Patient("bob"), time.Unix(0, 0), "patient", ""); err != nil {
				t.Fatal(err)
			}
			const n = 4
			for _, d := range duties {
				if epoch, err := ledger.TryLease(a, ctx, d); err != nil || epoch != 1 {
					t.Fatalf("TryLease(%s) = %d, %v; want epoch 1", d, epoch, err)
				}
			}
			c := ledger.NewCollector(a)
			if err := testutil.CollectAndCompare(c, strings.NewReader(leaseHeld(1, 1, 1)), "vigie_ledger_lease_held"); err != nil {
				t.Error(err)
			}

			// Node a stops renewing; node b takes every lease over.
			time.Sleep(300 * time.Millisecond)
			others := map[string]*ledger.LeaseHolder{}
			for _, d := range duties {
				b := ledger.NewLeaseHolder(env.Store, d, "node-b", time.Minute, nil, nil)
				if epoch, err := b.Try(ctx); err != nil || epoch != 2 {
					t.Fatalf("takeover of %s = %d, %v; want epoch 2", d, epoch, err)
				}
				others[d] = b
			}
			if err := testutil.CollectAndCompare(c, strings.NewReader(leaseHeld(0, 0, 0)), "vigie_ledger_lease_held"); err != nil {
				t.Error(err)
			}

			if sent, err := ledger.SendOnce(a, ctx, 1); !errors.Is(err, ledger.ErrLeaseLost) {
				t.Errorf("stale send = %d, %v; want ErrLeaseLost", sent, err)
			}
			if st := stats(t, a); st.Sent != 0 {
				t.Errorf("after a stale send, sent size = %d, want 0", st.Sent)
			}
			// The stale send reached Trillian (it cannot be fenced): the
			// same leaves at the same indices, which the next holder sends
			// again and the log keeps once.
			waitRoot(t, env.Log, n)
			if signed, err := ledger.CheckpointOnce(a, ctx, 1); !errors.Is(err, ledger.ErrLeaseLost) || signed {
				t.Errorf("stale checkpoint = %v, %v; want ErrLeaseLost", signed, err)
			}
			if _, _, err := a.LatestCheckpoint(ctx); !errors.Is(err, ledger.ErrNotFound) {
				t.Errorf("after a stale checkpoint, LatestCheckpoint = %v, want ErrNotFound", err)
			}
			if ran, err := ledger.RunDueErasuresIn(a, ctx, 1); !errors.Is(err, ledger.ErrLeaseLost) || ran != 0 {
				t.Errorf("stale erasure = %d, %v; want 0, ErrLeaseLost", ran, err)
			}
			if _, err := a.RunDueErasures(ctx); !errors.Is(err, ledger.ErrLeaseHeld) {
				t.Errorf("RunDueErasures while another node holds the lease = %v, want ErrLeaseHeld", err)
			}
			if st := stats(t, a); st.Recorded != n {
				t.Errorf("after a stale erasure, %d events, want %d (no erasure recorded)", st.Recorded, n)
			}

			// Released, the leases go back to a in a new term, and the
			// same writes go through.
			for _, d := range duties {
				if err := others[d].Release(ctx); err != nil {
					t.Fatal(err)
				}
				if epoch, err := ledger.TryLease(a, ctx, d); err != nil || epoch != 3 {
					t.Fatalf("TryLease(%s) after release = %d, %v; want epoch 3", d, epoch, err)
				}
			}
			if sent, err := ledger.SendOnce(a, ctx, 3); err != nil || sent != n {
				t.Errorf("send = %d, %v; want %d", sent, err, n)
			}
			if signed, err := ledger.CheckpointOnce(a, ctx, 3); err != nil || !signed {
				t.Errorf("checkpoint = %v, %v; want signed", signed, err)
			}
			if ran, err := ledger.RunDueErasuresIn(a, ctx, 3); err != nil || ran != 1 {
				t.Errorf("erasure = %d, %v; want 1", ran, err)
			}
		})
	}
}

type ledgerStats struct{ Recorded, Sent uint64 }

func stats(t *testing.T, l *ledger.Ledger) ledgerStats {
	t.Helper()
	s, err := l.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return ledgerStats{Recorded: s.Recorded, Sent: s.Recorded - uint64(s.Outbox())}
}

func waitRoot(t *testing.T, log ledger.Log, size uint64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r, err := log.Root(ctx)
		if err == nil && r.Size >= size {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the log did not reach size %d: %+v, %v", size, r, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// dutyCounts counts, per node, the writes of the duties that committed
// and the sends to the log.
type dutyCounts struct {
	mu                    sync.Mutex
	markSent, checkpoints map[int]int
	addSequenced          map[int]int
}

func (c *dutyCounts) add(m map[int]int, node, n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	m[node] += n
}

func (c *dutyCounts) nodes(m map[int]int) []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []int
	for node, n := range m {
		if n > 0 {
			out = append(out, node)
		}
	}
	sort.Ints(out)
	return out
}

type countingStore struct {
	ledger.Store
	node int
	c    *dutyCounts
}

func (s countingStore) ReadWrite(ctx context.Context, f func(ctx context.Context, tx ledger.StoreTx) error) error {
	var tx *countingTx
	err := s.Store.ReadWrite(ctx, func(ctx context.Context, stx ledger.StoreTx) error {
		tx = &countingTx{StoreTx: stx}
		return f(ctx, tx)
	})
	if err == nil {
		s.c.add(s.c.markSent, s.node, tx.markSent)
		s.c.add(s.c.checkpoints, s.node, tx.checkpoints)
	}
	return err
}

type countingTx struct {
	ledger.StoreTx
	markSent, checkpoints int
}

func (tx *countingTx) MarkSent(ctx context.Context, from, to uint64) error {
	err := tx.StoreTx.MarkSent(ctx, from, to)
	if err == nil {
		tx.markSent++
	}
	return err
}

func (tx *countingTx) AddCheckpoint(ctx context.Context, cp ledger.CheckpointRow, prev uint64) error {
	err := tx.StoreTx.AddCheckpoint(ctx, cp, prev)
	if err == nil {
		tx.checkpoints++
	}
	return err
}

type countingLog struct {
	ledger.Log
	node int
	c    *dutyCounts
}

func (l countingLog) AddSequenced(ctx context.Context, first uint64, values [][]byte) ([]ledger.AddOutcome, error) {
	l.c.add(l.c.addSequenced, l.node, 1)
	return l.Log.AddSequenced(ctx, first, values)
}

// TestLeasesSeveralNodes: three ledgers on one PostgreSQL database and
// one log record concurrently, their background work running: one node
// sends and one signs, every checkpoint is consistent with the one
// before, and at the end the log holds exactly the events.
func TestLeasesSeveralNodes(t *testing.T) {
	url := ledgertest.Postgres(t)
	counts := &dutyCounts{markSent: map[int]int{}, checkpoints: map[int]int{}, addSequenced: map[int]int{}}
	const nodes = 3
	envs := make([]*ledgertest.Env, nodes)
	for i := range nodes {
		opts := ledgertest.Options{
			PostgreSQL: url,
			WrapStore:  func(s ledger.Store) ledger.Store { return countingStore{Store: s, node: i, c: counts} },
			WrapLog:    func(l ledger.Log) ledger.Log { return countingLog{Log: l, node: i, c: counts} },
		}
		if i > 0 {
			opts.Share = envs[0]
		}
		envs[i] = ledgertest.New(t, opts)
	}
	const perNode = 150
	var wg sync.WaitGroup
	var mu sync.Mutex
	var last uint64
	for i, env := range envs {
		for w := range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for k := range perNode / 3 {
					k += w * perNode / 3
					// Under contention a Record may spend its
					// serialization retries and fail (fail closed): the
					// client retries with the same request id, as callers
					// do.
					e := access(fmt.Sprintf("patient-%d-%d", i, k%7), k)
					e.Key = ledger.Key{Service: "hospital-his", RequestID: fmt.Sprintf("r-%d-%d", i, k)}
					var r *ledger.Recorded
					var err error
					for try := 0; try < 5; try++ {
						if r, err = env.Ledger.Record(ctx, e); err == nil {
							break
						}
					}
					if err != nil {
						t.Errorf("node %d: Record: %v", i, err)
						return
					}
					mu.Lock()
					last = max(last, r.Index)
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := envs[1].Ledger.WaitCheckpoint(wctx, last); err != nil {
		t.Fatalf("no checkpoint covers index %d: %v", last, err)
	}

	// One holder per duty, as the metric shows it.
	for _, d := range duties {
		var holders []int
		for i, env := range envs {
			if _, ok := env.Ledger.LeaseHeld(d); ok {
				holders = append(holders, i)
			}
		}
		if len(holders) != 1 {
			t.Errorf("lease %s held by nodes %v, want one", d, holders)
		}
	}
	for what, m := range map[string]map[int]int{"sent to the log": counts.addSequenced, "marked leaves sent": counts.markSent, "stored checkpoints": counts.checkpoints} {
		if got := counts.nodes(m); len(got) != 1 {
			t.Errorf("nodes that %s: %v, want one", what, got)
		}
	}

	// Every checkpoint signed, consistent with the one before it.
	var cps []ledger.CheckpointRow
	if err := envs[2].Store.Read(ctx, func(ctx context.Context, tx ledger.StoreReader) error {
		var err error
		cps, err = tx.Checkpoints(ctx, 0, 100000)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	var prev *verify.Checkpoint
	for _, row := range cps {
		cp, err := verify.OpenCheckpoint(row.Note, envs[0].CheckpointKey)
		if err != nil {
			t.Fatalf("checkpoint %d: %v", row.Size, err)
		}
		if prev != nil {
			if cp.Size <= prev.Size {
				t.Fatalf("checkpoint of size %d after %d", cp.Size, prev.Size)
			}
			if prev.Size > 0 {
				proof, err := envs[0].Log.ConsistencyProof(ctx, prev.Size, cp.Size)
				if err != nil {
					t.Fatal(err)
				}
				if err := verify.VerifyConsistency(*prev, cp, proof); err != nil {
					t.Errorf("checkpoint %d is not consistent with %d: %v", cp.Size, prev.Size, err)
				}
			}
		}
		prev = &cp
	}
	// The others stop (drained, leases released); node 0 is left.
	for i := nodes - 1; i > 0; i-- {
		envs[i].Close()
	}
	st := stats(t, envs[0].Ledger)
	root, err := envs[0].Trillian.Log.Root(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Recorded != nodes*perNode || root.Size != st.Recorded || prev == nil || prev.Size != st.Recorded {
		t.Errorf("events %d, leaves %d, last checkpoint %v; want %d of each", st.Recorded, root.Size, prev, nodes*perNode)
	}
}

// TestLeaseTakeover: when the holder of the leases dies (its background
// work stops without releasing them), another node takes every lease over
// within the lease's time to live and a third (logged as a figure; the
// test fails past twice that). VIGIE_TEST_LEASE_TTL sets
// the TTL (default 1s) to measure another.
func TestLeaseTakeover(t *testing.T) {
	ttl := time.Second
	if s := os.Getenv("VIGIE_TEST_LEASE_TTL"); s != "" {
		var err error
		if ttl, err = time.ParseDuration(s); err != nil {
			t.Fatal(err)
		}
	}
	url := ledgertest.Postgres(t)
	a := ledgertest.New(t, ledgertest.Options{PostgreSQL: url, LeaseTTL: ttl, NoStart: true})
	b := ledgertest.New(t, ledgertest.Options{PostgreSQL: url, LeaseTTL: ttl, NoStart: true, Share: a})
	holdsAll := func(env *ledgertest.Env) bool {
		for _, d := range duties {
			if _, ok := env.Ledger.LeaseHeld(d); !ok {
				return false
			}
		}
		return true
	}
	waitAll := func(env *ledgertest.Env, within time.Duration) time.Duration {
		t.Helper()
		start := time.Now()
		for !holdsAll(env) {
			if time.Since(start) > within {
				t.Fatalf("leases not all taken within %v", within)
			}
			time.Sleep(5 * time.Millisecond)
		}
		return time.Since(start)
	}
	const runs = 5
	var took []time.Duration
	bound := ttl + ttl/3 + 500*time.Millisecond // the bound, and a margin for a busy machine
	for run := range runs {
		// a holds every lease, b runs too.
		a.Start()
		waitAll(a, 2*bound)
		b.Start()
		record(t, a.Ledger, access("alice", run))
		// a dies: its background work stops, its leases stay in the
		// database until they expire.
		a.Kill()
		took = append(took, waitAll(b, 2*bound))
		// b, the holder now, signs what a recorded.
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		if err := b.Ledger.WaitCheckpoint(wctx, uint64(run)); err != nil {
			t.Fatalf("run %d: no checkpoint after the takeover: %v", run, err)
		}
		cancel()
		// b stops and hands the leases back, for a at the next run.
		b.Kill()
		for _, d := range duties {
			if err := ledger.ReleaseLease(b.Ledger, ctx, d); err != nil {
				t.Fatal(err)
			}
		}
	}
	slices.Sort(took)
	median := took[runs/2]
	t.Logf("takeover after the holder's death, lease TTL %v: median %v, min %v, max %v (%d runs)", ttl, median.Round(time.Millisecond), took[0].Round(time.Millisecond), took[runs-1].Round(time.Millisecond), runs)
	// The bound itself is a figure, not an assertion: a busy machine
	// delays the survivor's renewal loop, not the lease's logic. waitAll
	// fails the test past twice the bound, which a takeover that waited
	// for anything but the lease's expiry would reach.
}

// failingStore fails every read-write transaction once fail is set: the
// database cut off from the node.
type failingStore struct {
	ledger.Store
	fail *atomicBool
}

type atomicBool struct {
	mu sync.Mutex
	v  bool
}

func (b *atomicBool) set() { b.mu.Lock(); b.v = true; b.mu.Unlock() }
func (b *atomicBool) get() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.v
}

func (s failingStore) ReadWrite(ctx context.Context, f func(ctx context.Context, tx ledger.StoreTx) error) error {
	if s.fail.get() {
		return errors.New("database unreachable")
	}
	return s.Store.ReadWrite(ctx, f)
}

// TestHeldLeaseLost: a lease held by HoldLease (the in-process Trillian's)
// reports its loss, whether another node took it over or the holder could
// not renew it in time, so that what it guards stops; Release does not
// count as a loss.
func TestHeldLeaseLost(t *testing.T) {
	// Long enough that a busy machine's pauses never let a renewed lease
	// expire; the waits for a loss below are bounded by a few TTLs.
	const ttl = 2 * time.Second
	env := ledgertest.New(t, ledgertest.Options{NoStart: true})

	t.Run("not renewed", func(t *testing.T) {
		fail := &atomicBool{}
		store := failingStore{Store: env.Store, fail: fail}
		h, err := ledger.HoldLease(ctx, store, "guarded-a", "node-a", ttl, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer h.Release(ctx)
		select {
		case <-h.Lost():
			t.Fatal("lost while renewed")
		case <-time.After(ttl / 2):
		}
		fail.set()
		select {
		case <-h.Lost():
		case <-time.After(5 * ttl):
			t.Fatal("not reported lost after its renewals failed for longer than its TTL")
		}
	})

	t.Run("taken over", func(t *testing.T) {
		h, err := ledger.HoldLease(ctx, env.Store, "guarded-b", "node-a", ttl, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer h.Release(ctx)
		// Another node takes the row over (its epoch bumped) as if the
		// holder had paused past its TTL.
		if err := env.Store.ReadWrite(ctx, func(ctx context.Context, tx ledger.StoreTx) error {
			if err := tx.ReleaseLease(ctx, "guarded-b", "node-a", 1); err != nil {
				return err
			}
			_, err := tx.AcquireLease(ctx, "guarded-b", "node-b", time.Minute)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		select {
		case <-h.Lost():
		case <-time.After(5 * ttl):
			t.Fatal("not reported lost after another node took it over")
		}
	})

	t.Run("released", func(t *testing.T) {
		h, err := ledger.HoldLease(ctx, env.Store, "guarded-c", "node-a", ttl, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := h.Release(ctx); err != nil {
			t.Fatal(err)
		}
		select {
		case <-h.Lost():
			t.Fatal("a released lease reported lost")
		case <-time.After(ttl / 2):
		}
	})
}
