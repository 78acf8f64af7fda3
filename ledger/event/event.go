// Package event defines the body of a Vigie ledger event and its one byte
// form, version 1.
//
// An event body is a compact JSON object whose fields come in a fixed order,
// the version first:
//
//	{"v":1,"id":"<32 hex>","time":"2026-11-28T22:00:00.123456789Z","kind":"access",
//	 "patient":"<64 hex>","seq":1,"prev":"<64 hex>","service":"<service id>","payload":{...}}
//
// (shown on two lines; a body has no whitespace outside its strings). The
// bytes [Body.Marshal] produces are the record: they are committed to, stored
// and served as they are, and never re-encoded. [Parse] accepts exactly the
// bytes Marshal produces and nothing else, so one event has one byte form.
//
// The body carries the patient's pseudonym (never the INS), a per-patient
// sequence number starting at 1, and the commitment of the same patient's
// previous event (all zero for the first): a hash chain per patient, which
// package ledger/verify checks. Events that concern no patient (national
// rules changes) are chained under the all-zero pseudonym, the system chain.
//
// The package is pure: it depends on the standard library only, and builds
// for GOOS=js GOARCH=wasm. The byte layout is specified in docs/formats.md.
package event

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"
	"unicode/utf8"
)

// Version is the body version this package reads and writes.
const Version = 1

// MaxBodySize is the largest body, in bytes, that [Body.Marshal] produces and
// [Parse] accepts.
const MaxBodySize = 64 << 10

// MaxServiceLen is the largest service id, in bytes.
const MaxServiceLen = 256

// MaxPayloadDepth is the deepest nesting of arrays and objects accepted in a
// payload, the payload object itself being depth 1.
const MaxPayloadDepth = 32

// TimeLayout is the one text form of an event's time: RFC 3339 in UTC with
// exactly nine fractional digits.
const TimeLayout = "2006-01-02T15:04:05.000000000Z"

// IDLen is the length of an event id: 32 lowercase hexadecimal digits
// (16 random bytes).
const IDLen = 32

// A Kind says what an event records.
type Kind string

// The kinds of events.
const (
	// KindAccess is an access decision (allow, deny or break-glass).
	KindAccess Kind = "access"
	// KindConsentChange is a change of a patient's directives.
	KindConsentChange Kind = "consent_change"
	// KindRulesChange is a change of the national access rules; it concerns
	// no patient and is chained on the system chain.
	KindRulesChange Kind = "rules_change"
	// KindLedgerRead is a read of the ledger (a patient reading their
	// history, an auditor reading events).
	KindLedgerRead Kind = "ledger_read"
	// KindBreakGlassReview is the review of a break-glass access.
	KindBreakGlassReview Kind = "break_glass_review"
	// KindErasure is the erasure of a patient's event bodies.
	KindErasure Kind = "erasure"
	// KindEnrolment is the link of a patient to their sign-in at an
	// identity provider that gives no INS, or its removal.
	KindEnrolment Kind = "enrolment"
	// KindLogSuccession is the first event of a log that succeeds a
	// closed one: the old log's origin, its latest published checkpoint
	// and its key (payload vigie.log-succession.v1, package ledger/verify).
	KindLogSuccession Kind = "log_succession"
)

// Valid reports whether k is one of the kinds above.
func (k Kind) Valid() bool {
	switch k {
	case KindAccess, KindConsentChange, KindRulesChange, KindLedgerRead,
		KindBreakGlassReview, KindErasure, KindEnrolment, KindLogSuccession:
		return true
	}
	return false
}

// System reports whether events of kind k concern no patient: they are
// chained under the [SystemChain] pseudonym.
func (k Kind) System() bool {
	return k == KindRulesChange || k == KindLogSuccession
}

// SystemChain is the pseudonym under which events that concern no patient
// are chained: all zero bytes.
var SystemChain Hash

// A Body is an event body, version 1.
//
// Rules checked by [Body.Marshal] and [Parse]:
//   - V is [Version];
//   - ID is [IDLen] lowercase hexadecimal digits (see [NewID]);
//   - Time is not zero and its year is within 1..9999; it is written in UTC
//     with nanoseconds ([TimeLayout]);
//   - Kind is valid; a [KindRulesChange] or [KindLogSuccession] event
//     has the [SystemChain] pseudonym, and [KindAccess], [KindConsentChange],
//     [KindBreakGlassReview], [KindErasure] and [KindEnrolment] events
//     have a non-zero one
//     ([KindLedgerRead] may have either: an auditor reading the log as a
//     whole reads no patient's events);
//   - Seq is at least 1; Prev is zero exactly when Seq is 1;
//   - Service is 1 to [MaxServiceLen] bytes of printable ASCII (space to
//     tilde) other than '"' and '\';
//   - Payload is a compact JSON object (no whitespace outside strings), valid
//     UTF-8, without duplicate keys at any depth, nested at most
//     [MaxPayloadDepth] deep;
//   - the whole body is at most [MaxBodySize] bytes.
type Body struct {
	V       int
	ID      string
	Time    time.Time
	Kind    Kind
	Patient Hash   // pseudonym: keyed HMAC of the INS, or SystemChain
	Seq     uint64 // position in the patient's chain, from 1
	Prev    Hash   // commitment of the patient's previous event; zero for Seq 1
	Service string // calling service
	Payload json.RawMessage
}

