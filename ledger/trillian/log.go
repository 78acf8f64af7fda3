package trillian

import (
	"context"
	"fmt"

	tpb "github.com/google/trillian"
	"github.com/google/trillian/storage"
	"github.com/google/trillian/types"
	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
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
	// With an in-process Trillian, its storage, read directly for what
	// the API does one call at a time (InclusionProofs).
	storage   storage.LogStorage
	treeProto *tpb.Tree
}

var (
	_ ledger.Log         = (*Log)(nil)
	_ ledger.BatchProver = (*Log)(nil)
)

// NewLog returns the Log on the tree, which must be a PREORDERED_LOG tree.
// ls, if not nil, is the storage of an in-process Trillian serving c, which
// the Log reads directly to prove many leaves at once.
func NewLog(c Clients, tree *tpb.Tree, ls storage.LogStorage) (*Log, error) {
	if tree.TreeType != tpb.TreeType_PREORDERED_LOG {
		return nil, fmt.Errorf("trillian: tree %d is %v, the ledger needs PREORDERED_LOG", tree.TreeId, tree.TreeType)
	}
	return &Log{c: c, tree: tree.TreeId, storage: ls, treeProto: tree}, nil
}

// InclusionProofs implements ledger.BatchProver. With the storage of an
// in-process Trillian it reads every node of every proof in one snapshot,
// so that each Merkle tile is read and rebuilt once (one GetInclusionProof
// call per leaf reads its tiles each time), and builds the proofs as
// Trillian's server does; without, it asks for each proof in turn.
func (l *Log) InclusionProofs(ctx context.Context, indices []uint64, size uint64) ([][][]byte, error) {
	out := make([][][]byte, len(indices))
	if l.storage == nil {
		for i, index := range indices {
			p, err := l.InclusionProof(ctx, index, size)
			if err != nil {
				return nil, err
			}
			out[i] = p
		}
		return out, nil
	}
	tx, err := l.storage.SnapshotForTree(ctx, l.treeProto)
	if err != nil {
		return nil, fmt.Errorf("trillian: snapshot: %w", err)
	}
	defer tx.Close()
	slr, err := tx.LatestSignedLogRoot(ctx)
	if err != nil {
		return nil, fmt.Errorf("trillian: log root: %w", err)
	}
	var root types.LogRootV1
	if err := root.UnmarshalBinary(slr.GetLogRoot()); err != nil {
		return nil, fmt.Errorf("trillian: log root: %w", err)
	}
	if size > root.TreeSize {
		return nil, fmt.Errorf("trillian: no inclusion proof at size %d yet (tree size %d)", size, root.TreeSize)
	}
	nodes := make([]proof.Nodes, len(indices))
	var ids []compact.NodeID
	for i, index := range indices {
		if index >= size {
			return nil, fmt.Errorf("trillian: leaf %d is not in a tree of size %d", index, size)
		}
		if nodes[i], err = proof.Inclusion(index, size); err != nil {
			return nil, fmt.Errorf("trillian: inclusion proof of %d: %w", index, err)
		}
		ids = append(ids, nodes[i].IDs...)
	}
	got, err := tx.GetMerkleNodes(ctx, ids)
	if err != nil {
		return nil, fmt.Errorf("trillian: read nodes: %w", err)
	}
	if len(got) != len(ids) {
		return nil, fmt.Errorf("trillian: %d nodes read, %d asked", len(got), len(ids))
	}
	k := 0
	for i, pn := range nodes {
		hashes := make([][]byte, len(pn.IDs))
		for j, id := range pn.IDs {
			if got[k].ID != id {
				return nil, fmt.Errorf("trillian: node %v read for %v", got[k].ID, id)
			}
			hashes[j] = got[k].Hash
			k++
		}
		if out[i], err = pn.Rehash(hashes, rfc6962.DefaultHasher.HashChildren); err != nil {
			return nil, fmt.Errorf("trillian: inclusion proof of %d: %w", indices[i], err)
		}
	}
	return out, tx.Commit(ctx)
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
