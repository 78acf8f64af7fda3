package ledger

import (
	"context"

	"github.com/vigie-sante/vigie/ledger/event"
)

// Log is the Merkle tree the ledger's leaves go to: a Trillian
// PREORDERED_LOG tree, whose indices the ledger assigns. ledger/trillian
// implements it over Trillian's gRPC API.
//
// Implementations are safe for concurrent use; every method may be retried.
type Log interface {
	// AddSequenced stores values[i] at index first+i. It returns one
	// outcome per leaf: an index that already holds the same value is a
	// duplicate (a retry), not an error. It must check what is stored at
	// an index Trillian refuses, so that a conflict is reported only when
	// another value holds the index.
	AddSequenced(ctx context.Context, first uint64, values [][]byte) ([]AddOutcome, error)
	// Root returns the latest root of the integrated tree.
	Root(ctx context.Context) (LogRoot, error)
	// InclusionProof returns the proof of the leaf at index in the tree of
	// the given size (index < size ≤ the latest root's size).
	InclusionProof(ctx context.Context, index, size uint64) ([][]byte, error)
	// ConsistencyProof returns the proof that the tree of size from is a
	// prefix of the tree of size to (0 < from ≤ to ≤ the latest root's
	// size).
	ConsistencyProof(ctx context.Context, from, to uint64) ([][]byte, error)
	// InclusionProofByHash finds the leaf with this Merkle leaf hash in
	// the tree of the given size and returns its index and inclusion
	// proof, or ErrNotFound.
	InclusionProofByHash(ctx context.Context, leafHash event.Hash, size uint64) (uint64, [][]byte, error)
	// LeafValue returns the value of the integrated leaf at index, or
	// ErrNotFound.
	LeafValue(ctx context.Context, index uint64) ([]byte, error)
}

// BatchProver is implemented by Logs that prove many leaves of one tree
// faster together than one by one (an in-process Trillian reads each
// Merkle tile once for all). History uses it for a page of a patient's
// events.
type BatchProver interface {
	// InclusionProofs returns the proof of each leaf at indices in the
	// tree of the given size, in the order of indices (each index < size
	// ≤ the latest root's size).
	InclusionProofs(ctx context.Context, indices []uint64, size uint64) ([][][]byte, error)
}

// LogRoot is a root of the log's tree.
type LogRoot struct {
	Size uint64
	Hash event.Hash
}

// AddOutcome is what became of one leaf given to Log.AddSequenced.
type AddOutcome struct {
	// Stored is true if the index now holds the value (just stored, or
	// already there from an earlier attempt).
	Stored bool
	// Conflict, if Stored is false, is the other value found at the index
	// (nil if the leaf was refused for another reason, to retry).
	Conflict []byte
}
