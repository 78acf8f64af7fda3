package ledger_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/vigie-sante/vigie/ledger"
	"github.com/vigie-sante/vigie/ledger/event"
	"github.com/vigie-sante/vigie/ledger/ledgertest"
	"github.com/vigie-sante/vigie/ledger/verify"
)

// TestEndToEnd records 10,000 events from 64 goroutines over 1,000
// patients, then verifies, with ledger/verify only, every event against
// the latest checkpoint, every patient's chain, and the consistency of the
// whole checkpoint history.
func TestEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("long")
	}
	for _, tc := range []struct {
		backend          string
		events, patients int
	}{{"SQLite", 10000, 1000}, {"PostgreSQL", 3000, 300}} {
		t.Run(tc.backend, func(t *testing.T) {
			opts := ledgertest.Options{}
			if tc.backend == "PostgreSQL" {
				opts.PostgreSQL = ledgertest.Postgres(t)
			}
			env := ledgertest.New(t, opts)
			const workers = 64
			start := time.Now()
			var wg sync.WaitGroup
			counts := make([]int, tc.patients)
			var mu sync.Mutex
			for g := range workers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := g; i < tc.events; i += workers {
						p := (i * 7919) % tc.patients
						if _, err := env.Ledger.Record(ctx, access(fmt.Sprint("patient-", p), i)); err != nil {
							t.Error(err)
							return
						}
						mu.Lock()
						counts[p]++
						mu.Unlock()
					}
				}()
			}
			wg.Wait()
			t.Logf("%d events in %v", tc.events, time.Since(start))
			waitCtx, cancel := context.WithTimeout(ctx, time.Minute)
			defer cancel()
			if err := env.Ledger.WaitCheckpoint(waitCtx, uint64(tc.events-1)); err != nil {
				t.Fatal(err)
			}
			total := 0
			for p, n := range counts {
				h := verifyHistory(t, env, fmt.Sprint("patient-", p), n)
				total += len(h.Events)
			}
			if total != tc.events {
				t.Errorf("%d events in the histories, want %d", total, tc.events)
			}
			verifyCheckpointHistory(t, env)
			crossCheckWithTlog(t, env)
		})
	}
}

// crossCheckWithTlog checks proofs the ledger serves with an independent
// implementation, golang.org/x/mod/sumdb/tlog (the Go checksum database's).
func crossCheckWithTlog(t *testing.T, env *ledgertest.Env) {
	t.Helper()
	note, size, err := env.Ledger.LatestCheckpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cp, err := verify.OpenCheckpoint(note, env.CheckpointKey)
	if err != nil {
		t.Fatal(err)
	}
	toTlog := func(p [][]byte) []tlog.Hash {
		out := make([]tlog.Hash, len(p))
		for i, h := range p {
			copy(out[i][:], h)
		}
		return out
	}
	var leaves [][]byte
	for uint64(len(leaves)) < size {
		page, err := env.Ledger.Leaves(ctx, uint64(len(leaves)), size)
		if err != nil || len(page) == 0 {
			t.Fatalf("Leaves(%d, %d) = %d leaves, %v", len(leaves), size, len(page), err)
		}
		leaves = append(leaves, page...)
	}
	for _, index := range []uint64{0, 1, size / 3, size / 2, uint64(len(leaves)) - 1} {
		proof, err := env.Ledger.InclusionProof(ctx, index, size)
		if err != nil {
			t.Fatal(err)
		}
		if err := tlog.CheckRecord(toTlog(proof), int64(size), tlog.Hash(cp.Hash), int64(index), tlog.RecordHash(leaves[index])); err != nil {
			t.Errorf("tlog rejects the inclusion proof of %d in %d: %v", index, size, err)
		}
	}
	for _, old := range []uint64{1, 2, size / 3, size - 1} {
		proof, err := env.Ledger.ConsistencyProof(ctx, old, size)
		if err != nil {
			t.Fatal(err)
		}
		var rb verify.RootBuilder
		for _, lv := range leaves[:old] {
			rb.Append(event.Hash(tlog.RecordHash(lv)))
		}
		if err := tlog.CheckTree(toTlog(proof), int64(size), tlog.Hash(cp.Hash), int64(old), tlog.Hash(rb.Root())); err != nil {
			t.Errorf("tlog rejects the consistency proof %d→%d: %v", old, size, err)
		}
	}
}

// verifyCheckpointHistory checks that every signed checkpoint verifies and
// is consistent with the next one and with the latest.
func verifyCheckpointHistory(t *testing.T, env *ledgertest.Env) {
	t.Helper()
	var rows []ledger.CheckpointRow
	if err := env.Store.Read(ctx, func(ctx context.Context, tx ledger.StoreReader) error {
		var err error
		rows, err = tx.Checkpoints(ctx, 0, 1<<20)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if len(rows) < 2 {
		t.Fatalf("%d checkpoints: expected a history", len(rows))
	}
	cps := make([]verify.Checkpoint, len(rows))
	for i, r := range rows {
		cp, err := verify.OpenCheckpoint(r.Note, env.CheckpointKey)
		if err != nil {
			t.Fatalf("checkpoint %d: %v", r.Size, err)
		}
		cps[i] = cp
	}
	latest := cps[len(cps)-1]
	for i, cp := range cps[:len(cps)-1] {
		for _, next := range []verify.Checkpoint{cps[i+1], latest} {
			proof, err := env.Ledger.ConsistencyProof(ctx, cp.Size, next.Size)
			if err != nil {
				t.Fatalf("ConsistencyProof(%d, %d): %v", cp.Size, next.Size, err)
			}
			if err := verify.VerifyConsistency(cp, next, proof); err != nil {
				t.Errorf("checkpoints %d and %d: %v", cp.Size, next.Size, err)
			}
		}
	}
	t.Logf("%d checkpoints, pairwise consistent", len(cps))
}
