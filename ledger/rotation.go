package ledger

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"

	"golang.org/x/mod/sumdb/note"

	"github.com/vigie-sante/vigie/ledger/verify"
)

// The log's checkpoint keys are kept in the store's meta rows, each set
// once: "checkpoint-verifier" is the first key (saved at first start),
// and "checkpoint-transition/<n>" (n = 1, 2, …) the n-th transition
// checkpoint ([verify.SignTransition]), which names the key that follows.
// The log's key is the first one followed through every transition.
const (
	metaCheckpointKey = "checkpoint-verifier"
	metaTransition    = "checkpoint-transition/"
)

// ErrRotated means a checkpoint key is not the log's: it was replaced by
// a transition checkpoint (vigie rotate-log-key), or never was the log's.
var ErrRotated = errors.New("not the log's checkpoint key")

// CheckpointKeys returns the log's first checkpoint key (note verifier
// key) and its transition checkpoints, oldest first, as saved in tx.
func CheckpointKeys(ctx context.Context, tx StoreReader) (first string, transitions [][]byte, err error) {
	b, err := tx.Meta(ctx, metaCheckpointKey)
	if err != nil {
		return "", nil, err
	}
	for n := 1; ; n++ {
		t, err := tx.Meta(ctx, metaTransition+strconv.Itoa(n))
		if errors.Is(err, ErrNotFound) {
			return string(b), transitions, nil
		}
		if err != nil {
			return "", nil, err
		}
		transitions = append(transitions, t)
	}
}

// CurrentCheckpointKey follows first through transitions (each opened
// by the key before it) and returns the log's current checkpoint key.
func CurrentCheckpointKey(first string, transitions [][]byte) (string, error) {
	key := first
	for i, t := range transitions {
		v, err := note.NewVerifier(key)
		if err != nil {
			return "", fmt.Errorf("checkpoint key %d: %w", i, err)
		}
		tr, err := verify.OpenTransition(t, v)
		if err != nil {
			return "", fmt.Errorf("transition %d: %w", i+1, err)
		}
		key = tr.NextKey
	}
	return key, nil
}

// Transitions returns the log's transition checkpoints, oldest first
// (none if its key never changed).
func (l *Ledger) Transitions(ctx context.Context) ([][]byte, error) {
	var ts [][]byte
	err := l.store.Read(ctx, func(ctx context.Context, tx StoreReader) error {
		var err error
		_, ts, err = CheckpointKeys(ctx, tx)
		return err
	})
	return ts, err
}

// checkCheckpointKey saves key as the log's first checkpoint key at first
// start; afterwards key must be the current one (the first followed
// through the transitions). what names where key comes from; the error
// names it and quotes no key.
func checkCheckpointKey(ctx context.Context, tx StoreTx, key, what string) error {
	first, ts, err := CheckpointKeys(ctx, tx)
	if errors.Is(err, ErrNotFound) {
		return tx.SetMeta(ctx, metaCheckpointKey, []byte(key))
	}
	if err != nil {
		return err
	}
	current, err := CurrentCheckpointKey(first, ts)
	if err != nil {
		return err
	}
	if current == key {
		return nil
	}
	if key == first || len(ts) > 1 && slices.ContainsFunc(ts[:len(ts)-1], func(t []byte) bool {
		tr, err := verify.ParseTransition(noteText(t))
		return err == nil && tr.NextKey == key
	}) {
		return fmt.Errorf("%w: %s was replaced by a rotation (vigie rotate-log-key): start with the key it made", ErrRotated, what)
	}
	return fmt.Errorf("%w: %s", ErrRotated, what)
}

// noteText returns the text of a signed note (before its blank line).
func noteText(n []byte) []byte {
	if i := bytes.Index(n, []byte("\n\n")); i >= 0 {
		return n[:i+1]
	}
	return n
}

// RotateCheckpointKey hands the log over from the checkpoint key current
// signs with to next, whose verifier key is nextKey: it signs the
// transition checkpoint of the latest checkpoint with both keys and saves
// it, in one transaction under the checkpointer's lease (taken for the
// time of the call: it fails with ErrLeaseHeld while a node signs
// checkpoints). From then on, a ledger starts only with next. It returns
// the transition checkpoint.
func RotateCheckpointKey(ctx context.Context, store Store, owner string, current, next note.Signer, nextKey string) ([]byte, error) {
	h := NewLeaseHolder(store, LeaseCheckpointer, owner, DefaultLeaseTTL, nil, nil)
	epoch, err := h.Try(ctx)
	if err != nil {
		return nil, fmt.Errorf("rotate: the checkpointer's lease (stop every node first): %w", err)
	}
	defer h.Release(context.WithoutCancel(ctx))
	var signed []byte
	err = store.ReadWrite(ctx, func(ctx context.Context, tx StoreTx) error {
		if err := h.Check(ctx, tx, epoch); err != nil {
			return err
		}
		first, ts, err := CheckpointKeys(ctx, tx)
		if err != nil {
			return fmt.Errorf("the log's checkpoint key: %w", err)
		}
		key, err := CurrentCheckpointKey(first, ts)
		if err != nil {
			return err
		}
		v, err := note.NewVerifier(key)
		if err != nil {
			return err
		}
		if v.Name() != current.Name() || v.KeyHash() != current.KeyHash() {
			return fmt.Errorf("%w: the current key given", ErrRotated)
		}
		cp, err := tx.LatestCheckpoint(ctx)
		if err != nil {
			return fmt.Errorf("the latest checkpoint: %w", err)
		}
		c, err := verify.OpenCheckpoint(cp.Note, v)
		if err != nil {
			return fmt.Errorf("the latest checkpoint: %w", err)
		}
		if signed, err = verify.SignTransition(c, nextKey, current, next); err != nil {
			return err
		}
		return tx.SetMeta(ctx, metaTransition+strconv.Itoa(len(ts)+1), signed)
	})
	if err != nil {
		return nil, fmt.Errorf("ledger: %w", err)
	}
	return signed, nil
}
