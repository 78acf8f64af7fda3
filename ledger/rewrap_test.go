package ledger_test

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/vigie-sante/vigie/ledger"
	"github.com/vigie-sante/vigie/ledger/event"
	"github.com/vigie-sante/vigie/ledger/ledgertest"
)

// taggedWrapper stands for a module's KEKs: each wraps with its own
// in-memory KEK under a one-byte tag, and the tags of old lists the KEKs
// it still opens.
type taggedWrapper struct {
	tag  byte
	keks map[byte]ledger.KeyWrapper
	old  []byte
}

func newKEK(t *testing.T) ledger.KeyWrapper {
	k := make([]byte, ledger.KeySize)
	rand.Read(k)
	w, err := ledger.NewKEKWrapper(k, nil)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func (w taggedWrapper) Wrap(p event.Hash, key []byte) ([]byte, error) {
	b, err := w.keks[w.tag].Wrap(p, key)
	return append([]byte{w.tag}, b...), err
}

func (w taggedWrapper) Unwrap(p event.Hash, wrapped []byte) ([]byte, error) {
	if len(wrapped) == 0 || (wrapped[0] != w.tag && !bytes.Contains(w.old, wrapped[:1])) {
		return nil, fmt.Errorf("%w: no such KEK", ledger.ErrCorrupt)
	}
	return w.keks[wrapped[0]].Unwrap(p, wrapped[1:])
}

func (w taggedWrapper) Stale(wrapped []byte) bool { return len(wrapped) > 0 && wrapped[0] != w.tag }

// TestRewrapUnderLoad rotates the key-encryption key while events are
// recorded: every patient's data then opens with the new KEK alone.
func TestRewrapUnderLoad(t *testing.T) {
	keks := map[byte]ledger.KeyWrapper{1: newKEK(t), 2: newKEK(t)}
	dir := t.TempDir()
	before := ledgertest.New(t, ledgertest.Options{Dir: dir, KeyWrapper: struct{ ledger.KeyWrapper }{taggedWrapper{tag: 1, keks: keks}}})
	const patients = 150
	// The system chain (all-zero pseudonym) has a data key too.
	record(t, before.Ledger, ledger.Entry{Kind: event.KindRulesChange, Service: "admin", Payload: json.RawMessage(`{"version":"2026-1"}`)})
	for i := range patients {
		record(t, before.Ledger, access(fmt.Sprint("patient-", i), 0))
	}
	if _, err := before.Ledger.Rewrap(ctx); !errors.Is(err, ledger.ErrNotRotating) {
		t.Errorf("Rewrap with one KEK = %v, want ErrNotRotating", err)
	}
	before.Close()

	during := ledgertest.New(t, ledgertest.Options{Dir: dir, KeyWrapper: taggedWrapper{tag: 2, keks: keks, old: []byte{1}}})
	var wg sync.WaitGroup
	var recorded atomic.Int64
	stop := make(chan struct{})
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 1; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := during.Ledger.Record(ctx, access(fmt.Sprint("patient-", (w*37+n)%(patients+20)), n)); err != nil {
					t.Errorf("Record during the rewrap: %v", err)
					return
				}
				recorded.Add(1)
			}
		}()
	}
	n, err := during.Ledger.Rewrap(ctx)
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatalf("Rewrap: %v", err)
	}
	if n < patients+1 {
		t.Errorf("Rewrap rewrapped %d keys, want at least %d", n, patients+1)
	}
	if recorded.Load() == 0 {
		t.Error("nothing was recorded during the rewrap")
	}
	if n, err := during.Ledger.Rewrap(ctx); err != nil || n != 0 {
		t.Errorf("second Rewrap = %d, %v; want 0, nil", n, err)
	}
	during.Close()

	// The old KEK removed: every patient's history opens.
	after := ledgertest.New(t, ledgertest.Options{Dir: dir, KeyWrapper: taggedWrapper{tag: 2, keks: map[byte]ledger.KeyWrapper{2: keks[2]}}})
	for i := range patients + 20 {
		h, err := after.Ledger.History(ctx, ledgertest.Patient(fmt.Sprint("patient-", i)), 1, 10000, 0)
		if err != nil {
			t.Fatalf("History of patient %d with the new KEK alone: %v", i, err)
		}
		if i < patients && len(h.Events) == 0 {
			t.Errorf("patient %d: no events", i)
		}
	}
	rows, err := after.Ledger.Search(ctx, ledger.SearchFilter{}, -1, 100000)
	if err != nil || len(rows) < patients+1 {
		t.Fatalf("Search = %d rows, %v", len(rows), err)
	}
	for _, r := range rows {
		if _, _, err := after.Ledger.OpenEvent(ctx, r); err != nil {
			t.Errorf("event %d with the new KEK alone: %v", r.Index, err)
		}
	}
}

// namedWrapper is a KEK known by a name, as a module's by its label.
type namedWrapper struct {
	ledger.KeyWrapper
	name string
}

func (w namedWrapper) KEKLabel() string { return w.name }

// TestKEKReplacedUnderItsName: a KEK replaced by another of the same name
// (a token made anew) is refused at start, as a replaced kek file is.
func TestKEKReplacedUnderItsName(t *testing.T) {
	a := namedWrapper{newKEK(t), "kek-1"}
	env := ledgertest.New(t, ledgertest.Options{KeyWrapper: a})
	record(t, env.Ledger, access("p", 0))
	if err := ledger.CheckKEK(ctx, env.Store, a, "kek-1"); err != nil {
		t.Errorf("the same KEK: %v", err)
	}
	if err := ledger.CheckKEK(ctx, env.Store, namedWrapper{newKEK(t), "kek-1"}, "kek-1"); !errors.Is(err, ledger.ErrCorrupt) {
		t.Errorf("another KEK under the same name = %v, want ErrCorrupt", err)
	}
	// A new name is a new KEK (a rotation): its probe is saved.
	b := namedWrapper{newKEK(t), "kek-2"}
	for range 2 {
		if err := ledger.CheckKEK(ctx, env.Store, b, "kek-2"); err != nil {
			t.Errorf("a new KEK's name: %v", err)
		}
	}
}
