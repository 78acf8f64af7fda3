package ledger

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/vigie-sante/vigie/ledger/event"
	"github.com/vigie-sante/vigie/ledger/verify"
)

// ErrInconsistent means the log's tree is not the ledger's: it shrank, it
// changed under an earlier checkpoint, it holds other or more leaves than
// the ledger recorded, or the ledger's record of one of its leaves is
// gone. The checkpointer refuses to sign, keeps the evidence
// (AddSecurityEvent) and reports the ledger not ready. It is never retried
// silently: signing resumes only if the log's tree becomes the ledger's.
var ErrInconsistent = errors.New("the log is inconsistent with the ledger")

func (l *Ledger) checkpointLoop(ctx context.Context) {
	for {
		t, ok := l.held(LeaseCheckpointer)
		if !ok {
			// Another node signs; its health is its own.
			l.health.set(func(h *health) { h.checkErr = nil })
			wait(ctx, l.cfg.CheckpointInterval, l.sent)
			if ctx.Err() != nil {
				return
			}
			continue
		}
		signed, err := l.checkpointOnce(ctx, t)
		if t.lost(err) {
			continue
		}
		l.health.set(func(h *health) {
			h.checkErr = err
		})
		if err != nil && ctx.Err() == nil {
			if errors.Is(err, ErrInconsistent) {
				l.cfg.Logger.Error("ledger: SECURITY: refusing to sign a checkpoint", "err", err)
			} else {
				l.cfg.Logger.Warn("ledger: checkpoint", "err", err)
			}
		}
		// At most one checkpoint per interval; sooner than that, only a
		// send can make the tree grow.
		wait(ctx, l.cfg.CheckpointInterval, nil)
		if ctx.Err() != nil {
			return
		}
		if !signed && err == nil {
			// Sends wake the checkpointer of their own node only: when
			// another node holds the sender's lease, look as often as a
			// sender would.
			d := l.cfg.CheckpointInterval
			if _, sending := l.held(LeaseSender); !sending {
				d = min(d, senderPoll)
			}
			wait(ctx, d, l.sent)
			if ctx.Err() != nil {
				return
			}
		}
	}
}

// checkpointOnce signs a checkpoint if the log's tree grew beyond the
// latest one. Before signing it checks that the tree is the ledger's: the
// root recomputed from the ledger's own commitments must equal the log's,
// and the log's consistency proof from the latest checkpoint must verify.
// It reports whether it signed. It stores the checkpoint, and the evidence
// of an inconsistency, only in the term t of the checkpointer's lease
// (else ErrLeaseLost): a node whose term ended may sign, but its
// signature is never stored nor served.
func (l *Ledger) checkpointOnce(ctx context.Context, t term) (bool, error) {
	if err := l.halted(); err != nil {
		return false, err
	}
	l.duties.RLock()
	defer l.duties.RUnlock()
	root, err := l.log.Root(ctx)
	if err != nil {
		return false, fmt.Errorf("log root: %w", err)
	}
	var last CheckpointRow
	var st *State
	first := false // no checkpoint yet: sign one even for an empty tree
	var commitments []event.Hash
	err = l.store.Read(ctx, func(ctx context.Context, tx StoreReader) error {
		var err error
		st = nil
		last, err = tx.LatestCheckpoint(ctx)
		if errors.Is(err, ErrNotFound) {
			last, first, err = CheckpointRow{}, true, nil
		}
		if err != nil || root.Size <= last.Size {
			return err
		}
		// The root was read first: every leaf of the log's tree was sent
		// after its event committed, so this state counts it.
		s, err := tx.State(ctx)
		if err != nil {
			return err
		}
		st = &s
		if root.Size > st.NextIndex {
			return nil
		}
		commitments, err = tx.Commitments(ctx, last.Size, root.Size)
		return err
	})
	missing := errors.Is(err, ErrMissing)
	if err != nil && !missing {
		return false, fmt.Errorf("read ledger: %w", err)
	}
	switch {
	case root.Size < last.Size:
		return false, l.inconsistent(ctx, t, fmt.Sprintf("the log's tree shrank from %d to %d leaves", last.Size, root.Size), last, root, nil, st)
	case root.Size == last.Size && !first:
		if root.Hash != last.Root {
			return false, l.inconsistent(ctx, t, fmt.Sprintf("the log's root at size %d changed", root.Size), last, root, nil, st)
		}
		return false, nil
	case st != nil && root.Size > st.NextIndex:
		return false, l.inconsistent(ctx, t, fmt.Sprintf("the log's tree has %d leaves, the ledger recorded %d", root.Size, st.NextIndex), last, root, nil, st)
	case missing:
		// Our own record of a leaf the log holds is gone: the store was
		// changed behind the ledger's back, and the tree can no longer be
		// checked against it.
		return false, l.inconsistent(ctx, t, fmt.Sprintf("the log's tree has %d leaves, the ledger's record of one of them is missing: %v", root.Size, err), last, root, nil, st)
	}

	// Recompute the root from the ledger's own commitments, from the
	// compact range saved with the latest checkpoint, once that range is
	// shown to be the tree of that checkpoint.
	rb, err := savedRange(last)
	if err == nil && !first && rb.Root() != last.Root {
		err = errors.New("its root is not the checkpoint's")
	}
	if err != nil {
		return false, l.inconsistent(ctx, t, fmt.Sprintf("the saved range of the checkpoint of size %d is not its tree: %v", last.Size, err), last, root, nil, st)
	}
	for _, c := range commitments {
		rb.Append(verify.MerkleLeafHash(c))
	}
	if rb.Root() != root.Hash {
		return false, l.inconsistent(ctx, t, fmt.Sprintf("the log's root at size %d is not the root of the ledger's leaves", root.Size), last, root, nil, st)
	}
	if last.Size > 0 {
		proof, err := l.log.ConsistencyProof(ctx, last.Size, root.Size)
		if err != nil {
			return false, fmt.Errorf("consistency proof %d→%d: %w", last.Size, root.Size, err)
		}
		oldCP := verify.Checkpoint{Origin: l.cfg.Origin, Size: last.Size, Hash: last.Root}
		newCP := verify.Checkpoint{Origin: l.cfg.Origin, Size: root.Size, Hash: root.Hash}
		if err := verify.VerifyConsistency(oldCP, newCP, proof); err != nil {
			return false, l.inconsistent(ctx, t, fmt.Sprintf("the log's consistency proof %d→%d does not verify: %v", last.Size, root.Size, err), last, root, proof, st)
		}
	}

	signed, err := verify.SignCheckpoint(verify.Checkpoint{Origin: l.cfg.Origin, Size: root.Size, Hash: root.Hash}, l.cfg.CheckpointSigner)
	if err != nil {
		return false, fmt.Errorf("sign checkpoint: %w", err)
	}
	row := CheckpointRow{Size: root.Size, Root: root.Hash, Note: signed, Range: rangeBytes(rb.Range()), SignedNanos: l.cfg.Now().UnixNano()}
	err = l.store.ReadWrite(ctx, func(ctx context.Context, tx StoreTx) error {
		if err := t.check(ctx, tx); err != nil {
			return err
		}
		return tx.AddCheckpoint(ctx, row, last.Size)
	})
	if errors.Is(err, ErrLeaseLost) {
		return false, fmt.Errorf("store checkpoint: %w", err)
	}
	if errors.Is(err, ErrConflict) {
		return false, nil // another node signed first; next round starts from it
	}
	if err != nil {
		return false, fmt.Errorf("store checkpoint: %w", err)
	}
	return true, nil
}

