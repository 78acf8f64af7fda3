package verify

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
)

func TestParseReceipt(t *testing.T) {
	golden := string(readFile(t, "testdata/receipt.txt"))
	evs := goldenEvents(t)
	want := Receipt{Origin: goldenOrigin, Index: 1, Commitment: evs[1].commitment,
		Time: time.Date(2026, 11, 28, 22, 0, 1, 500, time.UTC), Deadline: time.Date(2026, 11, 28, 22, 0, 11, 500, time.UTC)}
	got, err := ParseReceipt([]byte(golden))
	if err != nil || got != want {
		t.Fatalf("ParseReceipt(golden) = %+v, %v; want %+v", got, err, want)
	}
	text, err := FormatReceipt(got)
	if err != nil || string(text) != golden {
		t.Errorf("FormatReceipt(ParseReceipt(golden)) = %q, %v; want %q", text, err, golden)
	}

	lines := strings.SplitAfter(golden, "\n")[:6]
	with := func(i int, line string) string {
		l := append([]string(nil), lines...)
		l[i] = line
		return strings.Join(l, "")
	}
	tests := []struct {
		name   string
		text   string
		substr string
	}{
		{"empty", "", "newline"},
		{"no final newline", strings.TrimSuffix(golden, "\n"), "newline"},
		{"header only", lines[0], "1 lines, want 6"},
		{"five lines", strings.Join(lines[:5], ""), "5 lines"},
		{"extension line", golden + "ext\n", "7 lines"},
		{"blank line at end", golden + "\n", "7 lines"},
		{"version 2", with(0, "vigie receipt v2\n"), "unsupported version"},
		{"header case", with(0, "Vigie receipt v1\n"), "line 1"},
		{"checkpoint", string(readFile(t, "testdata/checkpoint.txt")), "line 1"},
		{"origin empty", with(1, "\n"), "origin"},
		{"origin with space", with(1, "a b\n"), "origin"},
		{"index leading zero", with(2, "01\n"), "leaf index"},
		{"index negative", with(2, "-1\n"), "leaf index"},
		{"index empty", with(2, "\n"), "leaf index"},
		{"commitment uppercase", with(3, strings.ToUpper(lines[3])), "commitment"},
		{"commitment short", with(3, lines[3][:62]+"\n"), "commitment"},
		{"commitment base64", with(3, "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"), "commitment"},
		{"time without nanoseconds", with(4, "2026-11-28T22:00:01Z\n"), "time"},
		{"time with offset", with(4, "2026-11-28T23:00:01.000000500+01:00\n"), "time"},
		{"deadline missing", with(5, "\n"), "deadline"},
		{"deadline before time", with(5, "2026-11-28T22:00:00.000000000Z\n"), "deadline before time"},
		{"year 0", with(4, "0000-01-01T00:00:00.000000000Z\n"), "time missing or out of range"},
		{"CRLF", strings.ReplaceAll(golden, "\n", "\r\n"), "control character"},
		{"too large", golden + strings.Repeat("x", 1000) + "\n", "limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseReceipt([]byte(tt.text))
			if err == nil {
				t.Fatalf("ParseReceipt = %+v, want an error", got)
			}
			if !strings.Contains(err.Error(), tt.substr) {
				t.Errorf("ParseReceipt error = %v, want it to mention %q", err, tt.substr)
			}
		})
	}
}

func TestFormatReceiptErrors(t *testing.T) {
	now := time.Date(2026, 11, 28, 22, 0, 0, 0, time.UTC)
	ok := Receipt{Origin: goldenOrigin, Index: 7, Time: now, Deadline: now.Add(10 * time.Second)}
	if _, err := FormatReceipt(ok); err != nil {
		t.Fatalf("FormatReceipt(%+v): %v", ok, err)
	}
	same := ok
	same.Deadline = same.Time
	if _, err := FormatReceipt(same); err != nil {
		t.Errorf("FormatReceipt(deadline = time): %v", err)
	}
	tests := []struct {
		name string
		edit func(r *Receipt)
	}{
		{"origin empty", func(r *Receipt) { r.Origin = "" }},
		{"origin with newline", func(r *Receipt) { r.Origin = "a\nb" }},
		{"zero time", func(r *Receipt) { r.Time = time.Time{} }},
		{"zero deadline", func(r *Receipt) { r.Deadline = time.Time{} }},
		{"deadline before time", func(r *Receipt) { r.Deadline = r.Time.Add(-time.Nanosecond) }},
		{"year 10000", func(r *Receipt) { r.Deadline = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := ok
			tt.edit(&r)
			if text, err := FormatReceipt(r); err == nil {
				t.Errorf("FormatReceipt = %q, want an error", text)
			}
		})
	}
}

