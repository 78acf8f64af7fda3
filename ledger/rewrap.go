package ledger

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/vigie-sante/vigie/ledger/event"
)

// LeaseRewrap is held by the node that rewraps patients' data keys
// (Ledger.Rewrap).
const LeaseRewrap = "rewrap"

// rewrapBatch is how many patients' keys one rewrap transaction writes.
const rewrapBatch = 64

// rewrapPasses bounds Rewrap's passes over the patients table: the second
// normally finds nothing left.
const rewrapPasses = 5

// ErrNotRotating is returned by Rewrap when the ledger's KeyWrapper is not
// a Rewrapper: there is one key-encryption key, nothing to rewrap.
var ErrNotRotating = errors.New("the key-encryption key is not being replaced")

// Rewrap wraps again, under the key-encryption key that Config.KeyWrapper
// wraps with, every patient's data key wrapped under another one
// (Rewrapper.Stale), while the ledger records. It returns the number of
// keys it rewrapped, and nil once a pass over the patients found no stale
// key: the old KEK may then be removed. It holds LeaseRewrap (ErrLeaseHeld
// if another node does), and each of its transactions checks the lease's
// epoch and writes a key only if it is still the one rewrapped (a
// concurrent erasure or change wins; the next pass sees it). It may be
// stopped at any point and run again: every key is always under one KEK
// or the other, both of which open, and a new run skips the keys done.
func (l *Ledger) Rewrap(ctx context.Context) (int, error) {
	rw, ok := l.keys.wrap.(Rewrapper)
	if !ok {
		return 0, fmt.Errorf("ledger: rewrap: %w", ErrNotRotating)
	}
	h := NewLeaseHolder(l.store, LeaseRewrap, l.cfg.Owner, l.cfg.LeaseTTL, l.cfg.Logger, nil)
	epoch, err := h.Try(ctx)
	if err != nil {
		return 0, fmt.Errorf("ledger: rewrap: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	renewed := make(chan struct{})
	go func() { defer close(renewed); h.Run(ctx) }()
	defer func() {
		cancel()
		<-renewed
		rctx, rcancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer rcancel()
		_ = h.Release(rctx)
	}()
	total := 0
	for range rewrapPasses {
		n, stale, err := l.rewrapPass(ctx, rw, h, epoch)
		total += n
		if err != nil {
			return total, err
		}
		if stale == 0 {
			l.cfg.Logger.Info("ledger: every data key is under the current key-encryption key", "rewrapped", total)
			return total, nil
		}
	}
	return total, fmt.Errorf("ledger: rewrap: stale keys left after %d passes", rewrapPasses)
}

// rewrapPass rewraps the stale keys of one pass over the patients table.
// It returns how many it rewrapped and how many stale ones it found.
func (l *Ledger) rewrapPass(ctx context.Context, rw Rewrapper, h *LeaseHolder, epoch uint64) (rewrapped, stale int, err error) {
	var after *event.Hash
	for {
		var page []PatientRow
		if err := l.store.Read(ctx, func(ctx context.Context, tx StoreReader) error {
			var err error
			page, err = tx.PatientsAfter(ctx, after, rewrapBatch)
			return err
		}); err != nil {
			return rewrapped, stale, fmt.Errorf("ledger: rewrap: %w", err)
		}
		if len(page) == 0 {
			return rewrapped, stale, nil
		}
		after = &page[len(page)-1].Pseudonym
		// Unwrap and wrap outside the transaction: a module's calls
		// would otherwise hold the store's write turn.
		var todo []PatientRow
		var fresh [][]byte
		for _, p := range page {
			if p.WrappedKey == nil || !rw.Stale(p.WrappedKey) {
				continue
			}
			stale++
			key, err := rw.Unwrap(p.Pseudonym, p.WrappedKey)
			if err != nil {
				return rewrapped, stale, fmt.Errorf("ledger: rewrap: unwrap data key: %w", err)
			}
			w, err := rw.Wrap(p.Pseudonym, key)
			clear(key)
			if err != nil {
				return rewrapped, stale, fmt.Errorf("ledger: rewrap: wrap data key: %w", err)
			}
			todo, fresh = append(todo, p), append(fresh, w)
		}
		if len(todo) == 0 {
			continue
		}
		n := 0
		err := l.store.ReadWrite(ctx, func(ctx context.Context, tx StoreTx) error {
			n = 0
			if err := h.Check(ctx, tx, epoch); err != nil {
				return err
			}
			for i, p := range todo {
				cur, err := tx.Patient(ctx, p.Pseudonym)
				if err != nil {
					return err
				}
				if !bytes.Equal(cur.WrappedKey, p.WrappedKey) {
					continue // erased or changed since: the next pass sees it
				}
				cur.WrappedKey = fresh[i]
				if err := tx.UpdatePatient(ctx, cur, cur.ConsentVersion); err != nil {
					return err
				}
				n++
			}
			return nil
		})
		if errors.Is(err, ErrLeaseLost) {
			h.Lost(epoch)
		}
		if err != nil {
			return rewrapped, stale, fmt.Errorf("ledger: rewrap: %w", err)
		}
		rewrapped += n
	}
}
