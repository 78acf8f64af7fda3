package consent

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync/atomic"
	"time"

	"github.com/vigie-sante/vigie/consent/ident"
)

// Config configures a [Service]. Store, Recorder and Engine are required.
type Config struct {
	Store    Store
	Recorder Recorder
	Engine   Engine
	// Rules are the national rules to start with. If the store has no
	// rules, or only older versions, they are published (stored) at
	// start; if the store has a newer version, the store's is used. They
	// are required when the store has none.
	Rules *Rules
	// Clock gives the decision time of requests that have none, and the
	// time of changes. Default time.Now.
	Clock func() time.Time
	// MaxAttempts bounds how many times Check decides when the consent
	// or the national rules keep changing between decision and record.
	// Default 3.
	MaxAttempts int
	// CachedPatients bounds how many patients' consents the service keeps
	// in memory to decide without reading the store (see Check). Default
	// 1<<20; negative: read the store at every Check.
	CachedPatients int
	// Changes, if not nil, reports the changes other nodes make to the
	// store: the service follows them (the patients' consents it keeps,
	// the national rules it decides with) until Close. Nil: changes made
	// elsewhere are found by the Recorder's checks only, one retried
	// decision each.
	Changes ChangeFeed
}

// Service checks access requests and changes consents: it decides with
// the Engine and records with the Recorder, and never answers ALLOW for a
// decision that is not durably recorded. Safe for concurrent use.
type Service struct {
	store       Store
	recorder    Recorder
	engine      Engine
	clock       func() time.Time
	maxAttempts int
	rules       atomic.Pointer[Rules]
	cache       *consentCache // nil: none

	stop    context.CancelFunc // stops following Changes
	stopped chan struct{}      // closed when the service no longer follows them
}

// NewService returns a service, after making sure the store holds national
// rules (see [Config.Rules]).
func NewService(ctx context.Context, cfg Config) (*Service, error) {
	if cfg.Store == nil || cfg.Recorder == nil || cfg.Engine == nil {
		return nil, errors.New("consent: Store, Recorder and Engine are required")
	}
	s := &Service{store: cfg.Store, recorder: cfg.Recorder, engine: cfg.Engine, clock: cfg.Clock, maxAttempts: cfg.MaxAttempts}
	if s.clock == nil {
		s.clock = time.Now
	}
	if s.maxAttempts <= 0 {
		s.maxAttempts = 3
	}
	var keyOf func(ident.INS) PatientKey
	if cfg.Changes != nil {
		keyOf = cfg.Changes.PatientKey
	}
	switch {
	case cfg.CachedPatients == 0:
		s.cache = newConsentCache(1<<20, keyOf)
	case cfg.CachedPatients > 0:
		s.cache = newConsentCache(cfg.CachedPatients, keyOf)
	}
	latest, err := cfg.Store.LatestRules(ctx)
	switch {
	case errors.Is(err, ErrNotFound):
		if cfg.Rules == nil {
			return nil, errors.New("consent: the store has no national rules and none are configured")
		}
		latest = nil
	case err != nil:
		return nil, fmt.Errorf("consent: read national rules: %w", err)
	}
	current := latest
	if cfg.Rules != nil && (latest == nil || cfg.Rules.Version() > latest.Version()) {
		if err := cfg.Store.PutRules(ctx, cfg.Rules, Change{Time: s.now(), Author: "config"}); err != nil {
			return nil, fmt.Errorf("consent: publish configured national rules: %w", err)
		}
		current = cfg.Rules
	} else if cfg.Rules != nil && cfg.Rules.Version() == latest.Version() && cfg.Rules.Hash() != latest.Hash() {
		return nil, fmt.Errorf("consent: configured national rules version %d differs from the stored one: %w", cfg.Rules.Version(), ErrRulesConflict)
	}
	s.rules.Store(current)
	s.stopped = make(chan struct{})
	if cfg.Changes == nil {
		close(s.stopped)
		s.stop = func() {}
		return s, nil
	}
	wctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	s.stop = stop
	go func() {
		defer close(s.stopped)
		cfg.Changes.Watch(wctx, func(c Changes) error { return s.follow(wctx, c) })
	}()
	return s, nil
}

