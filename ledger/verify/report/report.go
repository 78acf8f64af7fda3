// Package report runs package ledger/verify over what Vigie's HTTP API
// serves, as the API's JSON has it, and reports a verdict for every item:
// each event of a patient's history (commitment, inclusion or receipt,
// chain link), the checkpoint it is proved against, and a series of
// checkpoints with the consistency proofs between them.
//
// It is what the patient portal's WebAssembly verifier runs in the browser
// (cmd/verify-wasm), so that the page shows nothing it has not checked
// itself. Like ledger/verify it is pure: bytes in, a report out, with the
// clock passed in. It trusts nothing in its input but the keys it is given:
// the server's fields (sequence, leaf index, erased) are checked against the
// signed and committed data, and a report says "verified" only when every
// check passed.
//
// Inputs use the JSON of the API (docs/api.md): .proto field names, bytes
// in base64, 64-bit integers as strings (plain numbers are accepted too).
package report

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/vigie-sante/vigie/ledger/event"
	"github.com/vigie-sante/vigie/ledger/verify"
)

// Uint64 is a 64-bit integer as protojson writes it (a JSON string), or a
// plain JSON number.
type Uint64 uint64

// UnmarshalJSON accepts "123" and 123.
func (u *Uint64) UnmarshalJSON(b []byte) error {
	s := string(bytes.Trim(b, `"`))
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return fmt.Errorf("want an unsigned integer, got %s", b)
	}
	*u = Uint64(n)
	return nil
}

// Keys are the log's note verifier keys (as GET /v1/log/key gives them, or
// as pinned by the reader).
type Keys struct {
	CheckpointKey string `json:"checkpoint_key"`
	ReceiptKey    string `json:"receipt_key"`
}

func (k Keys) verifiers() (cp, rcpt note.Verifier, err error) {
	if cp, err = note.NewVerifier(k.CheckpointKey); err != nil {
		return nil, nil, fmt.Errorf("checkpoint key: %w", err)
	}
	if k.ReceiptKey == "" {
		return cp, nil, nil
	}
	if rcpt, err = note.NewVerifier(k.ReceiptKey); err != nil {
		return nil, nil, fmt.Errorf("receipt key: %w", err)
	}
	return cp, rcpt, nil
}

// Event is one event as the API serves it (vigie.v1.LedgerEvent).
type Event struct {
	Sequence       Uint64   `json:"sequence"`
	LeafIndex      Uint64   `json:"leaf_index"`
	Commitment     string   `json:"commitment"`
	Erased         bool     `json:"erased"`
	Body           []byte   `json:"body"`
	Salt           []byte   `json:"salt"`
	InclusionProof [][]byte `json:"inclusion_proof"`
	Receipt        []byte   `json:"receipt"`
}

// Page is one page of a patient's history (vigie.v1.ListAccessesResponse).
type Page struct {
	Events     []Event `json:"events"`
	Checkpoint []byte  `json:"checkpoint"`
}

// HistoryInput is what VerifyHistory checks: every page of a patient's
// history, the first to the last, and the time to judge receipts'
// deadlines by.
type HistoryInput struct {
	Keys  Keys      `json:"keys"`
	Pages []Page    `json:"pages"`
	Now   time.Time `json:"now"`
}

// Checkpoint is a verified checkpoint's contents.
type Checkpoint struct {
	Origin string `json:"origin"`
	Size   uint64 `json:"size,string"`
	Hash   string `json:"hash"` // hex
}

// Event verdicts.
const (
	// Verified: the body and salt match the commitment, and the leaf is in
	// the signed checkpoint's tree (or the event was erased and its leaf is
	// there).
	Verified = "verified"
	// Promised: the body and salt match the commitment, and the log signed
	// a receipt promising to include it by a deadline not passed yet; no
	// checkpoint covers it yet.
	Promised = "promised"
	// Failed: a check failed; Problems says which.
	Failed = "failed"
)

// EventReport is the verdict on one event, with the event's contents as
// parsed from the bytes that were hashed: a page shows these, never the
// server's own fields.
type EventReport struct {
	Sequence   uint64          `json:"sequence,string"`
	LeafIndex  uint64          `json:"leaf_index,string"`
	Commitment string          `json:"commitment"`
	Verdict    string          `json:"verdict"`
	Problems   []string        `json:"problems,omitempty"`
	Erased     bool            `json:"erased,omitempty"`
	ID         string          `json:"id,omitempty"`
	Time       *time.Time      `json:"time,omitempty"`
	Kind       event.Kind      `json:"kind,omitempty"`
	Service    string          `json:"service,omitempty"`
	Payload    json.RawMessage `json:"payload,omitempty"`
	Deadline   *time.Time      `json:"deadline,omitempty"` // of a promised event's receipt
}

