package server

import (
	"context"
	"log/slog"

	vigiev1 "github.com/vigie-sante/vigie/api/vigie/v1"
	"github.com/vigie-sante/vigie/ledger"
)

type historyService struct {
	vigiev1.UnimplementedHistoryServiceServer
	b *Backend
}

const listAccessesScope = "ListAccesses"

// ListAccesses returns the patient's chain, every event of every kind, in
// pages proved against one checkpoint: the first page pins the latest
// checkpoint and the chain's length at that moment, and the page token
// carries both (authenticated, bound to the patient, without any
// pseudonym). Events the checkpoint does not cover yet come with their
// receipt. Each call is recorded as a ledger-read event in the patient's
// chain, before the page is returned: it shows on the next listing.
func (s *historyService) ListAccesses(ctx context.Context, req *vigiev1.ListAccessesRequest) (*vigiev1.ListAccessesResponse, error) {
	id, ins, err := me(ctx)
	if err != nil {
		return nil, err
	}
	size, err := PageSize(req.PageSize, 100, 500)
	if err != nil {
		return nil, err
	}
	var cpSize, fromSeq, lastSeq uint64
	if req.PageToken != "" {
		v, err := s.b.Pages.Open(listAccessesScope, Binding(id), req.PageToken, 3)
		if err != nil {
			return nil, err
		}
		cpSize, fromSeq, lastSeq = v[0], v[1], v[2]
	} else {
		if _, cpSize, err = s.b.latestCheckpoint(ctx); err != nil && err != ledger.ErrNotFound {
			return nil, err
		}
		if lastSeq, err = s.b.Ledger.ChainLength(ctx, ins); err != nil {
			return nil, err
		}
		fromSeq = 1
	}
	resp := &vigiev1.ListAccessesResponse{}
	limit := int(min(uint64(size), lastSeq+1-min(fromSeq, lastSeq+1)))
	if limit > 0 {
		h, err := s.b.Ledger.History(ctx, ins, fromSeq, limit, cpSize)
		if err != nil {
			return nil, err
		}
		resp.Checkpoint = h.Checkpoint
		for _, e := range h.Events {
			m := &vigiev1.LedgerEvent{Sequence: e.Seq, LeafIndex: e.Index, Commitment: e.Commitment.String(), Erased: e.Erased, InclusionProof: e.Proof, Receipt: e.Receipt}
			if !e.Erased {
				m.Body, m.Salt = e.Body, e.Salt[:]
				indexFields(m, e.Kind, e.Actor, e.Organization)
			}
			resp.Events = append(resp.Events, m)
		}
		if n := len(h.Events); n > 0 {
			if next := h.Events[n-1].Seq + 1; next <= lastSeq {
				resp.NextPageToken = s.b.Pages.Seal(listAccessesScope, Binding(id), cpSize, next, lastSeq)
			}
		}
	} else if cpSize > 0 {
		note, _, err := s.b.latestCheckpoint(ctx)
		if err == nil {
			resp.Checkpoint = note
		}
	}
	if err := s.b.recordRead(ctx, ins, [32]byte{}, "patient", listAccessesScope, len(resp.Events), cpSize, fromSeq); err != nil {
		return nil, err
	}
	AddLogAttrs(ctx, slog.Int("events", len(resp.Events)))
	return resp, nil
}
