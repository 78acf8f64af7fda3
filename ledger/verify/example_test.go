package verify_test

import (
	"bufio"
	"encoding/hex"
	"errors"
	"fmt"
	"log"
	"os"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/vigie-sante/vigie/ledger/event"
	"github.com/vigie-sante/vigie/ledger/verify"
)

// Example verifies a patient's history end to end, as a patient's tool or an
// auditor would, from what the log served (the golden files in testdata/):
// the log's public keys, a signed checkpoint, the events' bodies and salts,
// their inclusion proofs, and a receipt.
func Example() {
	keys := readKeys("testdata/keys.txt")
	logKey, err := note.NewVerifier(keys["checkpoint-verifier"])
	if err != nil {
		log.Fatal(err)
	}
	receiptKey, err := note.NewVerifier(keys["receipt-verifier"])
	if err != nil {
		log.Fatal(err)
	}

	// 1. The checkpoint: signed by the log's key, named as its origin.
	cp, err := verify.OpenCheckpoint(readFile("testdata/checkpoint.note"), logKey)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("checkpoint %s size %d\n", cp.Origin, cp.Size)

	// 2. Each event: its bytes and salt match its commitment, and its leaf
	// is in the checkpoint's tree.
	events := []struct {
		file, salt, commitment string
		index                  uint64
	}{
		{"testdata/event-1.json", "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f", "9181f9721afebf6c44a3d263aa378dac84ddf18963aa836e39486ac889afd25c", 0},
		{"testdata/event-2.json", "202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f", "0a301c60299fa1a2bfee3cb064bd680721fb63be99cdc6cae80d2ac3a16689ae", 1},
	}
	var links []verify.Link
	var leafHashes []event.Hash
	for _, e := range events {
		c, _ := event.ParseHash(e.commitment)
		leafHashes = append(leafHashes, verify.MerkleLeafHash(c))
	}
	for i, e := range events {
		c, _ := event.ParseHash(e.commitment)
		var salt [verify.SaltSize]byte
		hex.Decode(salt[:], []byte(e.salt))
		body, err := verify.VerifyEvent(readFile(e.file), salt, c)
		if err != nil {
			log.Fatal(err)
		}
		// In a tree of two leaves, each leaf's proof is the other leaf.
		proof := [][]byte{leafHashes[1-i][:]}
		if err := verify.VerifyInclusion(e.index, cp.Size, verify.MerkleLeafHash(c), proof, cp.Hash); err != nil {
			log.Fatal(err)
		}
		fmt.Printf("event seq %d (%s by %s) is at leaf %d\n", body.Seq, body.Kind, body.Service, e.index)
		links = append(links, verify.LinkOf(body, c))
	}

	// 3. The patient's chain has no gap and no fork.
	if err := verify.VerifyChain(links); err != nil {
		log.Fatal(err)
	}
	fmt.Println("chain of", len(links), "events unbroken")

	// 4. The receipt of the second event: the log kept its promise.
	r, err := verify.OpenReceipt(readFile("testdata/receipt.note"), receiptKey)
	if err != nil {
		log.Fatal(err)
	}
	proof := [][]byte{leafHashes[0][:]}
	err = verify.CheckReceipt(r, cp, proof, time.Date(2026, 11, 28, 22, 1, 0, 0, time.UTC))
	fmt.Println("receipt for leaf", r.Index, "kept:", err == nil)
	// Output:
	// checkpoint vigie.example/vigie/1 size 2
	// event seq 1 (access by hopital-nord.example/dpi) is at leaf 0
	// event seq 2 (ledger_read by portail-patient) is at leaf 1
	// chain of 2 events unbroken
	// receipt for leaf 1 kept: true
}

func readFile(name string) []byte {
	b, err := os.ReadFile(name)
	if err != nil {
		log.Fatal(err)
	}
	return b
}

func readKeys(name string) map[string]string {
	keys := map[string]string{}
	s := bufio.NewScanner(strings.NewReader(string(readFile(name))))
	for s.Scan() {
		if k, v, ok := strings.Cut(s.Text(), " "); ok && !strings.HasPrefix(k, "#") {
			keys[k] = v
		}
	}
	return keys
}

func ExampleVerifyChain() {
	c := func(b byte) event.Hash { return event.Hash{0: b} }
	links := []verify.Link{
		{Seq: 1, Prev: event.Hash{}, Commitment: c(1)},
		{Seq: 2, Prev: c(1), Commitment: c(2)},
		{Seq: 4, Prev: c(3), Commitment: c(4)},
	}
	err := verify.VerifyChain(links)
	fmt.Println(err)
	fmt.Println(errors.Is(err, verify.ErrMissingEvent))
	// Output:
	// chain breaks at seq 3: missing event
	// true
}

func ExampleRootBuilder() {
	var rb verify.RootBuilder
	fmt.Println(rb.Root()) // the empty tree
	for i := range 3 {
		rb.Append(verify.MerkleLeafHash(event.Hash{0: byte(i)}))
	}
	fmt.Println(rb.Size(), rb.Root())
	// Output:
	// e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
	// 3 d075a66c4a6fc9e282ce992fb76f8294fddf392646aaf9b05e17f1d4eab7019a
}

func ExampleVerifyConsistency() {
	// Two checkpoints of size 1 with different roots: a fork, proven by the
	// two signed notes alone.
	a := verify.Checkpoint{Origin: "vigie.example/vigie/1", Size: 1, Hash: verify.MerkleLeafHash(event.Hash{1})}
	b := verify.Checkpoint{Origin: "vigie.example/vigie/1", Size: 1, Hash: verify.MerkleLeafHash(event.Hash{2})}
	err := verify.VerifyConsistency(a, b, nil)
	var ie *verify.InconsistencyError
	if errors.As(err, &ie) {
		fmt.Println("security event:", ie.Reason)
	}
	// Output:
	// security event: same size, different roots
}
