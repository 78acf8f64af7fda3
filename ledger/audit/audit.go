// Package audit checks a Vigie log from outside, as a patient or an auditor
// does, trusting nothing but the data served and the log's public keys
// (pinned on first use by the caller, or given). It is built on package
// ledger/verify and on the public API, reached through small interfaces
// ([LogSource], [HistorySource], [EventSource]) that an HTTP client
// implements (package api/client) and tests fake.
//
// The checks:
//
//   - [VerifyHistory]: a patient's history, every event of their chain:
//     body and salt against the commitment, inclusion against the signed
//     checkpoint (or, for an event newer than it, the receipt and then
//     inclusion in a later checkpoint), the chain from the first event to
//     the last, and consistency with the checkpoint and chain head saved
//     by the previous verification;
//   - [Follow]: the whole log, for auditors: from a saved state, every
//     checkpoint it sees is signed by the log's key and consistent with
//     every other (consistency proofs), and the root recomputed from all
//     the leaves equals each signed root; when a proof fails, the leaves
//     settle whether the log forked or served a wrong proof;
//   - [AuditLog]: the whole log as a regulator or a DPO reads it: the
//     events it may read, each checked against its commitment and compared
//     with the leaf at its index while [Follow] runs, and, for a
//     regulator's audit of the whole log, every leaf accounted for (an
//     event served, an erased placeholder, or a finding; else withheld);
//   - [CheckReceipt]: a receipt, against the log, once its merge delay has
//     passed;
//   - [CheckSeries] and [CheckEvents]: what the auditors' dashboard shows
//     (the log's signed checkpoints with those a reader saw, search
//     results against a checkpoint).
//
// [PinKeys] decides which keys a verification trusts (given, pinned, or
// served on first use) and [SavedState] what a reader keeps between two
// verifications: the command line and the browser (through package
// ledger/verify/report, built for WebAssembly) both use them. The corpus
// of package audittest runs through every face with the same verdicts.
//
// What goes wrong is reported as [Finding]s, each of a [Kind] that names
// it (a modified body, a missing event, a rollback...) and with the
// evidence: the signed notes, proofs and bytes that show it to a third
// party. Errors, by contrast, mean the check could not be done (a network
// failure, a server that refuses): the caller may try again.
//
// The package does no I/O of its own besides its sources, keeps no state
// (the caller saves [HistoryReport] and [FollowReport] states), and builds
// for GOOS=js GOARCH=wasm.
package audit

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/mod/sumdb/note"

	"github.com/vigie-sante/vigie/ledger/event"
	"github.com/vigie-sante/vigie/ledger/verify"
)

// Keys are the log's public keys a verifier trusts.
type Keys struct {
	// Checkpoint verifies checkpoints; its name is the log's origin.
	// Required.
	Checkpoint note.Verifier
	// Receipt verifies receipts; its name is the origin followed by
	// "/receipt". Required to check receipts (events newer than a
	// listing's checkpoint, CheckReceipt).
	Receipt note.Verifier
	// Witnesses, if not nil, is the witness policy the log's latest
	// checkpoint (GET /checkpoint) must meet: its cosignatures are
	// checked, and a checkpoint without quorum is a finding of kind
	// [KindWitnessQuorum].
	Witnesses *verify.WitnessPolicy
	// Former are the log's former checkpoint keys, oldest first, each
	// trusted for the checkpoints up to the transition that replaced it
	// ([Pinning.FollowTransitions]).
	Former []FormerKey
}

// LogSource serves the public log (the API's LogService). Implementations
// return what the server sent, unverified; an error means the server could
// not be asked or refused to answer.
type LogSource interface {
	// Checkpoint returns the latest signed checkpoint note.
	Checkpoint(ctx context.Context) ([]byte, error)
	// ConsistencyProof returns the proof that the tree of size first is a
	// prefix of the tree of size second (1 <= first <= second).
	ConsistencyProof(ctx context.Context, first, second uint64) ([][]byte, error)
	// InclusionProof returns the proof of leaf index in the tree of size
	// size.
	InclusionProof(ctx context.Context, index, size uint64) ([][]byte, error)
	// Leaves returns the leaf values from start on, at most end-start of
	// them and at least one if start is below the latest checkpoint's
	// size.
	Leaves(ctx context.Context, start, end uint64) ([][]byte, error)
}

