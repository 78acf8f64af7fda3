package verify

import (
	"bytes"
	"errors"
	"math"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/vigie-sante/vigie/ledger/event"
)

// The fuzz targets below check that no input makes ledger/verify panic, that
// every format round-trips, and that every proof check agrees with
// golang.org/x/mod/sumdb/tlog on the inputs both accept. `go test` runs
// their seeds; `go test -fuzz FuzzX` explores.

func addNoteSeeds(f *testing.F) {
	for _, name := range []string{"checkpoint.txt", "checkpoint.note", "receipt.txt", "receipt.note"} {
		f.Add(readFile(f, "testdata/"+name))
	}
	f.Add([]byte("o\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\next\n"))
	f.Add([]byte("vigie receipt v2\n"))
}

func FuzzParseOrigin(f *testing.F) {
	f.Add("dmp.example.fr/vigie/7305128413946201301")
	f.Add("a/vigie/01")
	f.Fuzz(func(t *testing.T, origin string) {
		name, id, err := ParseOrigin(origin)
		if err != nil {
			return
		}
		if again, err := FormatOrigin(name, id); err != nil || again != origin {
			t.Errorf("FormatOrigin(ParseOrigin(%q)) = %q, %v", origin, again, err)
		}
	})
}

func FuzzParseCheckpoint(f *testing.F) {
	addNoteSeeds(f)
	f.Fuzz(func(t *testing.T, text []byte) {
		cp, err := ParseCheckpoint(text)
		if err != nil {
			return
		}
		out, err := FormatCheckpoint(cp)
		if err != nil {
			t.Fatalf("FormatCheckpoint(ParseCheckpoint(%q)): %v", text, err)
		}
		// The three lines are canonical; what follows are extension lines.
		if !bytes.HasPrefix(text, out) {
			t.Fatalf("FormatCheckpoint(ParseCheckpoint(x)) = %q, not a prefix of x = %q", out, text)
		}
		if again, err := ParseCheckpoint(out); err != nil || again != cp {
			t.Fatalf("ParseCheckpoint(FormatCheckpoint(cp)) = %+v, %v; want %+v", again, err, cp)
		}
		if _, err := ParseReceipt(text); err == nil {
			t.Fatalf("%q parses as a checkpoint and as a receipt", text)
		}
	})
}

func FuzzCheckpointRoundTrip(f *testing.F) {
	f.Add(goldenOrigin, uint64(2), []byte{1, 2, 3})
	f.Add("a", uint64(math.MaxUint64), []byte{})
	f.Fuzz(func(t *testing.T, origin string, size uint64, hash []byte) {
		cp := Checkpoint{Origin: origin, Size: size}
		copy(cp.Hash[:], hash)
		text, err := FormatCheckpoint(cp)
		if err != nil {
			if ValidOrigin(origin) {
				t.Fatalf("FormatCheckpoint(valid origin %q): %v", origin, err)
			}
			return
		}
		got, err := ParseCheckpoint(text)
		if err != nil || got != cp {
			t.Fatalf("ParseCheckpoint(FormatCheckpoint(%+v)) = %+v, %v", cp, got, err)
		}
		if bytes.Count(text, []byte("\n")) != 3 {
			t.Fatalf("FormatCheckpoint = %q, want three lines", text)
		}
	})
}

func FuzzOpenCheckpoint(f *testing.F) {
	addNoteSeeds(f)
	cs, cv, _, _ := testKeys(f, goldenOrigin)
	witness, _, _, _ := testKeys(f, "witness.example/w1")
	cosigned, err := note.Sign(&note.Note{Text: string(readFile(f, "testdata/checkpoint.txt"))}, cs, witness)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(cosigned)
	f.Fuzz(func(t *testing.T, signed []byte) {
		cp, err := OpenCheckpoint(signed, cv)
		if err != nil {
			return
		}
		if cp.Origin != goldenOrigin {
			t.Fatalf("OpenCheckpoint accepted origin %q with the key of %q", cp.Origin, goldenOrigin)
		}
		// Only the log key can have signed it: re-signing the text gives
		// the same checkpoint.
		n, err := note.Open(signed, note.VerifierList(cv))
		if err != nil {
			t.Fatalf("note.Open rejects what OpenCheckpoint accepts: %v", err)
		}
		if got, err := ParseCheckpoint([]byte(n.Text)); err != nil || got != cp {
			t.Fatalf("ParseCheckpoint(text) = %+v, %v; want %+v", got, err, cp)
		}
	})
}

