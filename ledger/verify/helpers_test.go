package verify

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"testing"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/vigie-sante/vigie/ledger/event"
)

func decodeStd(s string) ([]byte, error) { return base64.StdEncoding.DecodeString(s) }

func encodeStd(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// A tlogTree is a log built with golang.org/x/mod/sumdb/tlog, an
// implementation independent of this package and of transparency-dev/merkle,
// which makes the roots and proofs the tests check.
type tlogTree struct {
	stored []tlog.Hash
	leaves []event.Hash
}

func (tr *tlogTree) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	for i, x := range indexes {
		out[i] = tr.stored[x]
	}
	return out, nil
}

// append adds a leaf by its Merkle leaf hash.
func (tr *tlogTree) append(t testing.TB, leafHash event.Hash) {
	t.Helper()
	hashes, err := tlog.StoredHashesForRecordHash(int64(len(tr.leaves)), tlog.Hash(leafHash), tr)
	if err != nil {
		t.Fatal(err)
	}
	tr.stored = append(tr.stored, hashes...)
	tr.leaves = append(tr.leaves, leafHash)
}

// newTLogTree returns a tree of n leaves whose commitments derive from seed.
func newTLogTree(t testing.TB, n int, seed string) *tlogTree {
	t.Helper()
	tr := &tlogTree{}
	for i := range n {
		tr.append(t, MerkleLeafHash(testCommitment(seed, i)))
	}
	return tr
}

func testCommitment(seed string, i int) event.Hash {
	return sha256.Sum256(binary.BigEndian.AppendUint64([]byte(seed), uint64(i)))
}

func (tr *tlogTree) root(t testing.TB, size int) event.Hash {
	t.Helper()
	h, err := tlog.TreeHash(int64(size), tr)
	if err != nil {
		t.Fatal(err)
	}
	return event.Hash(h)
}

func (tr *tlogTree) checkpoint(t testing.TB, origin string, size int) Checkpoint {
	return Checkpoint{Origin: origin, Size: uint64(size), Hash: tr.root(t, size)}
}

func (tr *tlogTree) inclusion(t testing.TB, index, size int) [][]byte {
	t.Helper()
	p, err := tlog.ProveRecord(int64(size), int64(index), tr)
	if err != nil {
		t.Fatal(err)
	}
	return toBytes(p)
}

func (tr *tlogTree) consistency(t testing.TB, old, new int) [][]byte {
	t.Helper()
	if old == 0 {
		return nil
	}
	p, err := tlog.ProveTree(int64(new), int64(old), tr)
	if err != nil {
		t.Fatal(err)
	}
	return toBytes(p)
}

func toBytes[H ~[32]byte](p []H) [][]byte {
	out := make([][]byte, len(p))
	for i := range p {
		out[i] = p[i][:]
	}
	return out
}

func toTLog(p [][]byte) []tlog.Hash {
	out := make([]tlog.Hash, len(p))
	for i := range p {
		copy(out[i][:], p[i])
	}
	return out
}
