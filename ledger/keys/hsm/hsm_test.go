//go:build pkcs11

package hsm_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/mod/sumdb/note"

	"github.com/vigie-sante/vigie/ledger"
	"github.com/vigie-sante/vigie/ledger/event"
	"github.com/vigie-sante/vigie/ledger/keys/hsm"
	"github.com/vigie-sante/vigie/ledger/keys/hsm/hsmtest"
)

func TestSignerSignsInsideTheModule(t *testing.T) {
	_, m := hsmtest.Keys(t, "vigie", "vigie-kek")
	s, vkey, err := hsm.Signers{Module: m}.Signer("checkpoint", "example.org/log")
	if err != nil {
		t.Fatal(err)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	if s.Name() != "example.org/log" || v.Name() != s.Name() || v.KeyHash() != s.KeyHash() {
		t.Errorf("signer %s %08x, verifier %s %08x: want one key", s.Name(), s.KeyHash(), v.Name(), v.KeyHash())
	}
	msg, err := note.Sign(&note.Note{Text: "example.org/log\n3\nAAAA\n"}, s)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := note.Open(msg, note.VerifierList(v)); err != nil {
		t.Errorf("note.Open of a note signed in the module: %v", err)
	}
	// Signed concurrently: each signature takes a session of its own.
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			if _, err := s.Sign([]byte("m")); err != nil {
				t.Errorf("Sign: %v", err)
			}
		})
	}
	wg.Wait()
	// Two checkpoint keys at once (a rotation of the log's key): each
	// addressable by its label.
	if err := m.GenerateSigningKey("vigie-checkpoint-2"); err != nil {
		t.Fatal(err)
	}
	s2, _, err := m.Signer("vigie-checkpoint-2", "example.org/log")
	if err != nil {
		t.Fatal(err)
	}
	if s2.KeyHash() == s.KeyHash() {
		t.Error("two labels gave one key")
	}
	if err := m.GenerateSigningKey("vigie-checkpoint-2"); err == nil || !strings.Contains(err.Error(), `"vigie-checkpoint-2"`) {
		t.Errorf("GenerateSigningKey of a label taken = %v, want an error naming it", err)
	}
}

func TestMissingKeyNamesItsLabel(t *testing.T) {
	_, m := hsmtest.Keys(t, "vigie", "vigie-kek")
	for _, tc := range []struct {
		name  string
		err   func() error
		label string
	}{
		{"signer", func() error {
			_, _, err := hsm.Signers{Module: m, Labels: map[string]string{"receipt": "no-such-receipt-key"}}.Signer("receipt", "r")
			return err
		}, "no-such-receipt-key"},
		{"KEK", func() error { _, err := m.Wrapper(hsm.WrapperConfig{KEK: "no-such-kek"}); return err }, "no-such-kek"},
		{"old KEK", func() error {
			_, err := m.Wrapper(hsm.WrapperConfig{KEK: "vigie-kek", Old: []string{"gone-kek"}})
			return err
		}, "gone-kek"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.err(); err == nil || !strings.Contains(err.Error(), `"`+tc.label+`"`) {
				t.Errorf("err = %v, want one naming %q", err, tc.label)
			}
		})
	}
	cfg := hsmtest.Token(t, "other")
	cfg.Token = "no-such-token"
	if _, err := hsm.Open(cfg); err == nil || !strings.Contains(err.Error(), `"no-such-token"`) {
		t.Errorf("Open of a missing token = %v, want an error naming it", err)
	}
	cfg.Token, cfg.PIN = "other", "0000"
	if _, err := hsm.Open(cfg); err == nil {
		t.Error("Open with a wrong PIN succeeded")
	}
}

func pseudonym(s string) event.Hash { return event.Hash(bytes.Repeat([]byte(s[:1]), 32)) }

