// Package memstore is an in-memory consent.Store, for tests, benchmarks
// and demonstrations. It keeps nothing across restarts. It passes the
// conformance suite of package consent/consentstoretest.
package memstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/vigie-sante/vigie/consent"
	"github.com/vigie-sante/vigie/consent/ident"
)

// Store is an in-memory consent.Store. The zero Store is not usable; call
// New. Safe for concurrent use.
//
// It keys patients by their ident.INS value, which never prints; being in
// memory only, it needs no pseudonym.
type Store struct {
	mu       sync.Mutex
	patients map[ident.INS][]consent.ConsentRecord // history, by increasing version
	rules    []storedRules                         // by increasing version
}

type storedRules struct {
	rules *consent.Rules
	info  consent.RulesInfo
}

var _ consent.Store = (*Store)(nil)

// New returns an empty store.
func New() *Store {
	return &Store{patients: make(map[ident.INS][]consent.ConsentRecord)}
}

func cloneRecord(r consent.ConsentRecord) consent.ConsentRecord {
	r.Consent = r.Consent.Clone()
	if len(r.Directives) == 0 {
		r.Directives = nil
	}
	return r
}

// Consent returns the patient's current consent.
func (s *Store) Consent(ctx context.Context, patient ident.INS) (consent.Consent, error) {
	if err := ctx.Err(); err != nil {
		return consent.Consent{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	h := s.patients[patient]
	if len(h) == 0 {
		return consent.Consent{}, nil
	}
	return cloneRecord(h[len(h)-1]).Consent, nil
}

// UpdateConsent replaces the patient's directives if the current version
// is expected.
func (s *Store) UpdateConsent(ctx context.Context, patient ident.INS, expected int64, directives []consent.Directive, change consent.Change) (consent.ConsentRecord, error) {
	if err := ctx.Err(); err != nil {
		return consent.ConsentRecord{}, err
	}
	if patient.IsZero() {
		return consent.ConsentRecord{}, errors.New("memstore: update consent: no patient")
	}
	if len(directives) > consent.MaxDirectives {
		return consent.ConsentRecord{}, errors.New("memstore: update consent: too many directives")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	h := s.patients[patient]
	current := int64(0)
	if len(h) > 0 {
		current = h[len(h)-1].Version
	}
	if current != expected {
		return consent.ConsentRecord{}, fmt.Errorf("memstore: update consent: current version %d, expected %d: %w", current, expected, consent.ErrStaleVersion)
	}
	rec := consent.ConsentRecord{
		Consent: consent.Consent{Version: expected + 1, Directives: slices.Clone(directives)},
		Change:  consent.Change{Time: change.Time.UTC(), Author: change.Author},
	}
	for i := range rec.Directives {
		d := &rec.Directives[i]
		if !d.From.IsZero() {
			d.From = d.From.UTC()
		}
		if !d.Until.IsZero() {
			d.Until = d.Until.UTC()
		}
	}
	s.patients[patient] = append(h, rec)
	return cloneRecord(rec), nil
}

// ConsentHistory returns the patient's versions from version from.
func (s *Store) ConsentHistory(ctx context.Context, patient ident.INS, from int64, limit int) ([]consent.ConsentRecord, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if from < 1 || limit < 1 {
		return nil, errors.New("memstore: consent history: from and limit must be at least 1")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []consent.ConsentRecord{}
	for _, r := range s.patients[patient] {
		if r.Version >= from && len(out) < limit {
			out = append(out, cloneRecord(r))
		}
	}
	return out, nil
}

// PutRules stores a national rules version.
func (s *Store) PutRules(ctx context.Context, rules *consent.Rules, change consent.Change) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if rules == nil {
		return errors.New("memstore: put rules: no rules")
	}
	// Keep a copy parsed from the exact bytes, as a database would.
	parsed, err := consent.ParseRules(rules.Bytes())
	if err != nil {
		return fmt.Errorf("memstore: put rules: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.rules {
		if r.info.Version == rules.Version() {
			if r.info.Hash == rules.Hash() {
				return nil
			}
			return fmt.Errorf("memstore: put rules version %d: %w", rules.Version(), consent.ErrRulesConflict)
		}
	}
	if n := len(s.rules); n > 0 && s.rules[n-1].info.Version > rules.Version() {
		return fmt.Errorf("memstore: put rules version %d below %d: %w", rules.Version(), s.rules[n-1].info.Version, consent.ErrRulesConflict)
	}
	s.rules = append(s.rules, storedRules{rules: parsed, info: consent.RulesInfo{
		Version: rules.Version(), Hash: rules.Hash(), Change: consent.Change{Time: change.Time.UTC(), Author: change.Author},
	}})
	return nil
}

// Rules returns a national rules version.
func (s *Store) Rules(ctx context.Context, version int64) (*consent.Rules, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.rules {
		if r.info.Version == version {
			return r.rules, nil
		}
	}
	return nil, fmt.Errorf("memstore: national rules version %d: %w", version, consent.ErrNotFound)
}

// LatestRules returns the highest national rules version.
func (s *Store) LatestRules(ctx context.Context) (*consent.Rules, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.rules) == 0 {
		return nil, fmt.Errorf("memstore: national rules: %w", consent.ErrNotFound)
	}
	return s.rules[len(s.rules)-1].rules, nil
}

// ListRules returns every national rules version.
func (s *Store) ListRules(ctx context.Context) ([]consent.RulesInfo, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]consent.RulesInfo, len(s.rules))
	for i, r := range s.rules {
		out[i] = r.info
	}
	return out, nil
}

// RulesOf returns the national rules version d was made with, checked
// against d's hash.
func (s *Store) RulesOf(ctx context.Context, d *consent.Decision) (*consent.Rules, error) {
	r, err := s.Rules(ctx, d.RulesVersion)
	if err != nil {
		return nil, err
	}
	if r.Hash() != d.RulesHash {
		return nil, fmt.Errorf("memstore: national rules version %d of the decision: stored with another hash", d.RulesVersion)
	}
	return r, nil
}
