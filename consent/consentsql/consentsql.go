// Package consentsql keeps patients' consents and the national rules in
// Vigie's database (package ledger/sqldb), beside the ledger's tables, and
// records decisions in the ledger. It implements consent.Store and
// consent.Recorder.
//
// Every change is recorded through the ledger in the same transaction as
// its rows, so that no change escapes the log: a consent change with its
// consent-change event (compare-and-swap on the patient's consent version,
// which the ledger keeps with the patient's chain head), a national-rules
// version with its rules-change event. A decision is recorded with the
// consent version it was made under; the ledger refuses it if that version
// is no longer the patient's. Patients are keyed by the ledger's
// pseudonym: no INS is stored. Each consent version is sealed under the
// patient's data key (ledger.DataKey), so that an erasure, which destroys
// that key, erases it too, even from a copy of the files taken before.
package consentsql

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/vigie-sante/vigie/consent"
	"github.com/vigie-sante/vigie/consent/ident"
	"github.com/vigie-sante/vigie/ledger"
	"github.com/vigie-sante/vigie/ledger/event"
	"github.com/vigie-sante/vigie/ledger/sqldb"
)

// Migrations are the consent store's tables, for sqldb.DB.Migrate.
// consents.consent holds the consent's canonical form sealed under the
// patient's data key (see sealConsent); versions before the sealing wrote
// it in clear, which SealPlaintext converts once.
var Migrations = []sqldb.Migration{{
	Name: "consent/1",
	SQLite: `
CREATE TABLE consents (
  pseudonym     BLOB    NOT NULL,
  version       INTEGER NOT NULL,
  consent       BLOB    NOT NULL,
  author        TEXT    NOT NULL,
  changed_nanos INTEGER NOT NULL,
  PRIMARY KEY (pseudonym, version)
) STRICT, WITHOUT ROWID;
CREATE TABLE national_rules (
  version       INTEGER PRIMARY KEY,
  rules         BLOB    NOT NULL,
  hash          BLOB    NOT NULL,
  author        TEXT    NOT NULL,
  changed_nanos INTEGER NOT NULL
) STRICT;
`,
	PostgreSQL: `
CREATE TABLE consents (
  pseudonym     BYTEA  NOT NULL,
  version       BIGINT NOT NULL,
  consent       BYTEA  NOT NULL,
  author        TEXT   NOT NULL,
  changed_nanos BIGINT NOT NULL,
  PRIMARY KEY (pseudonym, version)
);
CREATE TABLE national_rules (
  version       BIGINT PRIMARY KEY,
  rules         BYTEA  NOT NULL,
  hash          BYTEA  NOT NULL,
  author        TEXT   NOT NULL,
  changed_nanos BIGINT NOT NULL
);
`,
}, {
	// The guard of break-glass reviews: per reviewed access event, the
	// highest standing of its reviews so far (consent.Overrules).
	Name: "consent/break-glass-reviews",
	SQLite: `
CREATE TABLE break_glass_reviews (
  leaf_index INTEGER PRIMARY KEY,
  pseudonym  BLOB    NOT NULL,
  standing   INTEGER NOT NULL
) STRICT;
CREATE INDEX break_glass_reviews_pseudonym ON break_glass_reviews (pseudonym);
`,
	PostgreSQL: `
CREATE TABLE break_glass_reviews (
  leaf_index BIGINT PRIMARY KEY,
  pseudonym  BYTEA  NOT NULL,
  standing   BIGINT NOT NULL
);
CREATE INDEX break_glass_reviews_pseudonym ON break_glass_reviews (pseudonym);
`,
}}

// Store is consent.Store and consent.Recorder on Vigie's database and
// ledger. It is safe for concurrent use.
type Store struct {
	db     *sqldb.DB
	ledger *ledger.Ledger

	mu sync.Mutex
	// rules caches the national rules versions decisions were made with:
	// a version is immutable (PutRules), so it is read once.
	rules map[int64]*consent.Rules
}

var (
	_ consent.Store    = (*Store)(nil)
	_ consent.Recorder = (*Store)(nil)
)

