package ledger

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"golang.org/x/mod/sumdb/note"

	"github.com/vigie-sante/vigie/ledger/verify"
)

// ErrBehindPublished means a checkpoint published by this log (given by
// the operator of a restored node) is beyond what the ledger holds, or is
// not the tree of the ledger's leaves: the log can never again be
// consistent with what was published. It wraps ErrInconsistent. A ledger
// halted with it records nothing and signs nothing (Halt). Callers test
// with errors.Is.
var ErrBehindPublished = fmt.Errorf("%w: a published checkpoint is beyond or outside this ledger's log", ErrInconsistent)

// Pause stops this ledger's sender and checkpointer between two of their
// rounds and returns once neither is in one; until resume is called they
// send nothing to the log and sign nothing. Records go on (into the
// outbox). A copy of the store and of the log taken while paused is
// consistent: the log holds no leaf the store does not count as sent
// beyond its latest checkpoint's tree, and the store's latest checkpoint
// is within the log's tree. It pauses this node's duties only. resume
// must be called exactly once.
func (l *Ledger) Pause(ctx context.Context) (resume func(), err error) {
	got := make(chan struct{})
	go func() {
		l.duties.Lock()
		close(got)
	}()
	select {
	case <-got:
		var once sync.Once
		return func() { once.Do(l.duties.Unlock) }, nil
	case <-ctx.Done():
		go func() {
			<-got
			l.duties.Unlock()
		}()
		return nil, fmt.Errorf("pause the ledger: %w", ctx.Err())
	}
}

// CheckPublished checks a checkpoint that this log published (a signed
// note, verified with the ledger's checkpoint key) against the ledger: it
// returns nil if the ledger's leaves reach the checkpoint's size and their
// tree of that size has the checkpoint's root (the ledger can go on and
// sign checkpoints consistent with it). Otherwise it returns an error
// wrapping ErrBehindPublished that says which, without the checkpoint's
// contents beyond sizes. A note that does not open with the key, or of
// another origin, is an error that wraps neither.
func (l *Ledger) CheckPublished(ctx context.Context, signed []byte) error {
	v, err := note.NewVerifier(l.cfg.CheckpointVerifier)
	if err != nil {
		return fmt.Errorf("published checkpoint: %w", err)
	}
	cp, err := verify.OpenCheckpoint(signed, v)
	if err != nil {
		return fmt.Errorf("published checkpoint: %w", err)
	}
	if cp.Origin != l.cfg.Origin {
		return errors.New("published checkpoint: it is of another log")
	}
	var st State
	if err := l.store.Read(ctx, func(ctx context.Context, tx StoreReader) error {
		st, err = tx.State(ctx)
		return err
	}); err != nil {
		return fmt.Errorf("published checkpoint: %w", err)
	}
	if cp.Size > st.NextIndex {
		return fmt.Errorf("%w: the published checkpoint has %d entries, this ledger %d (%d missing: recorded after the backup)", ErrBehindPublished, cp.Size, st.NextIndex, cp.Size-st.NextIndex)
	}
	rb, err := verify.NewRootBuilder(0, nil)
	if err != nil {
		return err
	}
	const chunk = 10000
	for start := uint64(0); start < cp.Size; start += chunk {
		end := min(cp.Size, start+chunk)
		if err := l.store.Read(ctx, func(ctx context.Context, tx StoreReader) error {
			cs, err := tx.Commitments(ctx, start, end)
			if err != nil {
				return err
			}
			for _, c := range cs {
				rb.Append(verify.MerkleLeafHash(c))
			}
			return nil
		}); err != nil {
			return fmt.Errorf("published checkpoint: %w", err)
		}
	}
	if rb.Size() != cp.Size || rb.Root() != cp.Hash {
		return fmt.Errorf("%w: the published checkpoint of size %d is not the tree of this ledger's first %d entries", ErrBehindPublished, cp.Size, cp.Size)
	}
	return nil
}

// Halt makes the ledger fail closed for good: Record and RecordAll fail
// with an error wrapping err, no checkpoint is signed, and Ready returns
// err. It is for a node that must not record on (ErrBehindPublished); it
// is called before Start, and the ledger is then not started.
func (l *Ledger) Halt(err error) {
	l.haltMu.Lock()
	defer l.haltMu.Unlock()
	if l.haltErr == nil {
		l.haltErr = err
	}
}

// halted returns the error Halt was given, or nil.
func (l *Ledger) halted() error {
	l.haltMu.Lock()
	defer l.haltMu.Unlock()
	return l.haltErr
}
