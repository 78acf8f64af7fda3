package audit

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/vigie-sante/vigie/ledger/event"
	"github.com/vigie-sante/vigie/ledger/verify"
)

// openReceipt opens the receipt of an event newer than its listing's
// checkpoint and checks that it is the event's.
func openReceipt(e *Envelope, c event.Hash, keys Keys) (verify.Receipt, *Finding) {
	bad := func(format string, args ...any) (verify.Receipt, *Finding) {
		return verify.Receipt{}, &Finding{Kind: KindReceipt, Seq: e.Seq, Index: ptr(e.Index),
			Message: fmt.Sprintf(format, args...), Evidence: &Evidence{Receipt: e.Receipt, Commitment: &c}}
	}
	if len(e.Receipt) == 0 {
		return bad("the event is newer than the listing's checkpoint and comes without a receipt")
	}
	if keys.Receipt == nil {
		return bad("the event comes with a receipt, but no receipt key is known to check it")
	}
	r, err := verify.OpenReceipt(e.Receipt, keys.Receipt)
	if err != nil {
		return bad("%v", err)
	}
	if r.Commitment != c || r.Index != e.Index {
		return bad("the receipt is for commitment %s at leaf %d, not for this event", r.Commitment, r.Index)
	}
	return r, nil
}

type pendingReceipt struct {
	receipt verify.Receipt
	note    []byte
	seq     uint64
	event   int // index in the caller's list
}

type inclusionResult struct {
	latest     *verify.Checkpoint
	latestNote []byte
	status     []string // per receipt: Included, Pending or Failed
	findings   []Finding
}

// awaitInclusion checks receipts against the latest checkpoint: consistent
// with base (if any), covering each receipt's index with an inclusion
// proof of its commitment. While some are not covered and their deadline
// has not passed, it asks again every poll (once if poll is 0).
func awaitInclusion(ctx context.Context, src LogSource, keys Keys, base *verify.Checkpoint, baseNote []byte, rs []pendingReceipt, now func() time.Time, poll time.Duration) (*inclusionResult, error) {
	res := &inclusionResult{status: make([]string, len(rs))}
	for i := range res.status {
		res.status[i] = Pending
	}
	var seen *verify.Checkpoint
	var seenNote []byte
	for {
		n, err := src.Checkpoint(ctx)
		if err != nil {
			return nil, fmt.Errorf("latest checkpoint: %w", err)
		}
		cp, f := openCheckpoint(n, keys, "the latest checkpoint")
		if f != nil {
			res.findings = append(res.findings, *f)
			markPending(res, Failed)
			return res, nil
		}
		// The newer checkpoint must extend what was seen before it.
		prev, prevNote := seen, seenNote
		if prev == nil {
			prev, prevNote = base, baseNote
		}
		if prev != nil {
			f, err := consistency(ctx, src, *prev, cp, prevNote, n)
			if err != nil {
				return nil, err
			}
			if f != nil {
				res.findings = append(res.findings, *f)
				markPending(res, Failed)
				return res, nil
			}
		}
		seen, seenNote = &cp, n
		res.latest, res.latestNote = &cp, n
		t := now()
		left := 0
		for i, p := range rs {
			if res.status[i] != Pending {
				continue
			}
			r := p.receipt
			var proof [][]byte
			if cp.Size > r.Index {
				if proof, err = src.InclusionProof(ctx, r.Index, cp.Size); err != nil {
					return nil, fmt.Errorf("inclusion proof of leaf %d: %w", r.Index, err)
				}
			}
			err := verify.CheckReceipt(r, cp, proof, t)
			switch {
			case err == nil:
				res.status[i] = Included
			case errors.Is(err, verify.ErrReceiptPending):
				left++
			case errors.Is(err, verify.ErrReceiptOverdue):
				res.status[i] = Failed
				res.findings = append(res.findings, Finding{Kind: KindReceiptOverdue, Seq: p.seq, Index: ptr(r.Index),
					Message:  fmt.Sprintf("the receipt promised inclusion by %s; the latest checkpoint (size %d) still does not cover leaf %d", r.Deadline.UTC().Format(time.RFC3339), cp.Size, r.Index),
					Evidence: &Evidence{Checkpoints: [][]byte{n}, Receipt: p.note, Commitment: &r.Commitment}})
			default:
				res.status[i] = Failed
				res.findings = append(res.findings, Finding{Kind: KindNotInLog, Seq: p.seq, Index: ptr(r.Index),
					Message:  fmt.Sprintf("the log does not hold the receipt's commitment at leaf %d of the checkpoint of size %d: %v", r.Index, cp.Size, err),
					Evidence: &Evidence{Checkpoints: [][]byte{n}, Receipt: p.note, Proof: proof, Commitment: &r.Commitment}})
			}
		}
		if left == 0 || poll <= 0 {
			return res, nil
		}
		if err := sleep(ctx, poll); err != nil {
			return nil, err
		}
	}
}

func markPending(res *inclusionResult, status string) {
	for i, s := range res.status {
		if s == Pending {
			res.status[i] = status
		}
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// ReceiptReport is what [CheckReceipt] found.
type ReceiptReport struct {
	Receipt verify.Receipt
	// Status is Included, Pending (its deadline has not passed; ask again
	// later) or Failed (see Findings).
	Status string
	// Latest is the checkpoint the receipt was checked against, and
	// LatestNote its signed note.
	Latest     *verify.Checkpoint
	LatestNote []byte
	Findings   []Finding
}

// CheckReceipt checks whether the log kept the promise of a receipt (a
// signed note, as Check and the recording methods return it): the latest
// checkpoint, consistent with previous (a signed checkpoint saved earlier,
// or nil), covers the receipt's index with an inclusion proof of its
// commitment. While it does not and the deadline has not passed, it asks
// again every poll (0: once). An error means the log could not be asked.
func CheckReceipt(ctx context.Context, src LogSource, keys Keys, receipt, previous []byte, now func() time.Time, poll time.Duration) (*ReceiptReport, error) {
	if keys.Receipt == nil || keys.Checkpoint == nil {
		return nil, errors.New("check receipt: the checkpoint and receipt keys are required")
	}
	if now == nil {
		now = time.Now
	}
	r, err := verify.OpenReceipt(receipt, keys.Receipt)
	if err != nil {
		return &ReceiptReport{Status: Failed, Findings: []Finding{{Kind: KindReceipt, Message: err.Error(), Evidence: &Evidence{Receipt: receipt}}}}, nil
	}
	var prev *verify.Checkpoint
	if previous != nil {
		p, err := keys.openSigned(previous)
		if err != nil {
			return nil, fmt.Errorf("saved checkpoint: %w", err)
		}
		prev = &p
	}
	res, err := awaitInclusion(ctx, src, keys, prev, previous, []pendingReceipt{{receipt: r, note: receipt}}, now, poll)
	if err != nil {
		return nil, err
	}
	return &ReceiptReport{Receipt: r, Status: res.status[0], Latest: res.latest, LatestNote: res.latestNote, Findings: res.findings}, nil
}
