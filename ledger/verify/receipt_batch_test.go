package verify

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/vigie-sante/vigie/ledger/event"
)

func batchCommitments(n int) []event.Hash {
	cs := make([]event.Hash, n)
	for i := range cs {
		cs[i] = Commitment([32]byte{byte(i)}, fmt.Appendf(nil, `{"n":%d}`, i))
	}
	return cs
}

// TestBatchReceiptsRoundTrip: every event of batches of 1 to 70 gets a
// receipt that opens to its own index, commitment and times, and the
// batch root is the RFC 6962 root of the batch's leaves.
func TestBatchReceiptsRoundTrip(t *testing.T) {
	rs, rv, _, _ := testKeys(t, ReceiptKeyName(goldenOrigin))
	t0 := time.Date(2026, 12, 8, 3, 0, 0, 7, time.UTC)
	for n := 1; n <= 70; n++ {
		cs := batchCommitments(n)
		receipts, err := SignBatchReceipts(BatchReceipt{Origin: goldenOrigin, First: 1000, Time: t0, Deadline: t0.Add(10 * time.Second)}, cs, rs)
		if err != nil {
			t.Fatal(err)
		}
		var rb RootBuilder
		for _, c := range cs {
			rb.Append(MerkleLeafHash(c))
		}
		for i, signed := range receipts {
			r, err := OpenReceipt(signed, rv)
			if err != nil {
				t.Fatalf("batch of %d, receipt %d: %v\n%s", n, i, err, signed)
			}
			want := Receipt{Origin: goldenOrigin, Index: 1000 + uint64(i), Commitment: cs[i], Time: t0, Deadline: t0.Add(10 * time.Second)}
			if r != want {
				t.Fatalf("batch of %d, receipt %d = %+v, want %+v", n, i, r, want)
			}
			_, note, _ := bytes.Cut(signed, []byte("\n\n"))
			text, _, _ := bytes.Cut(note, []byte("\n\n"))
			b, err := ParseBatchReceipt(append(text, '\n'))
			if err != nil || b.Root != rb.Root() || b.Size != uint64(n) {
				t.Fatalf("batch of %d: root %s, size %d (%v); want %s, %d", n, b.Root, b.Size, err, rb.Root(), n)
			}
		}
	}
}

// TestBatchReceiptRefused: a receipt of version 2 whose path, index,
// commitment or signature was changed does not open.
func TestBatchReceiptRefused(t *testing.T) {
	rs, rv, _, _ := testKeys(t, ReceiptKeyName(goldenOrigin))
	_, otherV, _, _ := testKeys(t, ReceiptKeyName("other.example/vigie/1"))
	t0 := time.Date(2026, 12, 8, 3, 0, 0, 0, time.UTC)
	cs := batchCommitments(5)
	receipts, err := SignBatchReceipts(BatchReceipt{Origin: goldenOrigin, First: 10, Time: t0, Deadline: t0.Add(time.Second)}, cs, rs)
	if err != nil {
		t.Fatal(err)
	}
	good := string(receipts[2])
	lines := strings.Split(good, "\n")
	replaceLine := func(i int, v string) []byte {
		l := append([]string(nil), lines...)
		l[i] = v
		return []byte(strings.Join(l, "\n"))
	}
	other := receipts[3]
	for _, tc := range []struct {
		name   string
		signed []byte
		want   string
	}{
		{"another index", replaceLine(1, "13"), "not included"},
		{"index outside the batch", replaceLine(1, "15"), "outside its batch"},
		{"another commitment", replaceLine(2, cs[3].String()), "not included"},
		{"a path hash changed", replaceLine(3, lines[4]), "not included"},
		{"a path hash dropped", []byte(strings.Join(append(lines[:3:3], lines[4:]...), "\n")), "malformed"},
		{"a path hash not base64", replaceLine(3, "not base64"), "line 4"},
		{"index with a leading zero", replaceLine(1, "012"), "line 2"},
		{"no batch note", []byte(strings.Join(lines[:6], "\n")), "no batch receipt"},
		{"another event's path", []byte(strings.Replace(strings.Replace(string(other), "\n13\n", "\n12\n", 1), cs[3].String(), cs[2].String(), 1)), "not included"},
		{"batch note text changed", []byte(strings.Replace(good, "\n10\n5\n", "\n10\n6\n", 1)), "signature"},
		{"too large", append([]byte(ReceiptHeaderV2+"\n"), bytes.Repeat([]byte("x"), MaxNoteSize)...), "limit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := OpenReceipt(tc.signed, rv)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("OpenReceipt = %v, want an error with %q", err, tc.want)
			}
		})
	}
	if _, err := OpenReceipt(receipts[2], otherV); !errors.Is(err, ErrSignature) {
		t.Errorf("OpenReceipt with another log's key = %v, want ErrSignature", err)
	}
}

