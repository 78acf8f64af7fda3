package audit

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/vigie-sante/vigie/ledger/event"
)

// TestVerifyHistoryNoCheckpoint: a listing with events and no checkpoint
// proves nothing; the browser's copy said so, the Go verifier said
// nothing (it failed no check it could not do).
func TestVerifyHistoryNoCheckpoint(t *testing.T) {
	l := story(t, 3)
	l.history = func(p *HistoryPage) { p.Checkpoint = nil }
	r := verifyHistory(t, l, HistoryOptions{})
	if !slices.Equal(kinds(r.Findings), []Kind{KindProof}) {
		t.Errorf("events without a checkpoint: findings %v, want one %s", r.Findings, KindProof)
	}
}

// TestVerifyHistoryForeignPatient: an event of another patient's chain,
// spliced in with the right link, is a finding of its own kind.
func TestVerifyHistoryForeignPatient(t *testing.T) {
	l := story(t, 3)
	other := event.Hash{7}
	l.record(other, event.KindAccess, `{"spliced":1}`)
	l.sign()
	r := verifyHistory(t, l, HistoryOptions{})
	if !slices.Equal(kinds(r.Findings), []Kind{KindForeignPatient}) || r.Findings[0].Seq != 4 {
		t.Errorf("a foreign event: findings %v, want %s at seq 4", r.Findings, KindForeignPatient)
	}
}

type unreadableLog struct{ *fakeLog }

func (u unreadableLog) HistoryPage(context.Context, string) (*HistoryPage, error) {
	return nil, fmt.Errorf("page: %w", &UnreadableError{Seq: 2, Index: ptr(uint64(5)), Detail: "DataLoss"})
}

type beyondLog struct{ *fakeLog }

func (b beyondLog) ConsistencyProof(context.Context, uint64, uint64) ([][]byte, error) {
	return nil, fmt.Errorf("consistency: %w", ErrBeyondCheckpoint)
}

// TestVerifyHistorySourceFindings: a server that cannot read its own event,
// or refuses to prove a checkpoint it signed, is found out, not an error.
func TestVerifyHistorySourceFindings(t *testing.T) {
	l := story(t, 3)
	r, err := VerifyHistory(context.Background(), unreadableLog{l}, HistoryOptions{Keys: l.keys})
	if err != nil || !slices.Equal(kinds(r.Findings), []Kind{KindUnreadable}) || r.Findings[0].Seq != 2 || *r.Findings[0].Index != 5 {
		t.Errorf("unreadable event: %v, %v", r, err)
	}
	prev := l.sign()
	l.record(testPatient, event.KindAccess, `{"n":9}`)
	l.sign()
	r, err = VerifyHistory(context.Background(), beyondLog{l}, HistoryOptions{Keys: l.keys, Previous: prev, Now: l.now})
	if err != nil || !slices.Equal(kinds(r.Findings), []Kind{KindRollback}) {
		t.Errorf("beyond the checkpoint: %v, %v", r, err)
	}
}

func (l *fakeLog) now() time.Time { return t0.Add(5 * time.Second) }

func TestPinKeys(t *testing.T) {
	served := PublicKeys{CheckpointKey: verifierKey(t, "log", testOrigin), ReceiptKey: verifierKey(t, "log", testOrigin+"/receipt")}
	otherKeys := PublicKeys{CheckpointKey: verifierKey(t, "other", testOrigin), ReceiptKey: verifierKey(t, "other", testOrigin+"/receipt")}
	calls := 0
	serve := func(k PublicKeys) func() (PublicKeys, error) {
		return func() (PublicKeys, error) { calls++; return k, nil }
	}
	// First use: the served keys, to be pinned.
	p, err := PinKeys(PublicKeys{}, PublicKeys{}, serve(served))
	if err != nil || !p.FirstUse || p.PublicKeys != served || p.Origin != testOrigin || calls != 1 {
		t.Fatalf("first use: %+v, %v", p, err)
	}
	// Pinned: the server is not asked, and other keys served differ.
	p, err = PinKeys(served, PublicKeys{}, serve(otherKeys))
	if err != nil || p.FirstUse || calls != 1 || !p.Differs(otherKeys) || p.Differs(served) {
		t.Fatalf("pinned: %+v, %v (calls %d)", p, err, calls)
	}
	// A key given that is not the pinned one: refused.
	var me *KeyMismatchError
	if _, err := PinKeys(served, PublicKeys{CheckpointKey: otherKeys.CheckpointKey}, nil); !errors.As(err, &me) || me.Which != "checkpoint" {
		t.Errorf("given key differs from the pinned: %v", err)
	}
	// A receipt key of another log: refused.
	var ke *KeyError
	if _, err := PinKeys(PublicKeys{CheckpointKey: served.CheckpointKey, ReceiptKey: verifierKey(t, "log", "elsewhere.example/receipt")}, PublicKeys{}, nil); !errors.As(err, &ke) || ke.Which != "receipt" || ke.Given {
		t.Errorf("receipt key of another log: %v", err)
	}
	if _, err := PinKeys(PublicKeys{}, PublicKeys{CheckpointKey: "not a key"}, serve(served)); !errors.As(err, &ke) || !ke.Given {
		t.Errorf("a bad given key: %v", err)
	}
}

func verifierKey(t *testing.T, seed, name string) string {
	_, vk, err := note.GenerateKey(seeded(seed+name), name)
	if err != nil {
		t.Fatal(err)
	}
	return vk
}

// TestSavedStateNext: the state moves to the newest checkpoint and chain
// head only after a verification without findings.
func TestSavedStateNext(t *testing.T) {
	l := story(t, 3)
	s := &SavedState{}
	r := verifyHistory(t, l, HistoryOptions{})
	s = s.Next(r)
	if string(s.Checkpoint) != string(l.latest) || s.Chains[testPatient] != r.Head {
		t.Fatalf("after a clean run: %+v", s)
	}
	old := s.Checkpoint
	l.record(testPatient, event.KindAccess, `{"n":9}`)
	l.sign()
	l.history = func(p *HistoryPage) { p.Events[0].Body[0] ^= 1 }
	bad := verifyHistory(t, l, s.Options(&Pinning{Keys: l.keys}))
	if len(bad.Findings) == 0 {
		t.Fatal("a modified body: no finding")
	}
	if n := s.Next(bad); string(n.Checkpoint) != string(old) {
		t.Error("a run with findings moved the saved checkpoint")
	}
}