// Errors that callers can test with [errors.Is]. Every other error of
// [Parse] and [Body.Marshal] means a malformed body.
var (
	// ErrTooLarge means the body is larger than MaxBodySize.
	ErrTooLarge = errors.New("event body too large")
	// ErrMissingVersion means the data has no version: it is not an event
	// body at all.
	ErrMissingVersion = errors.New("event body has no version")
	// ErrUnsupportedVersion means the body has a version other than 1: it
	// may be valid for a newer reader.
	ErrUnsupportedVersion = errors.New("unsupported event body version")
)

// A FieldError reports a field of a body that is missing, repeated, unknown,
// or has a value that breaks the rules of [Body]. Its message names the field
// and never quotes the payload.
type FieldError struct {
	Field string
	Err   error
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("event body: field %q: %v", e.Field, e.Err)
}

func (e *FieldError) Unwrap() error { return e.Err }

func fieldErr(field, format string, args ...any) error {
	return &FieldError{Field: field, Err: fmt.Errorf(format, args...)}
}

// fieldNames are the fields of a body in their one order.
var fieldNames = [...]string{"v", "id", "time", "kind", "patient", "seq", "prev", "service", "payload"}

// Marshal returns the canonical bytes of b, or an error naming the first
// field that breaks the rules of [Body]. The payload is copied as it is,
// never re-encoded. [Parse] of the result returns a Body equal to b (with
// Time in UTC).
func (b *Body) Marshal() ([]byte, error) {
	if err := b.check(); err != nil {
		return nil, err
	}
	out := b.appendTo(make([]byte, 0, 320+len(b.Service)+len(b.Payload)))
	if len(out) > MaxBodySize {
		return nil, ErrTooLarge
	}
	return out, nil
}

// appendTo appends the canonical encoding of b, which must be valid.
func (b *Body) appendTo(out []byte) []byte {
	out = append(out, `{"v":`...)
	out = strconv.AppendInt(out, int64(b.V), 10)
	out = append(out, `,"id":"`...)
	out = append(out, b.ID...)
	out = append(out, `","time":"`...)
	out = b.Time.UTC().AppendFormat(out, TimeLayout)
	out = append(out, `","kind":"`...)
	out = append(out, b.Kind...)
	out = append(out, `","patient":"`...)
	out = hex.AppendEncode(out, b.Patient[:])
	out = append(out, `","seq":`...)
	out = strconv.AppendUint(out, b.Seq, 10)
	out = append(out, `,"prev":"`...)
	out = hex.AppendEncode(out, b.Prev[:])
	out = append(out, `","service":"`...)
	out = append(out, b.Service...)
	out = append(out, `","payload":`...)
	out = append(out, b.Payload...)
	out = append(out, '}')
	return out
}

// check reports the first rule of Body that b breaks.
func (b *Body) check() error {
	if b.V != Version {
		return fieldErr("v", "version %d, want %d", b.V, Version)
	}
	if !isLowerHex(b.ID, IDLen) {
		return fieldErr("id", "want %d lowercase hex digits", IDLen)
	}
	if b.Time.IsZero() {
		return fieldErr("time", "missing")
	}
	if y := b.Time.UTC().Year(); y < 1 || y > 9999 {
		return fieldErr("time", "year %d out of range 1..9999", y)
	}
	if !b.Kind.Valid() {
		return fieldErr("kind", "unknown kind %q", truncate(string(b.Kind)))
	}
	switch {
	case b.Kind.System() && b.Patient != SystemChain:
		return fieldErr("patient", "a %s event must use the system chain (zero pseudonym)", b.Kind)
	case !b.Kind.System() && b.Kind != KindLedgerRead && b.Patient == SystemChain:
		return fieldErr("patient", "a %s event needs a patient pseudonym", b.Kind)
	}
	if b.Seq == 0 {
		return fieldErr("seq", "must be at least 1")
	}
	if b.Seq == 1 && !b.Prev.IsZero() {
		return fieldErr("prev", "must be zero for the first event of a chain (seq 1)")
	}
	if b.Seq > 1 && b.Prev.IsZero() {
		return fieldErr("prev", "zero, but seq is %d", b.Seq)
	}
	if err := checkService(b.Service); err != nil {
		return &FieldError{Field: "service", Err: err}
	}
	if err := checkPayload(b.Payload); err != nil {
		return &FieldError{Field: "payload", Err: err}
	}
	return nil
}

