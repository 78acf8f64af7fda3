package verify

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"testing"

	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/vigie-sante/vigie/ledger/event"
)

func TestHashes(t *testing.T) {
	c := testCommitment("hashes", 0)
	v := LeafValue(c)
	if len(v) != 33 || v[0] != 0x01 || !bytes.Equal(v[1:], c[:]) {
		t.Errorf("LeafValue(%s) = %x", c, v)
	}
	if got, want := MerkleLeafHash(c), rfc6962.DefaultHasher.HashLeaf(v); !bytes.Equal(got[:], want) {
		t.Errorf("MerkleLeafHash = %s, want RFC 6962 HashLeaf(leaf value) = %x", got, want)
	}
	if got, want := MerkleLeafHash(c), tlog.RecordHash(v); got != event.Hash(want) {
		t.Errorf("MerkleLeafHash = %s, want tlog.RecordHash(leaf value) = %x", got, want)
	}
	if got, err := ParseLeafValue(v); err != nil || got != c {
		t.Errorf("ParseLeafValue(LeafValue(c)) = %s, %v; want %s", got, err, c)
	}
	for _, bad := range [][]byte{nil, {}, {0x01}, v[:32], append(bytes.Clone(v), 0), append([]byte{0x00}, c[:]...), append([]byte{0x02}, c[:]...), c[:]} {
		if got, err := ParseLeafValue(bad); err == nil {
			t.Errorf("ParseLeafValue(%x) = %s, want an error", bad, got)
		}
	}
	// The commitment hashes exactly domain, salt and body.
	var salt [SaltSize]byte
	salt[0] = 1
	body := []byte(`{"v":1}`)
	want := sha256.Sum256(append(append([]byte("vigie/event/v1\x00"), salt[:]...), body...))
	if got := Commitment(salt, body); got != event.Hash(want) {
		t.Errorf("Commitment = %s, want %x", got, want)
	}
	if Commitment(salt, body) == Commitment([SaltSize]byte{}, body) {
		t.Error("Commitment ignores the salt")
	}
}

// TestRootBuilder compares RootBuilder with tlog.TreeHash at every size.
func TestRootBuilder(t *testing.T) {
	var rb RootBuilder
	if rb.Size() != 0 || rb.Root() != event.Hash(sha256.Sum256(nil)) {
		t.Fatalf("empty RootBuilder: size %d, root %s", rb.Size(), rb.Root())
	}
	tr := newTLogTree(t, 300, "root")
	for i, h := range tr.leaves {
		rb.Append(h)
		if rb.Size() != uint64(i+1) {
			t.Fatalf("Size = %d after %d appends", rb.Size(), i+1)
		}
		if got, want := rb.Root(), tr.root(t, i+1); got != want {
			t.Fatalf("Root at size %d = %s, tlog.TreeHash = %s", i+1, got, want)
		}
		if len(rb.hashes) > 9 {
			t.Fatalf("RootBuilder holds %d hashes at size %d", len(rb.hashes), i+1)
		}
	}
}

// TestRootBuilderResume checks that a RootBuilder restored from the range
// of a shorter tree continues to the same roots, at every split of a tree,
// and that a range of the wrong length is refused.
func TestRootBuilderResume(t *testing.T) {
	tr := newTLogTree(t, 70, "resume")
	for split := 0; split <= len(tr.leaves); split++ {
		var first RootBuilder
		for _, h := range tr.leaves[:split] {
			first.Append(h)
		}
		rb, err := NewRootBuilder(first.Size(), first.Range())
		if err != nil {
			t.Fatalf("NewRootBuilder(%d, its range): %v", split, err)
		}
		if split > 0 && rb.Root() != tr.root(t, split) {
			t.Fatalf("restored at %d: root %s, want %s", split, rb.Root(), tr.root(t, split))
		}
		for _, h := range tr.leaves[split:] {
			rb.Append(h)
		}
		if got, want := rb.Root(), tr.root(t, len(tr.leaves)); got != want {
			t.Fatalf("resumed at %d: root %s, want %s", split, got, want)
		}
	}
	var rb RootBuilder
	for _, h := range tr.leaves[:7] {
		rb.Append(h)
	}
	r := rb.Range()
	for _, bad := range []struct {
		size   uint64
		hashes []event.Hash
	}{{7, r[:2]}, {7, append(r, r[0])}, {8, r}, {0, r[:1]}} {
		if _, err := NewRootBuilder(bad.size, bad.hashes); err == nil {
			t.Errorf("NewRootBuilder(%d, %d hashes) succeeded", bad.size, len(bad.hashes))
		}
	}
	r[0] = event.Hash{}
	if rb.Range()[0] == (event.Hash{}) {
		t.Error("Range returns the builder's own slice")
	}
}

