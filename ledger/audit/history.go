package audit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/vigie-sante/vigie/ledger/event"
	"github.com/vigie-sante/vigie/ledger/verify"
)

// HistorySource serves a patient's history (the API's
// HistoryService.ListAccesses, with the patient's credentials) and the
// public log.
type HistorySource interface {
	LogSource
	// HistoryPage returns a page of the patient's history: the first for
	// an empty token, then the page of each Next.
	HistoryPage(ctx context.Context, token string) (*HistoryPage, error)
}

// A HistoryPage is a page of a patient's history, as served.
type HistoryPage struct {
	// Checkpoint is the signed checkpoint the events' proofs are against,
	// the same on every page of a listing; empty before the log's first.
	Checkpoint []byte
	Events     []Envelope
	// Next is the token of the next page; empty on the last.
	Next string
}

// A ChainHead is the last event of a patient's chain seen by a
// verification: its place and its commitment. The next verification checks
// that the history still holds it.
type ChainHead struct {
	Seq        uint64     `json:"seq"`
	Commitment event.Hash `json:"commitment"`
}

// HistoryOptions configure [VerifyHistory].
type HistoryOptions struct {
	// Keys are the log's keys. Keys.Receipt is needed when the listing
	// has events newer than its checkpoint (they come with receipts).
	Keys Keys
	// Previous is the signed checkpoint saved by the previous
	// verification, if any: the log must still extend it.
	Previous []byte
	// Heads are the chain heads saved by previous verifications, by
	// patient pseudonym: the history must still hold them.
	Heads map[event.Hash]ChainHead
	// Now is the clock, for receipts' deadlines. Default time.Now.
	Now func() time.Time
	// Poll is how often the latest checkpoint is asked again while a
	// receipt is pending (its event is not in a checkpoint yet and its
	// deadline has not passed); 0 asks once and reports it pending.
	Poll time.Duration
}

// Proof statuses of a [HistoryEvent].
const (
	// Included: the event's inclusion proof verifies against a signed
	// checkpoint.
	Included = "included"
	// Pending: the event is newer than every signed checkpoint seen, and
	// its receipt (valid) promises inclusion by a deadline not passed yet.
	Pending = "pending"
	// Failed: the event's inclusion could not be shown (see the findings).
	Failed = "failed"
)

// A HistoryEvent is an event of the history, as verified.
type HistoryEvent struct {
	event.Logged
	Seq    uint64
	Erased bool
	// Proof is Included, Pending or Failed.
	Proof string
	// Receipt is the event's receipt, for an event newer than the
	// listing's checkpoint.
	Receipt *verify.Receipt
}

// A HistoryReport is what [VerifyHistory] found.
type HistoryReport struct {
	// Checkpoint is the listing's checkpoint (zero if it had none), and
	// CheckpointNote its signed note.
	Checkpoint     verify.Checkpoint
	CheckpointNote []byte
	// Latest is the latest checkpoint fetched to prove events newer than
	// the listing's, if any; LatestNote its signed note.
	Latest     *verify.Checkpoint
	LatestNote []byte
	// Previous is the saved checkpoint the log was checked against, and
	// Growth the finding (also in Findings) if the listing's checkpoint
	// does not extend it: a rollback, a fork, a wrong proof.
	Previous *verify.Checkpoint
	Growth   *Finding
	// Pseudonym is the patient's pseudonym, as the events name it (zero
	// for an empty history).
	Pseudonym event.Hash
	Events    []HistoryEvent
	// Erased counts the erased events; their chain links could not be
	// checked (their bodies are gone), their places and inclusion were.
	Erased   int
	Findings []Finding
	// Head is the chain's last event, to save for the next verification.
	Head ChainHead
}

// NewestNote returns the newest verified checkpoint note of the report:
// what to save for the next verification.
func (r *HistoryReport) NewestNote() []byte {
	if r.Latest != nil && r.Latest.Size >= r.Checkpoint.Size {
		return r.LatestNote
	}
	return r.CheckpointNote
}

// maxPages bounds a listing, so that a server cannot keep a verifier
// paging for ever: 10 million events at the smallest useful page size.
const maxPages = 1 << 20

