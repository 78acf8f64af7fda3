package ledger

import (
	"context"
	"fmt"

	"github.com/vigie-sante/vigie/ledger/event"
	"github.com/vigie-sante/vigie/ledger/verify"
)

// SuccessionService is the service of a log succession event.
const SuccessionService = "vigie-init"

// RecordSuccession records the first event of a new log that succeeds a
// closed one: the old log's latest published checkpoint (signedCheckpoint,
// the signed note) and the verifier key of its checkpoints (note's text
// form), checked by verify.NewSuccession (the checkpoint verifies under
// the key, whose name is the old origin, which is not this log's). It
// refuses a ledger that holds an event already: the succession is the
// log's first event or none. The errors name the field at fault
// ("checkpoint", "key", "origin").
func (l *Ledger) RecordSuccession(ctx context.Context, signedCheckpoint []byte, key string) (*Recorded, *verify.VerifiedSuccession, error) {
	payload, vs, err := verify.NewSuccession(signedCheckpoint, key, l.cfg.Origin)
	if err != nil {
		return nil, nil, err
	}
	empty := func(ctx context.Context, tx StoreTx) error {
		st, err := tx.State(ctx)
		if err != nil {
			return err
		}
		if st.NextIndex != 0 {
			return &verify.SuccessionError{Field: "log", Reason: fmt.Sprintf("the log holds %d events already: a succession is a new log's first event", st.NextIndex)}
		}
		return nil
	}
	rec, err := l.Record(ctx, Entry{Kind: event.KindLogSuccession, Service: SuccessionService, Payload: payload, Apply: empty})
	if err != nil {
		return nil, nil, fmt.Errorf("record the log succession: %w", err)
	}
	if rec.Index != 0 {
		// Another writer recorded first: the event is in the log, at the
		// wrong place, and verifiers will report it.
		return nil, nil, &verify.SuccessionError{Field: "log", Reason: fmt.Sprintf("recorded at index %d, not first: another node recorded concurrently", rec.Index)}
	}
	return rec, vs, nil
}