// TestInclusionCrossCheck verifies, for every leaf of trees of many sizes,
// the inclusion proofs made by golang.org/x/mod/sumdb/tlog, and checks that
// tampered proofs fail here and in tlog alike.
func TestInclusionCrossCheck(t *testing.T) {
	const n = 70
	tr := newTLogTree(t, n, "inclusion")
	for size := 1; size <= n; size++ {
		root := tr.root(t, size)
		for index := 0; index < size; index++ {
			p := tr.inclusion(t, index, size)
			leaf := tr.leaves[index]
			if err := VerifyInclusion(uint64(index), uint64(size), leaf, p, root); err != nil {
				t.Fatalf("VerifyInclusion(%d, %d) of tlog's proof: %v", index, size, err)
			}
			// Another leaf, another index, another size, another root.
			other := tr.leaves[(index+1)%size]
			if size > 1 {
				mustNotInclude(t, index, size, other, p, root)
				// Another index: the proof may not even have the right length.
				j := (index + 1) % size
				err := VerifyInclusion(uint64(j), uint64(size), leaf, p, root)
				if !errors.Is(err, ErrNotIncluded) && !errors.Is(err, ErrMalformedProof) {
					t.Fatalf("VerifyInclusion(%d, %d) with the proof of leaf %d = %v", j, size, index, err)
				}
				if tlog.CheckRecord(toTLog(p), int64(size), tlog.Hash(root), int64(j), tlog.Hash(leaf)) == nil {
					t.Fatalf("tlog.CheckRecord(%d, %d) accepts the proof of leaf %d", j, size, index)
				}
			}
			root2 := root
			root2[0] ^= 1
			mustNotInclude(t, index, size, leaf, p, root2)
			// Each hash of the proof flipped.
			for i := range p {
				q := cloneProof(p)
				q[i][31] ^= 0x80
				mustNotInclude(t, index, size, leaf, q, root)
			}
			// Truncated, extended, or with a short hash: malformed.
			if len(p) > 0 {
				mustBeMalformed(t, VerifyInclusion(uint64(index), uint64(size), leaf, p[:len(p)-1], root))
				q := cloneProof(p)
				q[0] = q[0][:31]
				mustBeMalformed(t, VerifyInclusion(uint64(index), uint64(size), leaf, q, root))
			}
			mustBeMalformed(t, VerifyInclusion(uint64(index), uint64(size), leaf, append(cloneProof(p), make([]byte, 32)), root))
		}
	}
	if err := VerifyInclusion(5, 5, tr.leaves[0], nil, tr.root(t, 5)); err == nil {
		t.Error("VerifyInclusion(index 5, size 5) succeeded")
	}
	if err := VerifyInclusion(0, 0, tr.leaves[0], nil, event.Hash(sha256.Sum256(nil))); err == nil {
		t.Error("VerifyInclusion in an empty tree succeeded")
	}
	mustBeMalformed(t, VerifyInclusion(0, 2, tr.leaves[0], make([][]byte, 65), tr.root(t, 2)))
}

func mustNotInclude(t *testing.T, index, size int, leaf event.Hash, p [][]byte, root event.Hash) {
	t.Helper()
	err := VerifyInclusion(uint64(index), uint64(size), leaf, p, root)
	if !errors.Is(err, ErrNotIncluded) {
		t.Fatalf("VerifyInclusion(%d, %d) of a tampered input = %v, want ErrNotIncluded", index, size, err)
	}
	if tlog.CheckRecord(toTLog(p), int64(size), tlog.Hash(root), int64(index), tlog.Hash(leaf)) == nil {
		t.Fatalf("tlog.CheckRecord(%d, %d) accepts a tampered input that VerifyInclusion rejects", index, size)
	}
}

func mustBeMalformed(t *testing.T, err error) {
	t.Helper()
	if !errors.Is(err, ErrMalformedProof) {
		t.Fatalf("error = %v, want ErrMalformedProof", err)
	}
}

func cloneProof(p [][]byte) [][]byte {
	q := make([][]byte, len(p))
	for i := range p {
		q[i] = bytes.Clone(p[i])
	}
	return q
}

