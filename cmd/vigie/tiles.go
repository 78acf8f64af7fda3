package main

import (
	"bytes"
	"context"
	"sync/atomic"

	"github.com/vigie-sante/vigie/ledger/audit"
	"github.com/vigie-sante/vigie/ledger/verify"
)

// tileSource is searchSource reading the log's leaves from its entry
// bundles (vigie audit --tiles). The bundles' widths follow the size of
// the latest checkpoint served; what the leaves are worth is still
// decided by ledger/audit, which rebuilds each signed root from them.
type tileSource struct {
	searchSource
	size atomic.Uint64
}

var _ audit.EventSource = (*tileSource)(nil)

// Checkpoint returns the latest checkpoint and keeps its size, read
// without its signature: ledger/audit checks that, and a wrong size only
// gives leaves that do not rebuild the signed root.
func (s *tileSource) Checkpoint(ctx context.Context) ([]byte, error) {
	n, err := s.searchSource.Checkpoint(ctx)
	if err != nil {
		return nil, err
	}
	if i := bytes.Index(n, []byte("\n\n")); i >= 0 {
		if cp, err := verify.ParseCheckpoint(n[:i+1]); err == nil {
			s.size.Store(cp.Size)
		}
	}
	return n, nil
}

// Leaves returns the leaves [start, end) within the latest checkpoint.
func (s *tileSource) Leaves(ctx context.Context, start, end uint64) ([][]byte, error) {
	return s.Client.TileLeaves(ctx, start, end, s.size.Load())
}
