package verify

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"math/bits"
	"slices"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"

	"github.com/vigie-sante/vigie/ledger/event"
)

// maxProofLen bounds the hashes of any proof in a tree of at most 2^64-1
// leaves.
const maxProofLen = 64

// Errors of [VerifyInclusion], to test with [errors.Is].
var (
	// ErrMalformedProof means a proof has the wrong number of hashes for the
	// sizes it is about, or a hash that is not 32 bytes: whoever served it
	// is at fault, not necessarily the log's checkpoints.
	ErrMalformedProof = errors.New("malformed proof")
	// ErrNotIncluded means a well-formed inclusion proof does not lead from
	// the leaf to the root: the leaf is not at that index in that tree.
	ErrNotIncluded = errors.New("leaf not included: proof does not lead to the root")
)

// VerifyInclusion checks that proof proves the leaf with Merkle leaf hash
// leafHash at index in the tree of the given size and root (RFC 6962,
// section 2.1.1). It returns an error wrapping [ErrNotIncluded] if the
// proof does not lead to root, [ErrMalformedProof] if the proof has the
// wrong shape, and another error if index >= size.
func VerifyInclusion(index, size uint64, leafHash event.Hash, proofHashes [][]byte, root event.Hash) error {
	if index >= size {
		return fmt.Errorf("inclusion: leaf index %d outside a tree of size %d", index, size)
	}
	if err := checkProofShape(proofHashes); err != nil {
		return fmt.Errorf("inclusion: %w", err)
	}
	err := proof.VerifyInclusion(rfc6962.DefaultHasher, index, size, leafHash[:], proofHashes, root[:])
	var mismatch proof.RootMismatchError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &mismatch):
		return fmt.Errorf("inclusion of leaf %d in tree of size %d: %w", index, size, ErrNotIncluded)
	default: // the number of hashes is wrong for index and size
		return fmt.Errorf("inclusion of leaf %d in tree of size %d: %w: %d hashes", index, size, ErrMalformedProof, len(proofHashes))
	}
}

func checkProofShape(p [][]byte) error {
	if len(p) > maxProofLen {
		return fmt.Errorf("%w: %d hashes, at most %d", ErrMalformedProof, len(p), maxProofLen)
	}
	for i, h := range p {
		if len(h) != event.HashSize {
			return fmt.Errorf("%w: hash %d is %d bytes, want %d", ErrMalformedProof, i, len(h), event.HashSize)
		}
	}
	return nil
}

// An InconsistencyError reports that two checkpoints of one log could not be
// proven consistent: a security event, never to be retried silently. It
// keeps the evidence. With equal sizes and different roots, the two signed
// notes prove on their own that the log forked; otherwise the failed proof
// shows that the log (or whoever served the proof) could not prove the
// newer tree extends the older, and an auditor decides by rebuilding both
// roots from the leaves (see [RootBuilder]).
type InconsistencyError struct {
	Old, New         Checkpoint
	OldNote, NewNote []byte   // the signed notes, when the caller had them
	Proof            [][]byte // the consistency proof that failed
	Reason           string
}

func (e *InconsistencyError) Error() string {
	return fmt.Sprintf("log inconsistency: %s: checkpoints of sizes %d (root %s) and %d (root %s): %s",
		e.Old.Origin, e.Old.Size, e.Old.Hash, e.New.Size, e.New.Hash, e.Reason)
}

// emptyRoot is the root of the empty tree, SHA-256 of nothing.
var emptyRoot = event.Hash(sha256.Sum256(nil))