// VerifyHistory lists a patient's whole history from src and verifies it
// (see the package documentation). It returns the report with every
// finding; an error means the history could not be fetched, or the saved
// state does not open with the keys given.
func VerifyHistory(ctx context.Context, src HistorySource, opts HistoryOptions) (*HistoryReport, error) {
	if opts.Keys.Checkpoint == nil {
		return nil, errors.New("verify history: no checkpoint key")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	r := &HistoryReport{}
	var envs []Envelope
	token := ""
	for page := 0; ; page++ {
		if page == maxPages {
			return nil, fmt.Errorf("history: more than %d pages", maxPages)
		}
		p, err := src.HistoryPage(ctx, token)
		if ue := (*UnreadableError)(nil); errors.As(err, &ue) {
			return &HistoryReport{Findings: []Finding{ue.Finding()}}, nil
		}
		if err != nil {
			return nil, fmt.Errorf("history page %d: %w", page+1, err)
		}
		if page == 0 {
			r.CheckpointNote = p.Checkpoint
		} else if !bytes.Equal(p.Checkpoint, r.CheckpointNote) {
			r.Findings = append(r.Findings, Finding{Kind: KindProof,
				Message:  fmt.Sprintf("page %d of the listing is proved against another checkpoint than the first page", page+1),
				Evidence: &Evidence{Checkpoints: [][]byte{r.CheckpointNote, p.Checkpoint}}})
		}
		envs = append(envs, p.Events...)
		if p.Next == "" {
			break
		}
		if len(p.Events) == 0 {
			return nil, fmt.Errorf("history page %d: no events, but a next page", page+1)
		}
		token = p.Next
	}

	// The checkpoint, then the log against the saved one.
	trusted := len(r.CheckpointNote) > 0
	if trusted {
		cp, f := openCheckpoint(r.CheckpointNote, opts.Keys, "the listing's checkpoint")
		if f != nil {
			r.Findings = append(r.Findings, *f)
			trusted = false
		}
		r.Checkpoint = cp
	} else if len(envs) > 0 {
		r.Findings = append(r.Findings, Finding{Kind: KindProof,
			Message: "the listing has events but no checkpoint: they cannot be proved to be in the log"})
	}
	if opts.Previous != nil {
		prev, err := opts.Keys.openSigned(opts.Previous)
		if err != nil {
			return nil, fmt.Errorf("saved checkpoint: %w", err)
		}
		r.Previous = &prev
		if trusted {
			f, err := consistency(ctx, src, prev, r.Checkpoint, opts.Previous, r.CheckpointNote)
			if err != nil {
				return nil, err
			}
			if f != nil {
				r.Findings = append(r.Findings, *f)
				r.Growth = f
			}
		}
	}

	// Each event: its bytes, its place in the log.
	var links []verify.Link
	var pending []pendingReceipt
	for i := range envs {
		e := &envs[i]
		l, f := CheckEvent(e)
		he := HistoryEvent{Logged: l, Seq: e.Seq, Erased: e.Erased, Proof: Failed}
		switch {
		case f != nil:
			r.Findings = append(r.Findings, *f)
			if f.Kind == KindMalformed && l.Commitment.IsZero() {
				r.Events = append(r.Events, he)
				continue // no commitment to prove
			}
			links = append(links, verify.UnreadLink(e.Seq, l.Commitment)) // its own link is unknown
		case e.Erased:
			r.Erased++
			links = append(links, verify.ErasedLink(e.Seq, l.Commitment))
		default:
			if r.Pseudonym.IsZero() {
				r.Pseudonym = l.Body.Patient // the chain checks the others
			}
			links = append(links, verify.LinkOf(l.Body, l.Commitment))
			if f := CheckFields(e, l.Body); f != nil {
				r.Findings = append(r.Findings, *f)
			}
		}
		switch {
		case !trusted:
		case e.Index < r.Checkpoint.Size:
			err := verify.VerifyInclusion(e.Index, r.Checkpoint.Size, verify.MerkleLeafHash(l.Commitment), e.Proof, r.Checkpoint.Hash)
			if err != nil {
				r.Findings = append(r.Findings, Finding{Kind: KindProof, Seq: e.Seq, Index: ptr(e.Index),
					Message:  fmt.Sprintf("the event's inclusion proof does not verify against the checkpoint of size %d: %v", r.Checkpoint.Size, err),
					Evidence: &Evidence{Checkpoints: [][]byte{r.CheckpointNote}, Proof: e.Proof, Commitment: &l.Commitment}})
			} else {
				he.Proof = Included
			}
		default:
			rc, f := openReceipt(e, l.Commitment, opts.Keys)
			if f != nil {
				r.Findings = append(r.Findings, *f)
				break
			}
			he.Receipt = &rc
			he.Proof = Pending
			pending = append(pending, pendingReceipt{receipt: rc, note: e.Receipt, seq: e.Seq, event: len(r.Events)})
		}
		r.Events = append(r.Events, he)
	}

	// The chain: no gap, no fork, every link.
	if err := verify.VerifyChain(links); err != nil {
		r.Findings = append(r.Findings, chainFinding(err))
	}
	if n := len(r.Events); n > 0 {
		last := r.Events[n-1]
		r.Head = ChainHead{Seq: last.Seq, Commitment: last.Commitment}
	}
	if h, ok := opts.Heads[r.Pseudonym]; ok && !r.Pseudonym.IsZero() {
		if f := checkHead(h, r.Events); f != nil {
			r.Findings = append(r.Findings, *f)
		}
	}

	// Events newer than the listing's checkpoint: their receipts, then
	// their inclusion in a later checkpoint.
	if len(pending) > 0 {
		base := &r.Checkpoint
		baseNote := r.CheckpointNote
		if !trusted {
			base, baseNote = r.Previous, opts.Previous
		}
		res, err := awaitInclusion(ctx, src, opts.Keys, base, baseNote, pending, opts.Now, opts.Poll)
		if err != nil {
			return nil, err
		}
		r.Findings = append(r.Findings, res.findings...)
		if res.latest != nil {
			r.Latest, r.LatestNote = res.latest, res.latestNote
		}
		for i, p := range pending {
			r.Events[p.event].Proof = res.status[i]
		}
	}
	if opts.Keys.Witnesses != nil && trusted {
		fs, err := witnessedListing(ctx, src, opts.Keys, r)
		if err != nil {
			return nil, err
		}
		r.Findings = append(r.Findings, fs...)
	}
	return r, nil
}

// witnessedListing checks, for a policy of witnesses, the log's latest
// checkpoint (the one fetched for receipts, else GET /checkpoint): its
// cosignatures must meet the quorum, and the listing's checkpoint must be
// consistent with it (a prefix of it, or extending it), so that the
// history is in the one log the witnesses saw.
func witnessedListing(ctx context.Context, src LogSource, keys Keys, r *HistoryReport) ([]Finding, error) {
	n := r.LatestNote
	if n == nil {
		var err error
		if n, err = src.Checkpoint(ctx); err != nil {
			return nil, fmt.Errorf("latest checkpoint: %w", err)
		}
	}
	w, bad := openCheckpoint(n, keys, "the latest checkpoint")
	if bad != nil {
		return []Finding{*bad}, nil
	}
	out := witnessed(n, keys, "the latest checkpoint")
	old, oldNote, new, newNote := r.Checkpoint, r.CheckpointNote, w, n
	if w.Size < r.Checkpoint.Size {
		old, oldNote, new, newNote = w, n, r.Checkpoint, r.CheckpointNote
	}
	f, err := consistency(ctx, src, old, new, oldNote, newNote)
	if err != nil {
		return nil, err
	}
	if f != nil {
		out = append(out, *f)
	}
	return out, nil
}

// chainFinding turns a chain error of verify.VerifyChain into a finding.
func chainFinding(err error) Finding {
	f := Finding{Kind: KindMalformed, Message: err.Error()}
	var ce *verify.ChainError
	if errors.As(err, &ce) {
		f.Seq = ce.Seq
		switch {
		case errors.Is(err, verify.ErrMissingEvent):
			f.Kind = KindMissingEvent
			f.Message = fmt.Sprintf("event %d of the chain is missing from the history: the events after it name a predecessor the history does not show", ce.Seq)
		case errors.Is(err, verify.ErrWrongLink):
			f.Kind = KindWrongLink
			f.Message = fmt.Sprintf("event %d does not name the commitment of the event before it", ce.Seq)
		case errors.Is(err, verify.ErrDuplicateSeq):
			f.Kind = KindDuplicate
			f.Message = fmt.Sprintf("two events claim place %d of the chain", ce.Seq)
		case errors.Is(err, verify.ErrForeignPatient):
			f.Kind = KindForeignPatient
			f.Message = fmt.Sprintf("event %d belongs to another chain than the events before it: it names another patient", ce.Seq)
		case errors.Is(err, verify.ErrUnexplainedErasure):
			f.Kind = KindUnexplainedErasure
			f.Message = fmt.Sprintf("event %d is shown erased, but no erasure explains it: an erasure erases every event before it and is recorded right after them (%v)", ce.Seq, ce.Err)
		}
	}
	return f
}

// checkHead checks that the history still holds the chain head seen by the
// previous verification.
func checkHead(h ChainHead, events []HistoryEvent) *Finding {
	for _, e := range events {
		if e.Seq == h.Seq {
			if e.Commitment != h.Commitment {
				return &Finding{Kind: KindRewritten, Seq: h.Seq, Index: ptr(e.Index),
					Message:  fmt.Sprintf("event %d is not the one the previous verification saw (commitment %s then)", h.Seq, h.Commitment),
					Evidence: &Evidence{Commitment: &h.Commitment}}
			}
			return nil
		}
	}
	return &Finding{Kind: KindRewritten, Seq: h.Seq,
		Message:  fmt.Sprintf("the history no longer has event %d, which the previous verification saw (commitment %s)", h.Seq, h.Commitment),
		Evidence: &Evidence{Commitment: &h.Commitment}}
}

// CheckEvents checks events that are not a whole chain (an auditor's
// search results) against one signed checkpoint, without asking the log
// anything: each event's body and salt against its commitment, and its
// inclusion proof against the checkpoint; an event the checkpoint does
// not cover, its receipt (Pending until its deadline, then a finding of
// kind [KindReceiptOverdue]: no later checkpoint is asked for).
func CheckEvents(keys Keys, checkpoint []byte, envs []Envelope, now time.Time) ([]HistoryEvent, verify.Checkpoint, []Finding) {
	var findings []Finding
	cp, bad := openCheckpoint(checkpoint, keys, "the checkpoint")
	if bad != nil {
		findings = append(findings, *bad)
	}
	events := make([]HistoryEvent, 0, len(envs))
	for i := range envs {
		e := &envs[i]
		l, f := CheckEvent(e)
		he := HistoryEvent{Logged: l, Seq: e.Seq, Erased: e.Erased, Proof: Failed}
		if f != nil {
			findings = append(findings, *f)
		} else if l.Body != nil {
			if ff := CheckFields(e, l.Body); ff != nil {
				findings = append(findings, *ff)
			}
		}
		switch {
		case f != nil && l.Commitment.IsZero(), bad != nil:
		case e.Index < cp.Size:
			if err := verify.VerifyInclusion(e.Index, cp.Size, verify.MerkleLeafHash(l.Commitment), e.Proof, cp.Hash); err != nil {
				findings = append(findings, Finding{Kind: KindProof, Seq: e.Seq, Index: ptr(e.Index),
					Message:  fmt.Sprintf("the event's inclusion proof does not verify against the checkpoint of size %d: %v", cp.Size, err),
					Evidence: &Evidence{Checkpoints: [][]byte{checkpoint}, Proof: e.Proof, Commitment: &l.Commitment}})
			} else if f == nil {
				he.Proof = Included
			}
		default:
			rc, rf := openReceipt(e, l.Commitment, keys)
			if rf != nil {
				findings = append(findings, *rf)
				break
			}
			he.Receipt = &rc
			switch err := verify.CheckReceipt(rc, cp, nil, now); {
			case errors.Is(err, verify.ErrReceiptPending):
				if f == nil {
					he.Proof = Pending
				}
			case errors.Is(err, verify.ErrReceiptOverdue):
				findings = append(findings, Finding{Kind: KindReceiptOverdue, Seq: e.Seq, Index: ptr(e.Index),
					Message:  fmt.Sprintf("the receipt promised inclusion by %s; the checkpoint (size %d) does not cover leaf %d: %v", rc.Deadline.UTC().Format(time.RFC3339), cp.Size, rc.Index, err),
					Evidence: &Evidence{Checkpoints: [][]byte{checkpoint}, Receipt: e.Receipt, Commitment: &rc.Commitment}})
			default:
				findings = append(findings, Finding{Kind: KindReceipt, Seq: e.Seq, Index: ptr(e.Index), Message: err.Error(),
					Evidence: &Evidence{Checkpoints: [][]byte{checkpoint}, Receipt: e.Receipt, Commitment: &rc.Commitment}})
			}
		}
		events = append(events, he)
	}
	return events, cp, findings
}
