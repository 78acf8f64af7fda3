package verify

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/vigie-sante/vigie/ledger/event"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// The golden log: two events of one patient, in a log named goldenOrigin,
// signed with deterministic test keys (testdata/keys.txt). docs/formats.md
// quotes these files.
const goldenOrigin = "vigie.example/vigie/1"

// seedReader returns an endless deterministic stream: SHA-256 of the label
// and a counter, so that test keys and salts are reproducible.
type seedReader struct {
	label string
	n     int
	buf   []byte
}

func (r *seedReader) Read(p []byte) (int, error) {
	for len(r.buf) < len(p) {
		sum := sha256.Sum256(fmt.Appendf(nil, "%s %d", r.label, r.n))
		r.n++
		r.buf = append(r.buf, sum[:]...)
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}

// testKeys returns a deterministic signer and verifier named name.
func testKeys(t testing.TB, name string) (note.Signer, note.Verifier, string, string) {
	t.Helper()
	skey, vkey, err := note.GenerateKey(&seedReader{label: "vigie test key " + name}, name)
	if err != nil {
		t.Fatal(err)
	}
	s, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	return s, v, skey, vkey
}

// goldenSalt is the salt of golden event i: bytes i*32 .. i*32+31.
func goldenSalt(i int) [SaltSize]byte {
	var s [SaltSize]byte
	for j := range s {
		s[j] = byte(i*SaltSize + j)
	}
	return s
}

type goldenEvent struct {
	body       []byte
	salt       [SaltSize]byte
	commitment event.Hash
	leafValue  []byte
	leafHash   event.Hash
}

// goldenEvents builds the two golden events, the second chained to the
// first.
func goldenEvents(t testing.TB) []goldenEvent {
	t.Helper()
	patient, err := event.ParseHash("5a0c6e2f8b1d4a3c9e7f60a2b4c6d8e0f1a3b5c7d9e1f2a4b6c8d0e2f4a6b8c0")
	if err != nil {
		t.Fatal(err)
	}
	bodies := []event.Body{
		{V: 1, ID: "0123456789abcdef0123456789abcdef", Time: time.Date(2026, 11, 28, 22, 0, 0, 123456789, time.UTC),
			Kind: event.KindAccess, Patient: patient, Seq: 1, Service: "hopital-nord.example/dpi",
			Payload: json.RawMessage(`{"actor":{"rpps":"10000000001","profession":"10"},"action":"read","document":"doc-1","decision":"allow","rules":["R1"]}`)},
		{V: 1, ID: "fedcba9876543210fedcba9876543210", Time: time.Date(2026, 11, 28, 22, 0, 1, 500, time.UTC),
			Kind: event.KindLedgerRead, Patient: patient, Seq: 2, Service: "portail-patient",
			Payload: json.RawMessage(`{"reader":"patient","events":1}`)},
	}
	var evs []goldenEvent
	var prev event.Hash
	for i, b := range bodies {
		b.Prev = prev
		data, err := b.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		salt := goldenSalt(i)
		c := Commitment(salt, data)
		evs = append(evs, goldenEvent{data, salt, c, LeafValue(c), MerkleLeafHash(c)})
		prev = c
	}
	return evs
}

// checkGolden compares got with testdata/name, rewriting it under -update.
func checkGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s changed:\n got %q\nwant %q\n(run go test -update if the change is intended)", path, got, want)
	}
}

// TestGoldenVectors pins the three hashes, the tree root, and the signed
// checkpoint and receipt of the golden log.
func TestGoldenVectors(t *testing.T) {
	evs := goldenEvents(t)
	var vectors bytes.Buffer
	vectors.WriteString("# Golden vectors of the three hashes (docs/formats.md). Bytes in hex.\n")
	var rb RootBuilder
	for i, ev := range evs {
		name := fmt.Sprintf("event-%d.json", i+1)
		checkGolden(t, name, ev.body)
		fmt.Fprintf(&vectors, "\n[event %d]\nbody-file %s\nsalt %x\ncommitment %s\nleaf-value %x\nmerkle-leaf-hash %s\n",
			i+1, name, ev.salt, ev.commitment, ev.leafValue, ev.leafHash)
		rb.Append(ev.leafHash)
	}
	fmt.Fprintf(&vectors, "\n[tree]\nsize %d\nroot %s\n", rb.Size(), rb.Root())
	checkGolden(t, "vectors.txt", vectors.Bytes())

	cs, _, cskey, cvkey := testKeys(t, goldenOrigin)
	rs, _, rskey, rvkey := testKeys(t, ReceiptKeyName(goldenOrigin))
	checkGolden(t, "keys.txt", fmt.Appendf(nil,
		"# TEST KEYS of the golden log, public in this repository: never use them elsewhere.\n"+
			"checkpoint-verifier %s\ncheckpoint-signer %s\nreceipt-verifier %s\nreceipt-signer %s\n",
		cvkey, cskey, rvkey, rskey))

	cp := Checkpoint{Origin: goldenOrigin, Size: rb.Size(), Hash: rb.Root()}
	text, err := FormatCheckpoint(cp)
	if err != nil {
		t.Fatal(err)
	}
	checkGolden(t, "checkpoint.txt", text)
	signed, err := SignCheckpoint(cp, cs)
	if err != nil {
		t.Fatal(err)
	}
	checkGolden(t, "checkpoint.note", signed)

	r := Receipt{Origin: goldenOrigin, Index: 1, Commitment: evs[1].commitment,
		Time: time.Date(2026, 11, 28, 22, 0, 1, 500, time.UTC), Deadline: time.Date(2026, 11, 28, 22, 0, 11, 500, time.UTC)}
	text, err = FormatReceipt(r)
	if err != nil {
		t.Fatal(err)
	}
	checkGolden(t, "receipt.txt", text)
	signed, err = SignReceipt(r, rs)
	if err != nil {
		t.Fatal(err)
	}
	checkGolden(t, "receipt.note", signed)

	// Receipt v2: the two events signed as one batch; the second's receipt.
	receipts, err := SignBatchReceipts(BatchReceipt{Origin: goldenOrigin, First: 0, Time: r.Time, Deadline: r.Deadline},
		[]event.Hash{evs[0].commitment, evs[1].commitment}, rs)
	if err != nil {
		t.Fatal(err)
	}
	checkGolden(t, "receipt-v2.txt", receipts[1])
}

