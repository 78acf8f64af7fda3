// Package enrolment links a patient to their sign-in at an identity
// provider that gives no INS (FranceConnect's per-service sub), once,
// through a one-time code the operator issues and delivers out of band.
//
// The operator issues a code for a patient ([Issue]); the patient signs in
// at the provider and types the code; [Store.Redeem] then links the pair
// (issuer, sub) to the patient and records the link in the patient's chain
// as an event of kind enrolment, in the same transaction (a link and its
// event commit together or not at all). Afterwards [Store.Patient] finds
// the patient of the pair. The operator removes a link with
// [Store.Revoke], recorded the same way.
//
// What is kept, and where:
//   - a code: its hash (the code has 80 random bits, so an unkeyed hash
//     cannot be reversed) and the INS sealed under a key derived from the
//     code itself, so that the table alone names no patient;
//   - a link: the keyed hash of (issuer, sub) under the pseudonym key
//     ([ledger.Ledger.SubjectHash]), the patient's pseudonym, the issuer,
//     and the INS sealed under the patient's data key (an erasure shreds
//     it);
//   - in the log: the issuer and the keyed hash, never the sub.
//
// docs/identity.md describes the model; the payload format is
// vigie.enrolment.v1 (docs/formats.md).
package enrolment

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/vigie-sante/vigie/consent/ident"
	"github.com/vigie-sante/vigie/ledger"
	"github.com/vigie-sante/vigie/ledger/event"
	"github.com/vigie-sante/vigie/ledger/sqldb"
)

// Migrations are the enrolment tables, for sqldb.DB.Migrate.
var Migrations = []sqldb.Migration{{
	Name: "enrolment/1",
	SQLite: `
CREATE TABLE enrolment_codes (
  code_hash     BLOB    PRIMARY KEY,
  sealed_ins    BLOB    NOT NULL,
  issued_nanos  INTEGER NOT NULL,
  expires_nanos INTEGER NOT NULL,
  used_nanos    INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
CREATE TABLE enrolments (
  subject_hash   BLOB    PRIMARY KEY,
  pseudonym      BLOB    NOT NULL,
  issuer         TEXT    NOT NULL,
  sealed_ins     BLOB    NOT NULL,
  enrolled_nanos INTEGER NOT NULL,
  UNIQUE (pseudonym, issuer)
) STRICT, WITHOUT ROWID;
`,
	PostgreSQL: `
CREATE TABLE enrolment_codes (
  code_hash     BYTEA  PRIMARY KEY,
  sealed_ins    BYTEA  NOT NULL,
  issued_nanos  BIGINT NOT NULL,
  expires_nanos BIGINT NOT NULL,
  used_nanos    BIGINT NOT NULL
);
CREATE TABLE enrolments (
  subject_hash   BYTEA  PRIMARY KEY,
  pseudonym      BYTEA  NOT NULL,
  issuer         TEXT   NOT NULL,
  sealed_ins     BYTEA  NOT NULL,
  enrolled_nanos BIGINT NOT NULL,
  UNIQUE (pseudonym, issuer)
);
`,
}}

// Errors callers branch on with errors.Is. None of them, nor any other
// error of the package, quotes a code, a sub or an INS.
var (
	// ErrCodeUnknown: the code is not one this service issued (mistyped,
	// or purged after it expired).
	ErrCodeUnknown = errors.New("enrolment code unknown: check it, or ask for a new one")
	// ErrCodeUsed: the code enrolled a sign-in already; a code works once.
	ErrCodeUsed = errors.New("enrolment code already used: a code works once, ask for a new one")
	// ErrCodeExpired: the code's time ran out.
	ErrCodeExpired = errors.New("enrolment code expired: ask for a new one")
	// ErrAlreadyEnrolled: this sign-in (issuer, sub) is linked to a
	// patient already; the operator revokes the link first.
	ErrAlreadyEnrolled = errors.New("this sign-in is enrolled already")
	// ErrPatientEnrolled: the patient has another sign-in at this issuer
	// linked already; the operator revokes it first.
	ErrPatientEnrolled = errors.New("the patient is enrolled with another sign-in at this issuer")
	// ErrNotEnrolled: the sign-in (or, for Revoke, the patient) is linked
	// to no patient (to no sign-in).
	ErrNotEnrolled = errors.New("not enrolled")
)

// Format is the payload format of enrolment events.
const Format = "vigie.enrolment.v1"

// The actions of an enrolment event.
const (
	ActionLink   = "link"
	ActionUnlink = "unlink"
)

// MaxIssuerLen bounds an issuer's URL, in bytes.
const MaxIssuerLen = 512

