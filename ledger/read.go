package ledger

import (
	"context"
	"crypto/cipher"
	"errors"
	"fmt"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/vigie-sante/vigie/ledger/event"
	"github.com/vigie-sante/vigie/ledger/sqldb"
	"github.com/vigie-sante/vigie/ledger/verify"
)

// MaxLeaves is the most leaves Leaves returns in one call.
const MaxLeaves = 1000

// ErrBeyondCheckpoint is returned for a proof or leaves that the latest
// signed checkpoint does not cover yet. Callers test with errors.Is.
var ErrBeyondCheckpoint = errors.New("beyond the latest signed checkpoint")

// HistoryEvent is one event of a patient's chain, with what proves it.
type HistoryEvent struct {
	Seq        uint64
	Index      uint64
	Commitment event.Hash
	// Erased events have no body and no salt: a placeholder.
	Erased bool
	Body   []byte
	Salt   [32]byte
	// Proof is the inclusion proof against the history's checkpoint, for
	// an event it covers; Receipt is the event's receipt otherwise.
	Proof   [][]byte
	Receipt []byte
	// Kind, Actor and Organization are the event's index columns
	// (EventRow's), as stored: not bound to the commitment, so a reader
	// holds them to the body. Empty when erased.
	Kind         event.Kind
	Actor        string
	Organization string
}

// History is a page of a patient's chain, proved against one checkpoint.
type History struct {
	// Checkpoint is the signed checkpoint the proofs are against, and its
	// size. Nil before the first checkpoint.
	Checkpoint     []byte
	CheckpointSize uint64
	Events         []HistoryEvent
}

