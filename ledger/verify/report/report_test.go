package report

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/vigie-sante/vigie/ledger/event"
	"github.com/vigie-sante/vigie/ledger/verify"
)

const origin = "test.example/vigie/1"

var t0 = time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)

// testLog is a log built with golang.org/x/mod/sumdb/tlog (independent of
// the code under test), with real keys and event bodies.
type testLog struct {
	t                  *testing.T
	cpSigner, rcSigner note.Signer
	keys               Keys
	stored             []tlog.Hash
	size               int64
	// events of the patient, in chain order
	events []Event
}

func (l *testLog) ReadHashes(idx []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(idx))
	for i, x := range idx {
		out[i] = l.stored[x]
	}
	return out, nil
}

func newTestLog(t *testing.T) *testLog {
	l := &testLog{t: t}
	l.cpSigner, l.keys.CheckpointKey = newKey(t, origin)
	l.rcSigner, l.keys.ReceiptKey = newKey(t, verify.ReceiptKeyName(origin))
	return l
}

func newKey(t *testing.T, name string) (note.Signer, string) {
	skey, vkey, err := note.GenerateKey(rand.Reader, name)
	if err != nil {
		t.Fatal(err)
	}
	s, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	return s, vkey
}

func (l *testLog) appendLeaf(c event.Hash) uint64 {
	h, err := tlog.StoredHashesForRecordHash(l.size, tlog.Hash(verify.MerkleLeafHash(c)), l)
	if err != nil {
		l.t.Fatal(err)
	}
	l.stored = append(l.stored, h...)
	l.size++
	return uint64(l.size - 1)
}

// add appends an event of the patient (and one leaf of someone else before
// it, so that indices and sequences differ).
func (l *testLog) add(kind event.Kind, payload string) {
	l.appendLeaf(sha256.Sum256([]byte{byte(l.size)}))
	var prev event.Hash
	if n := len(l.events); n > 0 {
		prev, _ = event.ParseHash(l.events[n-1].Commitment)
	}
	b := event.Body{V: 1, ID: strings.Repeat("ab", 16), Time: t0.Add(time.Duration(len(l.events)) * time.Hour), Kind: kind,
		Patient: sha256.Sum256([]byte("patient")), Seq: uint64(len(l.events) + 1), Prev: prev, Service: "hospital-his", Payload: json.RawMessage(payload)}
	body, err := b.Marshal()
	if err != nil {
		l.t.Fatal(err)
	}
	var salt [verify.SaltSize]byte
	rand.Read(salt[:])
	c := verify.Commitment(salt, body)
	idx := l.appendLeaf(c)
	l.events = append(l.events, Event{Sequence: Uint64(b.Seq), LeafIndex: Uint64(idx), Commitment: c.String(), Body: body, Salt: salt[:]})
}

func (l *testLog) checkpoint(size int64) (verify.Checkpoint, []byte) {
	h, err := tlog.TreeHash(size, l)
	if err != nil {
		l.t.Fatal(err)
	}
	c := verify.Checkpoint{Origin: origin, Size: uint64(size), Hash: event.Hash(h)}
	n, err := verify.SignCheckpoint(c, l.cpSigner)
	if err != nil {
		l.t.Fatal(err)
	}
	return c, n
}

// pages serves the history as ListAccesses would at a checkpoint of the
// given size, perPage events a page: proofs for the events it covers,
// receipts (deadline in an hour from t0) for the others.
func (l *testLog) pages(size int64, perPage int) []Page {
	_, n := l.checkpoint(size)
	var out []Page
	for i, e := range l.events {
		if i%perPage == 0 {
			out = append(out, Page{Checkpoint: n})
		}
		if int64(e.LeafIndex) < size {
			p, err := tlog.ProveRecord(size, int64(e.LeafIndex), l)
			if err != nil {
				l.t.Fatal(err)
			}
			for _, h := range p {
				e.InclusionProof = append(e.InclusionProof, h[:])
			}
		} else {
			c, _ := event.ParseHash(e.Commitment)
			r, err := verify.SignReceipt(verify.Receipt{Origin: origin, Index: uint64(e.LeafIndex), Commitment: c, Time: t0, Deadline: t0.Add(time.Hour)}, l.rcSigner)
			if err != nil {
				l.t.Fatal(err)
			}
			e.Receipt = r
		}
		out[len(out)-1].Events = append(out[len(out)-1].Events, e)
	}
	return out
}