// TestGoldenVectorsByHand recomputes the golden vectors from
// testdata/vectors.txt with nothing but crypto/sha256, as an auditor's own
// tool would, so that the files (and docs/formats.md) stand on their own.
func TestGoldenVectorsByHand(t *testing.T) {
	data, err := os.ReadFile("testdata/vectors.txt")
	if err != nil {
		t.Fatal(err)
	}
	var leafHashes [][]byte
	var root []byte
	for _, block := range strings.Split(string(data), "\n\n")[1:] {
		kv := map[string]string{}
		for _, line := range strings.Split(strings.TrimSpace(block), "\n")[1:] {
			k, v, _ := strings.Cut(line, " ")
			kv[k] = v
		}
		unhex := func(k string) []byte {
			b, err := hex.DecodeString(kv[k])
			if err != nil || len(b) == 0 {
				t.Fatalf("vectors.txt: %s: %q", k, kv[k])
			}
			return b
		}
		if strings.HasPrefix(block, "[tree]") {
			root = unhex("root")
			continue
		}
		body, err := os.ReadFile(filepath.Join("testdata", kv["body-file"]))
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		h.Write([]byte("vigie/event/v1\x00"))
		h.Write(unhex("salt"))
		h.Write(body)
		commitment := h.Sum(nil)
		if !bytes.Equal(commitment, unhex("commitment")) {
			t.Errorf("%s: commitment %x, file says %s", kv["body-file"], commitment, kv["commitment"])
		}
		leafValue := append([]byte{0x01}, commitment...)
		if !bytes.Equal(leafValue, unhex("leaf-value")) {
			t.Errorf("%s: leaf value %x, file says %s", kv["body-file"], leafValue, kv["leaf-value"])
		}
		leafHash := sha256.Sum256(append([]byte{0x00}, leafValue...))
		if !bytes.Equal(leafHash[:], unhex("merkle-leaf-hash")) {
			t.Errorf("%s: Merkle leaf hash %x, file says %s", kv["body-file"], leafHash, kv["merkle-leaf-hash"])
		}
		leafHashes = append(leafHashes, leafHash[:])
	}
	if len(leafHashes) != 2 {
		t.Fatalf("vectors.txt has %d events, want 2", len(leafHashes))
	}
	node := sha256.Sum256(append(append([]byte{0x01}, leafHashes[0]...), leafHashes[1]...))
	if !bytes.Equal(node[:], root) {
		t.Errorf("root of the two leaves %x, file says %x", node, root)
	}
}

// TestDocsQuoteGolden keeps docs/formats.md in step with the golden files it
// quotes.
func TestDocsQuoteGolden(t *testing.T) {
	doc := string(readFile(t, "../../docs/formats.md"))
	for _, name := range []string{"checkpoint.note", "receipt.note", "receipt-v2.txt", "event-1.json"} {
		if !strings.Contains(doc, strings.TrimSpace(string(readFile(t, "testdata/"+name)))) {
			t.Errorf("docs/formats.md does not quote testdata/%s as it is", name)
		}
	}
	// The worked example quotes every value of event 1 and the tree root.
	for _, block := range strings.Split(string(readFile(t, "testdata/vectors.txt")), "\n\n") {
		if !strings.HasPrefix(block, "[event 1]") && !strings.HasPrefix(block, "[tree]") {
			continue
		}
		for _, line := range strings.Split(block, "\n")[1:] {
			if k, v, _ := strings.Cut(line, " "); v != "" && k != "body-file" && k != "size" && !strings.Contains(doc, v) {
				t.Errorf("docs/formats.md does not quote %s %s", k, v)
			}
		}
	}
	if _, vkey, _ := strings.Cut(strings.Split(string(readFile(t, "testdata/keys.txt")), "\n")[1], " "); !strings.Contains(doc, vkey) {
		t.Errorf("docs/formats.md does not quote the checkpoint verifier key %s", vkey)
	}
}
