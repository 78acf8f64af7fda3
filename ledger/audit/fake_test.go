package audit

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/vigie-sante/vigie/ledger/event"
	"github.com/vigie-sante/vigie/ledger/verify"
)

const testOrigin = "audit.example/vigie/1"

var t0 = time.Date(2026, 11, 28, 22, 0, 0, 0, time.UTC)

// testKeys returns a checkpoint and a receipt key pair named for origin,
// from a seed (the same seed, the same keys).
func testKeys(t testing.TB, seed string) (cpSigner, rcptSigner note.Signer, keys Keys) {
	t.Helper()
	mk := func(name string) (note.Signer, note.Verifier) {
		sk, vk, err := note.GenerateKey(seeded(seed+name), name)
		if err != nil {
			t.Fatal(err)
		}
		s, err := note.NewSigner(sk)
		if err != nil {
			t.Fatal(err)
		}
		v, err := note.NewVerifier(vk)
		if err != nil {
			t.Fatal(err)
		}
		return s, v
	}
	cpSigner, keys.Checkpoint = mk(testOrigin)
	rcptSigner, keys.Receipt = mk(verify.ReceiptKeyName(testOrigin))
	return cpSigner, rcptSigner, keys
}

// seeded is a deterministic reader for key generation.
type seeded string

func (s seeded) Read(p []byte) (int, error) {
	for i := 0; i < len(p); i += 32 {
		h := sha256.Sum256([]byte(fmt.Sprintf("%s/%d", s, i)))
		copy(p[i:], h[:])
	}
	return len(p), nil
}

// fakeLog is a log in memory serving what the API serves, with hooks to
// tamper with its answers.
type fakeLog struct {
	t          testing.TB
	cpSigner   note.Signer
	rcptSigner note.Signer
	keys       Keys
	values     [][]byte    // leaf values
	stored     []tlog.Hash // tlog's stored hashes of the tree
	latest     []byte      // the latest signed checkpoint
	// tamper hooks
	leafHook  func(index uint64, v []byte) []byte
	proofHook func(p [][]byte) [][]byte
	cpHook    func(n []byte) []byte
	// patient history
	events  []testEvent
	pinned  []byte // checkpoint of the listing
	page    int    // events per page
	history func(p *HistoryPage)
}

type testEvent struct {
	env  Envelope
	body *event.Body
}

func newFakeLog(t testing.TB, seed string) *fakeLog {
	cp, rc, keys := testKeys(t, seed)
	return &fakeLog{t: t, cpSigner: cp, rcptSigner: rc, keys: keys, page: 3}
}

// add appends a leaf of commitment c and returns its index.
func (l *fakeLog) add(c event.Hash) uint64 {
	n := int64(len(l.values))
	v := verify.LeafValue(c)
	hs, err := tlog.StoredHashes(n, v, l)
	if err != nil {
		l.t.Fatal(err)
	}
	l.values = append(l.values, v)
	l.stored = append(l.stored, hs...)
	return uint64(n)
}

// ReadHashes implements tlog.HashReader.
func (l *fakeLog) ReadHashes(idx []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(idx))
	for i, x := range idx {
		if x >= int64(len(l.stored)) {
			return nil, errors.New("hash not stored")
		}
		out[i] = l.stored[x]
	}
	return out, nil
}

func (l *fakeLog) root(size uint64) event.Hash {
	if size == 0 {
		return event.Hash(sha256.Sum256(nil))
	}
	h, err := tlog.TreeHash(int64(size), l)
	if err != nil {
		l.t.Fatal(err)
	}
	return event.Hash(h)
}

// sign signs a checkpoint of the whole tree and makes it the latest.
func (l *fakeLog) sign() []byte {
	size := uint64(len(l.values))
	n, err := verify.SignCheckpoint(verify.Checkpoint{Origin: testOrigin, Size: size, Hash: l.root(size)}, l.cpSigner)
	if err != nil {
		l.t.Fatal(err)
	}
	l.latest = n
	return n
}

func (l *fakeLog) Checkpoint(context.Context) ([]byte, error) {
	if l.cpHook != nil {
		return l.cpHook(l.latest), nil
	}
	return l.latest, nil
}

func toBytes(p tlog.TreeProof) [][]byte {
	out := make([][]byte, len(p))
	for i, h := range p {
		out[i] = h[:]
	}
	return out
}

func (l *fakeLog) hook(p [][]byte) [][]byte {
	if l.proofHook != nil {
		return l.proofHook(p)
	}
	return p
}

func (l *fakeLog) ConsistencyProof(_ context.Context, first, second uint64) ([][]byte, error) {
	p, err := tlog.ProveTree(int64(second), int64(first), l)
	if err != nil {
		return nil, err
	}
	return l.hook(toBytes(p)), nil
}

