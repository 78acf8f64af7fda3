package verify

import (
	"bytes"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/transparency-dev/formats/log"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/vigie-sante/vigie/ledger/event"
)

func readFile(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestFormatCheckpoint(t *testing.T) {
	cp := Checkpoint{Origin: "example.com/behind-the-sofa", Size: 20852163}
	copy(cp.Hash[:], mustBase64(t, "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I="))
	got, err := FormatCheckpoint(cp)
	if err != nil {
		t.Fatal(err)
	}
	// The example of https://c2sp.org/tlog-checkpoint.
	const want = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
	if string(got) != want {
		t.Errorf("FormatCheckpoint = %q, want %q", got, want)
	}
	for _, origin := range []string{"", "a b", "a+b", "a\tb", "a\nb", "a\x00b", "a\x7fb", strings.Repeat("o", MaxOriginLen+1), "\xff"} {
		if _, err := FormatCheckpoint(Checkpoint{Origin: origin}); err == nil {
			t.Errorf("FormatCheckpoint(origin %q) succeeded, want an error", origin)
		}
	}
	if _, err := FormatCheckpoint(Checkpoint{Origin: strings.Repeat("o", MaxOriginLen)}); err != nil {
		t.Errorf("FormatCheckpoint(origin of %d bytes): %v", MaxOriginLen, err)
	}
}

func mustBase64(t testing.TB, s string) []byte {
	t.Helper()
	h, err := parseBase64Hash(s)
	if err != nil {
		t.Fatal(err)
	}
	return h[:]
}

func TestParseCheckpoint(t *testing.T) {
	golden := string(readFile(t, "testdata/checkpoint.txt"))
	want := Checkpoint{Origin: goldenOrigin, Size: 2, Hash: rootOf(goldenEvents(t))}
	ok := []struct {
		name string
		text string
	}{
		{"golden", golden},
		{"one extension line", golden + "extension\n"},
		{"two extension lines", golden + "a b c\n— d\n"},
	}
	for _, tt := range ok {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseCheckpoint([]byte(tt.text))
			if err != nil {
				t.Fatalf("ParseCheckpoint: %v", err)
			}
			if got != want {
				t.Errorf("ParseCheckpoint = %+v, want %+v", got, want)
			}
		})
	}
	lines := strings.SplitAfter(golden, "\n")
	hash := strings.TrimSuffix(lines[2], "\n")
	bad := []struct {
		name   string
		text   string
		substr string
	}{
		{"empty", "", "newline"},
		{"no final newline", strings.TrimSuffix(golden, "\n"), "newline"},
		{"one line", lines[0], "1 lines"},
		{"two lines", lines[0] + lines[1], "2 lines"},
		{"blank line", "\n\n\n", "origin"},
		{"empty origin", "\n" + lines[1] + lines[2], "origin"},
		{"origin with space", "vigie receipt v1\n" + lines[1] + lines[2], "origin"},
		{"origin with plus", "a+b\n" + lines[1] + lines[2], "origin"},
		{"origin too long", strings.Repeat("o", MaxOriginLen+1) + "\n" + lines[1] + lines[2], "origin"},
		{"size empty", lines[0] + "\n" + lines[2], "tree size"},
		{"size leading zero", lines[0] + "02\n" + lines[2], "tree size"},
		{"size plus sign", lines[0] + "+2\n" + lines[2], "tree size"},
		{"size negative", lines[0] + "-2\n" + lines[2], "tree size"},
		{"size hex", lines[0] + "0x2\n" + lines[2], "tree size"},
		{"size space", lines[0] + "2 \n" + lines[2], "tree size"},
		{"size overflow", lines[0] + "18446744073709551616\n" + lines[2], "tree size"},
		{"hash missing", lines[0] + lines[1] + "\n", "root hash"},
		{"hash hex", lines[0] + lines[1] + strings.Repeat("ab", 32) + "\n", "root hash"},
		{"hash unpadded", lines[0] + lines[1] + strings.TrimSuffix(hash, "=") + "\n", "root hash"},
		{"hash URL base64", lines[0] + lines[1] + strings.NewReplacer("/", "_", "+", "-").Replace(hash) + "\n", "root hash"},
		{"hash non-canonical bits", lines[0] + lines[1] + hash[:42] + "t=\n", "root hash"},
		{"hash 31 bytes", lines[0] + lines[1] + "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==\n", "root hash"},
		{"hash 33 bytes", lines[0] + lines[1] + "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n", "root hash"},
		{"hash with CR", lines[0] + lines[1] + hash[:10] + "\r" + hash[10:] + "\n", "control character"},
		{"CRLF", strings.ReplaceAll(golden, "\n", "\r\n"), "control character"},
		{"empty extension line", golden + "\n", "empty extension"},
		{"empty extension line between", golden + "ext\n\next\n", "empty extension"},
		{"tab", lines[0] + lines[1] + lines[2] + "a\tb\n", "control character"},
		{"invalid UTF-8", golden + "\xff\n", "UTF-8"},
		{"too large", golden + strings.Repeat("x", MaxCheckpointSize) + "\n", "limit"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseCheckpoint([]byte(tt.text))
			if err == nil {
				t.Fatalf("ParseCheckpoint = %+v, want an error", got)
			}
			if !strings.Contains(err.Error(), tt.substr) {
				t.Errorf("ParseCheckpoint error = %v, want it to mention %q", err, tt.substr)
			}
		})
	}
}