// HistoryReport is the verdict on a whole history.
type HistoryReport struct {
	// OK is true when every event is verified or promised, the
	// checkpoint's signature is good and the chain is whole.
	OK bool `json:"ok"`
	// Checkpoint is the signed checkpoint the events are proved against
	// (absent when there is none or its signature failed).
	Checkpoint *Checkpoint `json:"checkpoint,omitempty"`
	// CheckpointNote is the signed checkpoint, verified, for the reader to
	// remember and check the next one against (consistency).
	CheckpointNote []byte `json:"checkpoint_note,omitempty"`
	// Problems are failures that concern the history as a whole: the
	// checkpoint, the chain, the pages.
	Problems []string      `json:"problems,omitempty"`
	Events   []EventReport `json:"events"`
}

// VerifyHistory checks a patient's whole history, as ListAccesses served
// it page by page:
//   - every page is proved against the same checkpoint, signed by the
//     checkpoint key;
//   - every event's body and salt match its commitment, and the body parses;
//   - every event's leaf is in the checkpoint's tree (inclusion proof), or,
//     for an event the checkpoint does not cover, the receipt key signed a
//     receipt for that commitment at that index whose deadline has not
//     passed;
//   - the chain is whole: sequence numbers from 1 without holes or
//     duplicates, each body's seq is the served sequence, each body's prev
//     is the previous event's commitment, and every body names the same
//     patient pseudonym.
//
// An empty history (no page with events) is OK with no events.
func VerifyHistory(in HistoryInput) *HistoryReport {
	rep := &HistoryReport{Events: []EventReport{}}
	fail := func(format string, args ...any) { rep.Problems = append(rep.Problems, fmt.Sprintf(format, args...)) }
	cpKey, rcptKey, err := in.Keys.verifiers()
	if err != nil {
		fail("%v", err)
		return rep
	}
	var pinned []byte
	for i, p := range in.Pages {
		if len(p.Checkpoint) == 0 {
			continue
		}
		if pinned == nil {
			pinned = p.Checkpoint
		} else if !bytes.Equal(p.Checkpoint, pinned) {
			fail("page %d is proved against another checkpoint than page 1", i+1)
		}
	}
	var cp *verify.Checkpoint
	if pinned != nil {
		c, err := verify.OpenCheckpoint(pinned, cpKey)
		if err != nil {
			fail("%v", err)
		} else {
			cp = &c
			rep.Checkpoint = &Checkpoint{Origin: c.Origin, Size: c.Size, Hash: c.Hash.String()}
			rep.CheckpointNote = pinned
		}
	}
	var links []link
	for _, p := range in.Pages {
		for _, e := range p.Events {
			r, b := checkEvent(e, cp, rcptKey, in.Now)
			rep.Events = append(rep.Events, r)
			links = append(links, link{seq: r.Sequence, commitment: r.Commitment, body: b, erased: e.Erased})
		}
	}
	if len(rep.Events) > 0 && pinned == nil {
		fail("no checkpoint: the events cannot be proved")
	}
	if err := checkChain(links); err != nil {
		fail("%v", err)
	}
	rep.OK = rep.okEvents()
	return rep
}

