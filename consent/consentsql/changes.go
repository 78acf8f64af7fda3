package consentsql

import (
	"context"
	"fmt"
	"time"

	"github.com/vigie-sante/vigie/consent"
	"github.com/vigie-sante/vigie/consent/ident"
	"github.com/vigie-sante/vigie/ledger"
	"github.com/vigie-sante/vigie/ledger/event"
	"github.com/vigie-sante/vigie/ledger/sqldb"
)

// changesChannel is the PostgreSQL notification channel of consent
// changes, rules publications and erasures. Its notifications carry
// nothing: the feed reads what changed from the ledger.
const changesChannel = "vigie_consent_changes"

// maxChangesPerPoll bounds the events of each kind a poll reads; more
// than that since the last poll is reported as Changes.All.
const maxChangesPerPoll = 1000

// FeedOptions configure [Store.Changes]. The zero value is valid.
type FeedOptions struct {
	// Poll is how often the feed reads the changes without being woken:
	// where LISTEN/NOTIFY does not exist (SQLite, CockroachDB) it bounds
	// how long a change takes to reach the other nodes; on PostgreSQL,
	// where a notification wakes the feed at once, it is the bound if
	// notifications are lost. Default 1s.
	Poll time.Duration
	// NoListen makes the feed poll only, even on PostgreSQL.
	NoListen bool
	// Listen configures the LISTEN connection on PostgreSQL.
	Listen sqldb.ListenOptions
}

// Feed is consent.ChangeFeed on Vigie's database: the changes are the
// ledger's consent-change, erasure and rules-change events, read in log
// order after the last index read. Each such change notifies
// changesChannel in its transaction (PostgreSQL), which wakes every
// node's feed; each feed also reads every Poll, and once after each
// (re)connection of its LISTEN connection, since notifications sent while
// it was disconnected are lost.
type Feed struct {
	s    *Store
	opts FeedOptions
}

var _ consent.ChangeFeed = (*Feed)(nil)

// Changes returns the store's change feed, for consent.Config.Changes.
func (s *Store) Changes(opts FeedOptions) *Feed {
	if opts.Poll <= 0 {
		opts.Poll = time.Second
	}
	return &Feed{s: s, opts: opts}
}

// PatientKey implements consent.ChangeFeed: the ledger's pseudonym.
func (f *Feed) PatientKey(p ident.INS) consent.PatientKey {
	return consent.PatientKey(f.s.ledger.Pseudonym(p))
}

// Watch implements consent.ChangeFeed. It relies on the ledger's indices
// being assigned gap-free in commit order (a compare-and-swap on the next
// index, in the transaction that records): every event below the next
// index read is committed, so reading after the last index read misses
// nothing.
func (f *Feed) Watch(ctx context.Context, fn func(consent.Changes) error) error {
	wake := make(chan struct{}, 1)
	if !f.opts.NoListen && f.s.db.Dialect() == sqldb.PostgreSQLDialect {
		lctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			f.s.db.Listen(lctx, changesChannel, f.opts.Listen, func(bool) {
				// A notification, or a new connection after which those
				// lost meanwhile must be read: either way, read.
				select {
				case wake <- struct{}{}:
				default:
				}
			})
		}()
		defer func() { cancel(); <-done }()
	}
	tick := time.NewTicker(f.opts.Poll)
	defer tick.Stop()
	after, all := int64(-1), true
	for {
		if all {
			if next, err := f.next(ctx); err == nil {
				after = next - 1
				all = fn(consent.Changes{All: true}) != nil
			}
		} else if c, next, err := f.read(ctx, after); err == nil {
			switch {
			case c.All:
				all = true
				continue
			case c.Rules || len(c.Patients) > 0:
				all = fn(c) != nil
			}
			after = next - 1
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-wake:
		case <-tick.C:
		}
	}
}

// next returns the ledger's next index: every event below it is
// committed.
func (f *Feed) next(ctx context.Context) (int64, error) {
	st, err := f.s.ledger.Stats(ctx)
	return int64(st.Recorded), err
}

// read returns the changes recorded after index after, and the next index
// they were read up to.
func (f *Feed) read(ctx context.Context, after int64) (consent.Changes, int64, error) {
	next, err := f.next(ctx)
	if err != nil || next-1 == after {
		return consent.Changes{}, next, err
	}
	var c consent.Changes
	for _, kind := range []event.Kind{event.KindConsentChange, event.KindErasure, event.KindRulesChange} {
		rows, err := f.s.ledger.Search(ctx, ledger.SearchFilter{Kind: kind}, after, maxChangesPerPoll)
		if err != nil {
			return consent.Changes{}, 0, err
		}
		if len(rows) == maxChangesPerPoll {
			return consent.Changes{All: true}, next, nil
		}
		for _, r := range rows {
			switch {
			case int64(r.Index) >= next:
				// Committed after next was read: the next read has it.
			case kind == event.KindRulesChange:
				c.Rules = true
			default:
				c.Patients = append(c.Patients, consent.PatientKey(r.Pseudonym))
			}
		}
	}
	return c, next, nil
}

// notifyChange tells the other nodes' feeds, when tx commits, that a
// consent, the rules or an erasure changed.
func notifyChange(ctx context.Context, tx sqldb.Tx) error {
	if err := sqldb.Notify(ctx, tx, changesChannel); err != nil {
		return fmt.Errorf("notify the change: %w", err)
	}
	return nil
}
