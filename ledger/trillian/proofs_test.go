package trillian_test

import (
	"context"
	"crypto/sha256"
	"fmt"
	"slices"
	"testing"
	"time"

	tpb "github.com/google/trillian"

	"github.com/vigie-sante/vigie/ledger/event"
	vtrillian "github.com/vigie-sante/vigie/ledger/trillian"
	"github.com/vigie-sante/vigie/ledger/verify"
)

// runInclusionProofs checks that the proofs InclusionProofs builds from
// the storage of an in-process Trillian are those its API serves one by
// one, for leaves across several tiles and tree sizes on and off tile
// boundaries, and that they verify.
func runInclusionProofs(t *testing.T, p provider) {
	ctx := context.Background()
	e := start(t, p)
	tree, err := vtrillian.EnsureTree(ctx, e.Clients, vtrillian.TreeSpec{DisplayName: "proofs", Type: tpb.TreeType_PREORDERED_LOG})
	if err != nil {
		t.Fatal(err)
	}
	batch, err := vtrillian.NewLog(e.Clients, tree, p.LogStorage())
	if err != nil {
		t.Fatal(err)
	}
	one, err := vtrillian.NewLog(e.Clients, tree, nil)
	if err != nil {
		t.Fatal(err)
	}
	const n = 700
	var leaves []event.Hash
	var values [][]byte
	for i := range n {
		c := event.Hash(sha256.Sum256([]byte(fmt.Sprint("leaf ", i))))
		leaves = append(leaves, verify.MerkleLeafHash(c))
		values = append(values, verify.LeafValue(c))
	}
	for start := 0; start < n; start += 100 {
		if _, err := batch.AddSequenced(ctx, uint64(start), values[start:start+100]); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(time.Minute)
	for {
		r, err := batch.Root(ctx)
		if err == nil && r.Size == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("tree not integrated: %+v, %v", r, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, size := range []uint64{1, 255, 256, 257, 513, 699, 700} {
		var rb verify.RootBuilder
		for _, h := range leaves[:size] {
			rb.Append(h)
		}
		var indices []uint64
		for i := uint64(0); i < size; i += 1 + i/7 {
			indices = append(indices, i)
		}
		indices = append(indices, size-1, 0) // the last leaf, and a repeat
		got, err := batch.InclusionProofs(ctx, indices, size)
		if err != nil {
			t.Fatalf("InclusionProofs at size %d: %v", size, err)
		}
		want, err := one.InclusionProofs(ctx, indices, size)
		if err != nil {
			t.Fatalf("InclusionProofs one by one at size %d: %v", size, err)
		}
		for k, index := range indices {
			if !slices.EqualFunc(got[k], want[k], func(a, b []byte) bool { return string(a) == string(b) }) {
				t.Fatalf("size %d, leaf %d: the batch's proof differs from Trillian's", size, index)
			}
			if err := verify.VerifyInclusion(index, size, leaves[index], got[k], rb.Root()); err != nil {
				t.Fatalf("size %d, leaf %d: %v", size, index, err)
			}
		}
	}
	if _, err := batch.InclusionProofs(ctx, []uint64{3}, n+1); err == nil {
		t.Error("a proof at a size beyond the tree")
	}
	if _, err := batch.InclusionProofs(ctx, []uint64{n}, n); err == nil {
		t.Error("a proof of a leaf outside the tree")
	}
}

func TestInclusionProofsSQLite(t *testing.T)     { runInclusionProofs(t, openSQLite(t)) }
func TestInclusionProofsPostgreSQL(t *testing.T) { runInclusionProofs(t, openPostgreSQL(t)) }
