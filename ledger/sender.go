package ledger

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/vigie-sante/vigie/ledger/event"
	"github.com/vigie-sante/vigie/ledger/verify"
)

// senderPoll is how often the sender looks at the outbox when nothing
// woke it: events recorded by another node wake only that node, and wait
// at most this long to be sent (the time from Record to a checkpoint
// matters to callers).
const senderPoll = 100 * time.Millisecond

// ErrGap means an event the log needs next is missing from the store: the
// events table was changed behind the ledger's back. Trillian's sequencer
// cannot integrate past a missing index, so the ledger reports itself not
// ready until an operator restores the row.
var ErrGap = errors.New("the outbox has a gap")

// ErrLogConflict means the log holds, at an index the ledger assigned,
// another leaf than the ledger's: a security event. Sending stops; nothing
// is retried silently.
var ErrLogConflict = errors.New("the log holds another leaf at an index of the ledger")

// ErrSendStalled means sending the outbox to the log has failed without a
// break for longer than Config.SendStallAfter: the log is unreachable or
// refuses the leaves. The sender keeps retrying; the ledger is ready again
// at the first send that succeeds. Callers test with errors.Is.
var ErrSendStalled = errors.New("sending to the log keeps failing")

// health is the background work's state, for readiness.
type health struct {
	mu          sync.Mutex
	sendErr     error     // the sender's last error, nil when it caught up
	failingFrom time.Time // start of the sender's current run of failures
	checkErr    error     // the checkpointer's last error
	record      recordHealth
}

func (h *health) set(f func(h *health)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	f(h)
}

// Ready returns nil if the ledger's background work is healthy: the
// sender is not blocked by a gap or a conflict and has not been failing
// for longer than Config.SendStallAfter (ErrSendStalled), and the
// checkpointer has not refused to sign, and recording has not been failing
// on storage errors (ErrRecordFailing, see Config.RecordFailures). It
// checks the store itself only while recording fails, at most once every
// Config.RecordFailFor; it never checks the log.
func (l *Ledger) Ready() error {
	if err := l.halted(); err != nil {
		return err
	}
	l.health.mu.Lock()
	defer l.health.mu.Unlock()
	if err := l.health.sendErr; err != nil {
		if errors.Is(err, ErrGap) || errors.Is(err, ErrLogConflict) {
			return err
		}
		// A failing send means events are waiting: an empty outbox is
		// never sent.
		if d := l.cfg.Now().Sub(l.health.failingFrom); d > l.cfg.SendStallAfter {
			return fmt.Errorf("%w: for %s: %v", ErrSendStalled, d.Round(time.Second), err)
		}
	}
	if l.health.checkErr != nil && errors.Is(l.health.checkErr, ErrInconsistent) {
		return l.health.checkErr
	}
	return l.recordReady()
}

func (l *Ledger) sendLoop(ctx context.Context) {
	backoff := time.Duration(0)
	for {
		t, ok := l.held(LeaseSender)
		if !ok {
			// Another node sends; its health is its own.
			l.health.set(func(h *health) { h.sendErr = nil })
			backoff = 0
			wait(ctx, senderPoll, l.wake)
			if ctx.Err() != nil {
				return
			}
			continue
		}
		n, err := l.sendOnce(ctx, t)
		if t.lost(err) {
			continue
		}
		l.health.set(func(h *health) {
			if err != nil && h.sendErr == nil {
				h.failingFrom = l.cfg.Now()
			}
			h.sendErr = err
		})
		switch {
		case ctx.Err() != nil:
			return
		case errors.Is(err, ErrLogConflict):
			l.cfg.Logger.Error("ledger: SECURITY: sending stopped", "err", err)
			<-ctx.Done()
			return
		case err != nil:
			backoff = min(max(2*backoff, 50*time.Millisecond), 5*time.Second)
			if !errors.Is(err, ErrGap) || backoff == 5*time.Second {
				l.cfg.Logger.Warn("ledger: send to log", "err", err, "retry_in", backoff)
			}
			wait(ctx, backoff/2+rand.N(backoff/2+1), l.wake)
			continue
		}
		backoff = 0
		if n > 0 {
			notify(l.sent)
			if n < l.cfg.SendBatch {
				// Let the outbox fill: fewer, larger sends cost the log and
				// the store fewer commits.
				wait(ctx, l.cfg.SendLinger, nil)
			}
			continue // more may be waiting
		}
		wait(ctx, senderPoll, l.wake)
	}
}

// wait sleeps for d, or until ctx is done or c fires.
func wait(ctx context.Context, d time.Duration, c <-chan struct{}) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	case <-c:
	}
}

