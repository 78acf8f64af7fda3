package ledger_test

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/vigie-sante/vigie/ledger"
	"github.com/vigie-sante/vigie/ledger/event"
	"github.com/vigie-sante/vigie/ledger/ledgertest"
)

// headCounter counts the chain-head lookups of the recording
// transactions.
type headCounter struct {
	ledger.Store
	n atomic.Int64
}

func (s *headCounter) ReadWrite(ctx context.Context, f func(ctx context.Context, tx ledger.StoreTx) error) error {
	return s.Store.ReadWrite(ctx, func(ctx context.Context, tx ledger.StoreTx) error { return f(ctx, headCountingTx{tx, s}) })
}

type headCountingTx struct {
	ledger.StoreTx
	s *headCounter
}

func (t headCountingTx) ChainHead(ctx context.Context, p event.Hash) (uint64, event.Hash, error) {
	t.s.n.Add(1)
	return t.StoreTx.ChainHead(ctx, p)
}

func (t headCountingTx) ChainHeads(ctx context.Context, ps []event.Hash) (map[event.Hash]ledger.ChainHead, error) {
	t.s.n.Add(int64(len(ps)))
	return t.StoreTx.ChainHeads(ctx, ps)
}

// checkChain checks that recorded events are one chain: sequence numbers
// from 1, each pointing to the previous one's commitment.
func checkChain(t *testing.T, recs []*ledger.Recorded) {
	t.Helper()
	var prev event.Hash
	for i, r := range recs {
		b, err := event.Parse(r.Body)
		if err != nil {
			t.Fatal(err)
		}
		if b.Seq != uint64(i+1) || b.Prev != prev {
			t.Fatalf("event %d: seq %d, prev %s; want seq %d, prev %s", i, b.Seq, b.Prev, i+1, prev)
		}
		prev = r.Commitment
	}
}

// TestHeadsInMemory: where the ledger is the store's only writer, a
// patient's chain head is read from the store once, then kept in memory;
// where it is not, every transaction reads it.
func TestHeadsInMemory(t *testing.T) {
	for _, tc := range []struct {
		name          string
		notSole       bool
		wantLookupsAt int64 // after the first event of a patient who had one
	}{{"sole writer", false, 1}, {"several writers", true, 3}} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			first := ledgertest.New(t, ledgertest.Options{Dir: dir, NotSoleWriter: tc.notSole})
			recs := []*ledger.Recorded{record(t, first.Ledger, access("alice", 0))}
			first.Close()
			// A restart: the head comes from the store again.
			counter := &headCounter{}
			env := ledgertest.New(t, ledgertest.Options{Dir: dir, NotSoleWriter: tc.notSole, WrapStore: func(s ledger.Store) ledger.Store { counter.Store = s; return counter }})
			for i := 1; i < 4; i++ {
				recs = append(recs, record(t, env.Ledger, access("alice", i)))
			}
			checkChain(t, recs)
			if got := counter.n.Load(); got != tc.wantLookupsAt {
				t.Errorf("chain-head lookups for 3 events = %d, want %d", got, tc.wantLookupsAt)
			}
		})
	}
}

// TestHeadsAfterFailure: a transaction that fails leaves the heads in
// memory as the store has them, and one whose outcome is unknown drops
// them: the chain goes on from the store's head.
func TestHeadsAfterFailure(t *testing.T) {
	env := ledgertest.New(t, ledgertest.Options{})
	recs := []*ledger.Recorded{record(t, env.Ledger, access("alice", 0))}
	failing := access("alice", 1)
	failing.Apply = func(ctx context.Context, tx ledger.StoreTx) error { return context.DeadlineExceeded }
	if _, err := env.Ledger.Record(ctx, failing); err == nil {
		t.Fatal("a failing Apply recorded")
	}
	recs = append(recs, record(t, env.Ledger, access("alice", 2)))
	checkChain(t, recs)
}