func FuzzParseReceipt(f *testing.F) {
	addNoteSeeds(f)
	f.Fuzz(func(t *testing.T, text []byte) {
		r, err := ParseReceipt(text)
		if err != nil {
			return
		}
		out, err := FormatReceipt(r)
		if err != nil {
			t.Fatalf("FormatReceipt(ParseReceipt(%q)): %v", text, err)
		}
		if !bytes.Equal(out, text) {
			t.Fatalf("FormatReceipt(ParseReceipt(x)) = %q, want x = %q", out, text)
		}
		if _, err := ParseCheckpoint(text); err == nil {
			t.Fatalf("%q parses as a receipt and as a checkpoint", text)
		}
	})
}

func FuzzReceiptRoundTrip(f *testing.F) {
	f.Add(goldenOrigin, uint64(1), []byte{1}, int64(1795903201000000500), int64(10e9))
	f.Fuzz(func(t *testing.T, origin string, index uint64, commitment []byte, unixNano, delay int64) {
		r := Receipt{Origin: origin, Index: index, Time: time.Unix(0, unixNano), Deadline: time.Unix(0, unixNano).Add(time.Duration(delay))}
		copy(r.Commitment[:], commitment)
		text, err := FormatReceipt(r)
		if err != nil {
			return
		}
		got, err := ParseReceipt(text)
		if err != nil {
			t.Fatalf("ParseReceipt(FormatReceipt(%+v)) = %v; text %q", r, err, text)
		}
		if got.Origin != r.Origin || got.Index != r.Index || got.Commitment != r.Commitment ||
			!got.Time.Equal(r.Time) || !got.Deadline.Equal(r.Deadline) {
			t.Fatalf("ParseReceipt(FormatReceipt(%+v)) = %+v", r, got)
		}
	})
}

func FuzzOpenReceipt(f *testing.F) {
	addNoteSeeds(f)
	_, rv, _, _ := testKeys(f, ReceiptKeyName(goldenOrigin))
	f.Fuzz(func(t *testing.T, signed []byte) {
		r, err := OpenReceipt(signed, rv)
		if err != nil {
			return
		}
		if r.Origin != goldenOrigin {
			t.Fatalf("OpenReceipt accepted origin %q with the receipt key of %q", r.Origin, goldenOrigin)
		}
		if _, err := OpenCheckpoint(signed, rv); err == nil {
			t.Fatal("a receipt opens as a checkpoint")
		}
	})
}

func FuzzParseLeafValue(f *testing.F) {
	f.Add(LeafValue(testCommitment("leaf", 0)))
	f.Add([]byte{0x00})
	f.Fuzz(func(t *testing.T, v []byte) {
		c, err := ParseLeafValue(v)
		if valid := len(v) == 33 && v[0] == 1; valid != (err == nil) {
			t.Fatalf("ParseLeafValue(%x) = %v", v, err)
		}
		if err == nil && !bytes.Equal(LeafValue(c), v) {
			t.Fatalf("LeafValue(ParseLeafValue(%x)) = %x", v, LeafValue(c))
		}
	})
}

// split cuts b into 32-byte hashes; a shorter tail becomes a short hash.
func split(b []byte) [][]byte {
	var p [][]byte
	for len(b) > 0 {
		n := min(len(b), 32)
		p = append(p, b[:n])
		b = b[n:]
	}
	return p
}

func hashOf(b []byte) event.Hash {
	var h event.Hash
	copy(h[:], b)
	return h
}

