package ledger_test

import (
	"errors"
	"testing"

	"github.com/vigie-sante/vigie/ledger"
	"github.com/vigie-sante/vigie/ledger/ledgertest"
	"github.com/vigie-sante/vigie/ledger/verify"
)

// TestCheckpointHistory: the history spans every checkpoint from the
// first to the latest, sampled by size, each signed and proved
// consistent with the one before by the proof that comes with it.
func TestCheckpointHistory(t *testing.T) {
	env := ledgertest.New(t, ledgertest.Options{NoStart: true})
	if got, err := env.Ledger.CheckpointHistory(ctx, 0, 10); err != nil || len(got) != 0 {
		t.Fatalf("history of an empty log = %d checkpoints, %v; want none", len(got), err)
	}
	// The checkpointer's first round signs the empty tree: the history
	// still has nothing to show (it once did, so that the answer depended
	// on whether that round had run, which a busy machine decides).
	env.Start()
	waitFor(t, "the empty tree's checkpoint", func() bool {
		_, _, err := env.Ledger.LatestCheckpoint(ctx)
		if err != nil && !errors.Is(err, ledger.ErrNotFound) {
			t.Fatal(err)
		}
		return err == nil
	})
	if got, err := env.Ledger.CheckpointHistory(ctx, 0, 10); err != nil || len(got) != 0 {
		t.Fatalf("history of an empty log with its checkpoint = %d checkpoints, %v; want none", len(got), err)
	}
	const events = 12
	for i := range events {
		r := record(t, env.Ledger, access("alice", i))
		if err := env.Ledger.WaitCheckpoint(ctx, r.Index); err != nil {
			t.Fatal(err)
		}
	}
	_, latest, err := env.Ledger.LatestCheckpoint(ctx)
	if err != nil || latest != events {
		t.Fatalf("latest checkpoint %d, %v; want %d", latest, err, events)
	}
	check := func(minSize uint64, count int, wantLen int) []ledger.HistoryCheckpoint {
		t.Helper()
		got, err := env.Ledger.CheckpointHistory(ctx, minSize, count)
		if err != nil {
			t.Fatalf("CheckpointHistory(%d, %d): %v", minSize, count, err)
		}
		if len(got) != wantLen {
			t.Fatalf("CheckpointHistory(%d, %d): %d checkpoints, want %d", minSize, count, len(got), wantLen)
		}
		var prev verify.Checkpoint
		for i, c := range got {
			cp, err := verify.OpenCheckpoint(c.Note, env.CheckpointKey)
			if err != nil || cp.Size != c.Size {
				t.Fatalf("checkpoint %d (size %d): %v", i, c.Size, err)
			}
			if c.SignedNanos == 0 {
				t.Errorf("checkpoint %d has no signing time", i)
			}
			switch {
			case i == 0:
				if c.Proof != nil || c.Size < minSize {
					t.Errorf("first checkpoint: size %d (min %d), proof %x", c.Size, minSize, c.Proof)
				}
			case cp.Size <= prev.Size:
				t.Errorf("checkpoint %d: size %d after %d", i, cp.Size, prev.Size)
			default:
				if err := verify.VerifyConsistency(prev, cp, c.Proof); err != nil {
					t.Errorf("checkpoint %d: %v", i, err)
				}
			}
			prev = cp
		}
		if got[len(got)-1].Size != latest {
			t.Errorf("the history ends at %d, not at the latest checkpoint %d", got[len(got)-1].Size, latest)
		}
		return got
	}
	all := check(0, ledger.MaxCheckpoints, events) // one checkpoint per event
	if all[0].Size != 1 {
		t.Errorf("the history starts at %d, want 1", all[0].Size)
	}
	if got := check(0, 4, 4); got[0].Size != 1 || got[1].Size != 4 || got[2].Size != 8 {
		t.Errorf("sampled sizes %d %d %d %d, want 1 4 8 12", got[0].Size, got[1].Size, got[2].Size, got[3].Size)
	}
	check(0, 1, 1)
	if got := check(10, 100, 3); got[0].Size != 10 {
		t.Errorf("from size 10: starts at %d", got[0].Size)
	}
	check(events, 2, 1)
	if got, err := env.Ledger.CheckpointHistory(ctx, events+1, 10); err != nil || len(got) != 0 {
		t.Errorf("history beyond the latest checkpoint = %d, %v; want none", len(got), err)
	}
	for _, n := range []int{0, -1, ledger.MaxCheckpoints + 1} {
		if _, err := env.Ledger.CheckpointHistory(ctx, 0, n); err == nil {
			t.Errorf("CheckpointHistory(count %d) did not fail", n)
		}
	}
}