func checkService(s string) error {
	if len(s) == 0 || len(s) > MaxServiceLen {
		return fmt.Errorf("length %d, want 1..%d", len(s), MaxServiceLen)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			return fmt.Errorf("byte %d is not printable ASCII other than '\"' and '\\'", i)
		}
	}
	return nil
}

// Parse parses the canonical bytes of an event body. It is strict: it rejects
// data larger than [MaxBodySize] ([ErrTooLarge]), data with no version
// ([ErrMissingVersion]) or another version ([ErrUnsupportedVersion]), unknown,
// repeated, missing or misplaced fields, values that break the rules of
// [Body] ([*FieldError]), and any byte form other than the one
// [Body.Marshal] produces. Errors never quote the payload.
func Parse(data []byte) (*Body, error) {
	if len(data) > MaxBodySize {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(data), MaxBodySize)
	}
	if err := checkVersion(data); err != nil {
		return nil, err
	}
	if !utf8.Valid(data) {
		return nil, errors.New("event body: not valid UTF-8")
	}
	fields, err := splitObject(data)
	if err != nil {
		return nil, err
	}
	for i, f := range fields {
		if i >= len(fieldNames) || f.name != fieldNames[i] {
			return nil, misplaced(fields, i)
		}
	}
	if len(fields) < len(fieldNames) {
		return nil, fieldErr(fieldNames[len(fields)], "missing")
	}

	b := &Body{V: Version}
	if b.ID, err = hexString(fields[1].value, IDLen); err != nil {
		return nil, &FieldError{Field: "id", Err: err}
	}
	if b.Time, err = parseTime(fields[2].value); err != nil {
		return nil, &FieldError{Field: "time", Err: err}
	}
	var kind string
	if err := json.Unmarshal(fields[3].value, &kind); err != nil {
		return nil, fieldErr("kind", "not a string")
	}
	b.Kind = Kind(kind)
	if b.Patient, err = hashString(fields[4].value); err != nil {
		return nil, &FieldError{Field: "patient", Err: err}
	}
	if b.Seq, err = parseSeq(fields[5].value); err != nil {
		return nil, &FieldError{Field: "seq", Err: err}
	}
	if b.Prev, err = hashString(fields[6].value); err != nil {
		return nil, &FieldError{Field: "prev", Err: err}
	}
	if err := json.Unmarshal(fields[7].value, &b.Service); err != nil {
		return nil, fieldErr("service", "not a string")
	}
	b.Payload = fields[8].value
	if err := b.check(); err != nil {
		return nil, err
	}
	// Each field is now valid on its own; a byte form other than Marshal's
	// (whitespace, escapes in strings) is all that is left to reject.
	if canon := b.appendTo(make([]byte, 0, len(data))); !bytes.Equal(canon, data) {
		return nil, errors.New("event body: not in canonical form (whitespace or escapes)")
	}
	b.Payload = bytes.Clone(b.Payload) // do not keep data alive through the payload
	return b, nil
}

// checkVersion reads the version, which the canonical form places first:
// the data must start with {"v":1, and anything else is an unsupported or
// missing version, or a misplaced field.
func checkVersion(data []byte) error {
	const prefix = `{"v":`
	if !bytes.HasPrefix(data, []byte(prefix)) {
		// Not the canonical start: say whether the version is missing or
		// merely misplaced.
		fields, err := splitObject(data)
		if err != nil {
			return err
		}
		for i, f := range fields {
			switch {
			case f.name != "v":
			case i > 0:
				return fieldErr("v", "must be the first field")
			case string(f.value) != "1":
				return fmt.Errorf("%w %s", ErrUnsupportedVersion, versionText(f.value))
			default:
				return errors.New("event body: not in canonical form (whitespace or escapes)")
			}
		}
		return ErrMissingVersion
	}
	rest := data[len(prefix):]
	n := bytes.IndexAny(rest, ",}")
	if n < 0 {
		return errors.New("event body: truncated JSON")
	}
	switch v := rest[:n]; {
	case string(v) == "1":
		return nil
	case string(bytes.TrimSpace(v)) == "1":
		return errors.New("event body: not in canonical form (whitespace or escapes)")
	default:
		return fmt.Errorf("%w %s", ErrUnsupportedVersion, versionText(v))
	}
}

