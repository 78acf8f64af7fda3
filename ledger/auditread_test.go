package ledger_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"testing"

	"github.com/vigie-sante/vigie/ledger"
	"github.com/vigie-sante/vigie/ledger/event"
	"github.com/vigie-sante/vigie/ledger/ledgertest"
)

// TestOpenForAudit: an auditor's read opens the body and checks it against
// the searchable columns the search selected the row by; a column that is
// not the body's is ErrCorrupt, an erased event ErrErased.
func TestOpenForAudit(t *testing.T) {
	env := ledgertest.New(t, ledgertest.Options{})
	l := env.Ledger
	rec := record(t, l, access("alice", 1))
	record(t, l, access("bob", 1))
	rows, err := l.Search(ctx, ledger.SearchFilter{Kind: event.KindAccess}, -1, 10)
	if err != nil || len(rows) != 2 {
		t.Fatalf("Search = %d rows, %v", len(rows), err)
	}
	row := rows[0]
	if row.Commitment != rec.Commitment {
		t.Fatalf("first row %d, want alice's event %d", row.Index, rec.Index)
	}
	e, err := l.OpenForAudit(ctx, row)
	if err != nil {
		t.Fatal(err)
	}
	if e.Parsed.Kind != event.KindAccess || e.Parsed.Patient != l.Pseudonym(ledgertest.Patient("alice")) || e.Row.Index != row.Index {
		t.Errorf("OpenForAudit = kind %s, patient %v; want alice's access", e.Parsed.Kind, e.Parsed.Patient)
	}
	if got, err := event.Parse(e.Body); err != nil || got.Seq != e.Parsed.Seq {
		t.Errorf("Body does not parse to Parsed: %v", err)
	}

	for name, alter := range map[string]func(r *ledger.EventRow){
		"kind":    func(r *ledger.EventRow) { r.Kind = event.KindLedgerRead },
		"patient": func(r *ledger.EventRow) { r.Pseudonym = rows[1].Pseudonym },
	} {
		altered := row
		alter(&altered)
		var ce *ledger.CorruptEventError
		if _, err := l.OpenForAudit(ctx, altered); !errors.Is(err, ledger.ErrCorrupt) || !errors.As(err, &ce) || ce.Index != row.Index {
			t.Errorf("OpenForAudit with another %s column = %v, want a CorruptEventError for event %d", name, err, row.Index)
		}
	}

	if _, err := l.Erase(ctx, ledgertest.Patient("alice")); err != nil {
		t.Fatal(err)
	}
	if _, err := l.OpenForAudit(ctx, row); !errors.Is(err, ledger.ErrErased) {
		t.Errorf("OpenForAudit of an erased event = %v, want ErrErased", err)
	}
}

// TestRecordReads: one ledger-read event per patient, with how many of
// their events were read, in the order they were met; none for the system
// chain; nothing for an empty set.
func TestRecordReads(t *testing.T) {
	env := ledgertest.New(t, ledgertest.Options{})
	l := env.Ledger
	alice, bob := l.Pseudonym(ledgertest.Patient("alice")), l.Pseudonym(ledgertest.Patient("bob"))
	payload := func(n int) ([]byte, error) { return json.RawMessage(fmt.Sprintf(`{"events":%d}`, n)), nil }

	var empty ledger.ReadSet
	if err := l.RecordReads(ctx, &empty, "regulator:cnil", payload); err != nil {
		t.Fatal(err)
	}
	if rows, err := l.Search(ctx, ledger.SearchFilter{Kind: event.KindLedgerRead}, -1, 10); err != nil || len(rows) != 0 {
		t.Fatalf("an empty set recorded %d reads, %v", len(rows), err)
	}

	var s ledger.ReadSet
	for _, p := range []event.Hash{bob, alice, bob, event.SystemChain, bob} {
		s.Add(p)
	}
	if s.Patients() != 2 || s.Events(bob) != 3 || s.Events(alice) != 1 || s.Events(event.SystemChain) != 0 {
		t.Fatalf("ReadSet: %d patients, bob %d, alice %d, system %d; want 2, 3, 1, 0", s.Patients(), s.Events(bob), s.Events(alice), s.Events(event.SystemChain))
	}
	if err := l.RecordReads(ctx, &s, "regulator:cnil", payload); err != nil {
		t.Fatal(err)
	}
	rows, err := l.Search(ctx, ledger.SearchFilter{Kind: event.KindLedgerRead}, -1, 10)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range rows {
		e, err := l.OpenForAudit(ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		who := map[event.Hash]string{alice: "alice", bob: "bob"}[r.Pseudonym]
		got = append(got, fmt.Sprintf("%s %s %s", who, r.Service, e.Parsed.Payload))
	}
	if want := `[bob regulator:cnil {"events":3} alice regulator:cnil {"events":1}]`; fmt.Sprint(got) != want {
		t.Errorf("reads recorded: %v, want %s", got, want)
	}

	boom := errors.New("boom")
	if err := l.RecordReads(ctx, &s, "regulator:cnil", func(int) ([]byte, error) { return nil, boom }); !errors.Is(err, boom) {
		t.Errorf("RecordReads with a failing payload = %v, want it", err)
	}
	if n, err := l.Search(ctx, ledger.SearchFilter{Kind: event.KindLedgerRead}, -1, 10); err != nil || len(n) != 2 {
		t.Errorf("after a failing payload, %d reads (%v), want the 2 of before: nothing recorded", len(n), err)
	}
}