// TestConsistencyCrossCheck verifies tlog's consistency proofs between every
// pair of sizes, and checks that tampered proofs or roots fail with an
// InconsistencyError.
func TestConsistencyCrossCheck(t *testing.T) {
	const n = 70
	const origin = "example.org/vigie/1"
	tr := newTLogTree(t, n, "consistency")
	for newSize := 0; newSize <= n; newSize++ {
		newCP := tr.checkpoint(t, origin, newSize)
		for oldSize := 0; oldSize <= newSize; oldSize++ {
			oldCP := tr.checkpoint(t, origin, oldSize)
			p := tr.consistency(t, oldSize, newSize)
			if err := VerifyConsistency(oldCP, newCP, p); err != nil {
				t.Fatalf("VerifyConsistency(%d, %d) of tlog's proof: %v", oldSize, newSize, err)
			}
			if oldSize == 0 {
				continue
			}
			// A tampered root or proof hash is an inconsistency.
			bad := newCP
			bad.Hash[5] ^= 1
			mustBeInconsistent(t, oldCP, bad, p)
			bad = oldCP
			bad.Hash[5] ^= 1
			mustBeInconsistent(t, bad, newCP, p)
			for i := range p {
				q := cloneProof(p)
				q[i][0] ^= 1
				mustBeInconsistent(t, oldCP, newCP, q)
			}
			if len(p) > 0 {
				mustBeMalformed(t, VerifyConsistency(oldCP, newCP, p[:len(p)-1]))
			}
			mustBeMalformed(t, VerifyConsistency(oldCP, newCP, append(cloneProof(p), make([]byte, 32))))
		}
	}
}

// TestConsistencyFromEmptyTree: every tree extends the empty one, with an
// empty proof (RFC 9162, section 2.1.4); anything else about size 0 is
// refused.
func TestConsistencyFromEmptyTree(t *testing.T) {
	const origin = "example.org/vigie/1"
	tr := newTLogTree(t, 5, "empty")
	empty, five := tr.checkpoint(t, origin, 0), tr.checkpoint(t, origin, 5)
	notEmpty := empty
	notEmpty.Hash = five.Hash
	oneHash := [][]byte{make([]byte, 32)}
	for _, tc := range []struct {
		name          string
		old, new      Checkpoint
		proof         [][]byte
		ok            bool
		malformed     bool // else an InconsistencyError
		otherMismatch bool // neither: checkpoints of another log or order
	}{
		{name: "empty to five", old: empty, new: five, proof: nil, ok: true},
		{name: "empty to five, empty slice", old: empty, new: five, proof: [][]byte{}, ok: true},
		{name: "empty to empty", old: empty, new: empty, ok: true},
		{name: "a hash from the empty tree", old: empty, new: five, proof: oneHash, malformed: true},
		{name: "the proof from 1 to 5 as the proof from 0", old: empty, new: five, proof: tr.consistency(t, 1, 5), malformed: true},
		{name: "a hash between empty trees", old: empty, new: empty, proof: oneHash, malformed: true},
		{name: "size 0 with another root", old: notEmpty, new: five},
		{name: "size 0 with another root, to itself", old: notEmpty, new: empty},
		{name: "five to empty", old: five, new: empty, otherMismatch: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := VerifyConsistency(tc.old, tc.new, tc.proof)
			var ie *InconsistencyError
			switch {
			case tc.ok:
				if err != nil {
					t.Errorf("VerifyConsistency(0, %d) = %v, want nil", tc.new.Size, err)
				}
			case tc.malformed:
				if !errors.Is(err, ErrMalformedProof) {
					t.Errorf("VerifyConsistency = %v, want ErrMalformedProof", err)
				}
			case tc.otherMismatch:
				if err == nil || errors.As(err, &ie) || errors.Is(err, ErrMalformedProof) {
					t.Errorf("VerifyConsistency = %v, want an error about the checkpoints", err)
				}
			default:
				if !errors.As(err, &ie) {
					t.Errorf("VerifyConsistency = %v, want an InconsistencyError", err)
				}
			}
		})
	}
}

func mustBeInconsistent(t *testing.T, old, new Checkpoint, p [][]byte) *InconsistencyError {
	t.Helper()
	err := VerifyConsistency(old, new, p)
	var ie *InconsistencyError
	if !errors.As(err, &ie) {
		t.Fatalf("VerifyConsistency(%d, %d) = %v, want an InconsistencyError", old.Size, new.Size, err)
	}
	if ie.Old != old || ie.New != new || len(ie.Proof) != len(p) {
		t.Fatalf("InconsistencyError keeps %+v, %+v, %d hashes; want %+v, %+v, %d", ie.Old, ie.New, len(ie.Proof), old, new, len(p))
	}
	if old.Size > 0 && new.Size > old.Size &&
		tlog.CheckTree(toTLog(p), int64(new.Size), tlog.Hash(new.Hash), int64(old.Size), tlog.Hash(old.Hash)) == nil {
		t.Fatalf("tlog.CheckTree(%d, %d) accepts what VerifyConsistency rejects", old.Size, new.Size)
	}
	return ie
}