// checkEvent checks one event on its own: commitment and body, then its
// place in the log. It returns the body, if it matched its commitment.
func checkEvent(e Event, cp *verify.Checkpoint, rcptKey note.Verifier, now time.Time) (EventReport, *event.Body) {
	r := EventReport{Sequence: uint64(e.Sequence), LeafIndex: uint64(e.LeafIndex), Commitment: e.Commitment, Erased: e.Erased}
	var problems []string
	fail := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	c, err := event.ParseHash(e.Commitment)
	if err != nil {
		fail("commitment: %v", err)
		r.Verdict, r.Problems = Failed, problems
		return r, nil
	}
	var body *event.Body
	if e.Erased {
		if len(e.Body) != 0 || len(e.Salt) != 0 {
			fail("an erased event with a body")
		}
	} else {
		var salt [verify.SaltSize]byte
		if len(e.Salt) != verify.SaltSize {
			fail("salt: %d bytes, want %d", len(e.Salt), verify.SaltSize)
		}
		copy(salt[:], e.Salt)
		b, err := verify.VerifyEvent(e.Body, salt, c)
		if err != nil {
			fail("%v", err)
		} else {
			body = b
			t := b.Time
			r.ID, r.Time, r.Kind, r.Service, r.Payload = b.ID, &t, b.Kind, b.Service, b.Payload
			if b.Seq != uint64(e.Sequence) {
				fail("the body's seq is %d, the server says %d", b.Seq, e.Sequence)
			}
		}
	}
	verdict := Verified
	switch {
	case cp == nil:
		fail("no verified checkpoint to prove the event against")
	case uint64(e.LeafIndex) < cp.Size:
		if err := verify.VerifyInclusion(uint64(e.LeafIndex), cp.Size, verify.MerkleLeafHash(c), e.InclusionProof, cp.Hash); err != nil {
			fail("%v", err)
		}
	case rcptKey == nil:
		fail("no receipt key to check the receipt of an event beyond the checkpoint")
	default:
		rc, err := verify.OpenReceipt(e.Receipt, rcptKey)
		switch {
		case err != nil:
			fail("%v", err)
		case rc.Commitment != c || rc.Index != uint64(e.LeafIndex):
			fail("the receipt is for commitment %s at index %d, not this event", rc.Commitment, rc.Index)
		case rc.Origin != cp.Origin:
			fail("the receipt is of log %q, the checkpoint of log %q", rc.Origin, cp.Origin)
		default:
			err := verify.CheckReceipt(rc, *cp, nil, now)
			if errors.Is(err, verify.ErrReceiptPending) {
				verdict = Promised
				d := rc.Deadline
				r.Deadline = &d
			} else {
				fail("%v", err)
			}
		}
	}
	if len(problems) > 0 {
		verdict = Failed
	}
	r.Verdict, r.Problems = verdict, problems
	return r, body
}

// link is an event's place in its chain: its body when it could be read
// (nil when erased or failed).
type link struct {
	seq        uint64
	commitment string
	body       *event.Body
	erased     bool
}

// checkChain checks the chain of a whole history: the events come in
// sequence order from 1 without holes, each body links to the event before,
// and every body names the same patient. An erased event has no body: its
// own link is unknown, but its commitment is, so the event after it is
// still checked against it. An event whose body failed its commitment is
// reported on its own and not used.
func checkChain(links []link) error {
	links = slices.Clone(links)
	slices.SortStableFunc(links, func(a, b link) int { return cmp.Compare(a.seq, b.seq) })
	var prev event.Hash // zero before the first event
	var patient *event.Hash
	for i, l := range links {
		switch want := uint64(i) + 1; {
		case l.seq > want:
			return &verify.ChainError{Seq: want, Err: verify.ErrMissingEvent}
		case l.seq < want:
			return &verify.ChainError{Seq: l.seq, Err: verify.ErrDuplicateSeq}
		}
		if b := l.body; b != nil {
			if b.Prev != prev {
				return &verify.ChainError{Seq: l.seq, Err: verify.ErrWrongLink}
			}
			if patient == nil {
				patient = &b.Patient
			} else if b.Patient != *patient {
				return fmt.Errorf("chain: event %d names another patient than the events before", l.seq)
			}
		}
		c, err := event.ParseHash(l.commitment)
		if err != nil {
			return fmt.Errorf("chain: event %d has no valid commitment", l.seq)
		}
		prev = c
	}
	// Erased events: only those an erasure explains.
	marks := make([]verify.Link, len(links))
	for i, l := range links {
		marks[i] = verify.Link{Seq: l.seq, Erased: l.erased, Unread: !l.erased && l.body == nil, ErasureDone: verify.IsErasureDone(l.body)}
	}
	return verify.CheckErasures(marks)
}

// SeriesInput is a series of signed checkpoints, by increasing size, with
// the consistency proof from each to the next (Proofs[i] goes from
// Notes[i] to Notes[i+1], as GET /v1/log/consistency serves its hashes).
type SeriesInput struct {
	Keys   Keys       `json:"keys"`
	Notes  [][]byte   `json:"notes"`
	Proofs [][][]byte `json:"proofs"`
}

