package witness

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/vigie-sante/vigie/ledger"
	"github.com/vigie-sante/vigie/ledger/event"
	"github.com/vigie-sante/vigie/ledger/ledgertest"
	"github.com/vigie-sante/vigie/ledger/verify"
)

var ctx = context.Background()

// fakeWitness is a tlog-witness with fault hooks: it checks the log's
// signature and the consistency proof as the protocol says, and cosigns;
// fault, if set, answers instead (status, body), and stall delays every
// answer.
type fakeWitness struct {
	name string
	key  ed25519.PrivateKey
	log  note.Verifier

	mu       sync.Mutex
	known    verify.Checkpoint
	fault    func(n int) (int, string) // n: the request's number, from 1; status 0: no fault
	stall    time.Duration
	requests atomic.Int64
	srv      *httptest.Server
}

func newFakeWitness(t *testing.T, name string, log note.Verifier) *fakeWitness {
	seed := sha256.Sum256([]byte("fake witness " + name))
	w := &fakeWitness{name: name, key: ed25519.NewKeyFromSeed(seed[:]), log: log}
	w.srv = httptest.NewServer(http.HandlerFunc(w.serve))
	t.Cleanup(func() { w.srv.CloseClientConnections(); w.srv.Close() })
	return w
}

func (w *fakeWitness) serve(rw http.ResponseWriter, r *http.Request) {
	n := int(w.requests.Add(1))
	// The body first: the server notices a client gone only once read.
	body, _ := io.ReadAll(http.MaxBytesReader(rw, r.Body, 64<<10))
	w.mu.Lock()
	fault, stall := w.fault, w.stall
	w.mu.Unlock()
	if stall > 0 {
		select {
		case <-time.After(stall):
		case <-r.Context().Done():
			return
		}
	}
	if fault != nil {
		if status, body := fault(n); status != 0 {
			rw.WriteHeader(status)
			fmt.Fprint(rw, body)
			return
		}
	}
	if r.Method != http.MethodPost || r.URL.Path != "/add-checkpoint" {
		http.NotFound(rw, r)
		return
	}
	old, proof, signed, err := ParseAddCheckpoint(body)
	if err != nil {
		http.Error(rw, err.Error(), http.StatusBadRequest)
		return
	}
	cp, err := verify.OpenCheckpoint(signed, w.log)
	if err != nil {
		http.Error(rw, "unknown log or bad signature", http.StatusForbidden)
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if old != w.known.Size {
		rw.Header().Set("Content-Type", "text/x.tlog.size")
		rw.WriteHeader(http.StatusConflict)
		fmt.Fprintf(rw, "%d\n", w.known.Size)
		return
	}
	if old > 0 {
		if err := verify.VerifyConsistency(w.known, cp, proof); err != nil {
			http.Error(rw, "bad consistency proof", http.StatusUnprocessableEntity)
			return
		}
	}
	w.known = cp
	text, _ := verify.FormatCheckpoint(cp)
	line, err := verify.SignCosignature(w.name, w.key, uint64(time.Now().Unix()), text)
	if err != nil {
		http.Error(rw, err.Error(), http.StatusInternalServerError)
		return
	}
	rw.Write(line)
}

func (w *fakeWitness) set(f func(w *fakeWitness)) {
	w.mu.Lock()
	defer w.mu.Unlock()
	f(w)
}

// setup is a ledger with checkpoints, three fake witnesses and the
// policy two of three.
type setup struct {
	env       *ledgertest.Env
	witnesses []*fakeWitness
	policy    *verify.WitnessPolicy
}

func newSetup(t *testing.T, events int, postgres bool) *setup {
	opts := ledgertest.Options{Migrations: Migrations}
	if postgres {
		opts.PostgreSQL = ledgertest.Postgres(t)
	}
	env := ledgertest.New(t, opts)
	s := &setup{env: env}
	var b strings.Builder
	vkey := env.CheckpointVerifierKey
	_, enc, _ := strings.Cut(strings.TrimPrefix(vkey, env.Origin+"+"), "+")
	raw := mustBase64(t, enc)
	fmt.Fprintf(&b, "log %x\n", raw[1:])
	for i := range 3 {
		w := newFakeWitness(t, fmt.Sprintf("witness.test/w%d", i+1), env.CheckpointKey)
		s.witnesses = append(s.witnesses, w)
		fmt.Fprintf(&b, "witness %s %x %s\n", w.name, []byte(w.key.Public().(ed25519.PublicKey)), w.srv.URL)
	}
	b.WriteString("group all-three 2 witness.test/w1 witness.test/w2 witness.test/w3\nquorum all-three\n")
	p, err := verify.ParseWitnessPolicy([]byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.CheckLogKey(vkey); err != nil {
		t.Fatal(err)
	}
	s.policy = p
	s.record(t, events)
	return s
}

func mustBase64(t *testing.T, s string) []byte {
	t.Helper()
	var b []byte
	if err := json.Unmarshal([]byte(`"`+s+`"`), &b); err != nil {
		t.Fatal(err)
	}
	return b
}

// record records n events and waits for a checkpoint covering them.
func (s *setup) record(t *testing.T, n int) {
	t.Helper()
	var last uint64
	for i := range n {
		r, err := s.env.Ledger.Record(ctx, ledger.Entry{Kind: event.KindAccess, Patient: ledgertest.Patient("p"), Service: "his",
			Payload: json.RawMessage(fmt.Sprintf(`{"decision":"allow","n":%d}`, i)), Actor: "10000000001"})
		if err != nil {
			t.Fatal(err)
		}
		last = r.Index
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := s.env.Ledger.WaitCheckpoint(wctx, last); err != nil {
		t.Fatal(err)
	}
}

func (s *setup) submitter(t *testing.T, mod func(*Config)) *Submitter {
	t.Helper()
	cfg := Config{Policy: s.policy, Verifier: s.env.CheckpointKey, Log: s.env.Ledger, Store: s.env.Store, Owner: "test-" + t.Name(),
		Poll: 20 * time.Millisecond, Timeout: 300 * time.Millisecond, Retries: 2, Backoff: 10 * time.Millisecond}
	if mod != nil {
		mod(&cfg)
	}
	sub, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return sub
}

func latest(t *testing.T, s *setup) ([]byte, uint64) {
	t.Helper()
	n, size, err := s.env.Ledger.LatestCheckpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return n, size
}

// TestSubmitAnswers: each answer a witness may give, and Vigie's action,
// on both engines.
func TestSubmitAnswers(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) { testSubmitAnswers(t, false) })
	t.Run("postgresql", func(t *testing.T) { testSubmitAnswers(t, true) })
}

func testSubmitAnswers(t *testing.T, postgres bool) {
	s := newSetup(t, 3, postgres)
	w := s.witnesses[0]
	pw := s.policy.Witnesses[0]
	n, size := latest(t, s)

	// A fork: a checkpoint of another tree of a smaller size, cosigned
	// by the witness before (the same key signed both).
	forked := func(w *fakeWitness) {
		w.known = verify.Checkpoint{Origin: s.env.Origin, Size: 2, Hash: event.Hash(sha256.Sum256([]byte("another branch")))}
	}
	for _, tc := range []struct {
		name     string
		prepare  func(w *fakeWitness)
		want     Outcome
		requests int64
		stored   bool
		evidence bool
	}{
		{"200 cosigned", nil, OutcomeCosigned, 1, true, false},
		{"409 then resent from the size it knows", func(w *fakeWitness) {
			w.known = verify.Checkpoint{Origin: s.env.Origin, Size: 2, Hash: mustRoot(t, s, 2)}
		}, OutcomeCosigned, 2, true, false},
		{"403 unknown log or key", func(w *fakeWitness) {
			w.fault = func(int) (int, string) { return http.StatusForbidden, "unknown log" }
		}, OutcomeConfig, 1, false, false},
		{"404 unknown log", func(w *fakeWitness) {
			w.fault = func(int) (int, string) { return http.StatusNotFound, "not found" }
		}, OutcomeConfig, 1, false, false},
		{"400 refused request", func(w *fakeWitness) {
			w.fault = func(int) (int, string) { return http.StatusBadRequest, "bad request" }
		}, OutcomeConfig, 1, false, false},
		{"409 twice", func(w *fakeWitness) {
			w.fault = func(int) (int, string) { return http.StatusConflict, "1\n" }
		}, OutcomeConfig, 2, false, false},
		{"409 with a larger tree", func(w *fakeWitness) {
			w.fault = func(int) (int, string) { return http.StatusConflict, fmt.Sprintf("%d\n", size+10) }
		}, OutcomeConfig, 1, false, false},
		{"422 fork kept as evidence", forked, OutcomeEvidence, 2, false, true},
		{"503 then 200", func(w *fakeWitness) {
			w.fault = func(n int) (int, string) {
				if n == 1 {
					return http.StatusServiceUnavailable, "busy"
				}
				return 0, ""
			}
		}, OutcomeCosigned, 2, true, false},
		{"500 every time: bounded retries", func(w *fakeWitness) {
			w.fault = func(int) (int, string) { return http.StatusInternalServerError, "down" }
		}, OutcomeUnavailable, 3, false, false},
		{"timeout every time: bounded retries", func(w *fakeWitness) { w.stall = time.Second }, OutcomeUnavailable, 3, false, false},
		{"200 without a valid cosignature", func(w *fakeWitness) {
			w.fault = func(int) (int, string) { return http.StatusOK, "— witness.test/w1 AAAA\n" }
		}, OutcomeInvalid, 1, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clear(t, s)
			w.set(func(w *fakeWitness) { w.known, w.fault, w.stall = verify.Checkpoint{}, nil, 0 })
			if tc.prepare != nil {
				w.set(tc.prepare)
			}
			w.requests.Store(0)
			sub := s.submitter(t, nil)
			epoch, err := sub.holder.Try(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer sub.holder.Release(ctx)
			if got := sub.submit(ctx, pw, epoch, n, size); got != tc.want {
				t.Errorf("submit = %s, want %s", got, tc.want)
			}
			if got := w.requests.Load(); got != tc.requests {
				t.Errorf("%d requests, want %d", got, tc.requests)
			}
			cs, err := cosignatures(ctx, s.env.Store, 10)
			if err != nil {
				t.Fatal(err)
			}
			if stored := len(cs) == 1 && cs[0].Size == size && cs[0].Witness == pw.Name; stored != tc.stored || len(cs) > 1 {
				t.Errorf("cosignatures stored %+v, want stored %v", cs, tc.stored)
			}
			ev, err := EvidenceKept(ctx, s.env.Store, 10)
			if err != nil {
				t.Fatal(err)
			}
			if (len(ev) == 1) != tc.evidence || len(ev) > 1 {
				t.Errorf("evidence kept %d, want %v", len(ev), tc.evidence)
			}
			if tc.evidence && (ev[0].Status != http.StatusUnprocessableEntity || ev[0].Size != size || ev[0].OldSize != 2 || !strings.Contains(string(ev[0].Request), string(n))) {
				t.Errorf("evidence %+v: want the 422, the sizes and the request sent", ev[0])
			}
		})
	}

	t.Run("lease lost before storing", func(t *testing.T) {
		clear(t, s)
		w.set(func(w *fakeWitness) { w.known, w.fault, w.stall = verify.Checkpoint{}, nil, 0 })
		sub := s.submitter(t, nil)
		epoch, err := sub.holder.Try(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer sub.holder.Release(ctx)
		if got := sub.submit(ctx, pw, epoch+1, n, size); got != OutcomeLost {
			t.Errorf("submit under a stale epoch = %s, want %s", got, OutcomeLost)
		}
		if cs, _ := cosignatures(ctx, s.env.Store, 10); len(cs) != 0 {
			t.Errorf("stored %d cosignatures under a stale epoch", len(cs))
		}
	})
}

func mustRoot(t *testing.T, s *setup, size uint64) event.Hash {
	t.Helper()
	var row ledger.CheckpointRow
	err := s.env.Store.Read(ctx, func(ctx context.Context, tx ledger.StoreReader) error {
		var err error
		row, err = tx.Checkpoint(ctx, size)
		return err
	})
	if err == nil {
		return row.Root
	}
	// No checkpoint of that size: the root from the leaves.
	leaves, err := s.env.Ledger.Leaves(ctx, 0, size)
	if err != nil {
		t.Fatal(err)
	}
	rb := &verify.RootBuilder{}
	for _, l := range leaves {
		c, err := verify.ParseLeafValue(l)
		if err != nil {
			t.Fatal(err)
		}
		rb.Append(verify.MerkleLeafHash(c))
	}
	return rb.Root()
}

// clear empties the witness tables.
func clear(t *testing.T, s *setup) {
	t.Helper()
	err := s.env.Store.ReadWrite(ctx, func(ctx context.Context, tx ledger.StoreTx) error {
		if _, err := tx.SQL().Exec(ctx, "DELETE FROM witness_cosignatures"); err != nil {
			return err
		}
		_, err := tx.SQL().Exec(ctx, "DELETE FROM witness_evidence")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestSubmitterQuorum: the running submitter gathers the cosignatures of
// the witnesses up, /checkpoint's note meets the quorum with one witness
// stalled (recording goes on meanwhile), and not with two down.
func TestSubmitterQuorum(t *testing.T) {
	s := newSetup(t, 2, false)
	s.witnesses[2].set(func(w *fakeWitness) { w.stall = time.Hour }) // a slow witness
	sub := s.submitter(t, nil)
	sub.Start(ctx)
	defer sub.Stop(ctx)
	cps := NewCheckpoints(s.policy, s.env.CheckpointKey, s.env.Ledger, s.env.Store)

	waitMet := func(size uint64) []byte {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			n, got, err := cps.LatestCheckpoint(ctx)
			if err != nil {
				t.Fatal(err)
			}
			r, err := s.policy.CheckCosignatures(n, s.env.CheckpointKey)
			if err != nil {
				t.Fatal(err)
			}
			if r.Met && got >= size {
				return n
			}
			if time.Now().After(deadline) {
				t.Fatalf("no checkpoint of size %d meeting the quorum: %+v, stats %+v", size, r, sub.Stats())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	_, size := latest(t, s)
	n := waitMet(size)
	r, _ := s.policy.CheckCosignatures(n, s.env.CheckpointKey)
	if len(r.Cosigned) != 2 {
		t.Errorf("cosigned by %v, want the two witnesses up", r.Cosigned)
	}

	// Recording is not held up by the stalled witness; the next
	// checkpoint is cosigned from the size each witness knows.
	start := time.Now()
	s.record(t, 3)
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("recording and checkpointing took %s with a stalled witness", d)
	}
	_, size2 := latest(t, s)
	waitMet(size2)

	// Two witnesses down: the newest checkpoint meeting the quorum is
	// still served; a checkpoint signed since has no quorum, and
	// /checkpoint keeps serving the older one.
	s.witnesses[0].set(func(w *fakeWitness) {
		w.fault = func(int) (int, string) { return http.StatusServiceUnavailable, "down" }
	})
	s.record(t, 2)
	_, size3 := latest(t, s)
	time.Sleep(200 * time.Millisecond)
	n, got, err := cps.LatestCheckpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if r, _ := s.policy.CheckCosignatures(n, s.env.CheckpointKey); !r.Met || got != size2 || size3 <= size2 {
		t.Errorf("served size %d (met %v), want the last cosigned %d (latest %d)", got, r.Met, size2, size3)
	}
	st := sub.Stats()
	if st["witness.test/w1"].Outcomes[OutcomeUnavailable] == 0 || st["witness.test/w2"].Cosigned != size3 {
		t.Errorf("stats %+v", st)
	}
}

// countingStore counts the reads of a store.
type countingStore struct {
	ledger.Store
	reads atomic.Int64
}

func (c *countingStore) Read(ctx context.Context, f func(ctx context.Context, tx ledger.StoreReader) error) error {
	c.reads.Add(1)
	return c.Store.Read(ctx, f)
}

// TestCheckpointsCache: a node's /checkpoint answer is kept while no
// cosignature is stored (one read per call instead of the cosignatures
// and the older checkpoints), and a cosignature stored by another node
// (the lease holder), even for an older size, is served at the next call.
func TestCheckpointsCache(t *testing.T) {
	s := newSetup(t, 1, false)
	type cp struct {
		note []byte
		size uint64
	}
	var cps []cp
	for range 3 {
		s.record(t, 1)
		n, size := latest(t, s)
		cps = append(cps, cp{n, size})
	}
	// What the lease holder's submitter stores.
	cosign := func(w *fakeWitness, c cp) {
		t.Helper()
		line, err := verify.SignCosignature(w.name, w.key, uint64(time.Now().Unix()), c.note[:bytes.Index(c.note, []byte("\n\n"))+1])
		if err != nil {
			t.Fatal(err)
		}
		if err := s.env.Store.ReadWrite(ctx, func(ctx context.Context, tx ledger.StoreTx) error {
			return addCosignature(ctx, tx.SQL(), Cosignature{Size: c.size, Witness: w.name, Line: line}, time.Now())
		}); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range cps {
		cosign(s.witnesses[0], c) // w1 alone: the quorum is two
	}
	store := &countingStore{Store: s.env.Store}
	node := NewCheckpoints(s.policy, s.env.CheckpointKey, s.env.Ledger, store)
	served := func() (uint64, bool) {
		t.Helper()
		n, size, err := node.LatestCheckpoint(ctx)
		if err != nil {
			t.Fatal(err)
		}
		r, err := s.policy.CheckCosignatures(n, s.env.CheckpointKey)
		if err != nil || r.Checkpoint.Size != size {
			t.Fatalf("served size %d: %+v, %v", size, r, err)
		}
		return size, r.Met
	}
	last := cps[2].size
	if size, met := served(); size != last || met {
		t.Fatalf("no quorum: served size %d (met %v), want the latest %d unmet", size, met, last)
	}
	before := store.reads.Load()
	if size, met := served(); size != last || met {
		t.Fatalf("again: served size %d (met %v)", size, met)
	}
	if reads := store.reads.Load() - before; reads != 1 {
		t.Errorf("a second call with nothing stored read the store %d times, want 1", reads)
	}
	// w2 cosigns an older size (a slow answer): served at once.
	cosign(s.witnesses[1], cps[1])
	if size, met := served(); size != cps[1].size || !met {
		t.Errorf("after w2 cosigned size %d: served size %d (met %v)", cps[1].size, size, met)
	}
	cosign(s.witnesses[1], cps[2])
	if size, met := served(); size != last || !met {
		t.Errorf("after w2 cosigned the latest %d: served size %d (met %v)", last, size, met)
	}
	// A new checkpoint, not cosigned: the latest met is still served.
	s.record(t, 1)
	if size, met := served(); size != last || !met {
		t.Errorf("after a new checkpoint: served size %d (met %v), want %d met", size, met, last)
	}
}