// New returns the store on db, whose schema must include Migrations and
// the ledger's, recording through l (on the same database).
func New(db *sqldb.DB, l *ledger.Ledger) *Store { return &Store{db: db, ledger: l} }

// Consent implements consent.Store.
func (s *Store) Consent(ctx context.Context, patient ident.INS) (consent.Consent, error) {
	p := s.ledger.Pseudonym(patient)
	var c consent.Consent
	err := s.db.Read(ctx, func(ctx context.Context, tx sqldb.Tx) error {
		var b, wrapped []byte
		var version int64
		err := tx.QueryRow(ctx, "SELECT c.version, c.consent, p.wrapped_key FROM consents c JOIN patients p ON p.pseudonym = c.pseudonym WHERE c.pseudonym = $1 ORDER BY c.version DESC LIMIT 1", p[:]).Scan(&version, &b, &wrapped)
		if errors.Is(err, sqldb.ErrNoRows) {
			// No consent stored: the default one, at the version the
			// ledger holds (0 for a new patient; after an erasure, which
			// deleted the consents and raised the version, the next one).
			c = consent.Consent{}
			err = tx.QueryRow(ctx, "SELECT consent_version FROM patients WHERE pseudonym = $1", p[:]).Scan(&c.Version)
			if errors.Is(err, sqldb.ErrNoRows) {
				return nil
			}
			return err
		}
		if err != nil {
			return err
		}
		c, err = s.openConsent(p, version, wrapped, b)
		return err
	})
	if err != nil {
		return consent.Consent{}, fmt.Errorf("read consent: %w", err)
	}
	return c, nil
}

// UpdateConsent implements consent.Store: the new version and its
// consent-change event commit together, or neither.
func (s *Store) UpdateConsent(ctx context.Context, patient ident.INS, expected int64, directives []consent.Directive, change consent.Change) (consent.ConsentRecord, error) {
	c := consent.Consent{Version: expected + 1, Directives: append([]consent.Directive(nil), directives...)}
	for i := range c.Directives {
		d := &c.Directives[i]
		if !d.From.IsZero() {
			d.From = d.From.UTC().Truncate(time.Second)
		}
		if !d.Until.IsZero() {
			d.Until = d.Until.UTC().Truncate(time.Second)
		}
	}
	body, err := consent.FormatConsent(c)
	if err != nil {
		return consent.ConsentRecord{}, err
	}
	payload, err := consent.FormatConsentChangeRecord(c, change.Author)
	if err != nil {
		return consent.ConsentRecord{}, err
	}
	p := s.ledger.Pseudonym(patient)
	change.Time = change.Time.UTC().Truncate(time.Second)
	_, err = s.ledger.Record(ctx, ledger.Entry{
		Kind:          event.KindConsentChange,
		Patient:       patient,
		Service:       change.Author,
		Payload:       payload,
		ConsentChange: &ledger.ConsentChange{Expected: expected, Next: c.Version},
		Apply: func(ctx context.Context, stx ledger.StoreTx) error {
			dk, err := ledger.EntryDataKey(stx)
			if err != nil {
				return err
			}
			sealed, err := dk.Seal(body, consentAD(p, c.Version))
			if err != nil {
				return err
			}
			_, err = stx.SQL().Exec(ctx, "INSERT INTO consents (pseudonym, version, consent, author, changed_nanos) VALUES ($1, $2, $3, $4, $5)",
				p[:], c.Version, sealed, change.Author, change.Time.UnixNano())
			if sqldb.IsUniqueViolation(err) {
				return consent.ErrStaleVersion
			}
			if err != nil {
				return err
			}
			return notifyChange(ctx, stx.SQL())
		},
	})
	if errors.Is(err, ledger.ErrConsentChanged) || errors.Is(err, consent.ErrStaleVersion) {
		return consent.ConsentRecord{}, fmt.Errorf("update consent: %w", consent.ErrStaleVersion)
	}
	if err != nil {
		return consent.ConsentRecord{}, fmt.Errorf("update consent: %w", err)
	}
	return consent.ConsentRecord{Consent: c, Change: change}, nil
}

