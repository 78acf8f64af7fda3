// Package ledgerstoretest is the conformance suite of ledger.Store: every
// implementation runs it against a real database (ledger/ledgersql runs it
// on SQLite and on PostgreSQL).
package ledgerstoretest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/vigie-sante/vigie/ledger"
	"github.com/vigie-sante/vigie/ledger/event"
)

// Factory returns an empty store for one test; it arranges its cleanup.
type Factory func(t *testing.T) ledger.Store

// Run runs the suite.
func Run(t *testing.T, newStore Factory) {
	for _, tc := range []struct {
		name string
		f    func(t *testing.T, s ledger.Store)
	}{
		{"InitialState", testInitialState},
		{"Meta", testMeta},
		{"ReserveIndicesIsGapFree", testReserveIndices},
		{"PatientCompareAndSwap", testPatientCAS},
		{"PatientsInOrder", testPatients},
		{"ChainHead", testChainHead},
		{"Events", testEvents},
		{"EventUniqueness", testEventUniqueness},
		{"InsertEvents", testInsertEvents},
		{"PatientsAndChainHeads", testPatientsAndChainHeads},
		{"InsertPatients", testInsertPatients},
		{"FailedReadWriteWritesNothing", testFailedReadWrite},
		{"OutboxAndMarkSent", testOutbox},
		{"Checkpoints", testCheckpoints},
		{"DutiesDoNotConflictWithRecords", testDutiesBesideRecords},
		{"RecordsTakeTurns", testRecordsTakeTurns},
		{"Erase", testErase},
		{"ErasureSchedule", testErasureSchedule},
		{"Search", testSearch},
		{"SecurityEvents", testSecurityEvents},
		{"Leases", testLeases},
		{"LeaseTakeoverIsExclusive", testLeaseTakeoverExclusive},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.f(t, newStore(t)) })
	}
}

var ctx = context.Background()

func hash(s string) event.Hash { return sha256.Sum256([]byte(s)) }

func hashBytes(s string) []byte { h := hash(s); return h[:] }

// requestKey stands for the keyed hash of an idempotency key.
func requestKey(s string) ledger.RequestHash { return ledger.RequestHash(hashBytes("request " + s)) }

func readWrite(t *testing.T, s ledger.Store, f func(tx ledger.StoreTx) error) {
	t.Helper()
	if err := s.ReadWrite(ctx, func(ctx context.Context, tx ledger.StoreTx) error { return f(tx) }); err != nil {
		t.Fatalf("ReadWrite: %v", err)
	}
}

func read(t *testing.T, s ledger.Store, f func(tx ledger.StoreReader) error) {
	t.Helper()
	if err := s.Read(ctx, func(ctx context.Context, tx ledger.StoreReader) error { return f(tx) }); err != nil {
		t.Fatalf("Read: %v", err)
	}
}

func state(t *testing.T, s ledger.Store) ledger.State {
	t.Helper()
	var st ledger.State
	read(t, s, func(tx ledger.StoreReader) error {
		var err error
		st, err = tx.State(ctx)
		return err
	})
	return st
}

func testInitialState(t *testing.T, s ledger.Store) {
	if st := state(t, s); st != (ledger.State{}) {
		t.Errorf("State of an empty store = %+v, want zero", st)
	}
	read(t, s, func(tx ledger.StoreReader) error {
		if _, err := tx.LatestCheckpoint(ctx); !errors.Is(err, ledger.ErrNotFound) {
			t.Errorf("LatestCheckpoint of an empty store = %v, want ErrNotFound", err)
		}
		if _, err := tx.Patient(ctx, hash("nobody")); !errors.Is(err, ledger.ErrNotFound) {
			t.Errorf("Patient(unknown) = %v, want ErrNotFound", err)
		}
		if _, err := tx.EventByIndex(ctx, 0); !errors.Is(err, ledger.ErrNotFound) {
			t.Errorf("EventByIndex(0) = %v, want ErrNotFound", err)
		}
		return nil
	})
}

func testMeta(t *testing.T, s ledger.Store) {
	readWrite(t, s, func(tx ledger.StoreTx) error { return tx.SetMeta(ctx, "origin", []byte("a")) })
	readWrite(t, s, func(tx ledger.StoreTx) error { return tx.SetMeta(ctx, "origin", []byte("a")) })
	err := s.ReadWrite(ctx, func(ctx context.Context, tx ledger.StoreTx) error { return tx.SetMeta(ctx, "origin", []byte("b")) })
	if err == nil {
		t.Errorf("SetMeta with another value succeeded")
	}
	read(t, s, func(tx ledger.StoreReader) error {
		v, err := tx.Meta(ctx, "origin")
		if err != nil || string(v) != "a" {
			t.Errorf("Meta(origin) = %q, %v; want a", v, err)
		}
		if _, err := tx.Meta(ctx, "other"); !errors.Is(err, ledger.ErrNotFound) {
			t.Errorf("Meta(other) = %v, want ErrNotFound", err)
		}
		return nil
	})
}

