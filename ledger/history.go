package ledger

import (
	"context"
	"errors"
	"fmt"
)

// MaxCheckpoints is the most checkpoints CheckpointHistory returns.
const MaxCheckpoints = 1000

// HistoryCheckpoint is a signed checkpoint of the log's history with the
// consistency proof from the checkpoint before it in the same answer.
type HistoryCheckpoint struct {
	CheckpointRow
	// Proof is the consistency proof from the previous checkpoint of the
	// answer to this one (RFC 6962 order); nil for the first.
	Proof [][]byte
}

// CheckpointHistory returns up to count signed checkpoints of size at
// least minSize, oldest first: the first such checkpoint, the latest, and
// between them the first checkpoint at or above each of count-2 sizes
// evenly spaced between the two, so that one call spans the whole
// history however long it is. Each checkpoint after the first comes with
// the consistency proof from the one before: a client checks the series
// (every signature, every proof) without another call, and a chart of the
// log's size over time needs nothing else. No checkpoint of that size yet
// is an empty answer, not an error. The empty tree's checkpoint (size 0,
// which the checkpointer signs first) is never part of the history.
func (l *Ledger) CheckpointHistory(ctx context.Context, minSize uint64, count int) ([]HistoryCheckpoint, error) {
	if count < 1 || count > MaxCheckpoints {
		return nil, fmt.Errorf("ledger: %d checkpoints asked, want 1 to %d", count, MaxCheckpoints)
	}
	var out []HistoryCheckpoint
	err := l.store.Read(ctx, func(ctx context.Context, tx StoreReader) error {
		out = out[:0]
		latest, err := tx.LatestCheckpoint(ctx)
		if errors.Is(err, ErrNotFound) || err == nil && latest.Size < max(minSize, 1) {
			return nil
		}
		if err != nil {
			return err
		}
		// atLeast is the first checkpoint of size >= size (the latest
		// checkpoint at worst: sizes only grow).
		atLeast := func(size uint64) (CheckpointRow, error) {
			rows, err := tx.Checkpoints(ctx, max(size, 1)-1, 1)
			if err != nil || len(rows) == 0 {
				return latest, err
			}
			return rows[0], nil
		}
		first, err := atLeast(minSize)
		if err != nil {
			return err
		}
		if count == 1 {
			out = append(out, HistoryCheckpoint{CheckpointRow: latest})
			return nil
		}
		out = append(out, HistoryCheckpoint{CheckpointRow: first})
		span := latest.Size - first.Size
		for k := 1; k < count-1; k++ {
			target := first.Size + uint64(float64(span)*float64(k)/float64(count-1))
			if target <= out[len(out)-1].Size {
				continue
			}
			c, err := atLeast(target)
			if err != nil {
				return err
			}
			if c.Size > out[len(out)-1].Size && c.Size < latest.Size {
				out = append(out, HistoryCheckpoint{CheckpointRow: c})
			}
		}
		if latest.Size > out[len(out)-1].Size {
			out = append(out, HistoryCheckpoint{CheckpointRow: latest})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("ledger: checkpoint history: %w", err)
	}
	for i := 1; i < len(out); i++ {
		p, err := l.log.ConsistencyProof(ctx, out[i-1].Size, out[i].Size)
		if err != nil {
			return nil, fmt.Errorf("ledger: checkpoint history: consistency from %d to %d: %w", out[i-1].Size, out[i].Size, err)
		}
		out[i].Proof = p
	}
	return out, nil
}
