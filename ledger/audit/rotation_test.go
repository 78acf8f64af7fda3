package audit

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"

	"github.com/vigie-sante/vigie/ledger/event"
	"github.com/vigie-sante/vigie/ledger/verify"
)

func genKey(t *testing.T, name string) (note.Signer, string) {
	t.Helper()
	sk, vk, err := note.GenerateKey(rand.Reader, name)
	if err != nil {
		t.Fatal(err)
	}
	s, err := note.NewSigner(sk)
	if err != nil {
		t.Fatal(err)
	}
	return s, vk
}

// TestFollowTransitions: the pinned key follows a transition it signed,
// not one signed by the next key alone; the former key then verifies
// checkpoints up to the transition's size only, and a pinned witness
// policy's log key follows.
func TestFollowTransitions(t *testing.T) {
	origin, err := verify.FormatOrigin("test.vigie.example", 7)
	if err != nil {
		t.Fatal(err)
	}
	old, oldKey := genKey(t, origin)
	next, nextKey := genKey(t, origin)
	_, rcKey := genKey(t, verify.ReceiptKeyName(origin))
	cp := func(size uint64, s note.Signer) []byte {
		n, err := verify.SignCheckpoint(verify.Checkpoint{Origin: origin, Size: size, Hash: event.Hash{byte(size)}}, s)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	at5 := verify.Checkpoint{Origin: origin, Size: 5, Hash: event.Hash{5}}
	text, err := verify.FormatTransition(at5, nextKey)
	if err != nil {
		t.Fatal(err)
	}
	byNextOnly, err := note.Sign(&note.Note{Text: string(text)}, next)
	if err != nil {
		t.Fatal(err)
	}
	transition, err := verify.SignTransition(at5, nextKey, old, next)
	if err != nil {
		t.Fatal(err)
	}
	pinned := PublicKeys{CheckpointKey: oldKey, ReceiptKey: rcKey, WitnessPolicy: "log " + logKeyHex(t, oldKey) + "\nquorum none\n"}

	p, err := PinKeys(pinned, PublicKeys{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if changed, err := p.FollowTransitions([][]byte{byNextOnly}); err != nil || changed || p.CheckpointKey != oldKey {
		t.Fatalf("a transition by the next key only: changed %v, %v; want the pinned key kept", changed, err)
	}
	if _, err := p.Keys.openSigned(cp(6, next)); !errors.Is(err, verify.ErrSignature) {
		t.Errorf("a checkpoint by a key never introduced = %v, want ErrSignature", err)
	}

	changed, err := p.FollowTransitions([][]byte{byNextOnly, transition})
	if err != nil || !changed || p.CheckpointKey != nextKey {
		t.Fatalf("FollowTransitions = %v, %v, key %s; want the next key", changed, err, p.CheckpointKey)
	}
	if err := p.Witnesses.CheckLogKey(nextKey); err != nil {
		t.Errorf("the witness policy's log key did not follow: %v", err)
	}
	for _, tc := range []struct {
		name string
		note []byte
		ok   bool
	}{
		{"old key, before the transition", cp(3, old), true},
		{"old key, the transition's size", cp(5, old), true},
		{"old key, beyond the transition", cp(6, old), false},
		{"next key", cp(6, next), true},
	} {
		if _, err := p.Keys.openSigned(tc.note); (err == nil) != tc.ok {
			t.Errorf("%s: %v, want ok %v", tc.name, err, tc.ok)
		}
	}
}

// logKeyHex is the hex Ed25519 key of a note verifier key, as a witness
// policy's log line has it.
func logKeyHex(t *testing.T, vkey string) string {
	t.Helper()
	_, rest, _ := strings.Cut(vkey, "+")
	_, enc, _ := strings.Cut(rest, "+") // the name and hash have no '+'; the key may
	b, err := base64.StdEncoding.DecodeString(enc)
	if err != nil || len(b) != 33 {
		t.Fatalf("verifier key: %v", err)
	}
	return hex.EncodeToString(b[1:])
}