// CheckpointReport is the verdict on one checkpoint of a series.
type CheckpointReport struct {
	Checkpoint
	Verdict  string   `json:"verdict"`
	Problems []string `json:"problems,omitempty"`
}

// SeriesReport is the verdict on a series of checkpoints.
type SeriesReport struct {
	// OK is true when every checkpoint is signed by the checkpoint key and
	// each is consistent with the one before: the log only grew.
	OK bool `json:"ok"`
	// Inconsistent is true when a proof shows two checkpoints that cannot
	// both be of an append-only log: evidence against the operator.
	Inconsistent bool               `json:"inconsistent"`
	Problems     []string           `json:"problems,omitempty"`
	Checkpoints  []CheckpointReport `json:"checkpoints"`
}

// VerifySeries checks each checkpoint's signature and the consistency of
// each with the next.
func VerifySeries(in SeriesInput) *SeriesReport {
	rep := &SeriesReport{Checkpoints: []CheckpointReport{}}
	cpKey, _, err := in.Keys.verifiers()
	if err != nil {
		rep.Problems = append(rep.Problems, err.Error())
		return rep
	}
	if len(in.Proofs) != max(len(in.Notes)-1, 0) {
		rep.Problems = append(rep.Problems, fmt.Sprintf("%d proofs for %d checkpoints, want %d", len(in.Proofs), len(in.Notes), max(len(in.Notes)-1, 0)))
		return rep
	}
	opened := make([]*verify.Checkpoint, len(in.Notes))
	for i, n := range in.Notes {
		r := CheckpointReport{Verdict: Verified}
		c, err := verify.OpenCheckpoint(n, cpKey)
		if err != nil {
			r.Verdict, r.Problems = Failed, []string{err.Error()}
		} else {
			opened[i] = &c
			r.Checkpoint = Checkpoint{Origin: c.Origin, Size: c.Size, Hash: c.Hash.String()}
		}
		rep.Checkpoints = append(rep.Checkpoints, r)
	}
	for i := 1; i < len(opened); i++ {
		old, cur := opened[i-1], opened[i]
		if old == nil || cur == nil {
			continue
		}
		if err := verify.VerifyConsistency(*old, *cur, in.Proofs[i-1]); err != nil {
			var ie *verify.InconsistencyError
			if errors.As(err, &ie) {
				rep.Inconsistent = true
			}
			r := &rep.Checkpoints[i]
			r.Verdict, r.Problems = Failed, append(r.Problems, err.Error())
		}
	}
	rep.OK = len(rep.Problems) == 0
	for _, c := range rep.Checkpoints {
		if c.Verdict != Verified {
			rep.OK = false
		}
	}
	return rep
}

// EventsInput is a set of events that are not a whole chain (an auditor's
// search results), each with its inclusion proof in the tree of one signed
// checkpoint.
type EventsInput struct {
	Keys       Keys      `json:"keys"`
	Checkpoint []byte    `json:"checkpoint"`
	Events     []Event   `json:"events"`
	Now        time.Time `json:"now"`
}

// VerifyEvents checks each event as VerifyHistory does, but not the chain
// between them: search results are not a whole chain.
func VerifyEvents(in EventsInput) *HistoryReport {
	rep := &HistoryReport{Events: []EventReport{}}
	cpKey, rcptKey, err := in.Keys.verifiers()
	if err != nil {
		rep.Problems = append(rep.Problems, err.Error())
		return rep
	}
	var cp *verify.Checkpoint
	if c, err := verify.OpenCheckpoint(in.Checkpoint, cpKey); err != nil {
		rep.Problems = append(rep.Problems, err.Error())
	} else {
		cp = &c
		rep.Checkpoint = &Checkpoint{Origin: c.Origin, Size: c.Size, Hash: c.Hash.String()}
		rep.CheckpointNote = in.Checkpoint
	}
	for _, e := range in.Events {
		r, _ := checkEvent(e, cp, rcptKey, in.Now)
		rep.Events = append(rep.Events, r)
	}
	rep.OK = rep.okEvents()
	return rep
}

// okEvents reports whether there is no problem and no failed event.
func (rep *HistoryReport) okEvents() bool {
	if len(rep.Problems) > 0 {
		return false
	}
	for _, e := range rep.Events {
		if e.Verdict == Failed {
			return false
		}
	}
	return true
}