// ConsentHistory implements consent.Store.
func (s *Store) ConsentHistory(ctx context.Context, patient ident.INS, from int64, limit int) ([]consent.ConsentRecord, error) {
	if from < 1 || limit < 1 {
		return nil, fmt.Errorf("consent history: from %d and limit %d must be at least 1", from, limit)
	}
	p := s.ledger.Pseudonym(patient)
	var out []consent.ConsentRecord
	err := s.db.Read(ctx, func(ctx context.Context, tx sqldb.Tx) error {
		out = nil
		rows, err := tx.Query(ctx, "SELECT c.version, c.consent, c.author, c.changed_nanos, p.wrapped_key FROM consents c JOIN patients p ON p.pseudonym = c.pseudonym WHERE c.pseudonym = $1 AND c.version >= $2 ORDER BY c.version LIMIT $3",
			p[:], from, int64(limit))
		if err != nil {
			return err
		}
		defer rows.Close()
		var dk *ledger.DataKey
		for rows.Next() {
			var b, wrapped []byte
			var version int64
			var r consent.ConsentRecord
			var nanos int64
			if err := rows.Scan(&version, &b, &r.Author, &nanos, &wrapped); err != nil {
				return err
			}
			if dk == nil { // one patient: one key
				if dk, err = s.ledger.DataKey(p, wrapped); err != nil {
					return err
				}
			}
			plain, err := dk.Open(b, consentAD(p, version))
			if err != nil {
				return fmt.Errorf("consent version %d: %w", version, err)
			}
			if r.Consent, err = consent.ParseConsent(plain); err != nil {
				return err
			}
			r.Time = time.Unix(0, nanos).UTC()
			out = append(out, r)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("read consent history: %w", err)
	}
	return out, nil
}

// errSameRules tells PutRules, from inside the transaction, that the
// version is stored already with the same bytes: nothing to record.
var errSameRules = errors.New("rules already stored")

// PutRules implements consent.Store: the version and its rules-change
// event commit together.
func (s *Store) PutRules(ctx context.Context, rules *consent.Rules, change consent.Change) error {
	payload, err := consent.FormatRulesChangeRecord(rules, change.Author)
	if err != nil {
		return err
	}
	h := rules.Hash()
	_, err = s.ledger.Record(ctx, ledger.Entry{
		Kind:    event.KindRulesChange,
		Service: change.Author,
		Payload: payload,
		Apply: func(ctx context.Context, stx ledger.StoreTx) error {
			tx := stx.SQL()
			var latest int64
			var hash []byte
			err := tx.QueryRow(ctx, "SELECT version, hash FROM national_rules ORDER BY version DESC LIMIT 1").Scan(&latest, &hash)
			switch {
			case errors.Is(err, sqldb.ErrNoRows):
			case err != nil:
				return err
			case latest == rules.Version() && string(hash) == string(h[:]):
				return errSameRules
			case latest >= rules.Version():
				return consent.ErrRulesConflict
			}
			_, err = tx.Exec(ctx, "INSERT INTO national_rules (version, rules, hash, author, changed_nanos) VALUES ($1, $2, $3, $4, $5)",
				rules.Version(), rules.Bytes(), h[:], change.Author, change.Time.UTC().UnixNano())
			if err != nil {
				return err
			}
			return notifyChange(ctx, tx)
		},
	})
	switch {
	case errors.Is(err, errSameRules):
		return nil
	case errors.Is(err, consent.ErrRulesConflict):
		return fmt.Errorf("put rules %d: %w", rules.Version(), consent.ErrRulesConflict)
	case err != nil:
		return fmt.Errorf("put rules %d: %w", rules.Version(), err)
	}
	return nil
}

func (s *Store) rulesWhere(ctx context.Context, where string, args ...any) (*consent.Rules, error) {
	var b []byte
	err := s.db.Read(ctx, func(ctx context.Context, tx sqldb.Tx) error {
		return tx.QueryRow(ctx, "SELECT rules FROM national_rules "+where, args...).Scan(&b)
	})
	if errors.Is(err, sqldb.ErrNoRows) {
		return nil, consent.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("read rules: %w", err)
	}
	return consent.ParseRules(b)
}

// Rules implements consent.Store.
func (s *Store) Rules(ctx context.Context, version int64) (*consent.Rules, error) {
	return s.rulesWhere(ctx, "WHERE version = $1", version)
}

// LatestRules implements consent.Store.
func (s *Store) LatestRules(ctx context.Context) (*consent.Rules, error) {
	return s.rulesWhere(ctx, "ORDER BY version DESC LIMIT 1")
}

// ListRules implements consent.Store.
func (s *Store) ListRules(ctx context.Context) ([]consent.RulesInfo, error) {
	var out []consent.RulesInfo
	err := s.db.Read(ctx, func(ctx context.Context, tx sqldb.Tx) error {
		out = []consent.RulesInfo{}
		rows, err := tx.Query(ctx, "SELECT version, hash, author, changed_nanos FROM national_rules ORDER BY version")
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var r consent.RulesInfo
			var h []byte
			var nanos int64
			if err := rows.Scan(&r.Version, &h, &r.Author, &nanos); err != nil {
				return err
			}
			copy(r.Hash[:], h)
			r.Time = time.Unix(0, nanos).UTC()
			out = append(out, r)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("list rules: %w", err)
	}
	return out, nil
}

// RulesOf returns the national rules version decision d was made with,
// which must be stored with d's hash. Versions are cached: a version is
// immutable.
func (s *Store) RulesOf(ctx context.Context, d *consent.Decision) (*consent.Rules, error) {
	s.mu.Lock()
	r := s.rules[d.RulesVersion]
	s.mu.Unlock()
	if r == nil {
		var err error
		if r, err = s.Rules(ctx, d.RulesVersion); err != nil {
			return nil, fmt.Errorf("national rules version %d of the decision: %w", d.RulesVersion, err)
		}
		s.mu.Lock()
		if s.rules == nil {
			s.rules = map[int64]*consent.Rules{}
		}
		s.rules[d.RulesVersion] = r
		s.mu.Unlock()
	}
	if r.Hash() != d.RulesHash {
		return nil, fmt.Errorf("national rules version %d of the decision: stored with another hash", d.RulesVersion)
	}
	return r, nil
}

// RecordDecision implements consent.Recorder: the access event carries the
// whole request but the INS and the whole decision (consent's access
// record), with the consent version it was decided under, which the ledger
// checks in its transaction.
//
// The event is flagged break-glass (the ledger's search column) when the
// request's purpose is an emergency purpose of the national rules the
// decision was made with ([consent.Rules.Emergency]).
func (s *Store) RecordDecision(ctx context.Context, key consent.RequestKey, req *consent.Request, d *consent.Decision) (consent.Receipt, error) {
	payload, err := consent.FormatAccessRecord(req, d)
	if err != nil {
		return consent.Receipt{}, fmt.Errorf("record decision: %w", err)
	}
	rules, err := s.RulesOf(ctx, d)
	if err != nil {
		return consent.Receipt{}, fmt.Errorf("record decision: %w", err)
	}
	rec, err := s.ledger.Record(ctx, ledger.Entry{
		Kind:           event.KindAccess,
		Patient:        req.Patient,
		Service:        key.Service,
		Payload:        payload,
		Key:            ledger.Key{Service: key.Service, RequestID: key.RequestID},
		CheckConsent:   true,
		ConsentVersion: d.ConsentVersion,
		Actor:          req.Actor.RPPS.String(),
		Organization:   req.Actor.Organization.String(),
		BreakGlass:     rules.Emergency(req.Purpose),
		Apply: func(ctx context.Context, stx ledger.StoreTx) error {
			return checkRulesVersion(ctx, stx.SQL(), d.RulesVersion)
		},
	})
	if errors.Is(err, ledger.ErrConsentChanged) {
		return consent.Receipt{}, fmt.Errorf("record decision: %w", consent.ErrConsentChanged)
	}
	if errors.Is(err, consent.ErrRulesChanged) {
		return consent.Receipt{}, fmt.Errorf("record decision: %w", consent.ErrRulesChanged)
	}
	if errors.Is(err, ledger.ErrKeyReused) {
		return consent.Receipt{}, fmt.Errorf("record decision: %w", consent.ErrRequestReused)
	}
	if errors.Is(err, ledger.ErrRequestErased) {
		return consent.Receipt{}, fmt.Errorf("record decision: %w", consent.ErrRequestErased)
	}
	if errors.Is(err, ledger.ErrRequestExpired) {
		return consent.Receipt{}, fmt.Errorf("record decision: %w", consent.ErrRequestExpired)
	}
	if err != nil {
		return consent.Receipt{}, fmt.Errorf("record decision: %w", err)
	}
	decision := *d
	if rec.Duplicate {
		// A retry: the answer is the first decision, as recorded.
		b, err := event.Parse(rec.Body)
		if err != nil {
			return consent.Receipt{}, fmt.Errorf("record decision: recorded body: %w", err)
		}
		var first consent.Request
		if first, decision, err = consent.ParseAccessRecord(b.Payload); err != nil {
			return consent.Receipt{}, fmt.Errorf("record decision: recorded decision: %w", err)
		}
		if !consent.SameRequest(&first, req) {
			return consent.Receipt{}, fmt.Errorf("record decision: %w", consent.ErrRequestReused)
		}
	}
	return consent.Receipt{Decision: decision, Index: int64(rec.Index), Commitment: rec.Commitment, Note: rec.Receipt}, nil
}

// checkRulesVersion is the national rules' guard of a decision, run in
// the transaction that records it (invariant 4 of the design, as for the
// consent version): a decision made under version v is recorded only if v
// is still the latest version stored. PutRules inserts a version in the
// ledger's transaction too, and both transactions move the ledger's next
// index (one row, compare-and-swap), so on PostgreSQL at SERIALIZABLE one
// of two concurrent ones is retried and reads the other's outcome: a
// decision under v1 never commits after v2 did, and in the log every
// access event after a rules-change event names that version or a later
// one.
func checkRulesVersion(ctx context.Context, tx sqldb.Tx, version int64) error {
	var latest int64
	err := tx.QueryRow(ctx, "SELECT version FROM national_rules ORDER BY version DESC LIMIT 1").Scan(&latest)
	if err != nil {
		return fmt.Errorf("read the latest national rules version: %w", err)
	}
	if latest != version {
		return fmt.Errorf("decided under national rules version %d, version %d is in force: %w", version, latest, consent.ErrRulesChanged)
	}
	return nil
}

// EraseRows returns the deletion of a patient's consents, to run in the
// ledger's erasure transaction (ledger.ErasePseudonym): the directives go
// with the patient's data key. It notifies the other nodes' change feeds
// (Feed) in that transaction.
func EraseRows(pseudonym event.Hash) func(ctx context.Context, tx sqldb.Tx) error {
	return func(ctx context.Context, tx sqldb.Tx) error {
		if _, err := tx.Exec(ctx, "DELETE FROM consents WHERE pseudonym = $1", pseudonym[:]); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "DELETE FROM break_glass_reviews WHERE pseudonym = $1", pseudonym[:]); err != nil {
			return err
		}
		return notifyChange(ctx, tx)
	}
}

// RecordReview records r, the review of the break-glass access event
// access (read by the caller), in the patient's chain, idempotently by
// key: a retry gets the first event back (Duplicate), and key used for
// another review is consent.ErrRequestReused. The review is recorded only
// if it counts ([consent.Overrules] over the access's reviews so far,
// checked in the transaction that records it); otherwise RecordReview
// returns consent.ErrReviewed and records nothing.
func (s *Store) RecordReview(ctx context.Context, access ledger.EventRow, r consent.ReviewRecord, key ledger.Key) (*ledger.Recorded, error) {
	r.Event, r.LeafIndex = access.Commitment.String(), access.Index
	payload, err := consent.FormatReviewRecord(r)
	if err != nil {
		return nil, fmt.Errorf("record review: %w", err)
	}
	standing := consent.ReviewerStanding(r.Reviewer)
	p := access.Pseudonym
	// The reviews recorded before the guard table existed have no guard
	// row: their standing comes from the events themselves.
	recorded, err := s.recordedStanding(ctx, access)
	if err != nil {
		return nil, fmt.Errorf("record review: %w", err)
	}
	rec, err := s.ledger.Record(ctx, ledger.Entry{
		Kind: event.KindBreakGlassReview, Pseudonym: p, Service: r.Reviewer, Payload: payload,
		Key: key, Organization: access.Organization,
		Apply: func(ctx context.Context, stx ledger.StoreTx) error {
			tx := stx.SQL()
			var prev int64
			err := tx.QueryRow(ctx, "SELECT standing FROM break_glass_reviews WHERE leaf_index = $1", int64(access.Index)).Scan(&prev)
			switch {
			case errors.Is(err, sqldb.ErrNoRows):
				if !consent.Overrules(standing, recorded) {
					return consent.ErrReviewed
				}
				_, err = tx.Exec(ctx, "INSERT INTO break_glass_reviews (leaf_index, pseudonym, standing) VALUES ($1, $2, $3)", int64(access.Index), p[:], int64(standing))
				if sqldb.IsUniqueViolation(err) {
					return consent.ErrReviewed // a concurrent first review won
				}
				return err
			case err != nil:
				return err
			case !consent.Overrules(standing, consent.Standing(prev)):
				return consent.ErrReviewed
			}
			// Compare-and-swap on the standing read: a concurrent review
			// that counted since makes this one be judged again.
			n, err := tx.Exec(ctx, "UPDATE break_glass_reviews SET standing = $1 WHERE leaf_index = $2 AND standing = $3", int64(standing), int64(access.Index), prev)
			if err == nil && n != 1 {
				return consent.ErrReviewed
			}
			return err
		},
	})
	if errors.Is(err, ledger.ErrKeyReused) {
		return nil, fmt.Errorf("record review: %w", consent.ErrRequestReused)
	}
	if err != nil {
		return nil, fmt.Errorf("record review: %w", err)
	}
	if rec.Duplicate {
		// A retry: the same review, byte for byte (the format is
		// canonical), or a key used again for another review.
		b, err := event.Parse(rec.Body)
		if err != nil {
			return nil, fmt.Errorf("record review: recorded body: %w", err)
		}
		if !bytes.Equal(b.Payload, payload) {
			return nil, fmt.Errorf("record review: %w", consent.ErrRequestReused)
		}
	}
	return rec, nil
}

// recordedStanding returns the standing of the final review
// (consent.FinalReview) of the access among the review events of its
// patient, StandingNone if none counts.
func (s *Store) recordedStanding(ctx context.Context, access ledger.EventRow) (consent.Standing, error) {
	p := access.Pseudonym
	var reviews []consent.ReviewRecord
	for after := int64(-1); ; {
		rows, err := s.ledger.Search(ctx, ledger.SearchFilter{Pseudonym: &p, Kind: event.KindBreakGlassReview}, after, 500)
		if err != nil {
			return consent.StandingNone, err
		}
		for _, row := range rows {
			after = int64(row.Index)
			_, body, err := s.ledger.OpenEvent(ctx, row)
			if err != nil {
				return consent.StandingNone, err
			}
			b, err := event.Parse(body)
			if err != nil {
				return consent.StandingNone, fmt.Errorf("review event %d: %w", row.Index, err)
			}
			r, err := consent.ParseReviewRecord(b.Payload)
			if err != nil {
				return consent.StandingNone, fmt.Errorf("review event %d: %w", row.Index, err)
			}
			if r.Event == access.Commitment.String() {
				reviews = append(reviews, r)
			}
		}
		if len(rows) < 500 {
			break
		}
	}
	final, ok := consent.FinalReview(reviews)
	if !ok {
		return consent.StandingNone, nil
	}
	return consent.ReviewerStanding(final.Reviewer), nil
}