// A Kind names what a [Finding] found. The values are stable: tools and
// tests match on them.
type Kind string

const (
	// KindSignature: a checkpoint is not signed by the log's key (pinned
	// or given), or does not name the log.
	KindSignature Kind = "checkpoint-signature"
	// KindRollback: the log shows a smaller tree than one seen before.
	KindRollback Kind = "rollback"
	// KindFork: the log's tree is not an extension of one seen before: the
	// consistency proof fails and the leaves do not rebuild the older
	// signed root, or two checkpoints of one size differ.
	KindFork Kind = "fork"
	// KindRootMismatch: the root recomputed from the leaves the log serves
	// is not the root it signed.
	KindRootMismatch Kind = "root-mismatch"
	// KindProof: a proof does not verify (an event's inclusion proof, or a
	// consistency proof between checkpoints the leaves show consistent).
	KindProof Kind = "proof"
	// KindModifiedBody: an event's body and salt do not hash to its
	// commitment: the body served is not the one recorded.
	KindModifiedBody Kind = "modified-body"
	// KindMalformed: what was served breaks the formats (an event body
	// that matches its commitment but does not parse, a body that
	// contradicts its envelope, a malformed leaf or commitment).
	KindMalformed Kind = "malformed"
	// KindMissingEvent: the patient's chain has a gap: an event left out.
	KindMissingEvent Kind = "missing-event"
	// KindWrongLink: an event does not name its predecessor's commitment.
	KindWrongLink Kind = "wrong-link"
	// KindDuplicate: two events claim one place in a chain, or a search
	// served two events for one leaf of the log.
	KindDuplicate Kind = "duplicate-event"
	// KindUnexplainedErasure: an event shown erased that no erasure
	// record explains: a server hiding an event behind a placeholder.
	KindUnexplainedErasure Kind = "unexplained-erasure"
	// KindRewritten: the history no longer holds what an earlier
	// verification saw (fewer events, or another event at a place).
	KindRewritten Kind = "history-rewritten"
	// KindReceipt: a receipt is not signed by the log's receipt key, or
	// does not match the event it came with.
	KindReceipt Kind = "receipt"
	// KindReceiptOverdue: a receipt's deadline has passed and no
	// checkpoint covers its leaf index: the log broke its promise.
	KindReceiptOverdue Kind = "receipt-overdue"
	// KindNotInLog: the log holds another leaf than an event's (or a
	// receipt's) commitment at its index.
	KindNotInLog Kind = "not-in-log"
	// KindForeignPatient: an event of the history names another patient
	// than the events before it: it belongs to another chain.
	KindForeignPatient Kind = "foreign-patient"
	// KindUnreadable: the server refuses the history because it cannot
	// read one of its own events (the event's stored form fails its
	// authentication): its store was altered.
	KindUnreadable Kind = "unreadable-event"
	// KindWithheld: leaves of the log that the regulator's full search
	// did not serve, neither as events nor as erased placeholders: events
	// withheld from the audit.
	KindWithheld Kind = "withheld-events"
	// KindWitnessQuorum: the log's latest checkpoint does not carry
	// valid cosignatures of enough witnesses to meet the pinned witness
	// policy's quorum: no outside party vouches that every reader is
	// shown the same log.
	KindWitnessQuorum Kind = "witness-quorum"
	// KindCosignature: a cosignature line by a witness of the policy
	// (its name and key) does not verify: a forged or damaged
	// cosignature.
	KindCosignature Kind = "cosignature"
	// KindFieldMismatch: what the server says of an event beside its body
	// (its kind, the professional's RPPS, the establishment's FINESS:
	// the columns its searches and a DPO's scope select by) disagrees
	// with the verified body. The body is what is shown.
	KindFieldMismatch Kind = "field-mismatch"
	// KindWitnessPolicyChanged: the server serves another witness policy
	// than the one the reader pinned (the portal's trust on first use):
	// the pinned one is still enforced, and the new one is not accepted
	// without the reader's say.
	KindWitnessPolicyChanged Kind = "witness-policy-changed"
	// KindSuccession: a log succession event that does not hold (its
	// checkpoint does not verify under its key, it names this log, it is
	// not the log's first event), or names another old log's key than
	// the one the auditor pinned.
	KindSuccession Kind = "log-succession"
)

