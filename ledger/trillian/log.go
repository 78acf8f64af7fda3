package trillian

import (
	"context"
	"fmt"

	tpb "github.com/google/trillian"
	"github.com/google/trillian/types"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/vigie-sante/vigie/ledger"
	"github.com/vigie-sante/vigie/ledger/event"
)

// Log is the ledger's Log on a Trillian PREORDERED_LOG tree, over
// Trillian's gRPC API. It is safe for concurrent use.
type Log struct {
	c    Clients
	tree int64
}

var _ ledger.Log = (*Log)(nil)

// NewLog returns the Log on the tree, which must be a PREORDERED_LOG tree.
func NewLog(c Clients, tree *tpb.Tree) (*Log, error) {
	if tree.TreeType != tpb.TreeType_PREORDERED_LOG {
		return nil, fmt.Errorf("trillian: tree %d is %v, the ledger needs PREORDERED_LOG", tree.TreeId, tree.TreeType)
	}
	return &Log{c: c, tree: tree.TreeId}, nil
}

// AddSequenced implements ledger.Log. Trillian answers a resent leaf with
// a per-leaf status (AlreadyExists, or FailedPrecondition on Trillian's
// PostgreSQL storage, which does not tell a retry from a conflict): for any
// status but OK the leaf at that index is read back and compared.
func (l *Log) AddSequenced(ctx context.Context, first uint64, values [][]byte) ([]ledger.AddOutcome, error) {
	req := &tpb.AddSequencedLeavesRequest{LogId: l.tree, Leaves: make([]*tpb.LogLeaf, len(values))}
	for i, v := range values {
		req.Leaves[i] = &tpb.LogLeaf{LeafValue: v, LeafIndex: int64(first) + int64(i)}
	}
	resp, err := l.c.Log.AddSequencedLeaves(ctx, req)
	if err != nil {
		return nil, err
	}
	if len(resp.Results) != len(values) {
		return nil, fmt.Errorf("trillian: %d results for %d leaves", len(resp.Results), len(values))
	}
	out := make([]ledger.AddOutcome, len(values))
	for i, r := range resp.Results {
		if codes.Code(r.GetStatus().GetCode()) == codes.OK {
			out[i].Stored = true
			continue
		}
		index := first + uint64(i)
		if leaf := r.GetLeaf(); leaf != nil && leaf.LeafIndex == int64(index) {
			// The storage said what holds the index (Vigie's SQLite
			// storage does; Trillian's PostgreSQL storage does not).
			if string(leaf.LeafValue) == string(values[i]) {
				out[i].Stored = true
			} else {
				out[i].Conflict = leaf.LeafValue
			}
			continue
		}
		got, err := l.LeafValue(ctx, index)
		switch {
		case err == nil && string(got) == string(values[i]):
			out[i].Stored = true
		case err == nil:
			out[i].Conflict = got
		default:
			// Refused, and not integrated yet (Trillian serves integrated
			// leaves only): report it not stored; the caller retries, and
			// finds it once the sequencer has integrated it.
		}
	}
	return out, nil
}

// Root implements ledger.Log.
func (l *Log) Root(ctx context.Context) (ledger.LogRoot, error) {
	resp, err := l.c.Log.GetLatestSignedLogRoot(ctx, &tpb.GetLatestSignedLogRootRequest{LogId: l.tree})
	if err != nil {
		return ledger.LogRoot{}, err
	}
	var r types.LogRootV1
	if err := r.UnmarshalBinary(resp.GetSignedLogRoot().GetLogRoot()); err != nil {
		return ledger.LogRoot{}, fmt.Errorf("trillian: log root: %w", err)
	}
	if len(r.RootHash) != 32 {
		return ledger.LogRoot{}, fmt.Errorf("trillian: root hash of %d bytes", len(r.RootHash))
	}
	return ledger.LogRoot{Size: r.TreeSize, Hash: event.Hash(r.RootHash)}, nil
}

// InclusionProof implements ledger.Log.
func (l *Log) InclusionProof(ctx context.Context, index, size uint64) ([][]byte, error) {
	resp, err := l.c.Log.GetInclusionProof(ctx, &tpb.GetInclusionProofRequest{LogId: l.tree, LeafIndex: int64(index), TreeSize: int64(size)})
	if err != nil {
		return nil, err
	}
	if resp.Proof == nil {
		// Trillian answers a size beyond its tree with no proof.
		return nil, fmt.Errorf("trillian: no inclusion proof of %d at size %d yet", index, size)
	}
	return resp.Proof.Hashes, nil
}

// ConsistencyProof implements ledger.Log.
func (l *Log) ConsistencyProof(ctx context.Context, from, to uint64) ([][]byte, error) {
	resp, err := l.c.Log.GetConsistencyProof(ctx, &tpb.GetConsistencyProofRequest{LogId: l.tree, FirstTreeSize: int64(from), SecondTreeSize: int64(to)})
	if err != nil {
		return nil, err
	}
	if resp.Proof == nil {
		return nil, fmt.Errorf("trillian: no consistency proof %d→%d yet", from, to)
	}
	return resp.Proof.Hashes, nil
}

// InclusionProofByHash implements ledger.Log.
func (l *Log) InclusionProofByHash(ctx context.Context, leafHash event.Hash, size uint64) (uint64, [][]byte, error) {
	resp, err := l.c.Log.GetInclusionProofByHash(ctx, &tpb.GetInclusionProofByHashRequest{LogId: l.tree, LeafHash: leafHash[:], TreeSize: int64(size), OrderBySequence: true})
	if status.Code(err) == codes.NotFound {
		return 0, nil, ledger.ErrNotFound
	}
	if err != nil {
		return 0, nil, err
	}
	for _, p := range resp.Proof {
		if p.LeafIndex >= 0 && uint64(p.LeafIndex) < size {
			return uint64(p.LeafIndex), p.Hashes, nil
		}
	}
	return 0, nil, ledger.ErrNotFound
}

// LeafValue implements ledger.Log. Trillian's API serves integrated leaves
// only: a leaf stored beyond the tree is ErrNotFound until integrated.
func (l *Log) LeafValue(ctx context.Context, index uint64) ([]byte, error) {
	resp, err := l.c.Log.GetLeavesByRange(ctx, &tpb.GetLeavesByRangeRequest{LogId: l.tree, StartIndex: int64(index), Count: 1})
	if err != nil {
		return nil, err
	}
	if len(resp.Leaves) == 0 || resp.Leaves[0].LeafIndex != int64(index) {
		return nil, ledger.ErrNotFound
	}
	return resp.Leaves[0].LeafValue, nil
}