// savedRange returns a [verify.RootBuilder] that continues the tree of
// checkpoint cp from the compact range saved with it.
func savedRange(cp CheckpointRow) (*verify.RootBuilder, error) {
	hashes := make([]event.Hash, len(cp.Range))
	for i, h := range cp.Range {
		if len(h) != event.HashSize {
			return nil, fmt.Errorf("hash %d is %d bytes, want %d", i, len(h), event.HashSize)
		}
		hashes[i] = event.Hash(h)
	}
	return verify.NewRootBuilder(cp.Size, hashes)
}

func rangeBytes(hashes []event.Hash) [][]byte {
	out := make([][]byte, len(hashes))
	for i := range hashes {
		out[i] = hashes[i][:]
	}
	return out
}

// inconsistent records the evidence of an inconsistency and returns the
// error that stops signing. st is the ledger's state, if it was read.
func (l *Ledger) inconsistent(ctx context.Context, t term, what string, last CheckpointRow, root LogRoot, proof [][]byte, st *State) error {
	var ev bytes.Buffer
	fmt.Fprintf(&ev, "latest checkpoint (size %d, root %x):\n%s\nlog root: size %d, root %x\n", last.Size, last.Root, last.Note, root.Size, root.Hash)
	if st != nil {
		fmt.Fprintf(&ev, "ledger: next index %d, sent size %d, checkpoint size %d\n", st.NextIndex, st.SentSize, st.CheckpointSize)
	}
	for _, h := range proof {
		fmt.Fprintf(&ev, "proof %x\n", h)
	}
	l.securityEvent(ctx, t, "inconsistent_log", what, ev.Bytes())
	return fmt.Errorf("%w: %s", ErrInconsistent, what)
}

// LatestCheckpoint returns the latest signed checkpoint (the note's bytes)
// and its size, or ErrNotFound before the first.
func (l *Ledger) LatestCheckpoint(ctx context.Context) ([]byte, uint64, error) {
	var cp CheckpointRow
	err := l.store.Read(ctx, func(ctx context.Context, tx StoreReader) error {
		var err error
		cp, err = tx.LatestCheckpoint(ctx)
		return err
	})
	if err != nil {
		return nil, 0, err
	}
	return cp.Note, cp.Size, nil
}

// WaitCheckpoint waits until a checkpoint covers index, or ctx is done.
func (l *Ledger) WaitCheckpoint(ctx context.Context, index uint64) error {
	for {
		_, size, err := l.LatestCheckpoint(ctx)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
		if err == nil && size > index {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}