// A Finding is one thing found wrong, with its evidence.
type Finding struct {
	Kind Kind `json:"kind"`
	// Seq is the event's place in its patient's chain, when the finding
	// is about an event (0 otherwise).
	Seq uint64 `json:"seq,omitempty"`
	// Index is the event's or leaf's index in the log, when known.
	Index *uint64 `json:"leaf_index,omitempty"`
	// Message says what is wrong, in English, without any identifier of a
	// patient.
	Message  string    `json:"message"`
	Evidence *Evidence `json:"evidence,omitempty"`
}

// Evidence is what shows a finding to a third party: the signed notes
// and proofs involved, and the bytes served.
type Evidence struct {
	Checkpoints [][]byte    `json:"checkpoints,omitempty"` // signed checkpoint notes
	Proof       [][]byte    `json:"proof,omitempty"`
	Commitment  *event.Hash `json:"commitment,omitempty"`
	Body        []byte      `json:"body,omitempty"`
	Salt        []byte      `json:"salt,omitempty"`
	Receipt     []byte      `json:"receipt,omitempty"`
	LeafValue   []byte      `json:"leaf_value,omitempty"`
}

func (f Finding) String() string {
	where := ""
	if f.Seq != 0 {
		where = fmt.Sprintf(" (event %d", f.Seq)
		if f.Index != nil {
			where += fmt.Sprintf(", leaf %d", *f.Index)
		}
		where += ")"
	} else if f.Index != nil {
		where = fmt.Sprintf(" (leaf %d)", *f.Index)
	}
	return fmt.Sprintf("%s%s: %s", f.Kind, where, f.Message)
}

func ptr[T any](v T) *T { return &v }

// An UnreadableError is what a [HistorySource] returns when the server
// refuses the history because it cannot read one of its events (the API's
// DATA_LOSS, reason EVENT_UNREADABLE): [VerifyHistory] reports it as a
// finding of kind [KindUnreadable], not as an error, since that is what a
// verification is for.
type UnreadableError struct {
	// Seq and Index are the event's place, when the server names it (0
	// and nil otherwise).
	Seq   uint64
	Index *uint64
	// Detail is what the server said.
	Detail string
}

// Finding returns the finding of kind [KindUnreadable] that e is.
func (e *UnreadableError) Finding() Finding {
	return Finding{Kind: KindUnreadable, Seq: e.Seq, Index: e.Index,
		Message: fmt.Sprintf("the server can no longer read an event of the history, its stored form was altered; it said: %s", e.Detail)}
}

func (e *UnreadableError) Error() string {
	return "the server cannot read an event of the history: " + e.Detail
}

// ErrBeyondCheckpoint is what a [LogSource] returns (wrapped) when the
// server refuses a consistency proof because a size is beyond its latest
// signed checkpoint (the API's BEYOND_CHECKPOINT). Asked for a size it
// signed itself, the server denies a tree it showed: a rollback.
var ErrBeyondCheckpoint = errors.New("size beyond the log's latest checkpoint")

// openCheckpoint opens a signed checkpoint with the log's key, or returns
// the finding that says why it cannot be trusted.
func openCheckpoint(n []byte, keys Keys, what string) (verify.Checkpoint, *Finding) {
	cp, err := keys.openSigned(n)
	if err != nil {
		return verify.Checkpoint{}, &Finding{
			Kind:     KindSignature,
			Message:  fmt.Sprintf("%s is not signed by the log's key %s: %v", what, keys.Checkpoint.Name(), err),
			Evidence: &Evidence{Checkpoints: [][]byte{n}},
		}
	}
	return cp, nil
}