// FuzzVerifyInclusion compares VerifyInclusion with tlog.CheckRecord on
// arbitrary inputs.
func FuzzVerifyInclusion(f *testing.F) {
	tr := newTLogTree(f, 9, "fuzz")
	root := tr.root(f, 9)
	f.Add(uint64(3), uint64(9), tr.leaves[3][:], bytes.Join(tr.inclusion(f, 3, 9), nil), root[:])
	f.Add(uint64(0), uint64(1), tr.leaves[0][:], []byte{}, tr.leaves[0][:])
	f.Add(uint64(1), uint64(1), []byte{}, []byte{}, []byte{})
	f.Fuzz(func(t *testing.T, index, size uint64, leaf, proof, root []byte) {
		p := split(proof)
		err := VerifyInclusion(index, size, hashOf(leaf), p, hashOf(root))
		if err == nil && (index >= size || len(proof)%32 != 0) {
			t.Fatalf("VerifyInclusion(%d, %d) accepted a %d-byte proof", index, size, len(proof))
		}
		if size > math.MaxInt64 || len(proof)%32 != 0 || index >= size {
			return
		}
		want := tlog.CheckRecord(toTLog(p), int64(size), tlog.Hash(hashOf(root)), int64(index), tlog.Hash(hashOf(leaf)))
		if (err == nil) != (want == nil) {
			t.Fatalf("VerifyInclusion(%d, %d) = %v, tlog.CheckRecord = %v", index, size, err, want)
		}
	})
}

// FuzzInclusionTamper takes real proofs from tlog trees and flips one bit of
// the proof, leaf or root: the real proof verifies, the tampered one fails.
func FuzzInclusionTamper(f *testing.F) {
	f.Add(uint8(9), uint8(3), uint16(0))
	f.Add(uint8(1), uint8(0), uint16(300))
	f.Fuzz(func(t *testing.T, n, index uint8, flip uint16) {
		if n == 0 {
			return
		}
		size, i := int(n), int(index)%int(n)
		tr := newTLogTree(t, size, "tamper")
		root := tr.root(t, size)
		p := tr.inclusion(t, i, size)
		leaf := tr.leaves[i]
		if err := VerifyInclusion(uint64(i), uint64(size), leaf, p, root); err != nil {
			t.Fatalf("VerifyInclusion(%d, %d) of tlog's proof: %v", i, size, err)
		}
		// Bit flip: in the proof, then the leaf, then the root.
		bit := int(flip) % (256 * (len(p) + 2))
		which, at := bit/256, bit%256
		switch {
		case which < len(p):
			p[which][at/8] ^= 1 << (at % 8)
		case which == len(p):
			leaf[at/8] ^= 1 << (at % 8)
		default:
			root[at/8] ^= 1 << (at % 8)
		}
		if err := VerifyInclusion(uint64(i), uint64(size), leaf, p, root); !errors.Is(err, ErrNotIncluded) {
			t.Fatalf("VerifyInclusion(%d, %d) after flipping bit %d = %v, want ErrNotIncluded", i, size, bit, err)
		}
	})
}