func TestVerifyHistory(t *testing.T) {
	l := newTestLog(t)
	l.add(event.KindAccess, `{"format":"vigie.access.v1"}`)
	l.add(event.KindConsentChange, `{"format":"vigie.consent-change.v1"}`)
	l.add(event.KindAccess, `{"format":"vigie.access.v1","n":2}`)
	l.add(event.KindLedgerRead, `{"format":"vigie.ledger-read.v1"}`)
	covered := int64(l.events[2].LeafIndex) + 1 // the last event is beyond the checkpoint

	type mutation func(in *HistoryInput)
	for _, tc := range []struct {
		name     string
		mutate   mutation
		verdicts string // per event
		problem  string // in the report's problems, "" for none
	}{
		{name: "intact", verdicts: "verified verified verified promised"},
		{name: "tampered body", mutate: func(in *HistoryInput) {
			e := &in.Pages[0].Events[0]
			e.Body = []byte(strings.Replace(string(e.Body), "hospital-his", "hospital-xyz", 1))
		}, verdicts: "failed verified verified promised"},
		{name: "tampered salt", mutate: func(in *HistoryInput) { in.Pages[1].Events[0].Salt[0] ^= 1 }, verdicts: "verified verified failed promised"},
		{name: "wrong proof", mutate: func(in *HistoryInput) { in.Pages[0].Events[1].InclusionProof[0][0] ^= 1 }, verdicts: "verified failed verified promised"},
		{name: "leaf index moved", mutate: func(in *HistoryInput) { in.Pages[0].Events[1].LeafIndex-- }, verdicts: "verified failed verified promised"},
		{name: "served sequence differs from the body's", mutate: func(in *HistoryInput) {
			in.Pages[0].Events[0].Sequence, in.Pages[0].Events[1].Sequence = 2, 1
		}, verdicts: "failed failed verified promised", problem: "wrong link"},
		{name: "receipt overdue", mutate: func(in *HistoryInput) { in.Now = t0.Add(2 * time.Hour) }, verdicts: "verified verified verified failed"},
		{name: "receipt of another event", mutate: func(in *HistoryInput) {
			in.Pages[1].Events[1].Receipt = []byte("vigie receipt v1\n")
		}, verdicts: "verified verified verified failed"},
		{name: "event left out", mutate: func(in *HistoryInput) {
			in.Pages[0].Events = in.Pages[0].Events[:1]
		}, verdicts: "verified verified promised", problem: "chain breaks at seq 2: missing event"},
		{name: "event served twice", mutate: func(in *HistoryInput) {
			in.Pages[1].Events = append(in.Pages[1].Events, in.Pages[1].Events[1])
		}, verdicts: "verified verified verified promised promised", problem: "duplicate sequence number"},
		{name: "checkpoint of another key", mutate: func(in *HistoryInput) {
			_, in.Keys.CheckpointKey = newKey(t, origin)
		}, verdicts: "failed failed failed failed", problem: "not signed by the expected key"},
		{name: "pages proved against different checkpoints", mutate: func(in *HistoryInput) {
			_, in.Pages[1].Checkpoint = l.checkpoint(covered - 1)
		}, verdicts: "verified verified verified promised", problem: "page 2 is proved against another checkpoint"},
		{name: "no checkpoint", mutate: func(in *HistoryInput) {
			for i := range in.Pages {
				in.Pages[i].Checkpoint = nil
			}
		}, verdicts: "failed failed failed failed", problem: "no checkpoint"},
		// An event blanked in the middle of the chain, with no erasure
		// recorded after it: the server hides it; each event still proves.
		{name: "event shown erased with no erasure", mutate: func(in *HistoryInput) {
			e := &in.Pages[0].Events[1]
			e.Erased, e.Body, e.Salt = true, nil, nil
		}, verdicts: "verified verified verified promised", problem: "erased without an erasure record"},
		{name: "erased event with a body", mutate: func(in *HistoryInput) { in.Pages[0].Events[1].Erased = true }, verdicts: "verified failed verified promised", problem: "erased without an erasure record"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := HistoryInput{Keys: l.keys, Pages: l.pages(covered, 2), Now: t0.Add(time.Minute)}
			// Round-trip through JSON, as the browser passes it.
			b, err := json.Marshal(in)
			if err != nil {
				t.Fatal(err)
			}
			in = HistoryInput{}
			if err := json.Unmarshal(b, &in); err != nil {
				t.Fatal(err)
			}
			if tc.mutate != nil {
				tc.mutate(&in)
			}
			rep := VerifyHistory(in)
			var verdicts []string
			for _, e := range rep.Events {
				verdicts = append(verdicts, e.Verdict)
			}
			if got := strings.Join(verdicts, " "); got != tc.verdicts {
				t.Errorf("verdicts = %s, want %s\n%+v", got, tc.verdicts, rep)
			}
			problems := strings.Join(rep.Problems, "; ")
			if tc.problem == "" && problems != "" || !strings.Contains(problems, tc.problem) {
				t.Errorf("problems = %q, want %q", problems, tc.problem)
			}
			wantOK := tc.problem == "" && !strings.Contains(tc.verdicts, Failed)
			if rep.OK != wantOK {
				t.Errorf("OK = %v, want %v", rep.OK, wantOK)
			}
			if rep.OK && (rep.Checkpoint == nil || rep.Checkpoint.Size != uint64(covered)) {
				t.Errorf("checkpoint = %+v, want size %d", rep.Checkpoint, covered)
			}
		})
	}
	t.Run("shown fields come from the verified body", func(t *testing.T) {
		rep := VerifyHistory(HistoryInput{Keys: l.keys, Pages: l.pages(covered, 10), Now: t0})
		e := rep.Events[2]
		if e.Kind != event.KindAccess || string(e.Payload) != `{"format":"vigie.access.v1","n":2}` || !e.Time.Equal(t0.Add(2*time.Hour)) || e.Service != "hospital-his" {
			t.Errorf("event 3 = %+v", e)
		}
		if p := rep.Events[3]; p.Deadline == nil || !p.Deadline.Equal(t0.Add(time.Hour)) {
			t.Errorf("promised event's deadline = %v", p.Deadline)
		}
	})
}

