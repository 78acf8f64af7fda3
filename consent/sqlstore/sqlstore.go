// Package sqlstore keeps patients' consents and the national rules in
// Vigie's database (package ledger/sqldb), beside the ledger's tables, and
// records decisions in the ledger. It implements consent.Store and
// consent.Recorder.
//
// Every change is recorded through the ledger in the same transaction as
// its rows (invariant 4): a consent change with its consent-change event
// (compare-and-swap on the patient's consent version, which the ledger
// keeps with the patient's chain head), a national-rules version with its
// rules-change event. A decision is recorded with the consent version it
// was made under; the ledger refuses it if that version is no longer the
// patient's. Patients are keyed by the ledger's pseudonym: no INS is
// stored. Each consent version is sealed under the patient's data key
// (ledger.DataKey), so that an erasure, which destroys that key, erases it
// too, even from a copy of the files taken before.
package sqlstore

import (
	"context"
	"errors"
	"fmt"
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
}}

// Store is consent.Store and consent.Recorder on Vigie's database and
// ledger. It is safe for concurrent use.
type Store struct {
	db     *sqldb.DB
	ledger *ledger.Ledger
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
			return err
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
			return err
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

// RecordDecision implements consent.Recorder: the access event carries the
// whole request but the INS and the whole decision (consent's access
// record), with the consent version it was decided under, which the ledger
// checks in its transaction.
func (s *Store) RecordDecision(ctx context.Context, key consent.RequestKey, req *consent.Request, d *consent.Decision) (consent.Receipt, error) {
	payload, err := consent.FormatAccessRecord(req, d)
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
		Organisation:   req.Actor.Organization.String(),
		BreakGlass:     req.Purpose == consent.PurposeBreakGlass || req.Purpose == consent.PurposeEmergencyTreatment,
	})
	if errors.Is(err, ledger.ErrConsentChanged) {
		return consent.Receipt{}, fmt.Errorf("record decision: %w", consent.ErrConsentChanged)
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

// EraseRows returns the deletion of a patient's consents, to run in the
// ledger's erasure transaction (ledger.ErasePseudonym): the directives go
// with the patient's data key.
func EraseRows(pseudonym event.Hash) func(ctx context.Context, tx sqldb.Tx) error {
	return func(ctx context.Context, tx sqldb.Tx) error {
		_, err := tx.Exec(ctx, "DELETE FROM consents WHERE pseudonym = $1", pseudonym[:])
		return err
	}
}
