package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/vigie-sante/vigie/ledger/event"
	"github.com/vigie-sante/vigie/ledger/sqldb"
)

// ErasureRecordFormat names the payload of erasure events.
const ErasureRecordFormat = "vigie.erasure.v1"

// ErasureRecord is the payload of an erasure event: a request (state
// "requested", with the time it is due) and its execution (state "done",
// with the number of events erased). Both are in the patient's chain.
type ErasureRecord struct {
	Format      string    `json:"format"`
	State       string    `json:"state"`
	RequestedBy string    `json:"requested_by,omitempty"`
	Reference   string    `json:"reference,omitempty"`
	Due         time.Time `json:"due,omitzero"`
	Erased      int       `json:"erased,omitempty"`
}

// Erasure is a scheduled erasure.
type Erasure struct {
	Pseudonym   event.Hash
	Due         time.Time
	RequestedBy string
}

// RequestErasure schedules the erasure of a patient's events at due and
// records the request in the patient's chain, in one transaction. A patient
// with an erasure already scheduled keeps the earlier time. requestedBy
// says who asked ("patient", "admin:..."); reference is the administrator's
// reference of the decision, if any. Neither may hold an INS.
func (l *Ledger) RequestErasure(ctx context.Context, patient PatientID, due time.Time, requestedBy, reference string) (*Recorded, time.Time, error) {
	pseudonym := l.cfg.Pseudonyms.Pseudonym(patient)
	due = due.UTC()
	payload, err := json.Marshal(ErasureRecord{Format: ErasureRecordFormat, State: "requested", RequestedBy: requestedBy, Reference: reference, Due: due})
	if err != nil {
		return nil, time.Time{}, err
	}
	scheduled := due
	rec, err := l.Record(ctx, Entry{
		Kind:    event.KindErasure,
		Patient: patient,
		Service: requestedBy,
		Payload: payload,
		Apply: func(ctx context.Context, tx StoreTx) error {
			at, err := tx.ScheduleErasure(ctx, Erasure{Pseudonym: pseudonym, Due: due, RequestedBy: requestedBy})
			scheduled = at
			return err
		},
	})
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("request erasure: %w", err)
	}
	return rec, scheduled, nil
}

// RunDueErasures erases every patient whose erasure is due and returns
// how many it ran. Each erasure commits with its record in the patient's
// chain (state "done", with the number of events erased), and with the
// removal of the patient's rows of other tables (Config.EraseAlso): all
// or nothing. Scheduled erasures are a duty of the holder of the
// LeaseErasures lease: if this node does not hold it, RunDueErasures
// tries to take it, and fails with an error wrapping ErrLeaseHeld if
// another node holds it.
func (l *Ledger) RunDueErasures(ctx context.Context) (int, error) {
	t, ok := l.held(LeaseErasures)
	if !ok {
		epoch, err := t.h.Try(ctx)
		if err != nil {
			return 0, fmt.Errorf("due erasures: %w", err)
		}
		t.epoch = epoch
	}
	return l.runDueErasures(ctx, t)
}

// runDueErasures runs the due erasures in the term t of the erasures'
// lease: each checks it in its transaction.
func (l *Ledger) runDueErasures(ctx context.Context, t term) (int, error) {
	var due []Erasure
	err := l.store.Read(ctx, func(ctx context.Context, tx StoreReader) error {
		var err error
		due, err = tx.DueErasures(ctx, l.cfg.Now(), 100)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("due erasures: %w", err)
	}
	ran := 0
	var errs []error
	scrub := false
	for _, e := range due {
		if ctx.Err() != nil {
			errs = append(errs, ctx.Err())
			break
		}
		err := l.runErasure(ctx, t, e)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if t.lost(err) {
			errs = append(errs, fmt.Errorf("erase: %w", err))
			break
		}
		if err != nil {
			// This one stays due and is tried again at the next run; the
			// others are not held back by it.
			errs = append(errs, fmt.Errorf("erase: %w", err))
			scrub = scrub || errors.Is(err, sqldb.ErrCommitUnknown) // it may have committed
			continue
		}
		ran++
		l.cfg.Logger.Info("ledger: patient erased")
	}
	if ran > 0 || scrub {
		l.scrub(ctx) // once for them all: a scrub holds writers back
	}
	return ran, errors.Join(errs...)
}

// RunErasureOf runs the erasure of one patient, scheduled and due now (a
// request with no delay), and scrubs: the patient's own outcome, whatever
// the other due erasures. It reports whether this call ran it (false:
// another run did, or none was due).
func (l *Ledger) RunErasureOf(ctx context.Context, patient PatientID, requestedBy string) (bool, error) {
	err := l.runErasure(ctx, term{}, Erasure{Pseudonym: l.cfg.Pseudonyms.Pseudonym(patient), Due: l.cfg.Now(), RequestedBy: requestedBy})
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	if err == nil || errors.Is(err, sqldb.ErrCommitUnknown) {
		l.scrub(ctx)
	}
	if err != nil {
		return false, fmt.Errorf("erase: %w", err)
	}
	l.cfg.Logger.Info("ledger: patient erased")
	return true, nil
}

// runErasure erases e's patient and records it, in one transaction,
// claimed by deleting its schedule (ErrNotFound: not scheduled any more):
// of two runs that saw it due (the loop, and a request's run with no
// delay), one erases, the other finds it gone and does nothing. A
// scheduled erasure runs in the term t of the erasures' lease, checked in
// the same transaction; a request's own (RunErasureOf) in none.
func (l *Ledger) runErasure(ctx context.Context, t term, e Erasure) error {
	_, err := l.recordErasure(ctx, Entry{Pseudonym: e.Pseudonym}, e.RequestedBy, func(ctx context.Context, tx StoreTx) error {
		if err := t.check(ctx, tx); err != nil {
			return err
		}
		return tx.DeleteErasure(ctx, e.Pseudonym)
	})
	return err
}

// recordErasure erases the patient of target (its Patient or Pseudonym)
// and records the erasure, state "done", in one transaction; claim, if not
// nil, runs first in it. It returns how many events it erased.
func (l *Ledger) recordErasure(ctx context.Context, target Entry, requestedBy string, claim func(ctx context.Context, tx StoreTx) error) (int, error) {
	var erased int
	_, err := l.Record(ctx, Entry{
		Kind: event.KindErasure, Patient: target.Patient, Pseudonym: target.Pseudonym, Service: "vigie", Apply: claim,
		Erase: func(n int) (json.RawMessage, error) {
			erased = n
			return json.Marshal(ErasureRecord{Format: ErasureRecordFormat, State: "done", RequestedBy: requestedBy, Erased: n})
		},
	})
	return erased, err
}

// erasureLoop runs due erasures every minute, while this node holds the
// erasures' lease, until ctx is done.
func (l *Ledger) erasureLoop(ctx context.Context) {
	for {
		if t, ok := l.held(LeaseErasures); ok {
			if _, err := l.runDueErasures(ctx, t); err != nil && ctx.Err() == nil {
				l.cfg.Logger.Warn("ledger: erasures", "err", err)
			}
		}
		wait(ctx, time.Minute, l.erasureWake)
		if ctx.Err() != nil {
			return
		}
	}
}
