package ledger_test

import (
	"bytes"
	"testing"

	"github.com/vigie-sante/vigie/ledger"
	"github.com/vigie-sante/vigie/ledger/ledgertest"
	"github.com/vigie-sante/vigie/ledger/verify"
)

// TestBatchReceipts: the events of one group commit get receipts of
// version 2 under one signature; a lone event, and a repeat of a key, one
// of version 1. Each opens to its own event.
func TestBatchReceipts(t *testing.T) {
	env := ledgertest.New(t, ledgertest.Options{})
	var entries []ledger.Entry
	for i, p := range []string{"alice", "bob", "alice", "carol", "bob"} {
		entries = append(entries, access(p, i))
	}
	entries[1].Key = ledger.Key{Service: "s", RequestID: "r1"}
	repeat := entries[1]
	entries = append(entries, repeat)
	recs, err := env.Ledger.RecordAll(ctx, entries)
	if err != nil {
		t.Fatal(err)
	}
	lone := record(t, env.Ledger, access("dave", 0))
	var signature []byte
	for i, r := range append(recs, lone) {
		got, err := verify.OpenReceipt(r.Receipt, env.ReceiptKey)
		if err != nil {
			t.Fatalf("receipt %d: %v", i, err)
		}
		if got.Index != r.Index || got.Commitment != r.Commitment || !got.Time.Equal(r.Time) {
			t.Errorf("receipt %d = %+v, want index %d, commitment %s, time %s", i, got, r.Index, r.Commitment, r.Time)
		}
		v2 := bytes.HasPrefix(r.Receipt, []byte(verify.ReceiptHeaderV2+"\n"))
		if wantV2 := i < 5; v2 != wantV2 {
			t.Errorf("receipt %d: version 2 = %v, want %v", i, v2, wantV2)
		}
		if v2 {
			_, sig, _ := bytes.Cut(r.Receipt, []byte("\n\n"))
			if signature != nil && !bytes.Equal(sig, signature) {
				t.Errorf("receipt %d: another batch note than the group's first", i)
			}
			signature = sig
		}
	}
}