func (l *fakeLog) InclusionProof(_ context.Context, index, size uint64) ([][]byte, error) {
	p, err := tlog.ProveRecord(int64(size), int64(index), l)
	if err != nil {
		return nil, err
	}
	out := make([][]byte, len(p))
	for i, h := range p {
		out[i] = h[:]
	}
	return l.hook(out), nil
}

func (l *fakeLog) Leaves(_ context.Context, start, end uint64) ([][]byte, error) {
	cp, err := verify.ParseCheckpoint(mustText(l.t, l.latest))
	if err != nil {
		return nil, err
	}
	end = min(end, cp.Size, start+1000)
	var out [][]byte
	for i := start; i < end; i++ {
		v := l.values[i]
		if l.leafHook != nil {
			v = l.leafHook(i, v)
		}
		out = append(out, v)
	}
	return out, nil
}

func mustText(t testing.TB, signed []byte) []byte {
	n, err := note.Open(signed, note.VerifierList())
	var unverified *note.UnverifiedNoteError
	if errors.As(err, &unverified) {
		return []byte(unverified.Note.Text)
	}
	if err != nil {
		t.Fatal(err)
	}
	return []byte(n.Text)
}

// record adds an event of the patient's chain (pseudonym p) to the log
// and returns it.
func (l *fakeLog) record(p event.Hash, kind event.Kind, payload string) *testEvent {
	seq := uint64(len(l.events) + 1)
	b := &event.Body{V: 1, ID: fmt.Sprintf("%032x", seq), Time: t0.Add(time.Duration(seq) * time.Minute), Kind: kind,
		Patient: p, Seq: seq, Service: "hospital.example/dpi", Payload: []byte(payload)}
	if seq > 1 {
		b.Prev = l.events[seq-2].env.commitment(l.t)
	}
	body, err := b.Marshal()
	if err != nil {
		l.t.Fatal(err)
	}
	var salt [verify.SaltSize]byte
	copy(salt[:], fmt.Sprintf("salt-%d", seq))
	c := verify.Commitment(salt, body)
	i := l.add(c)
	l.events = append(l.events, testEvent{env: Envelope{Seq: seq, Index: i, Commitment: c.String(), Body: body, Salt: salt[:]}, body: b})
	return &l.events[len(l.events)-1]
}

func (e *Envelope) commitment(t testing.TB) event.Hash {
	c, err := event.ParseHash(e.Commitment)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// erase makes the first n events of the history placeholders.
func (l *fakeLog) erase(n int) {
	for i := range n {
		e := &l.events[i].env
		e.Erased, e.Body, e.Salt = true, nil, nil
	}
}

// HistoryPage serves the history against the checkpoint pinned at the
// first page, with receipts for the events it does not cover.
func (l *fakeLog) HistoryPage(_ context.Context, token string) (*HistoryPage, error) {
	from := 0
	if token == "" {
		l.pinned = l.latest
	} else {
		fmt.Sscan(token, &from)
	}
	cp, err := verify.ParseCheckpoint(mustText(l.t, l.pinned))
	if err != nil {
		return nil, err
	}
	p := &HistoryPage{Checkpoint: l.pinned}
	to := min(from+l.page, len(l.events))
	for _, te := range l.events[from:to] {
		e := te.env
		if e.Index < cp.Size {
			e.Proof, _ = l.InclusionProof(context.Background(), e.Index, cp.Size)
		} else {
			r := verify.Receipt{Origin: testOrigin, Index: e.Index, Commitment: e.commitment(l.t), Time: t0, Deadline: t0.Add(10 * time.Second)}
			if e.Receipt, err = verify.SignReceipt(r, l.rcptSigner); err != nil {
				l.t.Fatal(err)
			}
		}
		p.Events = append(p.Events, e)
	}
	if to < len(l.events) {
		p.Next = fmt.Sprint(to)
	}
	if l.history != nil {
		l.history(p)
	}
	return p, nil
}

var testPatient = event.Hash(sha256.Sum256([]byte("patient")))

// story records a patient's history of n events, among other leaves,
// and signs a checkpoint. The events at the erasedAt places are records
// of an erasure of the events before them (erase them to match).
func story(t testing.TB, n int, erasedAt ...int) *fakeLog {
	l := newFakeLog(t, "log")
	for i := range n {
		l.add(event.Hash(sha256.Sum256([]byte(fmt.Sprint("other ", i)))))
		if slices.Contains(erasedAt, i) {
			// The record of an erasure of the events before it.
			l.record(testPatient, event.KindErasure, fmt.Sprintf(`{"format":"vigie.erasure.v1","state":"done","erased":%d}`, i))
			continue
		}
		l.record(testPatient, event.KindAccess, fmt.Sprintf(`{"n":%d}`, i))
	}
	l.sign()
	return l
}

// kinds returns the kinds of findings.
func kinds(fs []Finding) []Kind {
	var out []Kind
	for _, f := range fs {
		out = append(out, f.Kind)
	}
	return out
}
