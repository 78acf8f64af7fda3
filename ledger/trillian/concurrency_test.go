package trillian_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	tpb "github.com/google/trillian"
	"github.com/google/trillian/types"

	vtrillian "github.com/vigie-sante/vigie/ledger/trillian"
)

// TestConcurrentWritersSQLite queues leaves from 64 goroutines while the
// sequencer integrates them and readers read roots, leaves and proofs. No
// call may fail: in particular no SQLITE_BUSY ("database is locked") may
// reach a caller, since one connection writes and WAL readers never block.
func TestConcurrentWritersSQLite(t *testing.T) {
	const writers, perWriter = 64, 50
	ctx := context.Background()
	e := start(t, openSQLite(t))
	for _, typ := range []tpb.TreeType{tpb.TreeType_LOG, tpb.TreeType_PREORDERED_LOG} {
		t.Run(typ.String(), func(t *testing.T) {
			tree, err := vtrillian.EnsureTree(ctx, e.Clients, vtrillian.TreeSpec{DisplayName: "concurrent " + typ.String(), Type: typ})
			if err != nil {
				t.Fatal(err)
			}
			var next atomic.Int64 // PREORDERED_LOG: the next free index
			var wg sync.WaitGroup
			errs := make(chan error, writers*perWriter)
			for g := range writers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range perWriter {
						leaf := &tpb.LogLeaf{LeafValue: fmt.Appendf(nil, "writer %d leaf %d", g, i)}
						var err error
						if typ == tpb.TreeType_LOG {
							_, err = e.Log.QueueLeaf(ctx, &tpb.QueueLeafRequest{LogId: tree.TreeId, Leaf: leaf})
						} else {
							// AddSequencedLeaves wants contiguous indices per call;
							// writers interleave, which also exercises out-of-order
							// arrival of indices.
							leaf.LeafIndex = next.Add(1) - 1
							var resp *tpb.AddSequencedLeavesResponse
							resp, err = e.Log.AddSequencedLeaves(ctx, &tpb.AddSequencedLeavesRequest{LogId: tree.TreeId, Leaves: []*tpb.LogLeaf{leaf}})
							if err == nil && resp.Results[0].GetStatus().GetCode() != 0 {
								err = fmt.Errorf("leaf %d: %v", leaf.LeafIndex, resp.Results[0].GetStatus())
							}
						}
						if err != nil {
							errs <- err
						}
					}
				}()
			}
			stop := make(chan struct{})
			var readers sync.WaitGroup
			for range 4 {
				readers.Add(1)
				go func() {
					defer readers.Done()
					for {
						select {
						case <-stop:
							return
						default:
						}
						root, err := latestRoot(ctx, e.Log, tree.TreeId)
						if err != nil {
							errs <- err
							return
						}
						if root.TreeSize > 1 {
							if _, err := e.Log.GetInclusionProof(ctx, &tpb.GetInclusionProofRequest{LogId: tree.TreeId, LeafIndex: 0, TreeSize: int64(root.TreeSize)}); err != nil {
								errs <- fmt.Errorf("GetInclusionProof: %w", err)
							}
							if _, err := e.Log.GetLeavesByRange(ctx, &tpb.GetLeavesByRangeRequest{LogId: tree.TreeId, StartIndex: 0, Count: int64(root.TreeSize)}); err != nil {
								errs <- fmt.Errorf("GetLeavesByRange: %w", err)
							}
						}
					}
				}()
			}
			wg.Wait()
			want := uint64(writers * perWriter)
			deadline := time.Now().Add(time.Minute)
			for {
				root, err := latestRoot(ctx, e.Log, tree.TreeId)
				if err != nil {
					t.Fatal(err)
				}
				if root.TreeSize == want {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("tree size %d, want %d", root.TreeSize, want)
				}
				time.Sleep(50 * time.Millisecond)
			}
			close(stop)
			readers.Wait()
			close(errs)
			for err := range errs {
				t.Errorf("call failed: %v", err)
			}
		})
	}
}

func latestRoot(ctx context.Context, c tpb.TrillianLogClient, treeID int64) (types.LogRootV1, error) {
	var root types.LogRootV1
	resp, err := c.GetLatestSignedLogRoot(ctx, &tpb.GetLatestSignedLogRootRequest{LogId: treeID})
	if err != nil {
		return root, err
	}
	return root, root.UnmarshalBinary(resp.SignedLogRoot.LogRoot)
}