// sendOnce sends the next batch of the outbox (the events beyond the sent
// size) to the log and records that it is there, under the term t of the
// sender's lease. It returns how many leaves it sent. A node whose term
// ended may still send leaves (outside any transaction, Trillian cannot
// be fenced), but only the ledger's own leaves at their own indices,
// which the log stores once: it can record nothing (ErrLeaseLost).
func (l *Ledger) sendOnce(ctx context.Context, t term) (int, error) {
	l.duties.RLock()
	defer l.duties.RUnlock()
	var st State
	var commitments []event.Hash
	err := l.store.Read(ctx, func(ctx context.Context, tx StoreReader) error {
		var err error
		if st, err = tx.State(ctx); err != nil {
			return err
		}
		commitments, err = tx.Commitments(ctx, st.SentSize, min(st.NextIndex, st.SentSize+uint64(l.cfg.SendBatch)))
		return err
	})
	if errors.Is(err, ErrMissing) {
		return 0, fmt.Errorf("%w: %v", ErrGap, err)
	}
	if err != nil {
		return 0, fmt.Errorf("read outbox: %w", err)
	}
	if len(commitments) == 0 {
		return 0, nil
	}
	values := make([][]byte, len(commitments))
	for i, c := range commitments {
		values[i] = verify.LeafValue(c)
	}
	outcomes, err := l.log.AddSequenced(ctx, st.SentSize, values)
	if err != nil {
		return 0, fmt.Errorf("add leaves %d+%d: %w", st.SentSize, len(values), err)
	}
	if len(outcomes) != len(values) {
		return 0, fmt.Errorf("add leaves: %d outcomes for %d leaves", len(outcomes), len(values))
	}
	stored := 0
	for i, o := range outcomes {
		if o.Conflict != nil && !bytes.Equal(o.Conflict, values[i]) {
			index := st.SentSize + uint64(i)
			err := fmt.Errorf("%w: index %d holds %x, the ledger's leaf is %x", ErrLogConflict, index, o.Conflict, values[i])
			l.securityEvent(ctx, t, "log_conflict", err.Error(), bytes.Join([][]byte{values[i], o.Conflict}, []byte{'\n'}))
			return 0, err
		}
		if !o.Stored {
			break
		}
		stored++
	}
	if stored == 0 {
		return 0, fmt.Errorf("add leaves: leaf %d not stored, retrying", st.SentSize)
	}
	err = l.store.ReadWrite(ctx, func(ctx context.Context, tx StoreTx) error {
		if err := t.check(ctx, tx); err != nil {
			return err
		}
		return tx.MarkSent(ctx, st.SentSize, st.SentSize+uint64(stored))
	})
	if errors.Is(err, ErrLeaseLost) {
		return 0, fmt.Errorf("mark sent: %w", err)
	}
	if errors.Is(err, ErrConflict) {
		return stored, nil // another sender recorded it first
	}
	if err != nil {
		return 0, fmt.Errorf("mark sent: %w", err)
	}
	return stored, nil
}

// securityEvent logs and stores evidence of a security event found by a
// duty in its term t (checked in the same transaction). Storing can fail
// (the store may be what is broken, or the term over); the log line
// stays.
func (l *Ledger) securityEvent(ctx context.Context, t term, kind, detail string, evidence []byte) {
	h := sha256.New()
	for _, b := range [][]byte{[]byte(kind), []byte(detail), evidence} {
		h.Write(binary.BigEndian.AppendUint64(nil, uint64(len(b))))
		h.Write(b)
	}
	sum := [32]byte(h.Sum(nil))
	now := l.cfg.Now()
	l.securityMu.Lock()
	last, ok := l.lastSecurity[kind]
	again := ok && last.sum == sum && now.Sub(last.at) < time.Hour
	l.securityMu.Unlock()
	if again {
		// The same evidence as the last one of its kind, stored less
		// than an hour ago: the background loops find it at every round
		// until an operator acts.
		return
	}
	l.cfg.Logger.Error("ledger: SECURITY EVENT", "kind", kind, "detail", detail)
	err := l.store.ReadWrite(context.WithoutCancel(ctx), func(ctx context.Context, tx StoreTx) error {
		if err := t.check(ctx, tx); err != nil {
			return err
		}
		return tx.AddSecurityEvent(ctx, SecurityEvent{Kind: kind, Detail: detail, Evidence: evidence, Nanos: l.cfg.Now().UnixNano()})
	})
	if err != nil {
		l.cfg.Logger.Error("ledger: could not store a security event", "kind", kind, "err", err)
		return
	}
	l.securityMu.Lock()
	if l.lastSecurity == nil {
		l.lastSecurity = map[string]storedSecurity{}
	}
	l.lastSecurity[kind] = storedSecurity{sum: sum, at: now}
	l.securityMu.Unlock()
}

// drain sends the outbox until it is empty, or ctx is done, if this node
// holds the sender's lease; then, if it holds the checkpointer's, it
// waits for the log to integrate what was sent and signs a last
// checkpoint. Used by Close, while the leases are still renewed.
func (l *Ledger) drain(ctx context.Context) error {
	if t, ok := l.held(LeaseSender); ok {
		for {
			n, err := l.sendOnce(ctx, t)
			if t.lost(err) {
				break
			}
			if err != nil {
				return fmt.Errorf("drain: %w", err)
			}
			if n == 0 {
				break
			}
		}
	}
	t, ok := l.held(LeaseCheckpointer)
	if !ok {
		return nil
	}
	// Sign what was sent when the drain started: another node's sender
	// may go on sending.
	var target uint64
	for first := true; ; first = false {
		var st State
		if err := l.store.Read(ctx, func(ctx context.Context, tx StoreReader) error {
			var err error
			st, err = tx.State(ctx)
			return err
		}); err != nil {
			return fmt.Errorf("drain: %w", err)
		}
		if first {
			target = st.SentSize
		}
		if st.CheckpointSize >= target {
			return nil
		}
		_, err := l.checkpointOnce(ctx, t)
		if t.lost(err) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("drain: %w", err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("drain: %w", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}
