package witness

import (
	"bytes"
	"crypto/sha256"
	"testing"
)

func TestAddCheckpointRoundTrip(t *testing.T) {
	h1, h2 := sha256.Sum256([]byte("a")), sha256.Sum256([]byte("b"))
	note := []byte("example.org/log\n3\nAAAA\n\n— example.org/log AAAA\n")
	for _, proof := range [][][]byte{nil, {h1[:]}, {h1[:], h2[:]}} {
		body, err := FormatAddCheckpoint(7, proof, note)
		if err != nil {
			t.Fatal(err)
		}
		old, p, n, err := ParseAddCheckpoint(body)
		if err != nil || old != 7 || len(p) != len(proof) || !bytes.Equal(n, note) {
			t.Errorf("ParseAddCheckpoint(FormatAddCheckpoint(%d hashes)) = %d, %d hashes, %q, %v", len(proof), old, len(p), n, err)
		}
	}
	if _, err := FormatAddCheckpoint(1, [][]byte{h1[:5]}, note); err == nil {
		t.Error("FormatAddCheckpoint of a short hash: no error")
	}
	for _, bad := range []string{"old 1\n", "old 01\n\nx", "old -1\n\nx", "new 1\n\nx", "old 1\nAAAA\n\nx"} {
		if _, _, _, err := ParseAddCheckpoint([]byte(bad)); err == nil {
			t.Errorf("ParseAddCheckpoint(%q): no error", bad)
		}
	}
	if n, err := parseKnownSize([]byte("12\n")); err != nil || n != 12 {
		t.Errorf("parseKnownSize = %d, %v", n, err)
	}
	for _, bad := range []string{"", "x\n", "012\n", "-1\n"} {
		if _, err := parseKnownSize([]byte(bad)); err == nil {
			t.Errorf("parseKnownSize(%q): no error", bad)
		}
	}
}

func FuzzParseAddCheckpoint(f *testing.F) {
	h := sha256.Sum256(nil)
	b, _ := FormatAddCheckpoint(3, [][]byte{h[:]}, []byte("o\n1\nx\n\n— o x\n"))
	f.Add(b)
	f.Fuzz(func(t *testing.T, body []byte) {
		old, proof, n, err := ParseAddCheckpoint(body)
		if err != nil {
			return
		}
		again, err := FormatAddCheckpoint(old, proof, n)
		if err != nil || !bytes.Equal(again, body) {
			t.Fatalf("FormatAddCheckpoint(ParseAddCheckpoint(%q)) = %q, %v", body, again, err)
		}
	})
}