// VerifyConsistency checks that proof proves checkpoint new extends
// checkpoint old (RFC 6962, section 2.1.2): the first old.Size leaves of
// new are the leaves of old. Both must be of the same log and old.Size <=
// new.Size. It returns an [*InconsistencyError] if a well-formed proof
// fails, if the sizes are equal and the roots differ, or if a checkpoint of
// size 0 has a root other than the empty tree's; an error wrapping
// [ErrMalformedProof] if the proof has the wrong shape; and another error
// for checkpoints of different logs or in the wrong order.
func VerifyConsistency(old, new Checkpoint, proofHashes [][]byte) error {
	if old.Origin != new.Origin {
		return fmt.Errorf("consistency: checkpoints of different logs %q and %q", old.Origin, new.Origin)
	}
	if old.Size > new.Size {
		return fmt.Errorf("consistency: old checkpoint of size %d is larger than new of size %d", old.Size, new.Size)
	}
	if err := checkProofShape(proofHashes); err != nil {
		return fmt.Errorf("consistency: %w", err)
	}
	inconsistent := func(reason string) error {
		return &InconsistencyError{Old: old, New: new, Proof: proofHashes, Reason: reason}
	}
	for _, c := range []Checkpoint{old, new} {
		if c.Size == 0 && c.Hash != emptyRoot {
			return inconsistent("a checkpoint of size 0 does not have the root of the empty tree")
		}
	}
	switch {
	case old.Size == new.Size:
		if len(proofHashes) != 0 {
			return fmt.Errorf("consistency: %w: %d hashes for equal sizes, want none", ErrMalformedProof, len(proofHashes))
		}
		if old.Hash != new.Hash {
			return inconsistent("same size, different roots")
		}
		return nil
	case old.Size == 0:
		if len(proofHashes) != 0 {
			return fmt.Errorf("consistency: %w: %d hashes from the empty tree, want none", ErrMalformedProof, len(proofHashes))
		}
		return nil
	}
	err := proof.VerifyConsistency(rfc6962.DefaultHasher, old.Size, new.Size, proofHashes, old.Hash[:], new.Hash[:])
	var mismatch proof.RootMismatchError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &mismatch):
		return inconsistent("the consistency proof fails")
	default: // the number of hashes is wrong for the sizes
		return fmt.Errorf("consistency from size %d to %d: %w: %d hashes", old.Size, new.Size, ErrMalformedProof, len(proofHashes))
	}
}

// VerifyConsistencyNotes opens two signed checkpoints of one log with the
// log's key v, as [OpenCheckpoint] does, and checks that proof proves the
// newer extends the older, as [VerifyConsistency] does. An
// [*InconsistencyError] it returns holds both signed notes.
func VerifyConsistencyNotes(oldNote, newNote []byte, v note.Verifier, proofHashes [][]byte) (old, new Checkpoint, err error) {
	if old, err = OpenCheckpoint(oldNote, v); err != nil {
		return Checkpoint{}, Checkpoint{}, fmt.Errorf("old %w", err)
	}
	if new, err = OpenCheckpoint(newNote, v); err != nil {
		return Checkpoint{}, Checkpoint{}, fmt.Errorf("new %w", err)
	}
	err = VerifyConsistency(old, new, proofHashes)
	var ie *InconsistencyError
	if errors.As(err, &ie) {
		ie.OldNote, ie.NewNote = oldNote, newNote
	}
	return old, new, err
}

// A RootBuilder computes the RFC 6962 root of a log from its Merkle leaf
// hashes, appended in order, in memory that does not grow with the log
// (at most 64 hashes: a compact range). An auditor uses it to rebuild a
// checkpoint's root from the leaves. The zero value is an empty tree. A
// RootBuilder is not safe for concurrent use.
type RootBuilder struct {
	size uint64
	// hashes are the roots of the perfect subtrees that make up the tree,
	// largest (leftmost) first: one per bit set in size.
	hashes []event.Hash
}

// NewRootBuilder returns a RootBuilder that continues a tree of size leaves
// from its compact range, hashes, as [RootBuilder.Range] returned it: the
// roots of the perfect subtrees that make up the tree, largest first, one
// per bit set in size. An auditor saves the range with the checkpoint it
// verified, and later appends only the leaves that came after. It fails if
// the number of hashes does not match size.
func NewRootBuilder(size uint64, hashes []event.Hash) (*RootBuilder, error) {
	if want := bits.OnesCount64(size); len(hashes) != want {
		return nil, fmt.Errorf("root builder: %d hashes for a tree of size %d, want %d", len(hashes), size, want)
	}
	return &RootBuilder{size: size, hashes: slices.Clone(hashes)}, nil
}

// Range returns a copy of the compact range of the leaves appended so far
// (see [NewRootBuilder]).
func (b *RootBuilder) Range() []event.Hash { return slices.Clone(b.hashes) }

// Append adds the leaf with Merkle leaf hash h at index Size().
func (b *RootBuilder) Append(h event.Hash) {
	for s := b.size; s&1 == 1; s >>= 1 {
		last := len(b.hashes) - 1
		h = nodeHash(b.hashes[last], h)
		b.hashes = b.hashes[:last]
	}
	b.hashes = append(b.hashes, h)
	b.size++
}

// Size returns the number of leaves appended.
func (b *RootBuilder) Size() uint64 { return b.size }

// Root returns the RFC 6962 root of the leaves appended so far; for no
// leaves, SHA-256 of the empty string.
func (b *RootBuilder) Root() event.Hash {
	if len(b.hashes) == 0 {
		return emptyRoot
	}
	root := b.hashes[len(b.hashes)-1]
	for i := len(b.hashes) - 2; i >= 0; i-- {
		root = nodeHash(b.hashes[i], root)
	}
	return root
}
