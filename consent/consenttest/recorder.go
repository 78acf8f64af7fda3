// Package consenttest holds hand-written fakes for testing code that uses
// package consent: a Recorder that keeps its events in memory and fails on
// demand.
package consenttest

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"

	"github.com/vigie-sante/vigie/consent"
)

// Fault is a failure a [Recorder] injects into one RecordDecision call.
type Fault int

const (
	// NoFault records normally.
	NoFault Fault = iota
	// FailNotPersisted returns an error and records nothing, like a
	// transaction that failed before commit.
	FailNotPersisted
	// FailPersisted records the event and returns an error, like a commit
	// whose acknowledgement was lost: the caller cannot tell it from
	// FailNotPersisted.
	FailPersisted
)

// ErrInjected is the error of an injected fault.
var ErrInjected = errors.New("consenttest: injected recorder fault")

// Event is one recorded decision.
type Event struct {
	Key      consent.RequestKey
	Request  consent.Request
	Decision consent.Decision
	Index    int64
}

// Recorder is a consent.Recorder in memory, honouring the contract: it
// checks the patient's consent version and the latest national rules
// version against Store in the same critical section as it records (as the ledger does in its transaction), and is
// idempotent by request key. Safe for concurrent use.
type Recorder struct {
	// Store is read for the patient's current consent version.
	Store consent.Store
	// BeforeRecord, if set, runs at the start of each RecordDecision,
	// before the version check: a test changes the consent there to
	// simulate a change between decision and record.
	BeforeRecord func(ctx context.Context, key consent.RequestKey, req *consent.Request, d *consent.Decision)

	mu     sync.Mutex
	faults []Fault
	byKey  map[consent.RequestKey]consent.Receipt
	events []Event
	calls  int
}

var _ consent.Recorder = (*Recorder)(nil)

// FailNext makes the next calls fail with the given faults, in order.
func (r *Recorder) FailNext(faults ...Fault) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.faults = append(r.faults, faults...)
}

// RecordDecision records d (see consent.Recorder).
func (r *Recorder) RecordDecision(ctx context.Context, key consent.RequestKey, req *consent.Request, d *consent.Decision) (consent.Receipt, error) {
	if r.BeforeRecord != nil {
		r.BeforeRecord(ctx, key, req, d)
	}
	if err := ctx.Err(); err != nil {
		return consent.Receipt{}, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	if rec, ok := r.byKey[key]; ok {
		if first := r.events[rec.Index].Request; first.Patient != req.Patient || !consent.SameRequest(&first, req) {
			return consent.Receipt{}, fmt.Errorf("record decision: %w", consent.ErrRequestReused)
		}
		return rec, nil
	}
	fault := NoFault
	if len(r.faults) > 0 {
		fault, r.faults = r.faults[0], r.faults[1:]
	}
	if fault == FailNotPersisted {
		return consent.Receipt{}, fmt.Errorf("record decision: %w (not persisted)", ErrInjected)
	}
	// The version check and the write are atomic under r.mu, as in a
	// database transaction; the store is read inside it.
	current, err := r.Store.Consent(ctx, req.Patient)
	if err != nil {
		return consent.Receipt{}, fmt.Errorf("record decision: read consent: %w", err)
	}
	if current.Version != d.ConsentVersion {
		return consent.Receipt{}, fmt.Errorf("record decision: decided with version %d, now %d: %w", d.ConsentVersion, current.Version, consent.ErrConsentChanged)
	}
	rules, err := r.Store.LatestRules(ctx)
	if err != nil {
		return consent.Receipt{}, fmt.Errorf("record decision: read national rules: %w", err)
	}
	if rules.Version() != d.RulesVersion {
		return consent.Receipt{}, fmt.Errorf("record decision: decided under national rules version %d, now %d: %w", d.RulesVersion, rules.Version(), consent.ErrRulesChanged)
	}
	ev := Event{Key: key, Request: *req, Decision: cloneDecision(*d), Index: int64(len(r.events))}
	rec := consent.Receipt{Decision: cloneDecision(*d), Index: ev.Index, Commitment: sha256.Sum256(fmt.Appendf(nil, "%d/%s/%s", ev.Index, key.Service, key.RequestID))}
	if r.byKey == nil {
		r.byKey = make(map[consent.RequestKey]consent.Receipt)
	}
	r.byKey[key] = rec
	r.events = append(r.events, ev)
	if fault == FailPersisted {
		return consent.Receipt{}, fmt.Errorf("record decision: %w (persisted)", ErrInjected)
	}
	return rec, nil
}

func cloneDecision(d consent.Decision) consent.Decision {
	d.Grounds = append([]consent.Ground(nil), d.Grounds...)
	d.Obligations = append([]consent.Obligation(nil), d.Obligations...)
	return d
}

// Events returns the recorded events, in order.
func (r *Recorder) Events() []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Event, len(r.events))
	for i, e := range r.events {
		e.Decision = cloneDecision(e.Decision)
		out[i] = e
	}
	return out
}

// Calls returns how many times RecordDecision reached the recorder's
// critical section.
func (r *Recorder) Calls() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls
}
