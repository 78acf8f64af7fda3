package verify

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/vigie-sante/vigie/ledger/event"
)

// ReceiptHeader is the first line of a receipt's note text, version 1. A
// checkpoint cannot start with it (an origin has no spaces), so a receipt
// never parses as a checkpoint, nor a checkpoint as a receipt.
const ReceiptHeader = "vigie receipt v1"

// A Receipt is the log's signed promise that the event with commitment
// Commitment, recorded at Time, is at leaf Index of the log named Origin,
// and that a checkpoint covering that index will be signed by Deadline
// (Time plus the log's maximum merge delay).
type Receipt struct {
	Origin     string
	Index      uint64
	Commitment event.Hash
	Time       time.Time
	Deadline   time.Time
}

// ReceiptKeyName returns the note name of the key that signs the receipts of
// the log named origin: origin + "/receipt". It differs from the checkpoint
// key's name (the origin), so neither key can stand for the other.
func ReceiptKeyName(origin string) string {
	return origin + "/receipt"
}

// Errors of [CheckReceipt], to test with [errors.Is].
var (
	// ErrReceiptPending means the log has not yet signed a checkpoint
	// covering the receipt's index, and the deadline has not passed.
	ErrReceiptPending = errors.New("receipt pending: no checkpoint covers its index yet")
	// ErrReceiptOverdue means the deadline has passed and the latest
	// checkpoint still does not cover the receipt's index: the log broke
	// its promise.
	ErrReceiptOverdue = errors.New("receipt overdue: the log has not included the event by its deadline")
)

// FormatReceipt returns the note text of r: exactly six lines, each ending
// in a newline:
//
//	vigie receipt v1
//	<origin>
//	<leaf index in decimal>
//	<commitment in lowercase hex>
//	<time, RFC 3339 UTC with nine fractional digits>
//	<deadline, same form>
//
// It fails if the origin is not a [ValidOrigin], if a time is zero or its
// year is outside 1..9999, or if the deadline is before the time.
func FormatReceipt(r Receipt) ([]byte, error) {
	if err := r.check(); err != nil {
		return nil, err
	}
	b := make([]byte, 0, 160+len(r.Origin))
	b = append(b, ReceiptHeader+"\n"...)
	b = append(b, r.Origin...)
	b = fmt.Appendf(b, "\n%d\n%s\n", r.Index, r.Commitment)
	b = r.Time.UTC().AppendFormat(b, event.TimeLayout)
	b = append(b, '\n')
	b = r.Deadline.UTC().AppendFormat(b, event.TimeLayout)
	b = append(b, '\n')
	return b, nil
}

func (r *Receipt) check() error {
	if !ValidOrigin(r.Origin) {
		return errors.New("receipt: invalid origin")
	}
	for _, t := range []struct {
		name string
		t    time.Time
	}{{"time", r.Time}, {"deadline", r.Deadline}} {
		if y := t.t.UTC().Year(); t.t.IsZero() || y < 1 || y > 9999 {
			return fmt.Errorf("receipt: %s missing or out of range", t.name)
		}
	}
	if r.Deadline.Before(r.Time) {
		return errors.New("receipt: deadline before time")
	}
	return nil
}

// ParseReceipt parses the note text of a receipt. It accepts exactly the
// bytes [FormatReceipt] produces: no extension lines (a future version gets
// a new first line), and FormatReceipt of the result returns text.
//
// ParseReceipt does not check a signature; see [OpenReceipt].
func ParseReceipt(text []byte) (Receipt, error) {
	const maxSize = len(ReceiptHeader) + MaxOriginLen + 20 + 2*event.HashSize + 2*len(event.TimeLayout) + 6
	if len(text) > maxSize {
		return Receipt{}, fmt.Errorf("receipt: %d bytes, limit %d", len(text), maxSize)
	}
	if err := checkNoteText(text); err != nil {
		return Receipt{}, fmt.Errorf("receipt: %w", err)
	}
	lines := strings.Split(string(text[:len(text)-1]), "\n")
	if lines[0] != ReceiptHeader {
		if strings.HasPrefix(lines[0], "vigie receipt ") {
			return Receipt{}, fmt.Errorf("receipt: unsupported version %q", lines[0])
		}
		return Receipt{}, fmt.Errorf("receipt: line 1: want %q", ReceiptHeader)
	}
	if len(lines) != 6 {
		return Receipt{}, fmt.Errorf("receipt: %d lines, want 6", len(lines))
	}
	var r Receipt
	var err error
	r.Origin = lines[1]
	if !ValidOrigin(r.Origin) {
		return Receipt{}, errors.New("receipt: line 2: invalid origin")
	}
	if r.Index, err = parseDecimal(lines[2]); err != nil {
		return Receipt{}, fmt.Errorf("receipt: line 3: leaf index: %w", err)
	}
	if r.Commitment, err = event.ParseHash(lines[3]); err != nil {
		return Receipt{}, fmt.Errorf("receipt: line 4: commitment: %w", err)
	}
	if r.Time, err = parseTime(lines[4]); err != nil {
		return Receipt{}, fmt.Errorf("receipt: line 5: time: %w", err)
	}
	if r.Deadline, err = parseTime(lines[5]); err != nil {
		return Receipt{}, fmt.Errorf("receipt: line 6: deadline: %w", err)
	}
	if err := r.check(); err != nil { // the rules of FormatReceipt
		return Receipt{}, err
	}
	return r, nil
}

