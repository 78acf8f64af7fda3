package server

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/genproto/googleapis/api/httpbody"
	"google.golang.org/protobuf/types/known/timestamppb"

	vigiev1 "github.com/vigie-sante/vigie/api/vigie/v1"
	"github.com/vigie-sante/vigie/ledger"
	"github.com/vigie-sante/vigie/ledger/event"
)

type logService struct {
	vigiev1.UnimplementedLogServiceServer
	b *Backend
}

// GetCheckpoint serves the latest signed checkpoint as C2SP logs do: the
// signed note, text/plain, with the witnesses' cosignatures when a policy
// is configured (Backend.Checkpoints).
func (s *logService) GetCheckpoint(ctx context.Context, _ *vigiev1.GetCheckpointRequest) (*httpbody.HttpBody, error) {
	note, _, err := s.b.latestCheckpoint(ctx)
	if err != nil {
		return nil, err
	}
	return &httpbody.HttpBody{ContentType: "text/plain; charset=utf-8", Data: note}, nil
}

// DefaultCheckpoints is how many checkpoints ListCheckpoints returns when
// the request does not say.
const DefaultCheckpoints = 100

// MaxListCheckpoints is the most checkpoints one ListCheckpoints call
// returns: each costs a consistency proof, and the call is public.
const MaxListCheckpoints = 200

// ListCheckpoints serves the log's history of signed checkpoints, sampled
// by size, each with the consistency proof from the one before.
func (s *logService) ListCheckpoints(ctx context.Context, req *vigiev1.ListCheckpointsRequest) (*vigiev1.ListCheckpointsResponse, error) {
	n := int(req.MaxCount)
	switch {
	case n == 0:
		n = DefaultCheckpoints
	case n > MaxListCheckpoints:
		return nil, InvalidField("max_count", fmt.Sprintf("must be at most %d", MaxListCheckpoints))
	}
	history, err := s.b.Ledger.CheckpointHistory(ctx, req.MinSize, n)
	if err != nil {
		return nil, err
	}
	out := &vigiev1.ListCheckpointsResponse{Checkpoints: make([]*vigiev1.HistoryCheckpoint, len(history))}
	for i, c := range history {
		out.Checkpoints[i] = &vigiev1.HistoryCheckpoint{
			Note: c.Note, Size: c.Size, SignedAt: timestamppb.New(time.Unix(0, c.SignedNanos)), ConsistencyProof: c.Proof,
		}
	}
	return out, nil
}

// beyond turns the ledger's "not signed yet" into an error naming the field.
func beyond(err error, field string) error {
	if errors.Is(err, ledger.ErrBeyondCheckpoint) {
		return &FieldError{Field: field, Problem: "beyond the latest signed checkpoint", Err: err}
	}
	return err
}

// GetConsistencyProof serves the proof that the tree of size first is a
// prefix of the tree of size second. From the empty tree (first 0) the
// proof is empty: every tree extends it (RFC 9162, section 2.1.4), and a
// witness that saw no checkpoint yet asks for exactly that.
func (s *logService) GetConsistencyProof(ctx context.Context, req *vigiev1.GetConsistencyProofRequest) (*vigiev1.ConsistencyProof, error) {
	if req.Second < req.First {
		return nil, InvalidField("second", "must not be less than first")
	}
	hashes, err := s.b.Ledger.ConsistencyProof(ctx, req.First, req.Second)
	if err != nil {
		return nil, beyond(err, "second")
	}
	return &vigiev1.ConsistencyProof{First: req.First, Second: req.Second, Hashes: hashes}, nil
}

func (s *logService) GetInclusionProof(ctx context.Context, req *vigiev1.GetInclusionProofRequest) (*vigiev1.InclusionProof, error) {
	if req.TreeSize == 0 {
		return nil, InvalidField("tree_size", "must be positive")
	}
	switch l := req.GetLeaf().(type) {
	case *vigiev1.GetInclusionProofRequest_LeafIndex:
		if l.LeafIndex >= req.TreeSize {
			return nil, InvalidField("leaf_index", "must be less than tree_size")
		}
		hashes, err := s.b.Ledger.InclusionProof(ctx, l.LeafIndex, req.TreeSize)
		if err != nil {
			return nil, beyond(err, "tree_size")
		}
		return &vigiev1.InclusionProof{LeafIndex: l.LeafIndex, TreeSize: req.TreeSize, Hashes: hashes}, nil
	case *vigiev1.GetInclusionProofRequest_Commitment:
		c, err := event.ParseHash(l.Commitment)
		if err != nil {
			return nil, InvalidField("commitment", "must be 64 lowercase hex digits")
		}
		index, hashes, err := s.b.Ledger.InclusionProofOf(ctx, c, req.TreeSize)
		if err != nil {
			return nil, beyond(err, "tree_size")
		}
		return &vigiev1.InclusionProof{LeafIndex: index, TreeSize: req.TreeSize, Hashes: hashes}, nil
	}
	return nil, InvalidField("leaf_index", "leaf_index or commitment is required")
}

// GetLeaves returns leaf values [start, end), clipped to the latest signed
// checkpoint and to ledger.MaxLeaves: fewer than asked means "ask again
// from start + len".
func (s *logService) GetLeaves(ctx context.Context, req *vigiev1.GetLeavesRequest) (*vigiev1.GetLeavesResponse, error) {
	if req.End <= req.Start {
		return nil, InvalidField("end", "must be greater than start")
	}
	leaves, err := s.b.Ledger.Leaves(ctx, req.Start, req.End)
	if err != nil {
		return nil, err
	}
	if len(leaves) == 0 {
		return nil, InvalidField("start", "beyond the latest signed checkpoint")
	}
	return &vigiev1.GetLeavesResponse{Start: req.Start, LeafValues: leaves}, nil
}

func (s *logService) GetPublicKey(context.Context, *vigiev1.GetPublicKeyRequest) (*vigiev1.PublicKeys, error) {
	return &vigiev1.PublicKeys{Origin: s.b.Keys.Origin, CheckpointKey: s.b.Keys.CheckpointKey, ReceiptKey: s.b.Keys.ReceiptKey}, nil
}