// TestBatchReceiptText: the batch note's text parses back to itself, and
// neither header opens as the other version.
func TestBatchReceiptText(t *testing.T) {
	t0 := time.Date(2026, 12, 8, 3, 0, 0, 0, time.UTC)
	b := BatchReceipt{Origin: goldenOrigin, First: 3, Size: 2, Root: batchCommitments(1)[0], Time: t0, Deadline: t0}
	text, err := FormatBatchReceipt(b)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := ParseBatchReceipt(text); err != nil || got != b {
		t.Fatalf("ParseBatchReceipt(FormatBatchReceipt(b)) = %+v, %v", got, err)
	}
	if _, err := ParseReceipt(text); err == nil {
		t.Error("a batch receipt's text parses as a receipt of version 1")
	}
	for _, bad := range []BatchReceipt{{Origin: goldenOrigin, Size: 0, Time: t0, Deadline: t0}, {Origin: goldenOrigin, First: 1<<64 - 1, Size: 2, Time: t0, Deadline: t0}} {
		if _, err := FormatBatchReceipt(bad); err == nil {
			t.Errorf("FormatBatchReceipt(%+v) accepted", bad)
		}
	}
}

// FuzzOpenReceiptV2: no input makes OpenReceipt panic, and what opens is
// the receipt of an index inside its batch.
func FuzzOpenReceiptV2(f *testing.F) {
	rs, rv, _, _ := testKeys(f, ReceiptKeyName(goldenOrigin))
	t0 := time.Date(2026, 12, 8, 3, 0, 0, 0, time.UTC)
	receipts, err := SignBatchReceipts(BatchReceipt{Origin: goldenOrigin, First: 7, Time: t0, Deadline: t0}, batchCommitments(3), rs)
	if err != nil {
		f.Fatal(err)
	}
	for _, r := range receipts {
		f.Add(r)
	}
	f.Add([]byte(ReceiptHeaderV2 + "\n\n\n"))
	f.Fuzz(func(t *testing.T, signed []byte) {
		r, err := OpenReceipt(signed, rv)
		if err == nil && (r.Index < 7 || r.Index >= 10) {
			t.Fatalf("opened a receipt at index %d, outside the batch signed", r.Index)
		}
	})
}

// BenchmarkReceipts measures signing and opening the receipts of a group
// commit of 64 events: one signature each (version 1) or one for the
// group (version 2). ns/op is per event.
func BenchmarkReceipts(b *testing.B) {
	rs, rv, _, _ := testKeys(b, ReceiptKeyName(goldenOrigin))
	t0 := time.Date(2026, 12, 8, 3, 0, 0, 0, time.UTC)
	cs := batchCommitments(64)
	b.Run("sign/v1", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			if _, err := SignReceipt(Receipt{Origin: goldenOrigin, Index: uint64(i), Commitment: cs[i%64], Time: t0, Deadline: t0}, rs); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("sign/v2", func(b *testing.B) {
		for i := 0; b.Loop(); i += 64 {
			if _, err := SignBatchReceipts(BatchReceipt{Origin: goldenOrigin, First: uint64(i), Time: t0, Deadline: t0}, cs, rs); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/64, "ns/event")
	})
	v1, err := SignReceipt(Receipt{Origin: goldenOrigin, Index: 5, Commitment: cs[5], Time: t0, Deadline: t0}, rs)
	if err != nil {
		b.Fatal(err)
	}
	v2, err := SignBatchReceipts(BatchReceipt{Origin: goldenOrigin, Time: t0, Deadline: t0}, cs, rs)
	if err != nil {
		b.Fatal(err)
	}
	for name, r := range map[string][]byte{"open/v1": v1, "open/v2": v2[5]} {
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				if _, err := OpenReceipt(r, rv); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