// FuzzVerifyConsistency compares VerifyConsistency with tlog.CheckTree on
// arbitrary inputs, and checks the class of every error.
func FuzzVerifyConsistency(f *testing.F) {
	tr := newTLogTree(f, 13, "fuzz")
	r5, r13 := tr.root(f, 5), tr.root(f, 13)
	f.Add(uint64(5), uint64(13), r5[:], r13[:], bytes.Join(tr.consistency(f, 5, 13), nil))
	f.Add(uint64(0), uint64(13), emptyRoot[:], r13[:], []byte{})
	f.Add(uint64(13), uint64(13), r13[:], r13[:], []byte{})
	f.Fuzz(func(t *testing.T, oldSize, newSize uint64, oldRoot, newRoot, proof []byte) {
		const origin = "example.org/vigie/1"
		old := Checkpoint{Origin: origin, Size: oldSize, Hash: hashOf(oldRoot)}
		new := Checkpoint{Origin: origin, Size: newSize, Hash: hashOf(newRoot)}
		p := split(proof)
		err := VerifyConsistency(old, new, p)
		var ie *InconsistencyError
		switch {
		case err == nil:
			if oldSize > newSize || len(proof)%32 != 0 {
				t.Fatalf("VerifyConsistency(%d, %d) accepted a %d-byte proof", oldSize, newSize, len(proof))
			}
		case errors.As(err, &ie):
			if ie.Old != old || ie.New != new || len(ie.Proof) != len(p) {
				t.Fatalf("InconsistencyError lost the evidence: %+v", ie)
			}
			if errors.Is(err, ErrMalformedProof) {
				t.Fatalf("error %v is both an inconsistency and a malformed proof", err)
			}
		}
		if oldSize == 0 || oldSize > newSize || newSize > math.MaxInt64 || len(proof)%32 != 0 {
			return
		}
		want := tlog.CheckTree(toTLog(p), int64(newSize), tlog.Hash(new.Hash), int64(oldSize), tlog.Hash(old.Hash))
		if (err == nil) != (want == nil) {
			t.Fatalf("VerifyConsistency(%d, %d) = %v, tlog.CheckTree = %v", oldSize, newSize, err, want)
		}
	})
}

func FuzzVerifyConsistencyNotes(f *testing.F) {
	cs, cv, _, _ := testKeys(f, goldenOrigin)
	tr := newTLogTree(f, 13, "fuzz")
	oldNote, _ := SignCheckpoint(tr.checkpoint(f, goldenOrigin, 5), cs)
	newNote, _ := SignCheckpoint(tr.checkpoint(f, goldenOrigin, 13), cs)
	f.Add(oldNote, newNote, bytes.Join(tr.consistency(f, 5, 13), nil))
	f.Add(readFile(f, "testdata/checkpoint.note"), newNote, []byte{})
	f.Fuzz(func(t *testing.T, oldNote, newNote, proof []byte) {
		old, new, err := VerifyConsistencyNotes(oldNote, newNote, cv, split(proof))
		var ie *InconsistencyError
		switch {
		case err == nil:
			if old.Size > new.Size {
				t.Fatalf("VerifyConsistencyNotes accepted sizes %d > %d", old.Size, new.Size)
			}
		case errors.As(err, &ie):
			if !bytes.Equal(ie.OldNote, oldNote) || !bytes.Equal(ie.NewNote, newNote) {
				t.Fatal("InconsistencyError lost the notes")
			}
		}
	})
}

// FuzzRootBuilder compares RootBuilder with tlog.TreeHash.
func FuzzRootBuilder(f *testing.F) {
	f.Add(uint16(0), "a")
	f.Add(uint16(1000), "b")
	f.Fuzz(func(t *testing.T, n uint16, seed string) {
		n %= 2048
		tr := newTLogTree(t, int(n), seed)
		var rb RootBuilder
		for _, h := range tr.leaves {
			rb.Append(h)
		}
		if rb.Size() != uint64(n) || rb.Root() != tr.root(t, int(n)) {
			t.Fatalf("RootBuilder of %d leaves: size %d, root %s; tlog root %s", n, rb.Size(), rb.Root(), tr.root(t, int(n)))
		}
	})
}

