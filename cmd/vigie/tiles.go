package main

import (
	"bytes"
	"context"
	"sync"
	"sync/atomic"

	"github.com/vigie-sante/vigie/ledger/audit"
	"github.com/vigie-sante/vigie/ledger/verify"
)

// tileSource is searchSource reading the log's leaves from its entry
// bundles (vigie audit --tiles). The bundles' widths follow the size of
// the latest checkpoint served; what the leaves are worth is still
// decided by ledger/audit, which rebuilds each signed root from them.
//
// An audit reads the leaves in order: while it hashes one batch, the next
// (as many leaves, up to the checkpoint's size) is already being fetched.
type tileSource struct {
	searchSource
	size atomic.Uint64

	mu   sync.Mutex
	next *prefetch // the batch after the last one read, being fetched
}

// prefetch is a batch of leaves fetched ahead of its call.
type prefetch struct {
	start, end, size uint64
	done             chan struct{}
	leaves           [][]byte
	err              error
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

// Leaves returns the leaves [start, end) within the latest checkpoint, and
// starts fetching the next batch of as many. A prefetched batch is used
// only by a call asking for exactly its range under the same checkpoint
// size; any other call fetches its own. The prefetch runs under ctx: it
// ends with the audit.
func (s *tileSource) Leaves(ctx context.Context, start, end uint64) ([][]byte, error) {
	size := s.size.Load()
	end = min(end, size)
	s.mu.Lock()
	p := s.next
	s.next = nil
	s.mu.Unlock()
	var leaves [][]byte
	var err error
	if p != nil && p.start == start && p.end == end && p.size == size {
		select {
		case <-p.done:
			leaves, err = p.leaves, p.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	} else {
		leaves, err = s.Client.TileLeaves(ctx, start, end, size)
	}
	if err != nil || end >= size || start >= end {
		return leaves, err
	}
	q := &prefetch{start: end, end: min(end+(end-start), size), size: size, done: make(chan struct{})}
	go func() {
		defer close(q.done)
		q.leaves, q.err = s.Client.TileLeaves(ctx, q.start, q.end, q.size)
	}()
	s.mu.Lock()
	s.next = q
	s.mu.Unlock()
	return leaves, nil
}