// Record is the payload of an enrolment event: which sign-in was linked
// to (or unlinked from) the patient of the chain. Subject is the keyed
// hash of (Issuer, sub), never the sub.
type Record struct {
	Action  string     `json:"action"`
	Issuer  string     `json:"issuer"`
	Subject event.Hash `json:"-"`
}

// recordJSON is Record's one byte form, fields in this order.
type recordJSON struct {
	Format  string `json:"format"`
	Action  string `json:"action"`
	Issuer  string `json:"issuer"`
	Subject string `json:"subject"`
}

// FormatRecord returns the payload of r: compact JSON, fields in a fixed
// order, so that ParseRecord(FormatRecord(r)) formats back to the same
// bytes.
func FormatRecord(r Record) ([]byte, error) {
	if err := r.check(); err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(recordJSON{Format: Format, Action: r.Action, Issuer: r.Issuer, Subject: r.Subject.String()}); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// ParseRecord parses the payload of an enrolment event, strictly: its
// format, known fields only, and the bytes FormatRecord gives. Errors name
// the field, never its value.
func ParseRecord(p []byte) (Record, error) {
	dec := json.NewDecoder(bytes.NewReader(p))
	dec.DisallowUnknownFields()
	var j recordJSON
	if err := dec.Decode(&j); err != nil {
		return Record{}, errors.New("enrolment record: not a JSON object of known fields")
	}
	if j.Format != Format {
		return Record{}, errors.New("enrolment record: field format: want " + Format)
	}
	h, err := event.ParseHash(j.Subject)
	if err != nil {
		return Record{}, errors.New("enrolment record: field subject: want 64 lowercase hexadecimal digits")
	}
	r := Record{Action: j.Action, Issuer: j.Issuer, Subject: h}
	again, err := FormatRecord(r)
	if err != nil {
		return Record{}, err
	}
	if !bytes.Equal(again, p) {
		return Record{}, errors.New("enrolment record: not in canonical form")
	}
	return r, nil
}

func (r Record) check() error {
	switch {
	case r.Action != ActionLink && r.Action != ActionUnlink:
		return fmt.Errorf("enrolment record: field action: want %q or %q", ActionLink, ActionUnlink)
	case r.Issuer == "" || len(r.Issuer) > MaxIssuerLen:
		return fmt.Errorf("enrolment record: field issuer: want 1 to %d bytes", MaxIssuerLen)
	case r.Subject.IsZero():
		return errors.New("enrolment record: field subject: missing")
	}
	for i := 0; i < len(r.Issuer); i++ {
		if c := r.Issuer[i]; c <= ' ' || c > '~' || c == '"' || c == '\\' {
			return errors.New("enrolment record: field issuer: want printable ASCII without spaces or quotes")
		}
	}
	return nil
}

// Code is a one-time enrolment code, as given to the patient.
type Code struct {
	// Text is the code: 16 characters of Crockford's base32 in four
	// groups (XXXX-XXXX-XXXX-XXXX), 80 random bits.
	Text    string
	Expires time.Time
}

// DefaultTTL is how long a code lasts when IssueOptions.TTL is zero.
const DefaultTTL = 72 * time.Hour

// MaxTTL is the longest a code may last.
const MaxTTL = 30 * 24 * time.Hour

// IssueOptions are the options of Issue.
type IssueOptions struct {
	// TTL is how long the code lasts. Default DefaultTTL; at most MaxTTL.
	TTL time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Rand is the code's randomness. Default crypto/rand.
	Rand io.Reader
}

// Issue makes a one-time code for patient, to deliver out of band, and
// stores its hash with the INS sealed under a key derived from the code.
// It needs the database only (no ledger: nothing is recorded until the
// code is used), so the operator's command can run beside the service.
// Codes expired for a day are purged.
func Issue(ctx context.Context, db *sqldb.DB, patient ident.INS, opts IssueOptions) (Code, error) {
	if patient.IsZero() {
		return Code{}, errors.New("issue enrolment code: no patient")
	}
	if opts.TTL == 0 {
		opts.TTL = DefaultTTL
	}
	if opts.TTL < 0 || opts.TTL > MaxTTL {
		return Code{}, fmt.Errorf("issue enrolment code: ttl: want up to %s", MaxTTL)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Rand == nil {
		opts.Rand = rand.Reader
	}
	var raw [codeBytes]byte
	if _, err := io.ReadFull(opts.Rand, raw[:]); err != nil {
		return Code{}, fmt.Errorf("issue enrolment code: %w", err)
	}
	text := encodeCode(raw)
	id, key := codeKeys(strings.ReplaceAll(text, "-", ""))
	sealed, err := sealWith(key, opts.Rand, []byte(patient.Canonical()), id[:])
	if err != nil {
		return Code{}, fmt.Errorf("issue enrolment code: %w", err)
	}
	now := opts.Now()
	c := Code{Text: text, Expires: now.Add(opts.TTL)}
	err = db.ReadWrite(ctx, func(ctx context.Context, tx sqldb.Tx) error {
		if _, err := tx.Exec(ctx, "DELETE FROM enrolment_codes WHERE expires_nanos < $1", now.Add(-24*time.Hour).UnixNano()); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, "INSERT INTO enrolment_codes (code_hash, sealed_ins, issued_nanos, expires_nanos, used_nanos) VALUES ($1, $2, $3, $4, 0)",
			id[:], sealed, now.UnixNano(), c.Expires.UnixNano())
		return err
	})
	if err != nil {
		return Code{}, fmt.Errorf("issue enrolment code: %w", err)
	}
	return c, nil
}

// codeBytes is the randomness of a code: 80 bits, 16 base32 characters.
const codeBytes = 10

// crockford is Crockford's base32 alphabet (no I, L, O, U).
const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

func encodeCode(raw [codeBytes]byte) string {
	var b strings.Builder
	var acc uint64
	bits := 0
	n := 0
	for _, x := range raw {
		acc = acc<<8 | uint64(x)
		bits += 8
		for bits >= 5 {
			bits -= 5
			if n > 0 && n%4 == 0 {
				b.WriteByte('-')
			}
			b.WriteByte(crockford[(acc>>bits)&31])
			n++
		}
	}
	return b.String()
}

// normalizeCode returns the 16 symbols of a code as typed (any case,
// dashes and spaces ignored, O read as 0, I and L as 1), or false.
func normalizeCode(s string) (string, bool) {
	if len(s) > 64 {
		return "", false
	}
	var b strings.Builder
	for _, r := range strings.ToUpper(s) {
		switch {
		case r == '-' || r == ' ':
			continue
		case r == 'O':
			r = '0'
		case r == 'I' || r == 'L':
			r = '1'
		}
		if r > 127 || !strings.ContainsRune(crockford, r) {
			return "", false
		}
		b.WriteRune(r)
	}
	if b.Len() != 16 {
		return "", false
	}
	return b.String(), true
}

// codeKeys returns the stored identifier of a code and the key sealing
// its INS, both derived from its 16 symbols.
func codeKeys(symbols string) (id, key [32]byte) {
	return sha256.Sum256([]byte("vigie/enrolment-code-id/v1\x00" + symbols)),
		sha256.Sum256([]byte("vigie/enrolment-code-key/v1\x00" + symbols))
}

func sealWith(key [32]byte, r io.Reader, plain, ad []byte) ([]byte, error) {
	a, err := newGCM(key)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, a.NonceSize(), a.NonceSize()+len(plain)+a.Overhead())
	if _, err := io.ReadFull(r, nonce); err != nil {
		return nil, err
	}
	return a.Seal(nonce, nonce, plain, ad), nil
}