// Close stops following the store's changes (Config.Changes) and waits
// until the service no longer reads the store for them. The service still
// decides and records after Close.
func (s *Service) Close() {
	s.stop()
	<-s.stopped
}

// follow brings what the service keeps up to date with changes reported
// by the feed: a patient it keeps is read again, the national rules are
// read again, and after a gap everything is forgotten.
func (s *Service) follow(ctx context.Context, c Changes) error {
	if c.All {
		s.cache.clearAll()
	}
	if c.All || c.Rules {
		if err := s.reloadRules(ctx); err != nil {
			return err
		}
	}
	for _, k := range c.Patients {
		p, ok := s.cache.patient(k)
		if !ok {
			continue // not kept: read from the store when needed
		}
		read, err := s.store.Consent(ctx, p)
		if err != nil {
			s.cache.forget(p)
			return fmt.Errorf("read consent: %w", err)
		}
		s.cache.put(p, &read)
	}
	return nil
}

// CachedConsentVersion returns the version of the patient's consent the
// service keeps and would decide the patient's next Check with, without
// reading the store; ok is false when it keeps none (the next Check reads
// the store, or presumes no consent).
func (s *Service) CachedConsentVersion(p ident.INS) (version int64, ok bool) {
	return s.cache.version(p)
}

func (s *Service) now() time.Time { return s.clock().UTC().Truncate(time.Second) }

// Rules returns the national rules the service decides with.
func (s *Service) Rules() *Rules { return s.rules.Load() }

// Check decides req and records the decision, and returns it with its
// receipt. The decision returned is the recorded one: for a request key
// already recorded (a retry), the first decision.
//
// A request without a time gets the service clock's. An invalid request
// returns a *FieldError; a MinConsentVersion above the patient's consent
// version, ErrConsentAhead. If the patient's consent changes between the
// decision and its recording, Check decides again with the new consent;
// if a national rules version is published meanwhile (on this node or
// another: ErrRulesChanged), it reads the latest rules and decides again
// with them; at most MaxAttempts times in all. If recording fails, Check
// returns an error and no decision: never an ALLOW that is not recorded.
// The caller may retry with the same request key; the recorder then
// returns the first answer if the failed attempt was in fact recorded.
//
// The first attempt decides with the patient's consent as this service
// last saw it, without reading the store, unless the request asks for a
// later version; a patient it has not seen is presumed to have no consent
// (version 0), as most patients have none. The Recorder's check of the
// consent version, in the transaction that records the decision, makes
// that safe: a consent changed elsewhere, or presumed wrongly, is
// ErrConsentChanged, and the next attempt reads the store.
func (s *Service) Check(ctx context.Context, req Request) (Decision, Receipt, error) {
	if req.Time.IsZero() {
		req.Time = s.clock().UTC()
	}
	if err := ValidateRequest(&req); err != nil {
		return Decision{}, Receipt{}, err
	}
	var lastErr error
	for attempt := range s.maxAttempts {
		rules := s.rules.Load()
		snap := s.snapshot(req.Patient, req.MinConsentVersion, attempt)
		if snap == nil {
			read, err := s.store.Consent(ctx, req.Patient)
			if err != nil {
				return Decision{}, Receipt{}, fmt.Errorf("check: read consent: %w", err)
			}
			snap = &read
			s.cache.put(req.Patient, snap)
		}
		if snap.Version < req.MinConsentVersion {
			// Read from the store just now (snapshot returns a cached
			// consent only at or above the minimum): the version asked
			// for does not exist, and a retry will not make it.
			return Decision{}, Receipt{}, fmt.Errorf("check: store has consent version %d, caller asks for %d: %w", snap.Version, req.MinConsentVersion, ErrConsentAhead)
		}
		d, err := s.engine.Decide(&req, snap, rules)
		if errors.Is(err, ErrStaleConsent) {
			lastErr = err
			s.cache.forget(req.Patient)
			continue // a lagging read: read again
		}
		if err != nil {
			return Decision{}, Receipt{}, fmt.Errorf("check: decide: %w", err)
		}
		rec, err := s.recorder.RecordDecision(ctx, req.Key(), &req, &d)
		if errors.Is(err, ErrConsentChanged) {
			lastErr = err
			s.cache.forget(req.Patient)
			continue
		}
		if errors.Is(err, ErrRulesChanged) {
			lastErr = err
			if err := s.reloadRules(ctx); err != nil {
				return Decision{}, Receipt{}, fmt.Errorf("check: %w", err)
			}
			continue
		}
		if err != nil {
			return Decision{}, Receipt{}, fmt.Errorf("check: record decision: %w", err)
		}
		return rec.Decision, rec, nil
	}
	return Decision{}, Receipt{}, fmt.Errorf("check: consent or national rules kept changing over %d attempts: %w", s.maxAttempts, lastErr)
}

