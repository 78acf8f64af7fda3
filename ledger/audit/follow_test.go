package audit

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/vigie-sante/vigie/ledger/event"
	"github.com/vigie-sante/vigie/ledger/verify"
)

func grow(l *fakeLog, n int, tag string) {
	for i := range n {
		l.add(event.Hash(sha256.Sum256([]byte(fmt.Sprint(tag, i)))))
	}
	l.sign()
}

func follow(t *testing.T, l *fakeLog, opts FollowOptions) *FollowReport {
	t.Helper()
	if opts.Keys.Checkpoint == nil {
		opts.Keys = l.keys
	}
	r, err := Follow(context.Background(), l, opts)
	if err != nil {
		t.Fatalf("Follow: %v", err)
	}
	return r
}

// TestFollowClean follows a log from scratch, then from the saved state
// with only the new leaves, checking each root and every pair.
func TestFollowClean(t *testing.T) {
	l := newFakeLog(t, "follow")
	grow(l, 2500, "a")
	var calls []uint64
	r := follow(t, l, FollowOptions{Batch: 700, Progress: func(done, total uint64) { calls = append(calls, done) }})
	if len(r.Findings) != 0 || r.State == nil || r.Fetched != 2500 || len(r.Seen) != 1 || !r.Seen[0].RootChecked {
		t.Fatalf("from scratch: findings %v, state %v, fetched %d, seen %+v", r.Findings, r.State != nil, r.Fetched, r.Seen)
	}
	if !slices.Equal(calls, []uint64{700, 1400, 2100, 2500}) {
		t.Errorf("progress %v", calls)
	}
	grow(l, 37, "b")
	r = follow(t, l, FollowOptions{State: r.State})
	if len(r.Findings) != 0 || r.Fetched != 37 || r.First != 2500 || len(r.Pairs) != 1 || !r.Pairs[0].OK {
		t.Fatalf("from the state: findings %v, fetched %d from %d, pairs %v", r.Findings, r.Fetched, r.First, r.Pairs)
	}
	// The log grows between the two polls: three checkpoints, three pairs,
	// every root rebuilt.
	saved := r.State
	grow(l, 10, "c")
	polls := 0
	l.cpHook = func(n []byte) []byte {
		if polls++; polls == 2 {
			grow(l, 5, "d")
			return l.latest
		}
		return n
	}
	r = follow(t, l, FollowOptions{State: saved})
	l.cpHook = nil
	if len(r.Findings) != 0 || len(r.Seen) != 3 || len(r.Pairs) != 3 || r.Fetched != 15 {
		t.Fatalf("with a poll that grew: findings %v, seen %d, pairs %v, fetched %d", r.Findings, len(r.Seen), r.Pairs, r.Fetched)
	}
	for _, s := range r.Seen {
		if !s.RootChecked {
			t.Errorf("root of size %d not checked", s.Size)
		}
	}
	// From zero with expectations: the events read are the log's leaves.
	expect := map[uint64]event.Hash{3: mustCommitment(t, l.values[3]), 2552: {1}}
	r = follow(t, l, FollowOptions{State: saved, FromZero: true, Expect: expect})
	if len(r.Findings) != 0 || r.Expected != 1 || !slices.Equal(r.Beyond, []uint64{2552}) || r.First != 0 {
		t.Fatalf("expectations: findings %v, expected %d, beyond %v", r.Findings, r.Expected, r.Beyond)
	}
}

