package consent_test

import (
	"bytes"
	"crypto/sha256"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/vigie-sante/vigie/consent"
	"github.com/vigie-sante/vigie/consent/nationalrules"
)

func TestParseRulesStrict(t *testing.T) {
	good := nationalrules.IllustrativeBytes()
	tests := []struct {
		name string
		edit func(string) string
		want string // error substring
	}{
		{"no final newline", func(s string) string { return strings.TrimSuffix(s, "\n") }, "canonical"},
		{"compact", func(s string) string { return strings.ReplaceAll(s, "\n  ", "\n ") }, "canonical"},
		{"unknown field", func(s string) string {
			return strings.Replace(s, `"version": 1,`, `"version": 1, "extra": true,`, 1)
		}, "unknown field"},
		{"duplicate key", func(s string) string {
			return strings.Replace(s, `"version": 1,`, `"version": 1,`+"\n"+`  "version": 1,`, 1)
		}, "canonical"},
		{"wrong format", func(s string) string { return strings.Replace(s, "rules-v1", "rules-v2", 1) }, "format"},
		{"version zero", func(s string) string { return strings.Replace(s, `"version": 1,`, `"version": 0,`, 1) }, "version"},
		{"unsorted purposes", func(s string) string {
			return strings.Replace(s, "\"BTG\",\n    \"ETREAT\"", "\"ETREAT\",\n    \"BTG\"", 1)
		}, "not sorted"},
		{"unknown type in matrix", func(s string) string {
			return strings.Replace(s, `"vaccination-record"`+"\n      ],", `"zz-unknown"`+"\n      ],", 1)
		}, "unknown code"},
		{"bad access", func(s string) string { return strings.Replace(s, `"access": "never"`, `"access": "sometimes"`, 1) }, "access"},
		{"trailing data", func(s string) string { return s + "{}" }, "after"},
		{"escaped character", func(s string) string { return strings.Replace(s, "é", `\u00e9`, 1) }, "canonical"},
		{"bidirectional override in the title", func(s string) string { return strings.Replace(s, "arrêté", "arr\u202eêté", 1) }, "title: character"},
		{"bidirectional override in a label", func(s string) string { return strings.Replace(s, "Santé", "Sant\u202eé", 1) }, ".fr: character"},
		{"escape in a label", func(s string) string { return strings.Replace(s, "Santé", `Sant\u001b[2J`, 1) }, ".fr: character"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := tt.edit(string(good))
			if in == string(good) {
				t.Fatal("edit changed nothing")
			}
			_, err := consent.ParseRules([]byte(in))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("ParseRules() = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestRulesRoundTrip(t *testing.T) {
	r := nationalrules.Illustrative()
	if r.Hash() != sha256.Sum256(r.Bytes()) {
		t.Error("Hash() != SHA-256(Bytes())")
	}
	again, err := consent.NewRules(r.Data())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again.Bytes(), r.Bytes()) {
		t.Error("NewRules(Data()) gives other bytes")
	}
	d := r.Data()
	d.Version = 2
	d.Professions[0].Read = d.Professions[0].Read[1:]
	v2, err := consent.NewRules(d)
	if err != nil {
		t.Fatal(err)
	}
	if v2.Hash() == r.Hash() || v2.Version() != 2 {
		t.Error("a changed version has the same hash")
	}
	if !reflect.DeepEqual(r.Data(), nationalrules.Illustrative().Data()) {
		t.Error("changing Data()'s result changed the rules")
	}
	// A hand-edited file (compact, unsorted) canonicalizes to the same.
	var compact bytes.Buffer
	compact.WriteString(strings.ReplaceAll(string(r.Bytes()), "\n", ""))
	c, err := consent.CanonicalRules(compact.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(c, r.Bytes()) {
		t.Error("CanonicalRules(compact) != canonical bytes")
	}
}

func TestLoadRulesFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "rules.json")
	if err := os.WriteFile(p, nationalrules.IllustrativeBytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := consent.LoadRulesFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if r.Hash() != nationalrules.Illustrative().Hash() {
		t.Error("LoadRulesFile gives another hash")
	}
	if _, err := consent.LoadRulesFile(filepath.Join(dir, "absent.json")); err == nil {
		t.Error("LoadRulesFile(absent) = nil error")
	}
	big := make([]byte, consent.MaxRulesSize+1)
	if err := os.WriteFile(p, big, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := consent.LoadRulesFile(p); err == nil || !strings.Contains(err.Error(), "larger") {
		t.Errorf("LoadRulesFile(too large) = %v, want a size error", err)
	}
}

func FuzzParseRules(f *testing.F) {
	f.Add(nationalrules.IllustrativeBytes())
	f.Add([]byte(`{"format":"vigie-national-rules-v1"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := consent.ParseRules(b)
		if err != nil {
			return
		}
		// Canonical: the bytes re-format to themselves, and hash to the
		// rules' hash.
		again, err := consent.NewRules(r.Data())
		if err != nil {
			t.Fatalf("NewRules(Data()) = %v", err)
		}
		if !bytes.Equal(again.Bytes(), b) || again.Hash() != sha256.Sum256(b) {
			t.Fatal("parsed rules do not re-format to their bytes")
		}
	})
}
