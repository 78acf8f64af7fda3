package ledger

import (
	"context"
	"errors"
	"time"
)

// Stats are the ledger's progress, for metrics and operators.
type Stats struct {
	// Recorded is how many events are recorded (the next leaf index).
	Recorded uint64
	// Sent is how many leaves the log has acknowledged.
	Sent uint64
	// CheckpointSize is the size of the latest signed checkpoint.
	CheckpointSize uint64
	// CheckpointTime is when it was signed (zero if there is none).
	CheckpointTime time.Time
	// OldestUnsigned is the recording time of the oldest event no signed
	// checkpoint covers yet (zero if every event is covered, or if that
	// event was erased).
	OldestUnsigned time.Time
}

// Outbox is how many recorded events the log has not acknowledged yet.
func (s Stats) Outbox() uint64 { return s.Recorded - s.Sent }

// Unsigned is how many recorded events no signed checkpoint covers yet.
func (s Stats) Unsigned() uint64 { return s.Recorded - s.CheckpointSize }

// IntegrationLag is how long the oldest event no checkpoint covers has
// waited, at now: what the merge delay promised by receipts bounds.
func (s Stats) IntegrationLag(now time.Time) time.Duration {
	if s.OldestUnsigned.IsZero() {
		return 0
	}
	return max(0, now.Sub(s.OldestUnsigned))
}

// Stats returns the ledger's progress, read in one transaction.
func (l *Ledger) Stats(ctx context.Context) (Stats, error) {
	var s Stats
	err := l.store.Read(ctx, func(ctx context.Context, tx StoreReader) error {
		st, err := tx.State(ctx)
		if err != nil {
			return err
		}
		s = Stats{Recorded: st.NextIndex, Sent: st.SentSize, CheckpointSize: st.CheckpointSize}
		if st.CheckpointSize > 0 {
			cp, err := tx.LatestCheckpoint(ctx)
			if err != nil {
				return err
			}
			s.CheckpointTime = time.Unix(0, cp.SignedNanos)
		}
		if st.CheckpointSize < st.NextIndex {
			e, err := tx.EventByIndex(ctx, st.CheckpointSize)
			switch {
			case errors.Is(err, ErrNotFound):
			case err != nil:
				return err
			case e.TimeNanos != 0:
				s.OldestUnsigned = time.Unix(0, e.TimeNanos)
			}
		}
		return nil
	})
	return s, err
}