func TestVerifyHistoryWrongLink(t *testing.T) {
	// A server that splices another chain's event (valid commitment,
	// included in the log) into the patient's history.
	l := newTestLog(t)
	l.add(event.KindAccess, `{}`)
	l.add(event.KindAccess, `{}`)
	l.events[1].Commitment = strings.Repeat("0", 64)
	rep := VerifyHistory(HistoryInput{Keys: l.keys, Pages: l.pages(l.size, 10), Now: t0})
	if rep.OK {
		t.Fatalf("a history with a forged commitment verified: %+v", rep)
	}

	l = newTestLog(t)
	l.add(event.KindAccess, `{}`)
	l.add(event.KindAccess, `{}`)
	l.add(event.KindAccess, `{}`)
	l.events = append(l.events[:1], l.events[2:]...) // drop seq 2, renumber 3 as 2
	l.events[1].Sequence = 2
	rep = VerifyHistory(HistoryInput{Keys: l.keys, Pages: l.pages(l.size, 10), Now: t0})
	if rep.OK || rep.Events[1].Verdict != Failed {
		t.Fatalf("a renumbered event verified: %+v", rep)
	}
}

func TestVerifySeries(t *testing.T) {
	l := newTestLog(t)
	for range 5 {
		l.add(event.KindAccess, `{}`)
	}
	var notes [][]byte
	var proofs [][][]byte
	sizes := []int64{2, 5, 5, 10}
	for i, s := range sizes {
		_, n := l.checkpoint(s)
		notes = append(notes, n)
		if i > 0 {
			p, err := tlog.ProveTree(s, sizes[i-1], l)
			if err != nil {
				t.Fatal(err)
			}
			var pb [][]byte
			for _, h := range p {
				pb = append(pb, h[:])
			}
			proofs = append(proofs, pb)
		}
	}
	rep := VerifySeries(SeriesInput{Keys: l.keys, Notes: notes, Proofs: proofs})
	if !rep.OK || rep.Inconsistent || len(rep.Checkpoints) != 4 || rep.Checkpoints[3].Size != 10 {
		t.Fatalf("consistent series: %+v", rep)
	}

	// A fork: a checkpoint of size 5 over other leaves, signed by the
	// same key.
	fork := newTestLog(t)
	fork.cpSigner, fork.keys = l.cpSigner, l.keys
	for range 3 {
		fork.add(event.KindAccess, `{"fork":true}`)
	}
	_, forked := fork.checkpoint(5)
	bad := SeriesInput{Keys: l.keys, Notes: [][]byte{notes[0], forked, notes[3]}, Proofs: [][][]byte{proofs[0], proofs[2]}}
	rep = VerifySeries(bad)
	if rep.OK || !rep.Inconsistent || rep.Checkpoints[1].Verdict != Failed {
		t.Fatalf("forked series: %+v", rep)
	}

	_, otherKey := newKey(t, origin)
	rep = VerifySeries(SeriesInput{Keys: Keys{CheckpointKey: otherKey}, Notes: notes[:1], Proofs: [][][]byte{}})
	if rep.OK || rep.Checkpoints[0].Verdict != Failed || rep.Inconsistent {
		t.Fatalf("another key: %+v", rep)
	}
	rep = VerifySeries(SeriesInput{Keys: l.keys, Notes: notes, Proofs: proofs[:1]})
	if rep.OK || len(rep.Problems) == 0 {
		t.Fatalf("missing proofs: %+v", rep)
	}
}