func mustCommitment(t *testing.T, v []byte) event.Hash {
	c, err := verify.ParseLeafValue(v)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestFollowTampered changes the log, one way at a time, and checks that
// each is found, and named.
func TestFollowTampered(t *testing.T) {
	base := func(t *testing.T) (*fakeLog, *LogState) {
		l := newFakeLog(t, "tamper")
		grow(l, 100, "a")
		r := follow(t, l, FollowOptions{})
		grow(l, 20, "b")
		return l, r.State
	}
	otherCP, _, _ := testKeys(t, "other")
	tests := []struct {
		name   string
		tamper func(l *fakeLog) FollowOptions
		want   Kind
	}{
		{"a leaf served differs from the tree signed", func(l *fakeLog) FollowOptions {
			l.leafHook = func(i uint64, v []byte) []byte {
				if i == 110 {
					return verify.LeafValue(event.Hash{5})
				}
				return v
			}
			return FollowOptions{}
		}, KindRootMismatch},
		{"a malformed leaf", func(l *fakeLog) FollowOptions {
			l.leafHook = func(i uint64, v []byte) []byte {
				if i == 105 {
					return v[:32]
				}
				return v
			}
			return FollowOptions{}
		}, KindMalformed},
		{"an older checkpoint", func(l *fakeLog) FollowOptions {
			l.cpHook = func([]byte) []byte {
				n, _ := verify.SignCheckpoint(verify.Checkpoint{Origin: testOrigin, Size: 50, Hash: l.root(50)}, l.cpSigner)
				return n
			}
			return FollowOptions{}
		}, KindRollback},
		{"a checkpoint signed with another key", func(l *fakeLog) FollowOptions {
			l.cpSigner = otherCP
			l.sign()
			return FollowOptions{}
		}, KindSignature},
		{"a fork", func(l *fakeLog) FollowOptions {
			// Another history after leaf 60, signed by the same key.
			fork := newFakeLog(t, "tamper")
			for i := range 60 {
				fork.add(mustCommitment(t, l.values[i]))
			}
			grow(fork, 80, "fork")
			*l = *fork
			return FollowOptions{}
		}, KindFork},
		{"wrong consistency proofs, right leaves", func(l *fakeLog) FollowOptions {
			l.proofHook = func(p [][]byte) [][]byte {
				p = slices.Clone(p)
				p[0] = bytes.Repeat([]byte{1}, 32)
				return p
			}
			return FollowOptions{}
		}, KindProof},
		{"an event read is not the leaf at its index", func(l *fakeLog) FollowOptions {
			return FollowOptions{FromZero: true, Expect: map[uint64]event.Hash{7: {6}}}
		}, KindNotInLog},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, state := base(t)
			opts := tt.tamper(l)
			opts.State = state
			r := follow(t, l, opts)
			if len(r.Findings) == 0 || r.Findings[0].Kind != tt.want {
				t.Fatalf("findings %v, want %s", r.Findings, tt.want)
			}
			if r.State != nil {
				t.Error("a state to save despite findings")
			}
			if e := r.Findings[0].Evidence; e == nil || len(e.Checkpoints)+len(e.LeafValue) == 0 {
				t.Errorf("finding without evidence: %+v", r.Findings[0])
			}
		})
	}
}

// TestFollowRefusesBadState checks that a state that does not open with
// the key, or whose range is not its tree, is an error, not a finding.
func TestFollowRefusesBadState(t *testing.T) {
	l := newFakeLog(t, "state")
	grow(l, 10, "a")
	r := follow(t, l, FollowOptions{})
	bad := *r.State
	bad.Range = slices.Clone(bad.Range)
	bad.Range[0][0] ^= 1
	if _, err := Follow(context.Background(), l, FollowOptions{Keys: l.keys, State: &bad}); err == nil {
		t.Error("a state with a wrong range was accepted")
	}
	_, _, other := testKeys(t, "other")
	if _, err := Follow(context.Background(), l, FollowOptions{Keys: other, State: r.State}); err == nil {
		t.Error("a state signed by another key was accepted")
	}
}

