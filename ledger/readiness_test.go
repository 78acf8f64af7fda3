package ledger_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vigie-sante/vigie/ledger"
	"github.com/vigie-sante/vigie/ledger/ledgertest"
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
