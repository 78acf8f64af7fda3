package verify

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/vigie-sante/vigie/ledger/event"
)

// ErrCommitmentMismatch means an event body and salt do not hash to the
// expected commitment: the body or the salt is not the one committed to.
var ErrCommitmentMismatch = errors.New("body and salt do not match the commitment")

// VerifyEvent checks that body and salt hash to commitment c, then parses
// the body (strictly, as [event.Parse] does). The commitment is checked
// first, over the exact bytes received: an error wrapping
// [ErrCommitmentMismatch] means the bytes are not those committed to; any
// other error means the committed bytes do not parse (for example a body
// version this verifier does not know: [event.ErrUnsupportedVersion]).
func VerifyEvent(body []byte, salt [SaltSize]byte, c event.Hash) (*event.Body, error) {
	if got := Commitment(salt, body); got != c {
		return nil, fmt.Errorf("event %s: %w", c, ErrCommitmentMismatch)
	}
	b, err := event.Parse(body)
	if err != nil {
		return nil, fmt.Errorf("event %s: commitment matches, but %w", c, err)
	}
	return b, nil
}

// A Link is the place of one event in its patient's chain: its sequence
// number, the commitment of the previous event it names, and its own
// commitment.
//
// An erased event (its body destroyed with the patient's key) still has a
// sequence number and a commitment, but the previous commitment it named
// is gone with its body: Erased is true and Prev is ignored. The link from
// it to the next event is still checked (the next event names its
// commitment); the link into it cannot be.
//
// An erasure destroys every event the patient had, and is itself recorded
// in the chain, readable, right after them (an erasure event in state
// "done"): ErasureDone marks that record. An event whose body could not be
// read for another reason (it failed its commitment) is Unread: its
// previous commitment is unknown too, but it is not an erasure.
//
// Patient is the pseudonym the event's body names (zero when the body is
// unknown): every readable event of a chain names the same.
type Link struct {
	Seq         uint64
	Prev        event.Hash
	Commitment  event.Hash
	Patient     event.Hash
	Erased      bool
	Unread      bool
	ErasureDone bool
}

// ErasedLink returns the link of an erased event: its place in the chain
// and its commitment, its previous commitment unknown.
func ErasedLink(seq uint64, c event.Hash) Link {
	return Link{Seq: seq, Commitment: c, Erased: true}
}

// UnreadLink returns the link of an event whose body could not be read
// (it failed its commitment): its place and commitment, nothing else.
func UnreadLink(seq uint64, c event.Hash) Link {
	return Link{Seq: seq, Commitment: c, Unread: true}
}

// LinkOf returns the link of the event with body b and commitment c.
func LinkOf(b *event.Body, c event.Hash) Link {
	return Link{Seq: b.Seq, Prev: b.Prev, Commitment: c, Patient: b.Patient, ErasureDone: IsErasureDone(b)}
}

// IsErasureDone reports whether b is the record of an erasure carried out
// (an erasure event whose payload is in state "done").
func IsErasureDone(b *event.Body) bool {
	if b == nil || b.Kind != event.KindErasure {
		return false
	}
	var p struct {
		State string `json:"state"`
	}
	return json.Unmarshal(b.Payload, &p) == nil && p.State == "done"
}

// Errors of [VerifyChain], each held by a [*ChainError] and to be tested with
// [errors.Is].
var (
	// ErrMissingEvent means no event has the sequence number the chain
	// needs next: an event was left out.
	ErrMissingEvent = errors.New("missing event")
	// ErrWrongLink means an event does not name the commitment of the
	// event before it (or, for the first, the zero hash).
	ErrWrongLink = errors.New("wrong link to the previous event")
	// ErrDuplicateSeq means two events have the same sequence number: the
	// chain forked, or an event was listed twice.
	ErrDuplicateSeq = errors.New("duplicate sequence number")
	// ErrUnexplainedErasure means an event is shown erased that no erasure
	// explains: an erasure erases every event before it and records itself
	// right after them, so erased events are the first of the chain and a
	// readable erasure record follows the last of them. Otherwise the
	// server blanked an event it did not want seen.
	ErrUnexplainedErasure = errors.New("erased without an erasure record after it")
	// ErrForeignPatient means an event names another patient than the
	// events before it: it belongs to another chain.
	ErrForeignPatient = errors.New("event of another patient")
)

// A ChainError reports where a chain breaks: Seq is the sequence number at
// which it breaks, and Err one of [ErrMissingEvent], [ErrWrongLink],
// [ErrDuplicateSeq], [ErrForeignPatient] and [ErrUnexplainedErasure].
type ChainError struct {
	Seq uint64
	Err error
}

func (e *ChainError) Error() string {
	return fmt.Sprintf("chain breaks at seq %d: %v", e.Seq, e.Err)
}

func (e *ChainError) Unwrap() error { return e.Err }

// VerifyChain checks that links, the events of one patient (or of the
// system chain) in any order, form one unbroken chain: sequence numbers 1
// to n, each once, the first naming the zero hash as previous and every
// other naming the commitment of the event before it, every readable one
// naming the same patient. It reports the break with the lowest sequence
// number as a [*ChainError]. An empty list is a valid chain. The previous
// commitment and patient of an erased or unread link are not checked
// (they are unknown); everything else is.
//
// VerifyChain shows that nothing is missing before the last event listed;
// it cannot show that no event comes after it.
func VerifyChain(links []Link) error {
	sorted := slices.Clone(links)
	slices.SortStableFunc(sorted, func(a, b Link) int { return cmp.Compare(a.Seq, b.Seq) })
	if len(sorted) > 0 && sorted[0].Seq == 0 {
		return errors.New("chain: sequence number 0 (sequences start at 1)")
	}
	var prev event.Hash // the zero hash before the first event
	var patient event.Hash
	for i, l := range sorted {
		// The links before i are numbered 1..i, so l.Seq >= i+1.
		switch {
		case l.Seq > uint64(i)+1:
			return &ChainError{Seq: uint64(i) + 1, Err: ErrMissingEvent}
		case i+1 < len(sorted) && sorted[i+1].Seq == l.Seq:
			return &ChainError{Seq: l.Seq, Err: ErrDuplicateSeq}
		case !l.Erased && !l.Unread && l.Prev != prev:
			return &ChainError{Seq: l.Seq, Err: ErrWrongLink}
		case !l.Erased && !l.Unread && !patient.IsZero() && l.Patient != patient:
			return &ChainError{Seq: l.Seq, Err: ErrForeignPatient}
		}
		if !l.Erased && !l.Unread && patient.IsZero() {
			patient = l.Patient
		}
		prev = l.Commitment
	}
	return CheckErasures(sorted)
}

// CheckErasures checks that the erased events of a whole chain, given in
// any order, are explained by an erasure: they are the first events of
// the chain (none after a readable event), and a readable erasure record
// follows the last of them. It returns a [*ChainError] holding
// [ErrUnexplainedErasure], naming the last erased event. Unread events
// count neither way.
func CheckErasures(links []Link) error {
	var last uint64 // the last erased event
	for _, l := range links {
		if l.Erased {
			last = max(last, l.Seq)
		}
	}
	if last == 0 {
		return nil
	}
	done := false
	for _, l := range links {
		switch {
		case l.Seq < last && !l.Erased && !l.Unread:
			return &ChainError{Seq: last, Err: fmt.Errorf("%w (event %d before it is readable)", ErrUnexplainedErasure, l.Seq)}
		case l.Seq > last && l.ErasureDone:
			done = true
		}
	}
	if !done {
		return &ChainError{Seq: last, Err: ErrUnexplainedErasure}
	}
	return nil
}