func openWith(key [32]byte, sealed, ad []byte) ([]byte, error) {
	a, err := newGCM(key)
	if err != nil {
		return nil, err
	}
	if len(sealed) < a.NonceSize() {
		return nil, errors.New("sealed INS too short")
	}
	return a.Open(nil, sealed[:a.NonceSize()], sealed[a.NonceSize():], ad)
}

func newGCM(key [32]byte) (cipher.AEAD, error) {
	b, err := aes.NewCipher(key[:])
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

// Store links sign-ins to patients on Vigie's database, recording every
// link and unlink in the ledger. It implements the lookup of
// api/auth.Enrolments (with its own ErrNotEnrolled). It is safe for
// concurrent use.
type Store struct {
	db     *sqldb.DB
	ledger *ledger.Ledger
	now    func() time.Time
}

// Service is the service named in enrolment events: the link is made by
// Vigie on the patient's request, the unlink on the operator's.
const Service = "vigie-enrolment"

// New returns the store on db, whose schema must include Migrations and
// the ledger's, recording through l (on the same database). now is the
// clock (nil: time.Now).
func New(db *sqldb.DB, l *ledger.Ledger, now func() time.Time) *Store {
	if now == nil {
		now = time.Now
	}
	return &Store{db: db, ledger: l, now: now}
}

// Redeem links the sign-in (issuer, subject) to the patient code was
// issued for, and records the link in the patient's chain, in one
// transaction; the code is then used. It fails with ErrCodeUnknown,
// ErrCodeUsed, ErrCodeExpired, ErrAlreadyEnrolled or ErrPatientEnrolled
// (wrapped) and changes nothing. The caller has verified the provider's
// token that carries subject.
func (s *Store) Redeem(ctx context.Context, code, issuer, subject string) (*ledger.Recorded, error) {
	if subject == "" {
		return nil, errors.New("enrol: no subject")
	}
	symbols, ok := normalizeCode(code)
	if !ok {
		return nil, fmt.Errorf("enrol: %w", ErrCodeUnknown)
	}
	id, key := codeKeys(symbols)
	var sealed []byte
	var expires, used int64
	err := s.db.Read(ctx, func(ctx context.Context, tx sqldb.Tx) error {
		return tx.QueryRow(ctx, "SELECT sealed_ins, expires_nanos, used_nanos FROM enrolment_codes WHERE code_hash = $1", id[:]).Scan(&sealed, &expires, &used)
	})
	switch {
	case errors.Is(err, sqldb.ErrNoRows):
		return nil, fmt.Errorf("enrol: %w", ErrCodeUnknown)
	case err != nil:
		return nil, fmt.Errorf("enrol: %w", err)
	case used != 0:
		return nil, fmt.Errorf("enrol: %w", ErrCodeUsed)
	case !s.now().Before(time.Unix(0, expires)):
		return nil, fmt.Errorf("enrol: %w", ErrCodeExpired)
	}
	plain, err := openWith(key, sealed, id[:])
	if err != nil {
		return nil, fmt.Errorf("enrol: the code's patient does not open: %w", ledger.ErrCorrupt)
	}
	ins, err := ident.ParseINS(string(plain))
	if err != nil {
		return nil, fmt.Errorf("enrol: the code's patient: %w", ledger.ErrCorrupt)
	}
	sh := s.ledger.SubjectHash(issuer, subject)
	payload, err := FormatRecord(Record{Action: ActionLink, Issuer: issuer, Subject: sh})
	if err != nil {
		return nil, fmt.Errorf("enrol: %w", err)
	}
	pseudonym := s.ledger.Pseudonym(ins)
	rec, err := s.ledger.Record(ctx, ledger.Entry{
		Kind: event.KindEnrolment, Patient: ins, Service: Service, Payload: payload,
		Apply: func(ctx context.Context, stx ledger.StoreTx) error {
			tx := stx.SQL()
			now := s.now()
			// Compare-and-swap on the code's use: of two redemptions at
			// once, one links.
			n, err := tx.Exec(ctx, "UPDATE enrolment_codes SET used_nanos = $1 WHERE code_hash = $2 AND used_nanos = 0 AND expires_nanos > $3", now.UnixNano(), id[:], now.UnixNano())
			if err != nil {
				return err
			}
			if n != 1 {
				return ErrCodeUsed
			}
			var one int64
			err = tx.QueryRow(ctx, "SELECT 1 FROM enrolments WHERE subject_hash = $1", sh[:]).Scan(&one)
			if err == nil {
				return ErrAlreadyEnrolled
			} else if !errors.Is(err, sqldb.ErrNoRows) {
				return err
			}
			err = tx.QueryRow(ctx, "SELECT 1 FROM enrolments WHERE pseudonym = $1 AND issuer = $2", pseudonym[:], issuer).Scan(&one)
			if err == nil {
				return ErrPatientEnrolled
			} else if !errors.Is(err, sqldb.ErrNoRows) {
				return err
			}
			dk, err := ledger.EntryDataKey(stx)
			if err != nil {
				return err
			}
			sealedINS, err := dk.Seal([]byte(ins.Canonical()), linkAD(sh))
			if err != nil {
				return err
			}
			_, err = tx.Exec(ctx, "INSERT INTO enrolments (subject_hash, pseudonym, issuer, sealed_ins, enrolled_nanos) VALUES ($1, $2, $3, $4, $5)",
				sh[:], pseudonym[:], issuer, sealedINS, now.UnixNano())
			if sqldb.IsUniqueViolation(err) {
				return ErrAlreadyEnrolled // a concurrent link won
			}
			return err
		},
	})
	if err != nil {
		return nil, fmt.Errorf("enrol: %w", err)
	}
	return rec, nil
}

// linkAD binds a link's sealed INS to its row.
func linkAD(subjectHash event.Hash) []byte {
	return append([]byte("enrolments\x00"), subjectHash[:]...)
}

// Patient returns the patient the sign-in (issuer, subject) is linked to,
// or an error wrapping ErrNotEnrolled (also when the patient was erased
// since: the INS went with the data key).
func (s *Store) Patient(ctx context.Context, issuer, subject string) (ident.INS, error) {
	sh := s.ledger.SubjectHash(issuer, subject)
	var pseudonym, sealed, wrapped []byte
	var linkedIssuer string
	err := s.db.Read(ctx, func(ctx context.Context, tx sqldb.Tx) error {
		return tx.QueryRow(ctx, "SELECT e.pseudonym, e.issuer, e.sealed_ins, p.wrapped_key FROM enrolments e JOIN patients p ON p.pseudonym = e.pseudonym WHERE e.subject_hash = $1",
			sh[:]).Scan(&pseudonym, &linkedIssuer, &sealed, &wrapped)
	})
	if errors.Is(err, sqldb.ErrNoRows) || err == nil && wrapped == nil {
		return ident.INS{}, ErrNotEnrolled
	}
	if err != nil {
		return ident.INS{}, fmt.Errorf("enrolment: %w", err)
	}
	if linkedIssuer != issuer {
		return ident.INS{}, ErrNotEnrolled // a hash collision, in theory
	}
	dk, err := s.ledger.DataKey(event.Hash(pseudonym), wrapped)
	if err != nil {
		return ident.INS{}, fmt.Errorf("enrolment: %w", err)
	}
	plain, err := dk.Open(sealed, linkAD(sh))
	if err != nil {
		return ident.INS{}, fmt.Errorf("enrolment: %w", err)
	}
	ins, err := ident.ParseINS(string(plain))
	if err != nil || s.ledger.Pseudonym(ins) != event.Hash(pseudonym) {
		return ident.INS{}, fmt.Errorf("enrolment: the link's patient: %w", ledger.ErrCorrupt)
	}
	return ins, nil
}

// Revoke removes the links of patient's sign-ins (at issuer only, if not
// empty), each recorded as an unlink event in the patient's chain with
// its removal. It returns how many it removed, or an error wrapping
// ErrNotEnrolled if there was none. operator names who asked, as the
// events' service (printable ASCII).
func (s *Store) Revoke(ctx context.Context, patient ident.INS, issuer, operator string) (int, error) {
	if operator == "" {
		operator = Service
	}
	pseudonym := s.ledger.Pseudonym(patient)
	type link struct {
		sh     event.Hash
		issuer string
	}
	var links []link
	err := s.db.Read(ctx, func(ctx context.Context, tx sqldb.Tx) error {
		links = nil
		rows, err := tx.Query(ctx, "SELECT subject_hash, issuer FROM enrolments WHERE pseudonym = $1 ORDER BY issuer", pseudonym[:])
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var sh []byte
			var iss string
			if err := rows.Scan(&sh, &iss); err != nil {
				return err
			}
			if issuer == "" || iss == issuer {
				links = append(links, link{event.Hash(sh), iss})
			}
		}
		return rows.Err()
	})
	if err != nil {
		return 0, fmt.Errorf("revoke enrolment: %w", err)
	}
	if len(links) == 0 {
		return 0, fmt.Errorf("revoke enrolment: %w", ErrNotEnrolled)
	}
	for i, l := range links {
		payload, err := FormatRecord(Record{Action: ActionUnlink, Issuer: l.issuer, Subject: l.sh})
		if err != nil {
			return i, fmt.Errorf("revoke enrolment: %w", err)
		}
		_, err = s.ledger.Record(ctx, ledger.Entry{
			Kind: event.KindEnrolment, Patient: patient, Service: operator, Payload: payload,
			Apply: func(ctx context.Context, stx ledger.StoreTx) error {
				n, err := stx.SQL().Exec(ctx, "DELETE FROM enrolments WHERE subject_hash = $1 AND pseudonym = $2", l.sh[:], pseudonym[:])
				if err == nil && n != 1 {
					return ErrNotEnrolled // revoked at once by another call
				}
				return err
			},
		})
		if err != nil {
			return i, fmt.Errorf("revoke enrolment: %w", err)
		}
	}
	return len(links), nil
}

// EraseRows returns the deletion of a patient's links, to run in the
// ledger's erasure transaction (ledger.Config.EraseAlso): their sealed
// INS would not open any more anyway.
func EraseRows(pseudonym event.Hash) func(ctx context.Context, tx sqldb.Tx) error {
	return func(ctx context.Context, tx sqldb.Tx) error {
		_, err := tx.Exec(ctx, "DELETE FROM enrolments WHERE pseudonym = $1", pseudonym[:])
		return err
	}
}

// Issue makes a one-time code for patient (the package's Issue, on the
// store's database and clock).
func (s *Store) Issue(ctx context.Context, patient ident.INS, ttl time.Duration) (Code, error) {
	return Issue(ctx, s.db, patient, IssueOptions{TTL: ttl, Now: s.now})
}
