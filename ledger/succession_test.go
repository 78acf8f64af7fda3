package ledger_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"

	"github.com/vigie-sante/vigie/ledger/event"
	"github.com/vigie-sante/vigie/ledger/ledgertest"
	"github.com/vigie-sante/vigie/ledger/verify"
)

// oldLog returns a closed log's signed checkpoint and verifier key.
func oldLog(t *testing.T, origin string) ([]byte, string) {
	t.Helper()
	skey, vkey, err := note.GenerateKey(nil, origin)
	if err != nil {
		t.Fatal(err)
	}
	s, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	cp, err := verify.SignCheckpoint(verify.Checkpoint{Origin: origin, Size: 7, Hash: event.Hash{7}}, s)
	if err != nil {
		t.Fatal(err)
	}
	return cp, vkey
}

func TestRecordSuccession(t *testing.T) {
	for _, backend := range []string{"SQLite", "PostgreSQL"} {
		t.Run(backend, func(t *testing.T) {
			opts := ledgertest.Options{}
			if backend == "PostgreSQL" {
				opts.PostgreSQL = ledgertest.Postgres(t)
			}
			testRecordSuccession(t, ledgertest.New(t, opts))
		})
	}
}

func testRecordSuccession(t *testing.T, e *ledgertest.Env) {
	ctx := context.Background()
	cp, vkey := oldLog(t, "old.example/1")

	// Refused, naming the field: the old log's own origin, a checkpoint
	// under another key.
	if _, _, err := e.Ledger.RecordSuccession(ctx, cp, strings.Replace(vkey, "old.example/1", e.Origin, 1)); err == nil {
		t.Fatal("a key named as this log: recorded")
	}
	otherCP, _ := oldLog(t, "old.example/1")
	if _, _, err := e.Ledger.RecordSuccession(ctx, otherCP, vkey); !errors.Is(err, verify.ErrSuccession) || !strings.Contains(err.Error(), "checkpoint") {
		t.Fatalf("a checkpoint signed by another key: %v", err)
	}

	rec, vs, err := e.Ledger.RecordSuccession(ctx, cp, vkey)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Index != 0 || vs.Origin != "old.example/1" || vs.Previous.Size != 7 {
		t.Fatalf("recorded at %d: %+v", rec.Index, vs)
	}
	b, err := event.Parse(rec.Body)
	if err != nil {
		t.Fatal(err)
	}
	if b.Kind != event.KindLogSuccession || b.Patient != event.SystemChain {
		t.Fatalf("body: kind %s, patient %v", b.Kind, b.Patient)
	}
	if _, err := verify.CheckSuccession(b.Payload, e.Origin); err != nil {
		t.Fatalf("the recorded payload: %v", err)
	}

	// Not first: refused, nothing recorded.
	if _, _, err := e.Ledger.RecordSuccession(ctx, cp, vkey); !errors.Is(err, verify.ErrSuccession) || !strings.Contains(err.Error(), "first event") {
		t.Fatalf("a second succession: %v", err)
	}
	st, err := e.Ledger.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Recorded != 1 {
		t.Fatalf("%d events recorded, want 1", st.Recorded)
	}
}