func rootOf(evs []goldenEvent) event.Hash {
	var rb RootBuilder
	for _, ev := range evs {
		rb.Append(ev.leafHash)
	}
	return rb.Root()
}

func TestOpenCheckpoint(t *testing.T) {
	signed := readFile(t, "testdata/checkpoint.note")
	cs, cv, _, _ := testKeys(t, goldenOrigin)
	want, err := ParseCheckpoint(readFile(t, "testdata/checkpoint.txt"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := OpenCheckpoint(signed, cv)
	if err != nil || got != want {
		t.Fatalf("OpenCheckpoint(golden) = %+v, %v; want %+v", got, err, want)
	}

	witness, _, _, _ := testKeys(t, "witness.example/w1")
	otherLog, otherLogV, _, _ := testKeys(t, "other.example/vigie/1")
	impostor, _, _, _ := testKeys(t, goldenOrigin+"-impostor") // a key named like the log
	impostorSameName := renamedSigner{impostor, goldenOrigin}
	receiptSigner, receiptV, _, _ := testKeys(t, ReceiptKeyName(goldenOrigin))
	text := string(readFile(t, "testdata/checkpoint.txt"))

	sign := func(text string, signers ...note.Signer) []byte {
		t.Helper()
		b, err := note.Sign(&note.Note{Text: text}, signers...)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	// Cosigned by a witness: the witness's signature is ignored.
	cosigned := sign(text, cs, witness)
	if got, err := OpenCheckpoint(cosigned, cv); err != nil || got != want {
		t.Errorf("OpenCheckpoint(cosigned) = %+v, %v; want %+v", got, err, want)
	}
	if got, err := OpenCheckpoint(sign(text, witness, cs), cv); err != nil || got != want {
		t.Errorf("OpenCheckpoint(witness first) = %+v, %v; want %+v", got, err, want)
	}
	// Extension lines are ignored.
	if got, err := OpenCheckpoint(sign(text+"ext\n", cs), cv); err != nil || got != want {
		t.Errorf("OpenCheckpoint(extension line) = %+v, %v; want %+v", got, err, want)
	}

	tests := []struct {
		name      string
		signed    []byte
		v         note.Verifier
		signature bool   // the error must wrap ErrSignature
		substr    string // and mention this
	}{
		{"signed by a witness only", sign(text, witness), cv, true, "no signature"},
		{"signed by another log", sign(text, otherLog), cv, true, "no signature"},
		{"impostor key with the log's name", sign(text, impostorSameName), cv, true, ""},
		{"forged signature", forge(t, signed), cv, true, "invalid signature"},
		{"other log's key and origin", sign(text, otherLog), otherLogV, false, "differs from the log key name"},
		{"receipt key over a checkpoint", sign(text, receiptSigner), receiptV, false, "differs from the log key name"},
		{"text changed", bytes.Replace(signed, []byte("\n2\n"), []byte("\n3\n"), 1), cv, true, "invalid signature"},
		{"no signature", []byte(text), cv, false, "malformed"},
		{"no blank line", bytes.Replace(signed, []byte("\n\n"), []byte("\n"), 1), cv, false, "malformed"},
		{"nil verifier", signed, nil, false, "no verifier"},
		{"too large", append(bytes.Repeat([]byte("x"), MaxNoteSize), signed...), cv, false, "limit"},
		{"empty", nil, cv, false, "malformed"},
		{"receipt", readFile(t, "testdata/receipt.note"), cv, true, ""},
		{"receipt text signed by the log key", sign(string(readFile(t, "testdata/receipt.txt")), cs), cv, false, "origin"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := OpenCheckpoint(tt.signed, tt.v)
			if err == nil {
				t.Fatalf("OpenCheckpoint = %+v, want an error", got)
			}
			if got := errors.Is(err, ErrSignature); got != tt.signature {
				t.Errorf("OpenCheckpoint error = %v; errors.Is(err, ErrSignature) = %v, want %v", err, got, tt.signature)
			}
			if !strings.Contains(err.Error(), tt.substr) {
				t.Errorf("OpenCheckpoint error = %v, want it to mention %q", err, tt.substr)
			}
		})
	}
}

// renamedSigner is a key under a name that is not its own (the key hash
// still commits to the real name, so verifiers cannot mistake it).
type renamedSigner struct {
	note.Signer
	name string
}

func (s renamedSigner) Name() string { return s.name }

// forge flips a bit of the signature of a signed note, keeping the key hash.
func forge(t testing.TB, signed []byte) []byte {
	t.Helper()
	_, err := note.Open(signed, note.VerifierList())
	var unverified *note.UnverifiedNoteError
	if !errors.As(err, &unverified) {
		t.Fatalf("note.Open: %v", err)
	}
	n := unverified.Note
	sig, err := decodeStd(n.UnverifiedSigs[0].Base64)
	if err != nil {
		t.Fatal(err)
	}
	sig[10] ^= 1
	n.UnverifiedSigs[0].Base64 = encodeStd(sig)
	out, err := note.Sign(n)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestSignCheckpoint(t *testing.T) {
	cs, _, _, _ := testKeys(t, goldenOrigin)
	if _, err := SignCheckpoint(Checkpoint{Origin: "other.example/vigie/2"}, cs); err == nil {
		t.Error("SignCheckpoint with a key named differently from the origin succeeded")
	}
	bad, _, _, _ := testKeys(t, "a/b")
	if _, err := SignCheckpoint(Checkpoint{Origin: "a/b\x01"}, renamedSigner{bad, "a/b\x01"}); err == nil {
		t.Error("SignCheckpoint with an invalid origin succeeded")
	}
}

func TestFormatOrigin(t *testing.T) {
	got, err := FormatOrigin("dmp.example.fr", 7305128413946201301)
	if err != nil || got != "dmp.example.fr/vigie/7305128413946201301" {
		t.Errorf("FormatOrigin = %q, %v", got, err)
	}
	for _, tt := range []struct {
		name string
		id   int64
	}{{"", 1}, {"a b", 1}, {"a+b", 1}, {"ok", 0}, {"ok", -1}, {strings.Repeat("n", MaxOriginLen), 1}} {
		if got, err := FormatOrigin(tt.name, tt.id); err == nil {
			t.Errorf("FormatOrigin(%q, %d) = %q, want an error", tt.name, tt.id, got)
		}
	}
}

func TestParseOrigin(t *testing.T) {
	name, id, err := ParseOrigin("dmp.example.fr/vigie/team/vigie/7305128413946201301")
	if err != nil || name != "dmp.example.fr/vigie/team" || id != 7305128413946201301 {
		t.Errorf("ParseOrigin = %q, %d, %v", name, id, err)
	}
	for _, o := range []string{"", "dmp.example.fr", "dmp.example.fr/vigie/", "/vigie/1", "a/vigie/0", "a/vigie/-1", "a/vigie/+1", "a/vigie/01", "a/vigie/1x", "a b/vigie/1", "a/vigie/99999999999999999999"} {
		if name, id, err := ParseOrigin(o); err == nil {
			t.Errorf("ParseOrigin(%q) = %q, %d, want an error", o, name, id)
		}
	}
}

// TestCheckpointInterop checks checkpoints against two independent
// implementations: golang.org/x/mod/sumdb/tlog's tree notes (the same
// three-line layout, other first line) and transparency-dev/formats/log.
func TestCheckpointInterop(t *testing.T) {
	cs, cv, _, _ := testKeys(t, goldenOrigin)
	signed := readFile(t, "testdata/checkpoint.note")
	want, err := OpenCheckpoint(signed, cv)
	if err != nil {
		t.Fatal(err)
	}

	// Ours, read by formats/log.
	got, rest, _, err := log.ParseCheckpoint(signed, goldenOrigin, cv)
	if err != nil {
		t.Fatalf("formats/log.ParseCheckpoint(ours): %v", err)
	}
	if got.Origin != want.Origin || got.Size != want.Size || !bytes.Equal(got.Hash, want.Hash[:]) || len(rest) != 0 {
		t.Errorf("formats/log read %+v (rest %q), want %+v", got, rest, want)
	}

	// formats/log's, read by ours, with and without extension lines.
	for _, ext := range []string{"", "extension line\n"} {
		text := append(log.Checkpoint{Origin: goldenOrigin, Size: want.Size, Hash: want.Hash[:]}.Marshal(), ext...)
		theirs, err := note.Sign(&note.Note{Text: string(text)}, cs)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := OpenCheckpoint(theirs, cv); err != nil || got != want {
			t.Errorf("OpenCheckpoint(formats/log's, ext %q) = %+v, %v; want %+v", ext, got, err, want)
		}
		if ext == "" && !bytes.Equal(theirs, signed) {
			t.Errorf("formats/log's signed checkpoint differs from ours:\n%s\n%s", theirs, signed)
		}
	}

	// tlog's tree notes use the same size and hash lines.
	tree := tlog.FormatTree(tlog.Tree{N: int64(want.Size), Hash: tlog.Hash(want.Hash)})
	ours, _ := FormatCheckpoint(want)
	if _, after, _ := bytes.Cut(tree, []byte("\n")); !bytes.HasSuffix(ours, after) {
		t.Errorf("tlog.FormatTree = %q, ours = %q: size and hash lines differ", tree, ours)
	}
	// tlog's header has spaces, so a tlog tree note is not a checkpoint.
	if _, err := ParseCheckpoint(tree); err == nil {
		t.Errorf("ParseCheckpoint(tlog tree note) succeeded")
	}
}
