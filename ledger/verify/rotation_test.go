package verify

import (
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"

	"github.com/vigie-sante/vigie/ledger/event"
)

type rotationKey struct {
	signer   note.Signer
	verifier note.Verifier
	vkey     string
}

func newRotationKey(t testing.TB, name string) rotationKey {
	t.Helper()
	skey, vkey, err := note.GenerateKey(rand.Reader, name)
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
	return rotationKey{s, v, vkey}
}

// TestTransition: a transition checkpoint signed by the pinned key and the
// next key it names opens with the pinned key, and is an ordinary
// checkpoint of both; any other note naming a next key is refused.
func TestTransition(t *testing.T) {
	const origin = "vigie.example/log/1"
	old, next, other := newRotationKey(t, origin), newRotationKey(t, origin), newRotationKey(t, origin)
	foreign := newRotationKey(t, "other.example/log/1")
	c := Checkpoint{Origin: origin, Size: 12, Hash: event.Hash{7}}

	signed, err := SignTransition(c, next.vkey, old.signer, next.signer)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := OpenTransition(signed, old.verifier)
	if err != nil {
		t.Fatalf("OpenTransition: %v", err)
	}
	if tr.Checkpoint != c || tr.NextKey != next.vkey || tr.Next.KeyHash() != next.verifier.KeyHash() {
		t.Errorf("OpenTransition = %+v, want %+v to %s", tr, c, next.vkey)
	}
	for _, k := range []rotationKey{old, next} {
		if got, err := OpenCheckpoint(signed, k.verifier); err != nil || got != c {
			t.Errorf("OpenCheckpoint of the transition with key %08x = %+v, %v; want %+v", k.verifier.KeyHash(), got, err, c)
		}
	}
	text, err := FormatTransition(c, next.vkey)
	if err != nil {
		t.Fatal(err)
	}
	if p, err := ParseTransition(text); err != nil || p.Checkpoint != c || p.NextKey != next.vkey {
		t.Errorf("ParseTransition(FormatTransition) = %+v, %v", p, err)
	}

	sign := func(text string, keys ...rotationKey) []byte {
		var ss []note.Signer
		for _, k := range keys {
			ss = append(ss, k.signer)
		}
		n, err := note.Sign(&note.Note{Text: text}, ss...)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	plain, _ := FormatCheckpoint(c)
	for _, tc := range []struct {
		name      string
		note      []byte
		signature bool // the error wraps ErrSignature
	}{
		{"signed by the next key alone", sign(string(text), next), true},
		{"signed by the pinned key alone", sign(string(text), old), true},
		{"the next key's signature replaced by another key's", sign(string(text), old, other), true},
		{"an ordinary checkpoint signed by both", sign(string(plain), old, next), false},
		{"naming another key than the second signer", sign(strings.Replace(string(text), next.vkey, other.vkey, 1), old, next), true},
		{"two next keys", sign(string(text)+TransitionPrefix+other.vkey+"\n", old, next, other), false},
		{"the next key is the pinned key", sign(string(plain)+TransitionPrefix+old.vkey+"\n", old), false},
		{"a next key of another origin", sign(string(plain)+TransitionPrefix+foreign.vkey+"\n", old, foreign), false},
		{"a next key that does not parse", sign(string(plain)+TransitionPrefix+"vigie.example/log/1+01234567+AAAA\n", old), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := OpenTransition(tc.note, old.verifier)
			if err == nil {
				t.Fatal("OpenTransition accepted it")
			}
			if errors.Is(err, ErrSignature) != tc.signature {
				t.Errorf("OpenTransition: %v; want errors.Is(err, ErrSignature) = %v", err, tc.signature)
			}
		})
	}
	if _, err := SignTransition(c, old.vkey, old.signer, old.signer); err == nil {
		t.Error("SignTransition to the same key: no error")
	}
	if _, err := FormatTransition(c, foreign.vkey); err == nil {
		t.Error("FormatTransition to a key of another origin: no error")
	}
}

func FuzzParseTransition(f *testing.F) {
	addNoteSeeds(f)
	k := newRotationKey(f, "vigie.example/log/1")
	text, err := FormatTransition(Checkpoint{Origin: "vigie.example/log/1", Size: 3, Hash: event.Hash{1}}, k.vkey)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(text)
	f.Fuzz(func(t *testing.T, text []byte) {
		tr, err := ParseTransition(text)
		if err != nil {
			return
		}
		if again, err := FormatTransition(tr.Checkpoint, tr.NextKey); err != nil || string(again) != string(text) {
			t.Errorf("FormatTransition(ParseTransition(%q)) = %q, %v", text, again, err)
		}
	})
}

// TestWitnessPolicyFollowTransition: a policy whose log line is the
// current key follows a transition to the next key; one whose log line is
// another key does not.
func TestWitnessPolicyFollowTransition(t *testing.T) {
	const origin = "vigie.example/log/1"
	old, next, other := newRotationKey(t, origin), newRotationKey(t, origin), newRotationKey(t, origin)
	signed, err := SignTransition(Checkpoint{Origin: origin, Size: 3, Hash: event.Hash{3}}, next.vkey, old.signer, next.signer)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := OpenTransition(signed, old.verifier)
	if err != nil {
		t.Fatal(err)
	}
	policy := func(k rotationKey) *WitnessPolicy {
		key, err := noteEd25519Key(k.vkey)
		if err != nil {
			t.Fatal(err)
		}
		p, err := ParseWitnessPolicy([]byte(fmt.Sprintf("log %x\nquorum none\n", []byte(key))))
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	p := policy(old)
	if err := p.FollowTransition(old.vkey, tr); err != nil {
		t.Fatal(err)
	}
	if err := p.CheckLogKey(next.vkey); err != nil {
		t.Errorf("after the transition: %v, want the next key", err)
	}
	if err := p.CheckLogKey(old.vkey); err == nil {
		t.Errorf("after the transition the old key is still the policy's")
	}
	if err := policy(other).FollowTransition(old.vkey, tr); err == nil {
		t.Errorf("a policy of another log key followed the transition")
	}
}