func TestUint64JSON(t *testing.T) {
	var e Event
	if err := json.Unmarshal([]byte(`{"sequence":"12","leaf_index":7}`), &e); err != nil || e.Sequence != 12 || e.LeafIndex != 7 {
		t.Errorf("Unmarshal = %+v, %v", e, err)
	}
	if err := json.Unmarshal([]byte(`{"sequence":"-1"}`), &e); err == nil {
		t.Errorf("a negative sequence was accepted")
	}
}

func TestVerifyEvents(t *testing.T) {
	l := newTestLog(t)
	for range 3 {
		l.add(event.KindAccess, `{}`)
	}
	p := l.pages(l.size, 10)[0]
	// Search results: not a chain (event 2 left out), each proved.
	in := EventsInput{Keys: l.keys, Checkpoint: p.Checkpoint, Events: []Event{p.Events[0], p.Events[2]}, Now: t0}
	if rep := VerifyEvents(in); !rep.OK || len(rep.Events) != 2 {
		t.Fatalf("VerifyEvents = %+v", rep)
	}
	in.Events[1].Body = append([]byte(nil), in.Events[1].Body...)
	in.Events[1].Body[len(in.Events[1].Body)-2] = ' '
	if rep := VerifyEvents(in); rep.OK || rep.Events[1].Verdict != Failed || rep.Events[0].Verdict != Verified {
		t.Fatalf("VerifyEvents with a tampered body = %+v", rep)
	}
}

// TestVerifyHistoryErasures: erased events pass only as an erasure leaves
// them: the first events of the chain, followed by the erasure's record.
func TestVerifyHistoryErasures(t *testing.T) {
	l := newTestLog(t)
	l.add(event.KindAccess, `{"format":"vigie.access.v1"}`)
	l.add(event.KindErasure, `{"format":"vigie.erasure.v1","state":"requested","requested_by":"patient"}`)
	l.add(event.KindErasure, `{"format":"vigie.erasure.v1","state":"done","requested_by":"patient","erased":2}`)
	l.add(event.KindAccess, `{"format":"vigie.access.v1","n":4}`)
	size := int64(len(l.events))
	for _, tc := range []struct {
		name    string
		erased  []int
		problem string
	}{
		{"nothing erased", nil, ""},
		{"the events before the erasure's record", []int{0, 1}, ""},
		{"the first event only", []int{0}, ""},
		{"an event after a readable one", []int{1}, "erased without an erasure record"},
		{"the erasure's record itself", []int{0, 1, 2}, "erased without an erasure record"},
		{"every event", []int{0, 1, 2, 3}, "erased without an erasure record"},
		{"the event after the erasure's record", []int{0, 1, 3}, "erased without an erasure record"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := HistoryInput{Keys: l.keys, Pages: l.pages(size, 10), Now: t0}
			b, err := json.Marshal(in) // a deep copy
			if err != nil {
				t.Fatal(err)
			}
			in = HistoryInput{}
			if err := json.Unmarshal(b, &in); err != nil {
				t.Fatal(err)
			}
			for _, i := range tc.erased {
				e := &in.Pages[0].Events[i]
				e.Erased, e.Body, e.Salt = true, nil, nil
			}
			rep := VerifyHistory(in)
			problems := strings.Join(rep.Problems, "; ")
			if tc.problem == "" && (problems != "" || !rep.OK) || !strings.Contains(problems, tc.problem) {
				t.Errorf("problems = %q (OK %v), want %q", problems, rep.OK, tc.problem)
			}
		})
	}
}
