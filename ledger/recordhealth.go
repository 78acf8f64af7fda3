package ledger

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// ErrRecordFailing means recording has failed on storage errors
// Config.RecordFailures times in a row over Config.RecordFailFor: the node
// can answer no Check, and a load balancer should stop sending it calls.
// Callers test with errors.Is.
var ErrRecordFailing = errors.New("recording keeps failing")

// recordHealth is the recording path's state, for readiness. It lives in
// health, under its mutex.
type recordHealth struct {
	fails     int       // recording transactions failed in a row
	firstFail time.Time // the first of them
	lastFail  time.Time // the last of them, or the last failed probe
	err       error     // the last failure
	probing   bool      // a probe is running
}

// probeTimeout bounds Ready's probe write.
const probeTimeout = 5 * time.Second

// recordOutcome notes how a recording transaction ended. Only storage
// errors count as failures (see Config.RecordFailures).
func (l *Ledger) recordOutcome(err error) {
	if err != nil && errors.Is(err, ErrConflict) {
		return // another writer went first: contention, not a fault
	}
	now := l.cfg.Now()
	l.health.set(func(h *health) {
		r := &h.record
		if err == nil {
			*r = recordHealth{probing: r.probing}
			return
		}
		if r.fails == 0 {
			r.firstFail = now
		}
		r.fails++
		r.lastFail, r.err = now, err
	})
}

// recordReady returns ErrRecordFailing while recording fails; with
// l.health.mu held. Once no failure was seen for RecordFailFor, it
// probes the store with a write transaction.
func (l *Ledger) recordReady() error {
	r := &l.health.record
	now := l.cfg.Now()
	if r.fails < l.cfg.RecordFailures || now.Sub(r.firstFail) < l.cfg.RecordFailFor {
		return nil
	}
	failing := fmt.Errorf("%w: %d times in a row for %s: %v", ErrRecordFailing, r.fails, now.Sub(r.firstFail).Round(time.Second), r.err)
	if r.probing || now.Sub(r.lastFail) < l.cfg.RecordFailFor {
		return failing
	}
	r.probing = true
	l.health.mu.Unlock()
	err := l.probe()
	l.recordOutcome(err)
	l.health.mu.Lock()
	r.probing = false
	if err == nil {
		return nil
	}
	return failing
}

// probe writes, in a transaction of its own, the row every recording
// writes (the next leaf index, moved by zero).
func (l *Ledger) probe() error {
	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	defer cancel()
	return l.store.ReadWrite(ctx, func(ctx context.Context, tx StoreTx) error {
		_, err := tx.ReserveIndices(ctx, 0)
		return err
	})
}