// FuzzVerifyChain compares VerifyChain with a direct reading of its
// contract. Each link is 3 bytes: seq, prev and commitment, the hashes
// drawn from a small pool so that links often match.
func FuzzVerifyChain(f *testing.F) {
	f.Add([]byte{1, 0, 1, 2, 1, 2, 3, 2, 3})
	f.Add([]byte{2, 1, 2, 1, 0, 1})
	f.Add([]byte{1, 0, 1, 1, 0, 1})
	f.Add([]byte{1, 0, 1, 3, 2, 3})
	f.Fuzz(func(t *testing.T, data []byte) {
		pool := func(b byte) event.Hash {
			if b%8 == 0 {
				return event.Hash{}
			}
			return testCommitment("pool", int(b%8))
		}
		var links []Link
		for ; len(data) >= 3; data = data[3:] {
			links = append(links, Link{Seq: uint64(data[0] % 8), Prev: pool(data[1]), Commitment: pool(data[2])})
		}
		err := VerifyChain(links)
		// The contract: seqs are exactly 1..n, each once, and each prev is
		// the commitment of seq-1 (zero for seq 1).
		bySeq := map[uint64]Link{}
		valid := true
		for _, l := range links {
			if _, dup := bySeq[l.Seq]; dup || l.Seq == 0 || l.Seq > uint64(len(links)) {
				valid = false
			}
			bySeq[l.Seq] = l
		}
		for _, l := range links {
			if want := bySeq[l.Seq-1].Commitment; valid && l.Seq > 1 && l.Prev != want || l.Seq == 1 && !l.Prev.IsZero() {
				valid = false
			}
		}
		if valid != (err == nil) {
			t.Fatalf("VerifyChain(%+v) = %v, want valid = %v", links, err, valid)
		}
		var ce *ChainError
		if err != nil && errors.As(err, &ce) &&
			!errors.Is(err, ErrMissingEvent) && !errors.Is(err, ErrWrongLink) && !errors.Is(err, ErrDuplicateSeq) {
			t.Fatalf("ChainError with an unknown cause: %v", err)
		}
	})
}

func FuzzVerifyEvent(f *testing.F) {
	for _, ev := range goldenEvents(f) {
		f.Add(ev.body, ev.salt[:], ev.commitment[:])
	}
	f.Fuzz(func(t *testing.T, body, salt, commitment []byte) {
		var s [SaltSize]byte
		copy(s[:], salt)
		c := hashOf(commitment)
		b, err := VerifyEvent(body, s, c)
		if errors.Is(err, ErrCommitmentMismatch) != (Commitment(s, body) != c) {
			t.Fatalf("VerifyEvent = %v, but the commitment matches: %v", err, Commitment(s, body) == c)
		}
		if err != nil {
			return
		}
		if out, err := b.Marshal(); err != nil || !bytes.Equal(out, body) {
			t.Fatalf("Marshal of a verified body = %q, %v; want %q", out, err, body)
		}
	})
}

func FuzzCheckReceipt(f *testing.F) {
	tr := newTLogTree(f, 9, "receipts")
	f.Add(uint64(3), uint64(9), bytes.Join(tr.inclusion(f, 3, 9), nil), int64(0))
	f.Add(uint64(9), uint64(9), []byte{}, int64(20e9))
	f.Fuzz(func(t *testing.T, index, size uint64, proof []byte, after int64) {
		now := time.Date(2026, 11, 28, 22, 0, 0, 0, time.UTC)
		r := Receipt{Origin: goldenOrigin, Index: index, Time: now, Deadline: now.Add(10 * time.Second)}
		if index < 9 {
			r.Commitment = testCommitment("receipts", int(index))
		}
		cp := Checkpoint{Origin: goldenOrigin, Size: size, Hash: emptyRoot}
		if size >= 1 && size <= 9 {
			cp.Hash = tr.root(t, int(size))
		}
		err := CheckReceipt(r, cp, split(proof), now.Add(time.Duration(after)))
		switch {
		case err == nil:
			if size <= index || VerifyInclusion(index, size, MerkleLeafHash(r.Commitment), split(proof), cp.Hash) != nil {
				t.Fatalf("CheckReceipt(index %d, size %d) = nil", index, size)
			}
		case errors.Is(err, ErrReceiptPending), errors.Is(err, ErrReceiptOverdue):
			if size > index {
				t.Fatalf("CheckReceipt(index %d, size %d) = %v", index, size, err)
			}
			if overdue := time.Duration(after) > 10*time.Second; overdue != errors.Is(err, ErrReceiptOverdue) {
				t.Fatalf("CheckReceipt(%s after) = %v", time.Duration(after), err)
			}
		}
	})
}