// reloadRules reads the latest national rules from the store and decides
// with them from then on, unless the service already has that version or
// a later one.
func (s *Service) reloadRules(ctx context.Context) error {
	latest, err := s.store.LatestRules(ctx)
	if err != nil {
		return fmt.Errorf("read national rules: %w", err)
	}
	s.useRules(latest)
	return nil
}

// useRules makes rules the ones decided with, if they are newer than the
// current ones.
func (s *Service) useRules(rules *Rules) {
	for {
		cur := s.rules.Load()
		if cur != nil && cur.Version() >= rules.Version() {
			return
		}
		if s.rules.CompareAndSwap(cur, rules) { // CAS: a concurrent load of a newer version wins
			return
		}
	}
}

// noConsent is the consent of a patient who has none.
var noConsent = &Consent{}

// snapshot returns the consent to decide with without reading the store;
// nil when the store must be read.
func (s *Service) snapshot(p ident.INS, minVersion int64, attempt int) *Consent {
	if attempt > 0 || s.cache == nil {
		return nil
	}
	c, ok := s.cache.get(p)
	switch {
	case ok && c.Version >= minVersion:
		return c
	case !ok && minVersion == 0:
		// Presumed: a patient not seen has no consent (kept out of the
		// cache, which holds only what the store said).
		return noConsent
	}
	return nil
}

// UpdateConsent replaces a patient's directives if the current version is
// expected, after validating them against the current national rules and
// the engine. It returns the stored record (version expected+1), a
// *FieldError for invalid directives or an expected version out of range
// (negative, or the largest int64), or ErrStaleVersion. author says who
// makes the change ("patient", "rpps:...", "admin:..."); it must not be an
// INS.
func (s *Service) UpdateConsent(ctx context.Context, patient ident.INS, expected int64, directives []Directive, author string) (ConsentRecord, error) {
	if patient.IsZero() {
		return ConsentRecord{}, missing("patient", "")
	}
	if err := checkAuthor(author); err != nil {
		return ConsentRecord{}, err
	}
	if expected < 0 {
		return ConsentRecord{}, fieldErr("expected_version", "must not be negative")
	}
	if expected == math.MaxInt64 {
		// expected+1 would wrap to a negative version.
		return ConsentRecord{}, fieldErr("expected_version", "out of range: no version can follow it")
	}
	c := Consent{Version: expected + 1, Directives: directives}
	rules := s.rules.Load()
	if err := ValidateConsent(&c, rules); err != nil {
		return ConsentRecord{}, err
	}
	if err := s.engine.CheckConsent(&c, rules); err != nil {
		return ConsentRecord{}, err
	}
	rec, err := s.store.UpdateConsent(ctx, patient, expected, directives, Change{Time: s.now(), Author: author})
	if err != nil {
		if errors.Is(err, ErrStaleVersion) {
			s.cache.forget(patient)
		}
		return ConsentRecord{}, fmt.Errorf("update consent: %w", err)
	}
	c = rec.Consent
	s.cache.put(patient, &c)
	return rec, nil
}

func checkAuthor(author string) error {
	if author == "" {
		return missing("author", "")
	}
	if err := checkText("author", author, 128); err != nil {
		return err
	}
	if _, err := ident.NormalizeINS(author); err == nil {
		return fieldErr("author", "must not be an INS")
	}
	return nil
}

// PublishRules stores a new national rules version and decides with it
// from then on. It returns ErrRulesConflict for a version that is not new.
func (s *Service) PublishRules(ctx context.Context, rules *Rules, author string) error {
	if err := checkAuthor(author); err != nil {
		return err
	}
	if err := s.store.PutRules(ctx, rules, Change{Time: s.now(), Author: author}); err != nil {
		return fmt.Errorf("publish national rules: %w", err)
	}
	s.useRules(rules)
	return nil
}