// versionText names a version for an error message: a short decimal integer
// as it is, anything else by a description.
func versionText(v []byte) string {
	if n, err := strconv.ParseUint(string(v), 10, 32); err == nil && strconv.FormatUint(n, 10) == string(v) {
		return string(v)
	}
	return "(not a small decimal integer)"
}

// maxFields bounds the fields splitObject reads, more than a body has so
// that an unknown field is reported as such.
const maxFields = 2 * len(fieldNames)

type field struct {
	name  string
	value json.RawMessage
}

// splitObject splits a JSON object into its fields, in order, rejecting
// duplicates and trailing data. It does not judge the form of the values.
func splitObject(data []byte) ([]field, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, errors.New("event body: not a JSON object")
	}
	var fields []field
	seen := make(map[string]bool)
	for dec.More() {
		if len(fields) == maxFields {
			return nil, errors.New("event body: too many fields")
		}
		tok, err := dec.Token()
		if err != nil {
			return nil, syntaxErr(err, len(data))
		}
		name, _ := tok.(string)
		if seen[name] {
			return nil, fieldErr(truncate(name), "repeated")
		}
		seen[name] = true
		var value json.RawMessage
		if err := dec.Decode(&value); err != nil {
			return nil, syntaxErr(err, len(data))
		}
		fields = append(fields, field{name, value})
	}
	if _, err := dec.Token(); err != nil {
		return nil, syntaxErr(err, len(data))
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("event body: data after the object")
	}
	return fields, nil
}

// syntaxErr describes a JSON syntax error by its offset only: encoding/json
// messages quote the offending character, which may come from the payload.
// An error at or past the end of the n bytes read is a truncation (Go 1.27's
// encoding/json reports it as a SyntaxError at the end, earlier versions as
// io.ErrUnexpectedEOF).
func syntaxErr(err error, n int) error {
	var se *json.SyntaxError
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
		return errors.New("event body: truncated JSON")
	case errors.As(err, &se) && se.Offset >= int64(n):
		return errors.New("event body: truncated JSON")
	case errors.As(err, &se):
		return fmt.Errorf("event body: invalid JSON at offset %d", se.Offset)
	}
	return errors.New("event body: invalid JSON")
}

// misplaced explains why fields[i] is not the field expected at position i.
func misplaced(fields []field, i int) error {
	name := fields[i].name
	for j, want := range fieldNames {
		if name == want {
			if j < i {
				return fieldErr(name, "out of order")
			}
			// A known field comes early: the expected one is missing or
			// later.
			return fieldErr(fieldNames[i], "missing or out of order")
		}
	}
	return fieldErr(truncate(name), "unknown field")
}

// hexString decodes a JSON string of exactly n lowercase hex digits.
func hexString(raw []byte, n int) (string, error) {
	if len(raw) != n+2 || raw[0] != '"' || raw[n+1] != '"' || !isLowerHex(raw[1:n+1], n) {
		return "", fmt.Errorf("want a string of %d lowercase hex digits", n)
	}
	return string(raw[1 : n+1]), nil
}

func hashString(raw []byte) (Hash, error) {
	s, err := hexString(raw, 2*HashSize)
	if err != nil {
		return Hash{}, err
	}
	return ParseHash(s)
}

func parseTime(raw []byte) (time.Time, error) {
	if len(raw) != len(TimeLayout)+2 || raw[0] != '"' || raw[len(raw)-1] != '"' {
		return time.Time{}, fmt.Errorf("want a string of the form %s", TimeLayout)
	}
	s := string(raw[1 : len(raw)-1])
	t, err := time.Parse(TimeLayout, s)
	if err != nil || t.Format(TimeLayout) != s {
		return time.Time{}, fmt.Errorf("want a string of the form %s", TimeLayout)
	}
	return t, nil
}

func parseSeq(raw []byte) (uint64, error) {
	s := string(raw)
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || strconv.FormatUint(n, 10) != s {
		return 0, errors.New("want a decimal integer without sign, exponent or leading zeros, at most 2^64-1")
	}
	return n, nil
}

// truncate shortens s for an error message.
func truncate(s string) string {
	const max = 40
	if len(s) <= max {
		return s
	}
	return s[:max] + "..."
}

// NewID returns a new event id: 16 bytes read from r, as 32 lowercase
// hexadecimal digits. A nil r means crypto/rand.Reader. Ids are random rather
// than sequential so that they reveal nothing about the order or number of
// events.
func NewID(r io.Reader) (string, error) {
	if r == nil {
		r = rand.Reader
	}
	var b [IDLen / 2]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return "", fmt.Errorf("new event id: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}