// testReserveIndices reserves from many goroutines: every index is taken
// once and the result is gap-free.
func testReserveIndices(t *testing.T, s ledger.Store) {
	const workers, each = 8, 10
	var mu sync.Mutex
	taken := map[uint64]bool{}
	var wg sync.WaitGroup
	for g := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				n := uint64(1 + (g+i)%3)
				var first uint64
				err := s.ReadWrite(ctx, func(ctx context.Context, tx ledger.StoreTx) error {
					var err error
					first, err = tx.ReserveIndices(ctx, n)
					return err
				})
				if err != nil {
					t.Errorf("ReserveIndices: %v", err)
					return
				}
				mu.Lock()
				for k := first; k < first+n; k++ {
					if taken[k] {
						t.Errorf("index %d taken twice", k)
					}
					taken[k] = true
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	next := state(t, s).NextIndex
	if uint64(len(taken)) != next {
		t.Errorf("%d indices taken, next index %d", len(taken), next)
	}
	for k := range next {
		if !taken[k] {
			t.Errorf("index %d skipped", k)
		}
	}
	// None: the next index, unchanged (the ledger's readiness probe).
	var first uint64
	readWrite(t, s, func(tx ledger.StoreTx) error {
		var err error
		first, err = tx.ReserveIndices(ctx, 0)
		return err
	})
	if after := state(t, s).NextIndex; first != next || after != next {
		t.Errorf("ReserveIndices(0) = %d, next index then %d; want %d, unchanged", first, after, next)
	}
}

func testPatientCAS(t *testing.T, s ledger.Store) {
	p := ledger.PatientRow{Pseudonym: hash("p"), WrappedKey: []byte("wrapped")}
	readWrite(t, s, func(tx ledger.StoreTx) error { return tx.InsertPatient(ctx, p) })
	if err := s.ReadWrite(ctx, func(ctx context.Context, tx ledger.StoreTx) error { return tx.InsertPatient(ctx, p) }); !errors.Is(err, ledger.ErrConflict) {
		t.Errorf("InsertPatient twice = %v, want ErrConflict", err)
	}
	next := p
	next.ConsentVersion, next.WrappedKey = 3, []byte("rewrapped")
	readWrite(t, s, func(tx ledger.StoreTx) error { return tx.UpdatePatient(ctx, next, 0) })
	stale := next
	stale.ConsentVersion = 4
	if err := s.ReadWrite(ctx, func(ctx context.Context, tx ledger.StoreTx) error { return tx.UpdatePatient(ctx, stale, 0) }); !errors.Is(err, ledger.ErrConflict) {
		t.Errorf("UpdatePatient from a stale consent version = %v, want ErrConflict", err)
	}
	read(t, s, func(tx ledger.StoreReader) error {
		got, err := tx.Patient(ctx, p.Pseudonym)
		if err != nil {
			return err
		}
		if got.ConsentVersion != 3 || !bytes.Equal(got.WrappedKey, next.WrappedKey) {
			t.Errorf("Patient = %+v, want consent 3 and the new key", got)
		}
		return nil
	})
}

// testPatients checks that Patients pages through every patient in
// pseudonym order, the system chain's included.
func testPatients(t *testing.T, s ledger.Store) {
	// The system chain's all-zero pseudonym comes first.
	want := []event.Hash{event.SystemChain}
	for i := range 5 {
		want = append(want, hash(fmt.Sprint("p", i)))
	}
	for i, p := range want {
		p := ledger.PatientRow{Pseudonym: p, WrappedKey: []byte{byte(i)}}
		readWrite(t, s, func(tx ledger.StoreTx) error { return tx.InsertPatient(ctx, p) })
	}
	slices.SortFunc(want, func(a, b event.Hash) int { return bytes.Compare(a[:], b[:]) })
	var got []event.Hash
	var after *event.Hash
	for {
		var page []ledger.PatientRow
		read(t, s, func(tx ledger.StoreReader) error {
			var err error
			page, err = tx.PatientsAfter(ctx, after, 2)
			return err
		})
		if len(page) > 2 {
			t.Fatalf("Patients(limit 2) = %d rows", len(page))
		}
		if len(page) == 0 {
			break
		}
		for _, p := range page {
			got = append(got, p.Pseudonym)
			if len(p.WrappedKey) != 1 {
				t.Errorf("Patients: wrapped key %x, want the one inserted", p.WrappedKey)
			}
		}
		after = &page[len(page)-1].Pseudonym
	}
	if !slices.Equal(got, want) {
		t.Errorf("Patients paged = %x, want %x", got, want)
	}
}

// testChainHead checks that the head is the latest event, erased or not.
func testChainHead(t *testing.T, s ledger.Store) {
	a := hash("a")
	read(t, s, func(tx ledger.StoreReader) error {
		seq, head, err := tx.ChainHead(ctx, a)
		if err != nil || seq != 0 || !head.IsZero() {
			t.Errorf("ChainHead of a new patient = %d %s, %v; want none", seq, head, err)
		}
		return nil
	})
	evs := addEvents(t, s, a, 3, nil)
	wantHead := func(want ledger.EventRow) {
		t.Helper()
		read(t, s, func(tx ledger.StoreReader) error {
			seq, head, err := tx.ChainHead(ctx, a)
			if err != nil || seq != want.Seq || head != want.Commitment {
				t.Errorf("ChainHead = %d %s, %v; want %d %s", seq, head, err, want.Seq, want.Commitment)
			}
			return nil
		})
	}
	wantHead(evs[2])
	readWrite(t, s, func(tx ledger.StoreTx) error {
		_, err := tx.ErasePatient(ctx, a, 1)
		return err
	})
	wantHead(evs[2])
	// Two writers extending the chain from the same head: one fails.
	e := ledger.EventRow{Index: 10, Commitment: hash("x"), Pseudonym: a, Seq: 4, Kind: event.KindAccess}
	readWrite(t, s, func(tx ledger.StoreTx) error { return tx.InsertEvent(ctx, e) })
	e.Index, e.Commitment = 11, hash("y")
	if err := s.ReadWrite(ctx, func(ctx context.Context, tx ledger.StoreTx) error { return tx.InsertEvent(ctx, e) }); !errors.Is(err, ledger.ErrConflict) {
		t.Errorf("a second event with the same sequence number = %v, want ErrConflict", err)
	}
}

// testPatientsAndChainHeads: the batched reads return what Patient and
// ChainHead return for each patient: erased heads included, patients
// without a row or an event absent.
func testPatientsAndChainHeads(t *testing.T, s ledger.Store) {
	a, b, c, none := hash("a"), hash("b"), hash("c"), hash("none")
	addEvents(t, s, a, 3, nil)
	addEvents(t, s, b, 2, nil)
	addEvents(t, s, c, 1, nil)
	readWrite(t, s, func(tx ledger.StoreTx) error {
		_, err := tx.ErasePatient(ctx, b, 1)
		return err
	})
	addEvents(t, s, c, 2, nil) // c: seq 3 beside its older events
	all := []event.Hash{a, b, c, none}
	read(t, s, func(tx ledger.StoreReader) error {
		rows, err := tx.Patients(ctx, all)
		if err != nil {
			return err
		}
		heads, err := tx.ChainHeads(ctx, all)
		if err != nil {
			return err
		}
		if len(rows) != 3 || len(heads) != 3 {
			t.Errorf("Patients = %d rows, ChainHeads = %d heads; want 3 each", len(rows), len(heads))
		}
		for _, p := range all {
			row, err := tx.Patient(ctx, p)
			got, ok := rows[p]
			if errors.Is(err, ledger.ErrNotFound) == ok || (ok && (got.ConsentVersion != row.ConsentVersion || !bytes.Equal(got.WrappedKey, row.WrappedKey) || got.ErasedNanos != row.ErasedNanos)) {
				t.Errorf("Patients[%x] = %+v, %v; Patient = %+v, %v", p[:4], got, ok, row, err)
			}
			seq, head, err := tx.ChainHead(ctx, p)
			if err != nil {
				return err
			}
			if h := heads[p]; h.Seq != seq || h.Head != head {
				t.Errorf("ChainHeads[%x] = %d %s; ChainHead = %d %s", p[:4], h.Seq, h.Head, seq, head)
			}
		}
		return nil
	})
}

// testInsertPatients: InsertPatients adds rows as InsertPatient adds
// each, and a patient who exists fails the whole.
func testInsertPatients(t *testing.T, s ledger.Store) {
	ps := []ledger.PatientRow{
		{Pseudonym: hash("p1"), ConsentVersion: 2, WrappedKey: []byte("k1")},
		{Pseudonym: hash("p2"), WrappedKey: []byte("k2"), ErasedNanos: 5},
		{Pseudonym: hash("p3")},
	}
	readWrite(t, s, func(tx ledger.StoreTx) error { return tx.InsertPatients(ctx, ps) })
	read(t, s, func(tx ledger.StoreReader) error {
		for _, want := range ps {
			got, err := tx.Patient(ctx, want.Pseudonym)
			if err != nil || got.ConsentVersion != want.ConsentVersion || !bytes.Equal(got.WrappedKey, want.WrappedKey) || got.ErasedNanos != want.ErasedNanos {
				t.Errorf("Patient = %+v, %v; want %+v", got, err, want)
			}
		}
		return nil
	})
	again := []ledger.PatientRow{{Pseudonym: hash("p4")}, ps[1]}
	if err := s.ReadWrite(ctx, func(ctx context.Context, tx ledger.StoreTx) error { return tx.InsertPatients(ctx, again) }); !errors.Is(err, ledger.ErrConflict) {
		t.Errorf("InsertPatients with a patient who exists = %v, want ErrConflict", err)
	}
	read(t, s, func(tx ledger.StoreReader) error {
		if _, err := tx.Patient(ctx, hash("p4")); !errors.Is(err, ledger.ErrNotFound) {
			t.Errorf("after a conflict, Patient(p4) = %v, want ErrNotFound", err)
		}
		return nil
	})
}

// addEvents stores n events of patient p (seq from 1), returning them.
func addEvents(t *testing.T, s ledger.Store, p event.Hash, n int, mod func(i int, e *ledger.EventRow)) []ledger.EventRow {
	t.Helper()
	var out []ledger.EventRow
	readWrite(t, s, func(tx ledger.StoreTx) error {
		out = out[:0]
		first, err := tx.ReserveIndices(ctx, uint64(n))
		if err != nil {
			return err
		}
		_, err = tx.Patient(ctx, p)
		isNew := errors.Is(err, ledger.ErrNotFound)
		if err != nil && !isNew {
			return err
		}
		seq, _, err := tx.ChainHead(ctx, p)
		if err != nil {
			return err
		}
		for i := range n {
			e := ledger.EventRow{
				Index:      first + uint64(i),
				Commitment: hash(fmt.Sprintf("%x/%d", p, seq+1)),
				Pseudonym:  p,
				Seq:        seq + 1,
				Kind:       event.KindAccess,
				TimeNanos:  int64(1000 + first + uint64(i)),
				Service:    "svc",
				Actor:      "10000000001",
				Sealed:     []byte{byte(i)},
			}
			if mod != nil {
				mod(i, &e)
			}
			if err := tx.InsertEvent(ctx, e); err != nil {
				return err
			}
			seq = e.Seq
			out = append(out, e)
		}
		if isNew {
			return tx.InsertPatient(ctx, ledger.PatientRow{Pseudonym: p, WrappedKey: []byte("k")})
		}
		return nil
	})
	return out
}

func testEvents(t *testing.T, s ledger.Store) {
	a, b := hash("a"), hash("b")
	ea := addEvents(t, s, a, 3, func(i int, e *ledger.EventRow) {
		if i == 1 {
			e.Key = requestKey("svc/r1")
			e.BreakGlass = true
			e.Organization = "750000001"
		}
	})
	addEvents(t, s, b, 2, nil)
	ea = append(ea, addEvents(t, s, a, 1, nil)...)
	read(t, s, func(tx ledger.StoreReader) error {
		got, err := tx.PatientEvents(ctx, a, 1, 10)
		if err != nil {
			return err
		}
		if len(got) != len(ea) {
			t.Fatalf("PatientEvents(a) = %d events, want %d", len(got), len(ea))
		}
		for i := range got {
			if got[i].Index != ea[i].Index || got[i].Seq != uint64(i+1) || got[i].Commitment != ea[i].Commitment || !bytes.Equal(got[i].Sealed, ea[i].Sealed) {
				t.Errorf("PatientEvents(a)[%d] = %+v, want %+v", i, got[i], ea[i])
			}
		}
		if got, _ := tx.PatientEvents(ctx, a, 3, 1); len(got) != 1 || got[0].Seq != 3 {
			t.Errorf("PatientEvents(a, from 3, limit 1) = %+v", got)
		}
		byKey, err := tx.EventByKey(ctx, requestKey("svc/r1"))
		if err != nil || byKey.Index != ea[1].Index || !byKey.BreakGlass || byKey.Organization != "750000001" {
			t.Errorf("EventByKey = %+v, %v; want event %d", byKey, err, ea[1].Index)
		}
		if _, err := tx.EventByKey(ctx, requestKey("svc/r2")); !errors.Is(err, ledger.ErrNotFound) {
			t.Errorf("EventByKey(unknown) = %v, want ErrNotFound", err)
		}
		byIndex, err := tx.EventByIndex(ctx, ea[2].Index)
		if err != nil || byIndex.Commitment != ea[2].Commitment || byIndex.Seq != 3 {
			t.Errorf("EventByIndex = %+v, %v", byIndex, err)
		}
		cs, err := tx.Commitments(ctx, 0, 6)
		if err != nil || len(cs) != 6 || cs[0] != ea[0].Commitment {
			t.Errorf("Commitments(0, 6) = %d, %v", len(cs), err)
		}
		if _, err := tx.Commitments(ctx, 0, 7); !errors.Is(err, ledger.ErrMissing) {
			t.Errorf("Commitments beyond the events = %v, want ErrMissing", err)
		}
		return nil
	})
}

func testEventUniqueness(t *testing.T, s ledger.Store) {
	ev := addEvents(t, s, hash("a"), 1, func(_ int, e *ledger.EventRow) { e.Key = requestKey("s/k") })[0]
	for name, mod := range map[string]func(e *ledger.EventRow){
		"same index": func(e *ledger.EventRow) { e.Commitment = hash("other"); e.Key = ledger.RequestHash{} },
		"same patient seq": func(e *ledger.EventRow) {
			e.Index = 99
			e.Seq = 1
			e.Key = ledger.RequestHash{}
			e.Commitment = hash("other")
		},
		"same key": func(e *ledger.EventRow) { e.Index = 99; e.Commitment = hash("other") },
	} {
		e := ev
		e.Seq = 2
		mod(&e)
		err := s.ReadWrite(ctx, func(ctx context.Context, tx ledger.StoreTx) error { return tx.InsertEvent(ctx, e) })
		if !errors.Is(err, ledger.ErrConflict) {
			t.Errorf("InsertEvent with %s = %v, want ErrConflict", name, err)
		}
	}
}

// testInsertEvents: InsertEvents adds many events as InsertEvent adds
// each (past one statement's worth on PostgreSQL), and a conflict among
// them fails the whole.
func testInsertEvents(t *testing.T, s ledger.Store) {
	const n = 1030
	a := hash("a")
	rows := make([]ledger.EventRow, n)
	for i := range rows {
		rows[i] = ledger.EventRow{Index: uint64(i), Commitment: hash(fmt.Sprint("c", i)), Pseudonym: a, Seq: uint64(i + 1),
			Kind: event.KindAccess, TimeNanos: int64(i), Service: "svc", Sealed: []byte{byte(i)}}
	}
	rows[7].Key, rows[7].Actor, rows[7].BreakGlass = requestKey("svc/k7"), "10000000001", true
	readWrite(t, s, func(tx ledger.StoreTx) error {
		if _, err := tx.ReserveIndices(ctx, n); err != nil {
			return err
		}
		return tx.InsertEvents(ctx, rows)
	})
	read(t, s, func(tx ledger.StoreReader) error {
		got, err := tx.PatientEvents(ctx, a, 1, n+1)
		if err != nil || len(got) != n {
			t.Fatalf("PatientEvents = %d events, %v; want %d", len(got), err, n)
		}
		for i, g := range got {
			if g.Index != rows[i].Index || g.Commitment != rows[i].Commitment || g.Seq != rows[i].Seq || !bytes.Equal(g.Sealed, rows[i].Sealed) {
				t.Fatalf("event %d = %+v, want %+v", i, g, rows[i])
			}
		}
		if k, err := tx.EventByKey(ctx, requestKey("svc/k7")); err != nil || k.Index != 7 || !k.BreakGlass || k.Actor != "10000000001" {
			t.Errorf("EventByKey = %+v, %v; want event 7", k, err)
		}
		return nil
	})
	clash := []ledger.EventRow{
		{Index: n, Commitment: hash("new"), Pseudonym: a, Seq: n + 1, Kind: event.KindAccess, Service: "svc"},
		{Index: n + 1, Commitment: hash("clash"), Pseudonym: a, Seq: n, Kind: event.KindAccess, Service: "svc"},
	}
	err := s.ReadWrite(ctx, func(ctx context.Context, tx ledger.StoreTx) error {
		if _, err := tx.ReserveIndices(ctx, 2); err != nil {
			return err
		}
		return tx.InsertEvents(ctx, clash)
	})
	if !errors.Is(err, ledger.ErrConflict) {
		t.Errorf("InsertEvents with a patient's sequence number taken = %v, want ErrConflict", err)
	}
	read(t, s, func(tx ledger.StoreReader) error {
		if _, err := tx.EventByIndex(ctx, n); !errors.Is(err, ledger.ErrNotFound) {
			t.Errorf("after a conflict, EventByIndex(%d) = %v, want ErrNotFound", n, err)
		}
		return nil
	})
}

// testFailedReadWrite checks that a ReadWrite whose function fails leaves
// nothing behind: no partial write.
func testFailedReadWrite(t *testing.T, s ledger.Store) {
	boom := errors.New("boom")
	err := s.ReadWrite(ctx, func(ctx context.Context, tx ledger.StoreTx) error {
		if _, err := tx.ReserveIndices(ctx, 5); err != nil {
			return err
		}
		if err := tx.InsertPatient(ctx, ledger.PatientRow{Pseudonym: hash("p")}); err != nil {
			return err
		}
		if err := tx.InsertEvent(ctx, ledger.EventRow{Index: 0, Commitment: hash("c"), Pseudonym: hash("p"), Seq: 1, Kind: event.KindAccess}); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("ReadWrite = %v, want the function's error", err)
	}
	if st := state(t, s); st.NextIndex != 0 {
		t.Errorf("after a failed ReadWrite, next index %d, want 0", st.NextIndex)
	}
	read(t, s, func(tx ledger.StoreReader) error {
		if _, err := tx.Patient(ctx, hash("p")); !errors.Is(err, ledger.ErrNotFound) {
			t.Errorf("after a failed ReadWrite, Patient = %v, want ErrNotFound", err)
		}
		if _, err := tx.EventByIndex(ctx, 0); !errors.Is(err, ledger.ErrNotFound) {
			t.Errorf("after a failed ReadWrite, EventByIndex(0) = %v, want ErrNotFound", err)
		}
		return nil
	})
}

func testOutbox(t *testing.T, s ledger.Store) {
	addEvents(t, s, hash("a"), 5, nil)
	readWrite(t, s, func(tx ledger.StoreTx) error { return tx.MarkSent(ctx, 0, 3) })
	if err := s.ReadWrite(ctx, func(ctx context.Context, tx ledger.StoreTx) error { return tx.MarkSent(ctx, 0, 5) }); !errors.Is(err, ledger.ErrConflict) {
		t.Errorf("MarkSent from a stale size = %v, want ErrConflict", err)
	}
	if st := state(t, s); st.SentSize != 3 || st.NextIndex != 5 {
		t.Errorf("state %+v, want sent size 3 of 5", st)
	}
	// A missing event (a row deleted behind the ledger's back) is reported.
	read(t, s, func(tx ledger.StoreReader) error {
		cs, err := tx.Commitments(ctx, 3, 5)
		if err != nil || len(cs) != 2 {
			t.Errorf("Commitments(3, 5) = %d, %v", len(cs), err)
		}
		return nil
	})
}

func testCheckpoints(t *testing.T, s ledger.Store) {
	mk := func(size uint64) ledger.CheckpointRow {
		return ledger.CheckpointRow{Size: size, Root: hash(fmt.Sprint(size)), Note: []byte(fmt.Sprintf("note %d\n", size)), Range: [][]byte{hashBytes("r"), hashBytes(fmt.Sprint("x", size))}, SignedNanos: int64(size)}
	}
	readWrite(t, s, func(tx ledger.StoreTx) error { return tx.AddCheckpoint(ctx, mk(0), 0) })
	readWrite(t, s, func(tx ledger.StoreTx) error { return tx.AddCheckpoint(ctx, mk(10), 0) })
	for _, tc := range []struct {
		size, prev uint64
	}{{20, 0}, {5, 10}, {10, 10}, {0, 0}} {
		err := s.ReadWrite(ctx, func(ctx context.Context, tx ledger.StoreTx) error { return tx.AddCheckpoint(ctx, mk(tc.size), tc.prev) })
		if !errors.Is(err, ledger.ErrConflict) {
			t.Errorf("AddCheckpoint(%d, prev %d) = %v, want ErrConflict", tc.size, tc.prev, err)
		}
	}
	readWrite(t, s, func(tx ledger.StoreTx) error { return tx.AddCheckpoint(ctx, mk(20), 10) })
	read(t, s, func(tx ledger.StoreReader) error {
		latest, err := tx.LatestCheckpoint(ctx)
		if err != nil || latest.Size != 20 || !bytes.Equal(latest.Note, mk(20).Note) || len(latest.Range) != 2 || !bytes.Equal(latest.Range[1], mk(20).Range[1]) {
			t.Errorf("LatestCheckpoint = %+v, %v", latest, err)
		}
		all, err := tx.Checkpoints(ctx, 0, 10)
		if err != nil || len(all) != 2 || all[0].Size != 10 || all[1].Size != 20 {
			t.Errorf("Checkpoints(after 0) = %+v, %v", all, err)
		}
		if c, err := tx.Checkpoint(ctx, 10); err != nil || c.Root != mk(10).Root {
			t.Errorf("Checkpoint(10) = %+v, %v", c, err)
		}
		return nil
	})
	if st := state(t, s); st.CheckpointSize != 20 {
		t.Errorf("checkpoint size %d, want 20", st.CheckpointSize)
	}
}

// testDutiesBesideRecords checks that a send or a checkpoint committed
// while a recording transaction is open does not make that transaction
// run again (a serialization failure): the duties' counters are not on the
// row of the next index. A store that runs one writer at a time (SQLite)
// cannot interleave the two, and skips it.
func testDutiesBesideRecords(t *testing.T, s ledger.Store) {
	addEvents(t, s, hash("a"), 4, nil)
	cp := ledger.CheckpointRow{Size: 2, Root: hash("2"), Note: []byte("note 2\n"), Range: [][]byte{hashBytes("r")}, SignedNanos: 2}
	for _, duty := range []struct {
		name string
		f    func(ctx context.Context, tx ledger.StoreTx) error
	}{
		{"MarkSent", func(ctx context.Context, tx ledger.StoreTx) error { return tx.MarkSent(ctx, 0, 2) }},
		{"AddCheckpoint", func(ctx context.Context, tx ledger.StoreTx) error { return tx.AddCheckpoint(ctx, cp, 0) }},
	} {
		t.Run(duty.name, func(t *testing.T) {
			runs, oneWriter := 0, false
			dutyDone := make(chan error, 1)
			err := s.ReadWrite(ctx, func(ctx context.Context, tx ledger.StoreTx) error {
				runs++
				// A read first, as a Record does (its snapshot is taken).
				if _, err := tx.Patient(ctx, hash("a")); err != nil {
					return err
				}
				if runs == 1 {
					go func() { dutyDone <- s.ReadWrite(ctx, duty.f) }()
					select {
					case err := <-dutyDone:
						dutyDone <- err
					case <-time.After(2 * time.Second):
						oneWriter = true
					}
				}
				_, err := tx.ReserveIndices(ctx, 1)
				return err
			})
			if err != nil {
				t.Fatalf("ReserveIndices: %v", err)
			}
			if err := <-dutyDone; err != nil {
				t.Fatalf("%s: %v", duty.name, err)
			}
			if oneWriter {
				t.Skip("the store runs one writer at a time")
			}
			if runs != 1 {
				t.Errorf("the recording transaction ran %d times after a concurrent %s, want once", runs, duty.name)
			}
		})
	}
	if st := state(t, s); st != (ledger.State{NextIndex: 6, SentSize: 2, CheckpointSize: 2}) {
		t.Errorf("state %+v, want next index 6, sent size 2, checkpoint size 2", st)
	}
}

// testRecordsTakeTurns checks that two recording transactions open at once
// (TakeTurn, a read, ReserveIndices) both commit without running again:
// the second waits for the first.
func testRecordsTakeTurns(t *testing.T, s ledger.Store) {
	record := func(runs *int, during func()) error {
		return s.ReadWrite(ctx, func(ctx context.Context, tx ledger.StoreTx) error {
			*runs++
			if err := tx.TakeTurn(ctx); err != nil {
				return err
			}
			if _, err := tx.Patient(ctx, hash("a")); !errors.Is(err, ledger.ErrNotFound) {
				return err
			}
			if *runs == 1 && during != nil {
				during()
			}
			_, err := tx.ReserveIndices(ctx, 1)
			return err
		})
	}
	var first, second int
	secondDone := make(chan error, 1)
	err := record(&first, func() {
		go func() { secondDone <- record(&second, nil) }()
		// Time for the second to commit, if nothing makes it wait.
		time.Sleep(300 * time.Millisecond)
	})
	if err != nil {
		t.Fatalf("first: %v", err)
	}
	if err := <-secondDone; err != nil {
		t.Fatalf("second: %v", err)
	}
	if first != 1 || second != 1 {
		t.Errorf("the recording transactions ran %d and %d times, want once each", first, second)
	}
	if st := state(t, s); st.NextIndex != 2 {
		t.Errorf("next index %d, want 2", st.NextIndex)
	}
}

func testErase(t *testing.T, s ledger.Store) {
	a, b := hash("a"), hash("b")
	ea := addEvents(t, s, a, 3, func(i int, e *ledger.EventRow) { e.Key = requestKey(fmt.Sprintf("s/%d", i)) })
	eb := addEvents(t, s, b, 1, nil)
	var before ledger.PatientRow
	read(t, s, func(tx ledger.StoreReader) error {
		var err error
		before, err = tx.Patient(ctx, a)
		return err
	})
	var n int
	readWrite(t, s, func(tx ledger.StoreTx) error {
		var err error
		n, err = tx.ErasePatient(ctx, a, 42)
		return err
	})
	if n != 3 {
		t.Errorf("ErasePatient = %d events, want 3", n)
	}
	read(t, s, func(tx ledger.StoreReader) error {
		p, err := tx.Patient(ctx, a)
		if err != nil || p.WrappedKey != nil || p.ErasedNanos != 42 || p.ConsentVersion != before.ConsentVersion+1 {
			t.Errorf("erased patient = %+v, %v; want no key, and consent version %d", p, err, before.ConsentVersion+1)
		}
		got, err := tx.PatientEvents(ctx, a, 1, 10)
		if err != nil || len(got) != 3 {
			t.Fatalf("PatientEvents after erasure = %d, %v; want 3 placeholders", len(got), err)
		}
		for i, e := range got {
			if !e.Erased || e.Seq != uint64(i+1) || e.Index != ea[i].Index || e.Commitment != ea[i].Commitment || e.Sealed != nil || e.Actor != "" || e.TimeNanos != 0 {
				t.Errorf("placeholder %d = %+v", i, e)
			}
		}
		byIndex, err := tx.EventByIndex(ctx, ea[0].Index)
		if err != nil || !byIndex.Erased || byIndex.Commitment != ea[0].Commitment {
			t.Errorf("EventByIndex of an erased event = %+v, %v", byIndex, err)
		}
		// The request key outlives the erasure: a retry is recognised.
		if got, err := tx.EventByKey(ctx, requestKey("s/0")); err != nil || !got.Erased || got.Index != ea[0].Index {
			t.Errorf("EventByKey of an erased event = %+v, %v; want the erased event %d", got, err, ea[0].Index)
		}
		if cs, err := tx.Commitments(ctx, 0, 4); err != nil || cs[0] != ea[0].Commitment {
			t.Errorf("Commitments after erasure = %v, %v", cs, err)
		}
		if got, _ := tx.PatientEvents(ctx, b, 1, 10); len(got) != 1 || got[0].Erased || got[0].Index != eb[0].Index {
			t.Errorf("another patient's events after erasure = %+v", got)
		}
		// The erased events, and only they, with ErasedOnly; none without.
		erased, err := tx.SearchEvents(ctx, ledger.SearchFilter{ErasedOnly: true}, -1, 100)
		if err != nil || len(erased) != 3 {
			t.Fatalf("SearchEvents(ErasedOnly) = %+v, %v; want the 3 erased events", erased, err)
		}
		for i, e := range erased {
			if !e.Erased || e.Index != ea[i].Index || e.Commitment != ea[i].Commitment {
				t.Errorf("erased event %d = %+v, want index %d", i, e, ea[i].Index)
			}
		}
		if page, err := tx.SearchEvents(ctx, ledger.SearchFilter{ErasedOnly: true}, int64(ea[0].Index), 1); err != nil || len(page) != 1 || page[0].Index != ea[1].Index {
			t.Errorf("SearchEvents(ErasedOnly) after the first, limit 1 = %+v, %v", page, err)
		}
		all, err := tx.SearchEvents(ctx, ledger.SearchFilter{}, -1, 100)
		if err != nil || len(all) != 1 || all[0].Index != eb[0].Index {
			t.Errorf("SearchEvents after erasure = %+v, %v; want only the other patient's event", all, err)
		}
		return nil
	})
}

func testSearch(t *testing.T, s ledger.Store) {
	a := hash("a")
	addEvents(t, s, a, 4, func(i int, e *ledger.EventRow) {
		e.Actor = fmt.Sprint("1000000000", i%2)
		e.Organization = "750000001"
		e.BreakGlass = i == 3
		if i == 2 {
			e.Kind = event.KindLedgerRead
		}
	})
	addEvents(t, s, hash("b"), 2, func(i int, e *ledger.EventRow) { e.Organization, e.Actor = "750000002", "" })
	for _, tc := range []struct {
		name string
		f    ledger.SearchFilter
		want []uint64
	}{
		{"all", ledger.SearchFilter{}, []uint64{0, 1, 2, 3, 4, 5}},
		{"patient", ledger.SearchFilter{Pseudonym: &a}, []uint64{0, 1, 2, 3}},
		{"actor", ledger.SearchFilter{Actor: "10000000001"}, []uint64{1, 3}},
		{"organization", ledger.SearchFilter{Organization: "750000002"}, []uint64{4, 5}},
		{"kind", ledger.SearchFilter{Kind: event.KindLedgerRead}, []uint64{2}},
		{"break-glass", ledger.SearchFilter{BreakGlassOnly: true}, []uint64{3}},
		{"time", ledger.SearchFilter{FromNanos: 1001, ToNanos: 1003}, []uint64{1, 2}},
	} {
		read(t, s, func(tx ledger.StoreReader) error {
			got, err := tx.SearchEvents(ctx, tc.f, -1, 100)
			if err != nil {
				return err
			}
			var idx []uint64
			for _, e := range got {
				idx = append(idx, e.Index)
			}
			if fmt.Sprint(idx) != fmt.Sprint(tc.want) {
				t.Errorf("SearchEvents(%s) = %v, want %v", tc.name, idx, tc.want)
			}
			return nil
		})
	}
	read(t, s, func(tx ledger.StoreReader) error {
		page, err := tx.SearchEvents(ctx, ledger.SearchFilter{}, 2, 2)
		if err != nil || len(page) != 2 || page[0].Index != 3 {
			t.Errorf("SearchEvents after 2, limit 2 = %+v, %v", page, err)
		}
		return nil
	})
}

func testSecurityEvents(t *testing.T, s ledger.Store) {
	for i := range 2 {
		readWrite(t, s, func(tx ledger.StoreTx) error {
			return tx.AddSecurityEvent(ctx, ledger.SecurityEvent{Kind: "k", Detail: fmt.Sprint("d", i), Evidence: []byte{byte(i)}, Nanos: int64(i)})
		})
	}
	read(t, s, func(tx ledger.StoreReader) error {
		got, err := tx.SecurityEvents(ctx, 10)
		if err != nil || len(got) != 2 || got[1].Detail != "d1" || !bytes.Equal(got[1].Evidence, []byte{1}) {
			t.Errorf("SecurityEvents = %+v, %v", got, err)
		}
		return nil
	})
}

// testErasureSchedule: a patient has one scheduled erasure, at the
// earliest time asked; it is due from then; deleting it claims it, once.
func testErasureSchedule(t *testing.T, s ledger.Store) {
	a, b := hash("a"), hash("b")
	at := func(sec int64) time.Time { return time.Unix(1_800_000_000+sec, 0).UTC() }
	schedule := func(p event.Hash, due time.Time) time.Time {
		var got time.Time
		readWrite(t, s, func(tx ledger.StoreTx) error {
			var err error
			got, err = tx.ScheduleErasure(ctx, ledger.Erasure{Pseudonym: p, Due: due, RequestedBy: "patient"})
			return err
		})
		return got
	}
	if got := schedule(a, at(100)); !got.Equal(at(100)) {
		t.Errorf("first schedule = %v, want %v", got, at(100))
	}
	if got := schedule(a, at(200)); !got.Equal(at(100)) {
		t.Errorf("a later request = %v, want the earlier %v kept", got, at(100))
	}
	if got := schedule(a, at(50)); !got.Equal(at(50)) {
		t.Errorf("an earlier request = %v, want %v", got, at(50))
	}
	schedule(b, at(300))
	due := func(now time.Time) []ledger.Erasure {
		var out []ledger.Erasure
		read(t, s, func(tx ledger.StoreReader) error {
			var err error
			out, err = tx.DueErasures(ctx, now, 10)
			return err
		})
		return out
	}
	if d := due(at(49)); len(d) != 0 {
		t.Errorf("due before time = %+v", d)
	}
	if d := due(at(300)); len(d) != 2 || d[0].Pseudonym != a || !d[0].Due.Equal(at(50)) || d[0].RequestedBy != "patient" || d[1].Pseudonym != b {
		t.Errorf("due at 300 = %+v, want a then b", d)
	}
	readWrite(t, s, func(tx ledger.StoreTx) error { return tx.DeleteErasure(ctx, a) })
	err := s.ReadWrite(ctx, func(ctx context.Context, tx ledger.StoreTx) error { return tx.DeleteErasure(ctx, a) })
	if !errors.Is(err, ledger.ErrNotFound) {
		t.Errorf("deleting it again = %v, want ErrNotFound", err)
	}
	if d := due(at(300)); len(d) != 1 || d[0].Pseudonym != b {
		t.Errorf("due after the deletion = %+v, want b", d)
	}
}

func acquire(s ledger.Store, name, owner string, ttl time.Duration) (ledger.Lease, error) {
	var l ledger.Lease
	err := s.ReadWrite(ctx, func(ctx context.Context, tx ledger.StoreTx) error {
		var err error
		l, err = tx.AcquireLease(ctx, name, owner, ttl)
		return err
	})
	return l, err
}

func checkLease(s ledger.Store, name, owner string, epoch uint64) error {
	return s.ReadWrite(ctx, func(ctx context.Context, tx ledger.StoreTx) error {
		return tx.CheckLease(ctx, name, owner, epoch)
	})
}

// expire waits until a lease taken for ttl has expired on the database's
// clock.
func expire(ttl time.Duration) { time.Sleep(ttl + 50*time.Millisecond) }

func testLeases(t *testing.T, s ledger.Store) {
	const ttl = 20 * time.Millisecond
	a, err := acquire(s, "sender", "node-a", time.Minute)
	if err != nil || a.Owner != "node-a" || a.Epoch != 1 {
		t.Fatalf("AcquireLease of a new lease = %+v, %v; want node-a at epoch 1", a, err)
	}
	if time.Until(a.Expires) < 30*time.Second || time.Until(a.Expires) > 90*time.Second {
		t.Errorf("lease taken for a minute expires at %v, %v from now", a.Expires, time.Until(a.Expires))
	}
	if a, err := acquire(s, "sender", "node-a", time.Minute); err != nil || a.Epoch != 1 {
		t.Errorf("renewal = %+v, %v; want epoch 1 kept", a, err)
	}
	if other, err := acquire(s, "checkpointer", "node-b", time.Minute); err != nil || other.Epoch != 1 {
		t.Errorf("another lease = %+v, %v; want its own epoch 1", other, err)
	}
	held, err := acquire(s, "sender", "node-b", time.Minute)
	if !errors.Is(err, ledger.ErrLeaseHeld) || held.Owner != "node-a" || held.Epoch != 1 {
		t.Errorf("AcquireLease of a lease held by another = %+v, %v; want node-a's and ErrLeaseHeld", held, err)
	}
	if err := checkLease(s, "sender", "node-a", 1); err != nil {
		t.Errorf("CheckLease by the holder = %v", err)
	}
	for _, c := range []struct {
		owner string
		epoch uint64
	}{{"node-b", 1}, {"node-a", 2}, {"", 1}} {
		if err := checkLease(s, "sender", c.owner, c.epoch); !errors.Is(err, ledger.ErrLeaseLost) {
			t.Errorf("CheckLease(%q, %d) = %v, want ErrLeaseLost", c.owner, c.epoch, err)
		}
	}
	if err := checkLease(s, "nobody", "node-a", 1); !errors.Is(err, ledger.ErrLeaseLost) {
		t.Errorf("CheckLease of a lease never taken = %v, want ErrLeaseLost", err)
	}

	// Expired: another owner takes it in a new term; the old term's writes
	// fail, and nothing of their transaction is stored.
	if _, err := acquire(s, "sender", "node-a", ttl); err != nil {
		t.Fatal(err)
	}
	expire(ttl)
	b, err := acquire(s, "sender", "node-b", time.Minute)
	if err != nil || b.Owner != "node-b" || b.Epoch != 2 {
		t.Fatalf("takeover of an expired lease = %+v, %v; want node-b at epoch 2", b, err)
	}
	err = s.ReadWrite(ctx, func(ctx context.Context, tx ledger.StoreTx) error {
		if err := tx.SetMeta(ctx, "stale", []byte("x")); err != nil {
			return err
		}
		return tx.CheckLease(ctx, "sender", "node-a", 1)
	})
	if !errors.Is(err, ledger.ErrLeaseLost) {
		t.Errorf("a write under the old term = %v, want ErrLeaseLost", err)
	}
	read(t, s, func(tx ledger.StoreReader) error {
		if _, err := tx.Meta(ctx, "stale"); !errors.Is(err, ledger.ErrNotFound) {
			t.Errorf("the old term's write was stored (Meta = %v)", err)
		}
		return nil
	})
	if _, err := acquire(s, "sender", "node-a", time.Minute); !errors.Is(err, ledger.ErrLeaseHeld) {
		t.Errorf("the old holder's renewal after a takeover = %v, want ErrLeaseHeld", err)
	}

	// Release: a stale release does nothing; the holder's frees the lease
	// at once, and the next owner starts a new term.
	readWrite(t, s, func(tx ledger.StoreTx) error { return tx.ReleaseLease(ctx, "sender", "node-a", 1) })
	if err := checkLease(s, "sender", "node-b", 2); err != nil {
		t.Errorf("after a stale release, CheckLease by the holder = %v", err)
	}
	readWrite(t, s, func(tx ledger.StoreTx) error { return tx.ReleaseLease(ctx, "sender", "node-b", 2) })
	if err := checkLease(s, "sender", "node-b", 2); !errors.Is(err, ledger.ErrLeaseLost) {
		t.Errorf("CheckLease after release = %v, want ErrLeaseLost", err)
	}
	if a, err := acquire(s, "sender", "node-a", time.Minute); err != nil || a.Epoch != 3 {
		t.Errorf("AcquireLease of a released lease = %+v, %v; want epoch 3", a, err)
	}
	if b, err := acquire(s, "sender", "node-b", time.Minute); !errors.Is(err, ledger.ErrLeaseHeld) || b.Owner != "node-a" {
		t.Errorf("AcquireLease after another took the released lease = %+v, %v; want ErrLeaseHeld", b, err)
	}
}

func testLeaseTakeoverExclusive(t *testing.T, s ledger.Store) {
	const ttl = 20 * time.Millisecond
	if _, err := acquire(s, "checkpointer", "dead", ttl); err != nil {
		t.Fatal(err)
	}
	expire(ttl)
	const n = 4
	var wg sync.WaitGroup
	leases := make([]ledger.Lease, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			leases[i], errs[i] = acquire(s, "checkpointer", fmt.Sprint("node-", i), time.Minute)
		}()
	}
	wg.Wait()
	winners := 0
	for i := range n {
		switch {
		case errs[i] == nil:
			winners++
			if leases[i].Epoch != 2 {
				t.Errorf("node-%d took the lease at epoch %d, want 2", i, leases[i].Epoch)
			}
		case !errors.Is(errs[i], ledger.ErrLeaseHeld):
			t.Errorf("node-%d: AcquireLease = %v, want nil or ErrLeaseHeld", i, errs[i])
		}
	}
	if winners != 1 {
		t.Errorf("%d nodes took one expired lease at once, want 1", winners)
	}
}