func TestOpenReceipt(t *testing.T) {
	signed := readFile(t, "testdata/receipt.note")
	rs, rv, _, _ := testKeys(t, ReceiptKeyName(goldenOrigin))
	cs, cv, _, _ := testKeys(t, goldenOrigin)
	want, err := ParseReceipt(readFile(t, "testdata/receipt.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := OpenReceipt(signed, rv); err != nil || got != want {
		t.Fatalf("OpenReceipt(golden) = %+v, %v; want %+v", got, err, want)
	}
	text := string(readFile(t, "testdata/receipt.txt"))
	sign := func(text string, signers ...note.Signer) []byte {
		t.Helper()
		b, err := note.Sign(&note.Note{Text: text}, signers...)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	witness, _, _, _ := testKeys(t, "witness.example/w1")
	if got, err := OpenReceipt(sign(text, rs, witness), rv); err != nil || got != want {
		t.Errorf("OpenReceipt(with another signature) = %+v, %v; want %+v", got, err, want)
	}
	tests := []struct {
		name      string
		signed    []byte
		v         note.Verifier
		signature bool
		substr    string
	}{
		{"checkpoint key", signed, cv, true, "no signature"},
		{"receipt signed with the checkpoint key", sign(text, cs), cv, false, "key name"},
		{"forged", forge(t, signed), rv, true, "invalid signature"},
		{"checkpoint note", readFile(t, "testdata/checkpoint.note"), rv, true, ""},
		{"checkpoint text signed with the receipt key", sign(string(readFile(t, "testdata/checkpoint.txt")), rs), rv, false, "line 1"},
		{"index changed", bytes.Replace(signed, []byte("\n1\n"), []byte("\n0\n"), 1), rv, true, "invalid signature"},
		{"nil verifier", signed, nil, false, "no verifier"},
		{"too large", append(bytes.Repeat([]byte("x"), MaxNoteSize), signed...), rv, false, "limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := OpenReceipt(tt.signed, tt.v)
			if err == nil {
				t.Fatalf("OpenReceipt = %+v, want an error", got)
			}
			if got := errors.Is(err, ErrSignature); got != tt.signature {
				t.Errorf("OpenReceipt error = %v; errors.Is(err, ErrSignature) = %v, want %v", err, got, tt.signature)
			}
			if !strings.Contains(err.Error(), tt.substr) {
				t.Errorf("OpenReceipt error = %v, want it to mention %q", err, tt.substr)
			}
		})
	}
	if _, err := SignReceipt(want, cs); err == nil {
		t.Error("SignReceipt with the checkpoint key succeeded")
	}
}

// TestReceiptNeverACheckpoint checks both directions with every parser, and
// that the two key names differ.
func TestReceiptNeverACheckpoint(t *testing.T) {
	receipt := readFile(t, "testdata/receipt.txt")
	checkpoint := readFile(t, "testdata/checkpoint.txt")
	if cp, err := ParseCheckpoint(receipt); err == nil {
		t.Errorf("ParseCheckpoint(receipt) = %+v", cp)
	}
	if r, err := ParseReceipt(checkpoint); err == nil {
		t.Errorf("ParseReceipt(checkpoint) = %+v", r)
	}
	if ReceiptKeyName(goldenOrigin) == goldenOrigin {
		t.Error("the receipt key name equals the origin")
	}
	if ValidOrigin(ReceiptHeader) {
		t.Errorf("%q is a valid origin", ReceiptHeader)
	}
}

func TestCheckReceipt(t *testing.T) {
	const origin = goldenOrigin
	tr := newTLogTree(t, 20, "receipts")
	now := time.Date(2026, 11, 28, 22, 0, 0, 0, time.UTC)
	receipt := func(index int) Receipt {
		return Receipt{Origin: origin, Index: uint64(index), Commitment: testCommitment("receipts", index),
			Time: now, Deadline: now.Add(10 * time.Second)}
	}
	r := receipt(11)
	tests := []struct {
		name   string
		r      Receipt
		cp     Checkpoint
		proof  [][]byte
		now    time.Time
		want   error // sentinel, or nil for success
		anyErr bool  // some other error
	}{
		{"included", r, tr.checkpoint(t, origin, 12), tr.inclusion(t, 11, 12), now.Add(time.Hour), nil, false},
		{"included later", r, tr.checkpoint(t, origin, 20), tr.inclusion(t, 11, 20), now, nil, false},
		{"pending", r, tr.checkpoint(t, origin, 11), nil, now.Add(5 * time.Second), ErrReceiptPending, false},
		{"pending at the deadline", r, tr.checkpoint(t, origin, 11), nil, r.Deadline, ErrReceiptPending, false},
		{"overdue", r, tr.checkpoint(t, origin, 11), nil, r.Deadline.Add(time.Nanosecond), ErrReceiptOverdue, false},
		{"overdue, empty log", r, Checkpoint{Origin: origin, Hash: emptyRoot}, nil, now.Add(time.Hour), ErrReceiptOverdue, false},
		{"another leaf at the index", receipt(12), tr.checkpoint(t, origin, 20), tr.inclusion(t, 11, 20), now, ErrNotIncluded, false},
		{"wrong proof", r, tr.checkpoint(t, origin, 20), tr.inclusion(t, 10, 20), now, ErrNotIncluded, false},
		{"truncated proof", r, tr.checkpoint(t, origin, 20), tr.inclusion(t, 11, 20)[1:], now, ErrMalformedProof, false},
		{"other log", r, tr.checkpoint(t, "other.example/vigie/1", 20), tr.inclusion(t, 11, 20), now, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckReceipt(tt.r, tt.cp, tt.proof, tt.now)
			switch {
			case tt.anyErr:
				if err == nil {
					t.Error("CheckReceipt = nil, want an error")
				}
			case tt.want == nil && err != nil:
				t.Errorf("CheckReceipt = %v, want nil", err)
			case !errors.Is(err, tt.want):
				t.Errorf("CheckReceipt = %v, want %v", err, tt.want)
			}
		})
	}
	// VerifyReceiptIncluded on its own.
	if err := VerifyReceiptIncluded(r, tr.checkpoint(t, origin, 11), nil); err == nil {
		t.Error("VerifyReceiptIncluded with a checkpoint not covering the index succeeded")
	}
	if err := VerifyReceiptIncluded(r, tr.checkpoint(t, origin, 13), tr.inclusion(t, 11, 13)); err != nil {
		t.Errorf("VerifyReceiptIncluded: %v", err)
	}
}