// witnessed checks the cosignatures of checkpoint note n (what) against
// keys.Witnesses and returns the findings: an invalid cosignature by a
// witness of the policy, a quorum not met. It returns nothing without a
// policy, or for a note the log's key does not open (openCheckpoint's
// finding).
func witnessed(n []byte, keys Keys, what string) []Finding {
	if keys.Witnesses == nil {
		return nil
	}
	r, err := keys.Witnesses.CheckCosignatures(n, keys.Checkpoint)
	if err != nil {
		return nil
	}
	var out []Finding
	for _, w := range r.Invalid {
		out = append(out, Finding{Kind: KindCosignature,
			Message:  fmt.Sprintf("%s carries a cosignature by witness %s that does not verify", what, w),
			Evidence: &Evidence{Checkpoints: [][]byte{n}}})
	}
	if !r.Met {
		out = append(out, Finding{Kind: KindWitnessQuorum,
			Message: fmt.Sprintf("%s (%d leaves) carries valid cosignatures of %d witness(es) of the policy (%s), which do not meet its quorum %s",
				what, r.Checkpoint.Size, len(r.Cosigned), strings.Join(r.Cosigned, ", "), keys.Witnesses.Quorum),
			Evidence: &Evidence{Checkpoints: [][]byte{n}}})
	}
	return out
}

// consistency checks that new extends old with a proof from src, and
// returns the finding if it does not: a rollback for a smaller tree, an
// inconsistency (to be classified by the caller) for a proof that fails.
// An error means the proof could not be fetched.
func consistency(ctx context.Context, src LogSource, old, new verify.Checkpoint, oldNote, newNote []byte) (*Finding, error) {
	if new.Size < old.Size {
		return &Finding{
			Kind:     KindRollback,
			Message:  fmt.Sprintf("the log shows a tree of %d leaves, smaller than the tree of %d leaves seen before", new.Size, old.Size),
			Evidence: &Evidence{Checkpoints: [][]byte{oldNote, newNote}},
		}, nil
	}
	var proof [][]byte
	if old.Size > 0 && old.Size < new.Size {
		var err error
		if proof, err = src.ConsistencyProof(ctx, old.Size, new.Size); errors.Is(err, ErrBeyondCheckpoint) {
			return refusedProof(new.Size, oldNote, newNote), nil
		} else if err != nil {
			return nil, fmt.Errorf("consistency proof from %d to %d: %w", old.Size, new.Size, err)
		}
	}
	err := verify.VerifyConsistency(old, new, proof)
	if err == nil {
		return nil, nil
	}
	f := inconsistent(err, proof, oldNote, newNote)
	return &f, nil
}

// refusedProof is the finding of a log that refuses to prove a tree of
// size it signed (ErrBeyondCheckpoint): it denies a tree it showed.
func refusedProof(size uint64, oldNote, newNote []byte) *Finding {
	return &Finding{
		Kind:     KindRollback,
		Message:  fmt.Sprintf("the log refuses to prove the tree of %d leaves it signed, saying it has not reached that size", size),
		Evidence: &Evidence{Checkpoints: [][]byte{oldNote, newNote}},
	}
}

// inconsistent is the finding of a consistency proof that failed: a fork
// when the proof shows two trees, a bad proof when it is malformed
// (whoever served it is at fault).
func inconsistent(err error, proof [][]byte, oldNote, newNote []byte) Finding {
	f := Finding{Kind: KindFork, Message: err.Error(), Evidence: &Evidence{Checkpoints: [][]byte{oldNote, newNote}, Proof: proof}}
	var ie *verify.InconsistencyError
	if !errors.As(err, &ie) {
		f.Kind = KindProof
	}
	return f
}