// TestCheckReceipt checks a receipt kept, pending, overdue, and a log that
// holds another leaf at its index.
func TestCheckReceipt(t *testing.T) {
	l := newFakeLog(t, "receipt")
	grow(l, 10, "a")
	c := event.Hash{8}
	i := l.add(c)
	rc := func(c event.Hash) []byte {
		n, err := verify.SignReceipt(verify.Receipt{Origin: testOrigin, Index: i, Commitment: c, Time: t0, Deadline: t0.Add(10 * time.Second)}, l.rcptSigner)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	at := func(d time.Duration) func() time.Time { return func() time.Time { return t0.Add(d) } }
	check := func(receipt []byte, now func() time.Time) *ReceiptReport {
		r, err := CheckReceipt(context.Background(), l, l.keys, receipt, nil, now, 0)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	if r := check(rc(c), at(time.Second)); r.Status != Pending || len(r.Findings) != 0 {
		t.Errorf("before the checkpoint, in time: %s %v", r.Status, r.Findings)
	}
	if r := check(rc(c), at(time.Minute)); r.Status != Failed || !slices.Equal(kinds(r.Findings), []Kind{KindReceiptOverdue}) {
		t.Errorf("before the checkpoint, late: %s %v", r.Status, r.Findings)
	}
	l.sign()
	if r := check(rc(c), at(time.Minute)); r.Status != Included || len(r.Findings) != 0 {
		t.Errorf("covered: %s %v", r.Status, r.Findings)
	}
	if r := check(rc(event.Hash{9}), at(time.Minute)); r.Status != Failed || !slices.Equal(kinds(r.Findings), []Kind{KindNotInLog}) {
		t.Errorf("another leaf at its index: %s %v", r.Status, r.Findings)
	}
	forged := rc(c)
	forged[len(forged)-5] ^= 1
	if r := check(forged, at(time.Minute)); r.Status != Failed || !slices.Equal(kinds(r.Findings), []Kind{KindReceipt}) {
		t.Errorf("forged: %s %v", r.Status, r.Findings)
	}
}

// TestFollowFirstCheckpointForged: with no saved state, a first checkpoint
// that is not the log's is reported, and nothing is saved.
func TestFollowFirstCheckpointForged(t *testing.T) {
	l := newFakeLog(t, "forged")
	grow(l, 5, "a")
	other, _, _ := testKeys(t, "other")
	l.cpSigner = other
	l.sign()
	r := follow(t, l, FollowOptions{})
	if !slices.Equal(kinds(r.Findings), []Kind{KindSignature}) || r.State != nil || len(r.Seen) != 0 {
		t.Fatalf("findings %v, state %v, seen %v", r.Findings, r.State, r.Seen)
	}
}

// TestFollowFromZeroUnchanged: from zero, with a log that has not grown
// since the saved state, every leaf is still fetched and the saved root
// rebuilt.
func TestFollowFromZeroUnchanged(t *testing.T) {
	l := newFakeLog(t, "unchanged")
	grow(l, 300, "a")
	saved := follow(t, l, FollowOptions{}).State
	r := follow(t, l, FollowOptions{State: saved, FromZero: true, Expect: map[uint64]event.Hash{5: mustCommitment(t, l.values[5])}})
	if len(r.Findings) != 0 || r.Fetched != 300 || !r.Seen[0].RootChecked || r.Expected != 1 || r.State == nil {
		t.Fatalf("findings %v, fetched %d, seen %+v, expected %d", r.Findings, r.Fetched, r.Seen, r.Expected)
	}
}

// TestFollowWaitsForMinSize: the first poll waits for a checkpoint that
// covers MinSize leaves, up to MinSizeWait.
func TestFollowWaitsForMinSize(t *testing.T) {
	l := newFakeLog(t, "wait")
	grow(l, 10, "a")
	polls := 0
	l.cpHook = func(n []byte) []byte {
		if polls++; polls == 3 {
			grow(l, 5, "b")
			return l.latest
		}
		return n
	}
	r := follow(t, l, FollowOptions{MinSize: 15, MinSizeWait: 10 * time.Second})
	if len(r.Findings) != 0 || r.Seen[0].Size != 15 || polls < 3 {
		t.Fatalf("findings %v, first checkpoint %d after %d polls", r.Findings, r.Seen[0].Size, polls)
	}
	// A size never reached: Follow gives up after MinSizeWait, having
	// polled every 200 ms at most (a busy machine polls less often), then
	// polls once more after the catch-up. The bound on the elapsed time is
	// only there to fail rather than hang.
	polls = 0
	l.cpHook = func(n []byte) []byte { polls++; return n }
	start := time.Now()
	r = follow(t, l, FollowOptions{MinSize: 100, MinSizeWait: 300 * time.Millisecond})
	if len(r.Findings) != 0 || r.Seen[0].Size != 15 || polls > 4 || time.Since(start) > time.Minute {
		t.Fatalf("waiting for a size never reached: findings %v, size %d, %d polls in %v", r.Findings, r.Seen[0].Size, polls, time.Since(start))
	}
}

// TestFollowBefore: a checkpoint the caller was served before following
// is checked as the others: a clean one is seen with its root rebuilt; an
// older one than the saved state is a rollback; one of another log is a
// fork; one not signed by the log's key is a signature finding.
func TestFollowBefore(t *testing.T) {
	l := newFakeLog(t, "before")
	grow(l, 100, "a")
	old := l.latest
	grow(l, 50, "b")
	mid := l.latest
	saved := follow(t, l, FollowOptions{}).State
	grow(l, 20, "c")

	r := follow(t, l, FollowOptions{FromZero: true, Before: mid})
	found := false
	for _, s := range r.Seen {
		found = found || bytes.Equal(s.Note, mid) && s.RootChecked
	}
	if len(r.Findings) != 0 || !found {
		t.Errorf("a clean checkpoint before: findings %v, seen with its root rebuilt %v", r.Findings, found)
	}
	if r := follow(t, l, FollowOptions{State: saved, Before: old}); len(r.Findings) == 0 || r.Findings[0].Kind != KindRollback {
		t.Errorf("an older checkpoint before than the saved state: %v, want a rollback", r.Findings)
	}
	other := newFakeLog(t, "before")
	grow(other, 160, "z")
	if r := follow(t, l, FollowOptions{FromZero: true, Before: other.latest}); len(r.Findings) == 0 || r.Findings[0].Kind != KindFork && r.Findings[0].Kind != KindRootMismatch {
		t.Errorf("a checkpoint of another log before: %v, want a fork", r.Findings)
	}
	if r := follow(t, l, FollowOptions{Before: []byte("not a checkpoint\n")}); len(r.Findings) == 0 || r.Findings[0].Kind != KindSignature && r.Findings[0].Kind != KindMalformed {
		t.Errorf("garbage before: %v, want a signature finding", r.Findings)
	}
}
