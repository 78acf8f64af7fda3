package audit

import (
	"bytes"
	"context"
	"slices"
	"testing"
	"time"

	"github.com/vigie-sante/vigie/ledger/event"
	"github.com/vigie-sante/vigie/ledger/verify"
)

func verifyHistory(t *testing.T, l *fakeLog, opts HistoryOptions) *HistoryReport {
	t.Helper()
	if opts.Keys.Checkpoint == nil {
		opts.Keys = l.keys
	}
	if opts.Now == nil {
		opts.Now = func() time.Time { return t0.Add(5 * time.Second) }
	}
	r, err := VerifyHistory(context.Background(), l, opts)
	if err != nil {
		t.Fatalf("VerifyHistory: %v", err)
	}
	return r
}

// TestVerifyHistoryClean verifies an untouched history over several
// pages, with erased events, then again from the saved state after the
// log grew: no finding.
func TestVerifyHistoryClean(t *testing.T) {
	l := story(t, 8, 2)
	l.erase(2)
	r := verifyHistory(t, l, HistoryOptions{})
	if len(r.Findings) != 0 {
		t.Fatalf("findings on a clean history: %v", r.Findings)
	}
	if len(r.Events) != 8 || r.Erased != 2 || r.Pseudonym != testPatient || r.Head.Seq != 8 {
		t.Errorf("report: %d events, %d erased, pseudonym %s, head %d", len(r.Events), r.Erased, r.Pseudonym, r.Head.Seq)
	}
	for _, e := range r.Events {
		if e.Proof != Included || (e.Body == nil) != e.Erased {
			t.Errorf("event %d: proof %s, erased %v, body %v", e.Seq, e.Proof, e.Erased, e.Body != nil)
		}
	}
	// The log grows; the next verification starts from the saved state.
	prev := r.NewestNote()
	heads := map[event.Hash]ChainHead{r.Pseudonym: r.Head}
	l.record(testPatient, event.KindLedgerRead, `{"read":1}`)
	l.add(event.Hash{9})
	l.sign()
	r = verifyHistory(t, l, HistoryOptions{Previous: prev, Heads: heads})
	if len(r.Findings) != 0 || r.Previous == nil || r.Head.Seq != 9 {
		t.Fatalf("second verification: findings %v, previous %v, head %d", r.Findings, r.Previous, r.Head.Seq)
	}
}

// TestVerifyHistoryReceipts checks events newer than the listing's
// checkpoint: proven by a later checkpoint, pending before their deadline,
// overdue after it.
func TestVerifyHistoryReceipts(t *testing.T) {
	l := story(t, 4)
	l.record(testPatient, event.KindAccess, `{"late":1}`) // not in the signed checkpoint
	r := verifyHistory(t, l, HistoryOptions{})
	if len(r.Findings) != 0 || r.Events[4].Proof != Pending || r.Events[4].Receipt == nil {
		t.Fatalf("before its checkpoint: findings %v, proof %s", r.Findings, r.Events[4].Proof)
	}
	r = verifyHistory(t, l, HistoryOptions{Now: func() time.Time { return t0.Add(time.Minute) }})
	if !slices.Equal(kinds(r.Findings), []Kind{KindReceiptOverdue}) || r.Events[4].Proof != Failed {
		t.Fatalf("after its deadline: findings %v", r.Findings)
	}
	// The listing pins the old checkpoint; the log signs a new one, which
	// the verifier fetches to prove the newer event.
	l.history = func(p *HistoryPage) {
		if p.Next == "" {
			l.sign()
		}
	}
	r = verifyHistory(t, l, HistoryOptions{})
	if len(r.Findings) != 0 || r.Events[4].Proof != Included || r.Latest == nil || r.Latest.Size != 9 {
		t.Fatalf("with a later checkpoint: findings %v, proof %s, latest %v", r.Findings, r.Events[4].Proof, r.Latest)
	}
	if !bytes.Equal(r.NewestNote(), r.LatestNote) {
		t.Error("NewestNote is not the latest checkpoint")
	}
}