func parseTime(s string) (time.Time, error) {
	t, err := time.Parse(event.TimeLayout, s)
	if err != nil || t.Format(event.TimeLayout) != s {
		return time.Time{}, fmt.Errorf("want the form %s", event.TimeLayout)
	}
	return t, nil
}

// OpenReceipt verifies a signed receipt and returns its receipt. A
// receipt of version 1 is a signed note; one of version 2 (starting with
// [ReceiptHeaderV2], see [SignBatchReceipts]) is an event's path in its
// batch followed by the batch receipt's signed note, and OpenReceipt checks
// the path to the signed root. The note must carry a valid signature by v,
// the log's receipt key, whose name must be [ReceiptKeyName] of the
// receipt's origin; signatures by other keys are ignored. A receipt is at
// most [MaxNoteSize] bytes.
//
// A valid receipt is a promise, not a proof of inclusion: check it later
// with [CheckReceipt].
func OpenReceipt(signedNote []byte, v note.Verifier) (Receipt, error) {
	if bytes.HasPrefix(signedNote, []byte(ReceiptHeaderV2+"\n")) {
		return openReceiptV2(signedNote, v)
	}
	text, err := openNote(signedNote, v)
	if err != nil {
		return Receipt{}, fmt.Errorf("receipt: %w", err)
	}
	r, err := ParseReceipt(text)
	if err != nil {
		return Receipt{}, err
	}
	if want := ReceiptKeyName(r.Origin); v.Name() != want {
		return Receipt{}, fmt.Errorf("receipt: key name %q, want %q for origin %q", v.Name(), want, r.Origin)
	}
	return r, nil
}

// SignReceipt formats r and signs it with s, the log's receipt key, whose
// name must be ReceiptKeyName(r.Origin). It is the inverse of
// [OpenReceipt].
func SignReceipt(r Receipt, s note.Signer) ([]byte, error) {
	if want := ReceiptKeyName(r.Origin); s.Name() != want {
		return nil, fmt.Errorf("sign receipt: key name %q, want %q", s.Name(), want)
	}
	text, err := FormatReceipt(r)
	if err != nil {
		return nil, err
	}
	return note.Sign(&note.Note{Text: string(text)}, s)
}

// VerifyReceiptIncluded checks that checkpoint cp, of the same log, holds
// the receipt's commitment at the receipt's index: proof is the inclusion
// proof of leaf r.Index in a tree of size cp.Size. It fails if cp does not
// cover the index (cp.Size <= r.Index).
func VerifyReceiptIncluded(r Receipt, cp Checkpoint, proof [][]byte) error {
	if r.Origin != cp.Origin {
		return fmt.Errorf("receipt of log %q, checkpoint of log %q", r.Origin, cp.Origin)
	}
	if cp.Size <= r.Index {
		return fmt.Errorf("checkpoint of size %d does not cover the receipt's leaf index %d", cp.Size, r.Index)
	}
	if err := VerifyInclusion(r.Index, cp.Size, MerkleLeafHash(r.Commitment), proof, cp.Hash); err != nil {
		return fmt.Errorf("receipt: commitment %s at leaf index %d: %w", r.Commitment, r.Index, err)
	}
	return nil
}

// CheckReceipt checks whether the log kept the promise of receipt r.
// latest is the log's latest checkpoint, opened with the log's key and
// obtained at time now; proof is the inclusion proof of leaf r.Index in a
// tree of size latest.Size (ignored when latest does not cover r.Index).
// It returns
//   - nil if latest covers r.Index and proof proves r.Commitment there: the
//     promise is kept;
//   - [ErrReceiptPending] if latest does not cover r.Index and now is not
//     after r.Deadline: check again later;
//   - [ErrReceiptOverdue] if latest does not cover r.Index and now is after
//     r.Deadline: the log broke its promise;
//   - another error if the proof fails, which means the log holds a
//     different leaf at r.Index or served a wrong proof.
func CheckReceipt(r Receipt, latest Checkpoint, proof [][]byte, now time.Time) error {
	if r.Origin != latest.Origin {
		return fmt.Errorf("receipt of log %q, checkpoint of log %q", r.Origin, latest.Origin)
	}
	if latest.Size > r.Index {
		return VerifyReceiptIncluded(r, latest, proof)
	}
	if now.After(r.Deadline) {
		return fmt.Errorf("%w: leaf index %d, deadline %s, latest checkpoint size %d at %s",
			ErrReceiptOverdue, r.Index, r.Deadline.UTC().Format(time.RFC3339), latest.Size, now.UTC().Format(time.RFC3339))
	}
	return ErrReceiptPending
}