// History returns up to limit events of a patient's chain from sequence
// number fromSeq on, erased ones as placeholders, each with an inclusion
// proof against the checkpoint of size atSize (the latest if 0), or its
// receipt if that checkpoint does not cover it yet. An event whose stored
// form was altered fails it with a *CorruptEventError.
func (l *Ledger) History(ctx context.Context, patient PatientID, fromSeq uint64, limit int, atSize uint64) (*History, error) {
	pseudonym := l.cfg.Pseudonyms.Pseudonym(patient)
	var h History
	var rows []EventRow
	var cp CheckpointRow
	err := l.store.Read(ctx, func(ctx context.Context, tx StoreReader) error {
		h = History{}
		var err error
		if atSize == 0 {
			cp, err = tx.LatestCheckpoint(ctx)
		} else {
			cp, err = tx.Checkpoint(ctx, atSize)
		}
		switch {
		case errors.Is(err, ErrNotFound) && atSize == 0:
		case err != nil:
			return fmt.Errorf("checkpoint: %w", err)
		default:
			h.Checkpoint, h.CheckpointSize = cp.Note, cp.Size
		}
		if rows, err = tx.PatientEvents(ctx, pseudonym, max(fromSeq, 1), limit); err != nil {
			return err
		}
		h.Events = make([]HistoryEvent, len(rows))
		keys := map[event.Hash]cipher.AEAD{} // one patient: one data key
		for i, r := range rows {
			e := HistoryEvent{Seq: r.Seq, Index: r.Index, Commitment: r.Commitment, Erased: r.Erased,
				Kind: r.Kind, Actor: r.Actor, Organization: r.Organization}
			if !r.Erased {
				if e.Salt, e.Body, err = l.openEventWith(ctx, tx, r, keys); err != nil {
					return corrupt(r, err)
				}
			}
			h.Events[i] = e
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if atSize == 0 {
		// Erased events have no time left to sign a receipt with: when an
		// erasure followed them before a checkpoint covered them, wait
		// (within the merge delay) for one that does, so that each comes
		// with its inclusion proof.
		var last uint64
		waiting := false
		for _, e := range h.Events {
			if e.Erased && e.Index >= h.CheckpointSize {
				last, waiting = max(last, e.Index), true
			}
		}
		if waiting && l.Ready() == nil { // a stalled log would only make it wait
			wctx, cancel := context.WithTimeout(ctx, 2*l.cfg.MergeDelay)
			err := l.WaitCheckpoint(wctx, last)
			cancel()
			if err == nil {
				return l.History(ctx, patient, fromSeq, limit, 0)
			}
		}
	}
	if err := l.proveHistory(ctx, &h); err != nil {
		return nil, err
	}
	for i := range h.Events {
		e := &h.Events[i]
		if e.Index < h.CheckpointSize {
			continue
		}
		var t time.Time
		if !e.Erased {
			b, err := event.Parse(e.Body)
			if err != nil {
				return nil, fmt.Errorf("event %d: %w", e.Index, err)
			}
			t = b.Time
		} else {
			// An erased event lost its time; it is older than any
			// checkpoint in practice (erasure runs on recorded events).
			continue
		}
		r, err := l.receipt(&Recorded{Index: e.Index, Commitment: e.Commitment, Time: t})
		if err != nil {
			return nil, err
		}
		e.Receipt = r
	}
	return &h, nil
}

// proofWorkers bounds the inclusion proofs asked of a Log that cannot
// prove a batch at once, concurrently (a remote Trillian: each is a round
// trip).
const proofWorkers = 8

// proveHistory sets the inclusion proof of every event of h its checkpoint
// covers: at once if the Log is a BatchProver, else a few at a time.
func (l *Ledger) proveHistory(ctx context.Context, h *History) error {
	var idx []int
	var indices []uint64
	for i, e := range h.Events {
		if e.Index < h.CheckpointSize {
			idx = append(idx, i)
			indices = append(indices, e.Index)
		}
	}
	if len(idx) == 0 {
		return nil
	}
	if bp, ok := l.log.(BatchProver); ok {
		proofs, err := bp.InclusionProofs(ctx, indices, h.CheckpointSize)
		if err != nil {
			return fmt.Errorf("inclusion proofs: %w", err)
		}
		if len(proofs) != len(idx) {
			return fmt.Errorf("inclusion proofs: %d for %d leaves", len(proofs), len(idx))
		}
		for k, i := range idx {
			h.Events[i].Proof = proofs[k]
		}
		return nil
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(proofWorkers)
	for _, i := range idx {
		e := &h.Events[i]
		g.Go(func() error {
			p, err := l.log.InclusionProof(gctx, e.Index, h.CheckpointSize)
			if err != nil {
				return fmt.Errorf("inclusion proof of %d: %w", e.Index, err)
			}
			e.Proof = p
			return nil
		})
	}
	return g.Wait()
}

// latestSize returns the size of the latest checkpoint (0 before the first).
func (l *Ledger) latestSize(ctx context.Context) (uint64, error) {
	var st State
	err := l.store.Read(ctx, func(ctx context.Context, tx StoreReader) error {
		var err error
		st, err = tx.State(ctx)
		return err
	})
	return st.CheckpointSize, err
}

// InclusionProof returns the proof of the leaf at index in the tree of the
// given size, which a signed checkpoint must cover.
func (l *Ledger) InclusionProof(ctx context.Context, index, size uint64) ([][]byte, error) {
	latest, err := l.latestSize(ctx)
	if err != nil {
		return nil, err
	}
	if size > latest {
		return nil, fmt.Errorf("tree size %d: %w (size %d)", size, ErrBeyondCheckpoint, latest)
	}
	if index >= size {
		return nil, fmt.Errorf("leaf %d is not in a tree of size %d", index, size)
	}
	return l.log.InclusionProof(ctx, index, size)
}

// ConsistencyProof returns the proof that the tree of size first is a
// prefix of the tree of size second; a signed checkpoint must cover
// second. The proof from the empty tree (first 0), like the proof between
// equal sizes, is empty (RFC 9162, section 2.1.4).
func (l *Ledger) ConsistencyProof(ctx context.Context, first, second uint64) ([][]byte, error) {
	latest, err := l.latestSize(ctx)
	if err != nil {
		return nil, err
	}
	if second > latest {
		return nil, fmt.Errorf("tree size %d: %w (size %d)", second, ErrBeyondCheckpoint, latest)
	}
	if first > second {
		return nil, fmt.Errorf("no consistency proof from size %d to %d", first, second)
	}
	if first == 0 || first == second {
		return [][]byte{}, nil
	}
	return l.log.ConsistencyProof(ctx, first, second)
}

// Leaves returns the leaf values at indices [start, end), clipped to the
// latest signed checkpoint and to MaxLeaves. The leaves are the ledger's
// own: the checkpointer signs only a tree made of exactly these.
func (l *Ledger) Leaves(ctx context.Context, start, end uint64) ([][]byte, error) {
	var out [][]byte
	err := l.store.Read(ctx, func(ctx context.Context, tx StoreReader) error {
		st, err := tx.State(ctx)
		if err != nil {
			return err
		}
		end = min(end, st.CheckpointSize, start+MaxLeaves)
		if start >= end {
			out = nil
			return nil
		}
		cs, err := tx.Commitments(ctx, start, end)
		if err != nil {
			return err
		}
		out = make([][]byte, len(cs))
		for i, c := range cs {
			out[i] = verify.LeafValue(c)
		}
		return nil
	})
	return out, err
}

// InclusionProofOf returns the leaf index of the event with commitment c
// and its inclusion proof in the tree of the given size, which a signed
// checkpoint must cover; ErrNotFound if that tree does not hold it.
func (l *Ledger) InclusionProofOf(ctx context.Context, c event.Hash, size uint64) (uint64, [][]byte, error) {
	latest, err := l.latestSize(ctx)
	if err != nil {
		return 0, nil, err
	}
	if size > latest {
		return 0, nil, fmt.Errorf("tree size %d: %w (size %d)", size, ErrBeyondCheckpoint, latest)
	}
	return l.log.InclusionProofByHash(ctx, verify.MerkleLeafHash(c), size)
}

// Erase destroys a patient's data key and clears what could identify their
// events, at once, and records it in the patient's chain in the same
// transaction (an erasure record, state "done", requested by "vigie");
// commitments, leaf indices and every proof stay valid. It returns the
// number of events erased. RequestErasure and RunDueErasures do the same
// after a delay, with the request recorded too.
func (l *Ledger) Erase(ctx context.Context, patient PatientID) (int, error) {
	n, err := l.recordErasure(ctx, Entry{Patient: patient}, "vigie", nil)
	if err == nil || errors.Is(err, sqldb.ErrCommitUnknown) {
		l.scrub(ctx)
	}
	return n, err
}

// scrub follows a committed erasure: the old versions of the pages it
// changed must leave the store's files too. A failure leaves that to the
// store's later checkpoints: the erasure itself stands.
func (l *Ledger) scrub(ctx context.Context) {
	if err := l.store.Scrub(ctx); err != nil {
		l.cfg.Logger.Warn("ledger: erased content may stay in the database's files until a later checkpoint", "err", err)
	}
}

// EventByCommitment returns the event with commitment c: found through the
// log if a checkpoint covers it, among the recent events otherwise; or
// ErrNotFound.
func (l *Ledger) EventByCommitment(ctx context.Context, c event.Hash) (EventRow, error) {
	size, err := l.latestSize(ctx)
	if err != nil {
		return EventRow{}, err
	}
	var row EventRow
	if size > 0 {
		index, _, err := l.log.InclusionProofByHash(ctx, verify.MerkleLeafHash(c), size)
		switch {
		case err == nil:
			err = l.store.Read(ctx, func(ctx context.Context, tx StoreReader) error {
				row, err = tx.EventByIndex(ctx, index)
				return err
			})
			return row, err
		case !errors.Is(err, ErrNotFound):
			return EventRow{}, err
		}
	}
	err = l.store.Read(ctx, func(ctx context.Context, tx StoreReader) error {
		row, err = tx.RecentEventByCommitment(ctx, c, size)
		return err
	})
	return row, err
}

// OpenEvent decrypts an event's salt and body (ErrErased for an erased
// event, a *CorruptEventError for one whose stored form was altered).
// Reading a body is a read of health data: the caller records it.
func (l *Ledger) OpenEvent(ctx context.Context, row EventRow) ([32]byte, []byte, error) {
	var salt [32]byte
	var body []byte
	err := l.store.Read(ctx, func(ctx context.Context, tx StoreReader) error {
		var err error
		salt, body, err = l.openEvent(ctx, tx, row)
		return corrupt(row, err)
	})
	return salt, body, err
}

// Search returns up to limit events matching f, after index after, for
// auditors. It reads no body.
func (l *Ledger) Search(ctx context.Context, f SearchFilter, after int64, limit int) ([]EventRow, error) {
	var rows []EventRow
	err := l.store.Read(ctx, func(ctx context.Context, tx StoreReader) error {
		var err error
		rows, err = tx.SearchEvents(ctx, f, after, limit)
		return err
	})
	return rows, err
}

// ChainLength returns the sequence number of the patient's latest event
// (0 if they have none).
func (l *Ledger) ChainLength(ctx context.Context, patient PatientID) (uint64, error) {
	pseudonym := l.cfg.Pseudonyms.Pseudonym(patient)
	var seq uint64
	err := l.store.Read(ctx, func(ctx context.Context, tx StoreReader) error {
		var err error
		seq, _, err = tx.ChainHead(ctx, pseudonym)
		return err
	})
	return seq, err
}
