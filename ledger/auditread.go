package ledger

import (
	"context"
	"errors"
	"fmt"

	"github.com/vigie-sante/vigie/ledger/event"
)

// OpenedEvent is an event's body as an auditor reads it.
type OpenedEvent struct {
	Row  EventRow
	Salt [32]byte
	// Body is the exact bytes committed to; Parsed is Body decoded.
	Body   []byte
	Parsed *event.Body
}

// OpenForAudit opens the body of row, found by [Ledger.Search], as
// [Ledger.OpenEvent] does, decodes it, and checks that its kind and
// patient are the row's searchable columns: nothing binds those columns to
// the commitment, and the search selected the row by them. A mismatch is
// a *CorruptEventError (ErrCorrupt). An erased event, even one erased
// since the search, is ErrErased.
//
// Reading a body is a read of health data: count what is shown in a
// [ReadSet] and record it with [Ledger.RecordReads] before showing it.
func (l *Ledger) OpenForAudit(ctx context.Context, row EventRow) (OpenedEvent, error) {
	salt, body, err := l.OpenEvent(ctx, row)
	if errors.Is(err, ErrCorrupt) && l.erasedSince(ctx, row) {
		// Erased between the search and this read: the row the caller
		// holds has a body whose key is gone, which is no tampering.
		return OpenedEvent{}, fmt.Errorf("event %d: %w", row.Index, ErrErased)
	}
	if err != nil {
		return OpenedEvent{}, err
	}
	b, err := event.Parse(body)
	if err != nil {
		return OpenedEvent{}, corrupt(row, fmt.Errorf("event %d: %w: %v", row.Index, ErrCorrupt, err))
	}
	if b.Kind != row.Kind || b.Patient != row.Pseudonym {
		return OpenedEvent{}, corrupt(row, fmt.Errorf("event %d: %w: its searchable columns are not its body's", row.Index, ErrCorrupt))
	}
	return OpenedEvent{Row: row, Salt: salt, Body: body, Parsed: b}, nil
}

// erasedSince reports whether the event of row is erased now.
func (l *Ledger) erasedSince(ctx context.Context, row EventRow) bool {
	var now EventRow
	err := l.store.Read(ctx, func(ctx context.Context, tx StoreReader) error {
		var err error
		now, err = tx.EventByIndex(ctx, row.Index)
		return err
	})
	return err == nil && now.Erased && now.Commitment == row.Commitment
}

// ReadSet counts the events read per patient, in the order their patients
// were first met, for [Ledger.RecordReads]. The zero ReadSet is empty and
// ready to use. It is not safe for concurrent use.
type ReadSet struct {
	counts map[event.Hash]int
	order  []event.Hash
}

// Add counts one event of the patient with this pseudonym. The system
// chain's events are no patient's: they are not counted.
func (s *ReadSet) Add(pseudonym event.Hash) {
	if pseudonym == event.SystemChain {
		return
	}
	if s.counts == nil {
		s.counts = map[event.Hash]int{}
	}
	if s.counts[pseudonym] == 0 {
		s.order = append(s.order, pseudonym)
	}
	s.counts[pseudonym]++
}

// Patients returns the number of patients counted.
func (s *ReadSet) Patients() int { return len(s.order) }

// Events returns the number of events counted for the patient.
func (s *ReadSet) Events(pseudonym event.Hash) int { return s.counts[pseudonym] }

// RecordReads records, for each patient of s, one ledger-read event in
// their chain by reader (the entry's Service), whose payload is
// payload(n) for the n events of theirs read. The entries go in one
// transaction when they fit ([Ledger.RecordAll]). It returns nil once
// every one is durable, or an error (fail closed: the caller shows
// nothing). An empty set records nothing.
func (l *Ledger) RecordReads(ctx context.Context, s *ReadSet, reader string, payload func(events int) ([]byte, error)) error {
	if s.Patients() == 0 {
		return nil
	}
	entries := make([]Entry, 0, len(s.order))
	for _, p := range s.order {
		b, err := payload(s.counts[p])
		if err != nil {
			return fmt.Errorf("record reads: %w", err)
		}
		entries = append(entries, Entry{Kind: event.KindLedgerRead, Pseudonym: p, Service: reader, Payload: b})
	}
	if _, err := l.RecordAll(ctx, entries); err != nil {
		return fmt.Errorf("record reads: %w", err)
	}
	return nil
}