func TestWrapper(t *testing.T) {
	_, m := hsmtest.Keys(t, "vigie", "kek-1")
	if err := m.GenerateKEK("kek-2"); err != nil {
		t.Fatal(err)
	}
	w1, err := m.Wrapper(hsm.WrapperConfig{KEK: "kek-1", CacheSize: 2})
	if err != nil {
		t.Fatal(err)
	}
	key := make([]byte, ledger.KeySize)
	rand.Read(key)
	a, b := pseudonym("a"), pseudonym("b")
	wrapped, err := w1.Wrap(a, key)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(wrapped, key) {
		t.Fatal("the wrapped key holds the key")
	}
	got, err := w1.Unwrap(a, wrapped)
	if err != nil || !bytes.Equal(got, key) {
		t.Fatalf("Unwrap = %x, %v; want the key", got, err)
	}
	if _, err := w1.Unwrap(b, wrapped); !errors.Is(err, ledger.ErrCorrupt) {
		t.Errorf("Unwrap for another patient = %v, want ErrCorrupt", err)
	}
	altered := bytes.Clone(wrapped)
	altered[len(altered)-1] ^= 1
	if _, err := w1.Unwrap(a, altered); !errors.Is(err, ledger.ErrCorrupt) {
		t.Errorf("Unwrap of an altered key = %v, want ErrCorrupt", err)
	}
	// Cache: the first Unwrap missed, the second hits.
	if _, err := w1.Unwrap(a, wrapped); err != nil {
		t.Fatal(err)
	}
	if hits, misses := testutil.ToFloat64(collector{w1, "hits"}), testutil.ToFloat64(collector{w1, "misses"}); hits != 1 || misses != 3 {
		t.Errorf("cache hits %v misses %v, want 1 and 3", hits, misses)
	}

	// Rotation: kek-2 wraps, kek-1 still opens what it wrapped.
	w2, err := m.Wrapper(hsm.WrapperConfig{KEK: "kek-2", Old: []string{"kek-1"}, CacheSize: -1})
	if err != nil {
		t.Fatal(err)
	}
	if w1.KEKLabel() != "kek-1" || w2.KEKLabel() != "kek-2" {
		t.Errorf("KEKLabel = %q, %q; want the label that wraps", w1.KEKLabel(), w2.KEKLabel())
	}
	if !w2.Stale(wrapped) || w1.Stale(wrapped) {
		t.Errorf("Stale = %v under kek-2, %v under kek-1; want true, false", w2.Stale(wrapped), w1.Stale(wrapped))
	}
	if got, err := w2.Unwrap(a, wrapped); err != nil || !bytes.Equal(got, key) {
		t.Errorf("Unwrap by the old KEK = %x, %v", got, err)
	}
	rewrapped, err := w2.Wrap(a, key)
	if err != nil || w2.Stale(rewrapped) {
		t.Fatalf("Wrap under kek-2 = %v, stale %v", err, w2.Stale(rewrapped))
	}
	// The old KEK removed: what it wrapped no longer opens.
	w3, err := m.Wrapper(hsm.WrapperConfig{KEK: "kek-2", CacheSize: -1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w3.Unwrap(a, wrapped); !errors.Is(err, ledger.ErrCorrupt) || !strings.Contains(err.Error(), `"kek-1"`) {
		t.Errorf("Unwrap under a KEK not configured = %v, want ErrCorrupt naming it", err)
	}
	if got, err := w3.Unwrap(a, rewrapped); err != nil || !bytes.Equal(got, key) {
		t.Errorf("Unwrap of the rewrapped key = %x, %v", got, err)
	}

	// A key wrapped by the kek file moves to the module.
	file := make([]byte, ledger.KeySize)
	rand.Read(file)
	legacy, err := ledger.NewKEKWrapper(file, nil)
	if err != nil {
		t.Fatal(err)
	}
	old, err := legacy.Wrap(a, key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w3.Unwrap(a, old); !errors.Is(err, ledger.ErrCorrupt) {
		t.Errorf("Unwrap of a file-wrapped key without Legacy = %v, want ErrCorrupt", err)
	}
	w4, err := m.Wrapper(hsm.WrapperConfig{KEK: "kek-2", Legacy: legacy})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := w4.Unwrap(a, old); err != nil || !bytes.Equal(got, key) || !w4.Stale(old) {
		t.Errorf("Unwrap of a file-wrapped key = %x, %v (stale %v)", got, err, w4.Stale(old))
	}
}

// collector picks one of a Wrapper's metrics for testutil.ToFloat64.
type collector struct {
	w    *hsm.Wrapper
	name string
}

func (c collector) Describe(ch chan<- *prometheus.Desc) { c.w.Describe(ch) }

func (c collector) Collect(ch chan<- prometheus.Metric) {
	all := make(chan prometheus.Metric, 3)
	c.w.Collect(all)
	close(all)
	for m := range all {
		if strings.Contains(m.Desc().String(), "cache_"+c.name) {
			ch <- m
		}
	}
}

func BenchmarkSign(b *testing.B) {
	_, m := hsmtest.Keys(b, "vigie", "vigie-kek")
	s, _, err := m.Signer("vigie-checkpoint", "example.org/log")
	if err != nil {
		b.Fatal(err)
	}
	msg := []byte("example.org/log\n1000000\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n")
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.Sign(msg); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkUnwrap measures the module's unwrapping, the cache off.
func BenchmarkUnwrap(b *testing.B) {
	_, m := hsmtest.Keys(b, "vigie", "vigie-kek")
	w, err := m.Wrapper(hsm.WrapperConfig{KEK: "vigie-kek", CacheSize: -1})
	if err != nil {
		b.Fatal(err)
	}
	key := make([]byte, ledger.KeySize)
	wrapped, err := w.Wrap(pseudonym("a"), key)
	if err != nil {
		b.Fatal(err)
	}
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := w.Unwrap(pseudonym("a"), wrapped); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