// TestForkEvidence builds two logs that share their first 10 leaves and then
// differ, as a log that forked its history would, and checks what
// VerifyConsistency and VerifyConsistencyNotes report.
func TestForkEvidence(t *testing.T) {
	origin := goldenOrigin
	cs, cv, _, _ := testKeys(t, origin)
	a := newTLogTree(t, 10, "fork")
	b := newTLogTree(t, 10, "fork")
	for i := 10; i < 16; i++ {
		a.append(t, MerkleLeafHash(testCommitment("branch a", i)))
		b.append(t, MerkleLeafHash(testCommitment("branch b", i)))
	}
	old := a.checkpoint(t, origin, 12) // what a client saw
	forked := b.checkpoint(t, origin, 16)
	proof := b.consistency(t, 12, 16) // the fork's own proof
	ie := mustBeInconsistent(t, old, forked, proof)
	if ie.OldNote != nil || ie.NewNote != nil {
		t.Error("InconsistencyError has notes it was not given")
	}

	oldNote, err := SignCheckpoint(old, cs)
	if err != nil {
		t.Fatal(err)
	}
	newNote, err := SignCheckpoint(forked, cs)
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = VerifyConsistencyNotes(oldNote, newNote, cv, proof)
	if !errors.As(err, &ie) {
		t.Fatalf("VerifyConsistencyNotes = %v, want an InconsistencyError", err)
	}
	if !bytes.Equal(ie.OldNote, oldNote) || !bytes.Equal(ie.NewNote, newNote) || ie.Old != old || ie.New != forked {
		t.Errorf("InconsistencyError does not keep the evidence: %+v", ie)
	}
	// The evidence stands on its own: re-checking it fails the same way.
	if err := VerifyConsistency(ie.Old, ie.New, ie.Proof); !errors.As(err, new(*InconsistencyError)) {
		t.Errorf("re-checking the evidence = %v", err)
	}

	// Same size, different roots: a fork proven by the notes alone.
	sameSize := b.checkpoint(t, origin, 12)
	ie = mustBeInconsistent(t, old, sameSize, nil)
	if ie.Reason != "same size, different roots" {
		t.Errorf("Reason = %q", ie.Reason)
	}
	// A consistent pair passes through VerifyConsistencyNotes too.
	goodNote, _ := SignCheckpoint(a.checkpoint(t, origin, 16), cs)
	if _, _, err := VerifyConsistencyNotes(oldNote, goodNote, cv, a.consistency(t, 12, 16)); err != nil {
		t.Errorf("VerifyConsistencyNotes(consistent) = %v", err)
	}
	// A note that does not open is not an inconsistency.
	_, _, err = VerifyConsistencyNotes(oldNote, forge(t, newNote), cv, proof)
	if !errors.Is(err, ErrSignature) || errors.As(err, new(*InconsistencyError)) {
		t.Errorf("VerifyConsistencyNotes(forged new note) = %v, want ErrSignature", err)
	}
}

func TestConsistencyErrors(t *testing.T) {
	const origin = "example.org/vigie/1"
	tr := newTLogTree(t, 8, "errors")
	cp := func(n int) Checkpoint { return tr.checkpoint(t, origin, n) }
	empty := Checkpoint{Origin: origin, Hash: emptyRoot}
	if err := VerifyConsistency(cp(5), cp(3), tr.consistency(t, 3, 5)); err == nil || errors.As(err, new(*InconsistencyError)) {
		t.Errorf("VerifyConsistency(5, 3) = %v, want a plain error", err)
	}
	other := cp(5)
	other.Origin = "other.example/vigie/1"
	if err := VerifyConsistency(cp(3), other, tr.consistency(t, 3, 5)); err == nil || errors.As(err, new(*InconsistencyError)) {
		t.Errorf("VerifyConsistency(different logs) = %v, want a plain error", err)
	}
	if err := VerifyConsistency(empty, cp(5), nil); err != nil {
		t.Errorf("VerifyConsistency(empty, 5) = %v", err)
	}
	if err := VerifyConsistency(empty, empty, nil); err != nil {
		t.Errorf("VerifyConsistency(empty, empty) = %v", err)
	}
	mustBeMalformed(t, VerifyConsistency(empty, cp(5), tr.consistency(t, 1, 5)))
	mustBeMalformed(t, VerifyConsistency(cp(5), cp(5), tr.consistency(t, 1, 5)))
	badEmpty := Checkpoint{Origin: origin, Hash: tr.leaves[0]}
	mustBeInconsistent(t, badEmpty, cp(5), nil)
	mustBeInconsistent(t, empty, badEmpty, nil)
	mustBeMalformed(t, VerifyConsistency(cp(1), cp(5), [][]byte{make([]byte, 31), {}, {}}))
}