// TestVerifyHistoryTampered changes what the log serves, one way at a time,
// and checks that each is found, and named.
func TestVerifyHistoryTampered(t *testing.T) {
	clean := story(t, 6)
	r := verifyHistory(t, clean, HistoryOptions{})
	saved := r.NewestNote()
	heads := map[event.Hash]ChainHead{r.Pseudonym: r.Head}
	otherCP, _, _ := testKeys(t, "another key")
	tests := []struct {
		name   string
		tamper func(l *fakeLog) HistoryOptions
		want   Kind
		seq    uint64
	}{
		{"one byte of a body", func(l *fakeLog) HistoryOptions {
			b := bytes.Clone(l.events[2].env.Body)
			b[len(b)-3] ^= 1
			l.events[2].env.Body = b
			return HistoryOptions{}
		}, KindModifiedBody, 3},
		{"an event dropped", func(l *fakeLog) HistoryOptions {
			l.history = func(p *HistoryPage) {
				p.Events = slices.DeleteFunc(p.Events, func(e Envelope) bool { return e.Seq == 4 })
			}
			return HistoryOptions{}
		}, KindMissingEvent, 4},
		{"the last event dropped", func(l *fakeLog) HistoryOptions {
			l.history = func(p *HistoryPage) {
				p.Events = slices.DeleteFunc(p.Events, func(e Envelope) bool { return e.Seq == 6 })
			}
			return HistoryOptions{Heads: heads}
		}, KindRewritten, 6},
		{"a proof that does not verify", func(l *fakeLog) HistoryOptions {
			l.history = func(p *HistoryPage) {
				for i := range p.Events {
					if p.Events[i].Seq == 2 {
						p.Events[i].Proof[0] = bytes.Repeat([]byte{7}, 32)
					}
				}
			}
			return HistoryOptions{}
		}, KindProof, 2},
		{"a checkpoint signed with another key", func(l *fakeLog) HistoryOptions {
			l.cpSigner = otherCP
			l.sign()
			return HistoryOptions{}
		}, KindSignature, 0},
		{"an older checkpoint", func(l *fakeLog) HistoryOptions {
			old := l.latest
			l.add(event.Hash{1})
			l.sign()
			newer := l.latest
			l.latest = old
			return HistoryOptions{Previous: newer}
		}, KindRollback, 0},
		{"a fork", func(l *fakeLog) HistoryOptions {
			fork := story(t, 6)
			fork.add(event.Hash{2})
			fork.sign()
			// The same events, and another leaf where this log has its
			// next one.
			l.add(event.Hash{3})
			l.sign()
			return HistoryOptions{Previous: fork.latest}
		}, KindFork, 0},
		{"an event rewritten", func(l *fakeLog) HistoryOptions {
			h := heads[testPatient]
			h.Commitment[0] ^= 1
			return HistoryOptions{Heads: map[event.Hash]ChainHead{testPatient: h}}
		}, KindRewritten, 6},
		{"a receipt of another event", func(l *fakeLog) HistoryOptions {
			l.record(testPatient, event.KindAccess, `{"late":1}`)
			l.history = func(p *HistoryPage) {
				for i := range p.Events {
					if len(p.Events[i].Receipt) > 0 {
						r := verify.Receipt{Origin: testOrigin, Index: p.Events[i].Index, Commitment: event.Hash{4}, Time: t0, Deadline: t0.Add(10 * time.Second)}
						p.Events[i].Receipt, _ = verify.SignReceipt(r, l.rcptSigner)
					}
				}
			}
			return HistoryOptions{}
		}, KindReceipt, 7},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := story(t, 6)
			opts := tt.tamper(l)
			if opts.Previous == nil && tt.want != KindRollback {
				opts.Previous = saved
			}
			r := verifyHistory(t, l, opts)
			if len(r.Findings) == 0 || r.Findings[0].Kind != tt.want || r.Findings[0].Seq != tt.seq {
				t.Fatalf("findings %v, want first %s at seq %d", r.Findings, tt.want, tt.seq)
			}
			if r.Findings[0].Message == "" {
				t.Error("a finding without a message")
			}
		})
	}
}

// TestVerifyHistoryUnexplainedErasure: a server that shows an event as
// erased, to hide it, when no erasure explains it (in the middle of the
// chain, or with no erasure record after it) is caught.
func TestVerifyHistoryUnexplainedErasure(t *testing.T) {
	for _, tc := range []struct {
		name   string
		erased []int
	}{
		{"an event in the middle", []int{4}},
		{"the first events, no erasure record", []int{0, 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := story(t, 8)
			for _, i := range tc.erased {
				e := &l.events[i].env
				e.Erased, e.Body, e.Salt = true, nil, nil
			}
			r := verifyHistory(t, l, HistoryOptions{})
			if got := kinds(r.Findings); !slices.Equal(got, []Kind{KindUnexplainedErasure}) {
				t.Errorf("findings = %v, want %s", r.Findings, KindUnexplainedErasure)
			}
		})
	}
}
