package ident

import (
	"encoding/json"
	"errors"
	"testing"
)

func TestParseRPPS(t *testing.T) {
	tests := []struct {
		name string
		in   string
		err  error
	}{
		{"valid", "10002727377", nil},
		{"valid no Luhn check", "10100050075", nil}, // from an ANS document; fails Luhn
		{"all zeros", "00000000000", nil},
		{"empty", "", ErrRPPS},
		{"short", "1000272737", ErrRPPS},
		{"long", "100027273770", ErrRPPS},
		{"letter", "1000272737A", ErrRPPS},
		{"space", "1000 727377", ErrRPPS},
		{"idnps prefix", "810002727377", ErrRPPS},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := ParseRPPS(tt.in)
			if !errors.Is(err, tt.err) {
				t.Fatalf("ParseRPPS(%q) = %v, want %v", tt.in, err, tt.err)
			}
			if err != nil {
				return
			}
			if got := r.String(); got != tt.in {
				t.Errorf("ParseRPPS(%q).String() = %q, want the input", tt.in, got)
			}
			if r.IsZero() {
				t.Errorf("ParseRPPS(%q).IsZero() = true", tt.in)
			}
		})
	}
}

func TestParseFINESS(t *testing.T) {
	tests := []struct {
		name string
		in   string
		err  error
	}{
		{"AP-HP", "750712184", nil},
		{"HCL", "690781810", nil},
		{"CHU Bordeaux", "330781196", nil},
		{"AP-HM", "130786049", nil},
		{"Corsica 2A format only", "2A0000013", nil},
		{"Corsica 2B format only", "2B0000014", nil},
		{"bad key", "750712185", ErrFINESSKey},
		{"short", "75071218", ErrFINESS},
		{"long", "7507121840", ErrFINESS},
		{"letter", "75071218X", ErrFINESS},
		{"lower-case corsica", "2a0000013", ErrFINESS},
		{"corsica elsewhere", "7A0000013", ErrFINESS},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := ParseFINESS(tt.in)
			if !errors.Is(err, tt.err) {
				t.Fatalf("ParseFINESS(%q) = %v, want %v", tt.in, err, tt.err)
			}
			if err != nil {
				return
			}
			if got := f.String(); got != tt.in {
				t.Errorf("ParseFINESS(%q).String() = %q, want the input", tt.in, got)
			}
		})
	}
	a, b := MustParseFINESS("2A0000013"), MustParseFINESS("2B0000013")
	if a == b {
		t.Error("2A and 2B numbers compare equal")
	}
}

func TestIdentJSON(t *testing.T) {
	type doc struct {
		RPPS   RPPS   `json:"rpps,omitzero"`
		FINESS FINESS `json:"finess,omitzero"`
	}
	in := doc{RPPS: MustParseRPPS("10002727377"), FINESS: MustParseFINESS("2A0000013")}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(b), `{"rpps":"10002727377","finess":"2A0000013"}`; got != want {
		t.Errorf("json.Marshal = %s, want %s", got, want)
	}
	var out doc
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	if out != in {
		t.Errorf("round trip = %+v, want %+v", out, in)
	}
	b, err = json.Marshal(doc{})
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != `{}` {
		t.Errorf("json.Marshal(zero) = %s, want {}", b)
	}
	if err := json.Unmarshal([]byte(`{"rpps":"123"}`), &out); !errors.Is(err, ErrRPPS) {
		t.Errorf("json.Unmarshal(bad rpps) = %v, want ErrRPPS", err)
	}
}

func FuzzParseRPPS(f *testing.F) {
	f.Add("10002727377")
	f.Add("1000272737A")
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRPPS(s)
		if err != nil {
			return
		}
		if r.String() != s {
			t.Fatalf("ParseRPPS(%q).String() = %q", s, r.String())
		}
		r2, err := ParseRPPS(r.String())
		if err != nil || r2 != r {
			t.Fatalf("ParseRPPS(String()) = %v, %v; want the same", r2, err)
		}
	})
}

func FuzzParseFINESS(f *testing.F) {
	f.Add("750712184")
	f.Add("2A0000013")
	f.Fuzz(func(t *testing.T, s string) {
		x, err := ParseFINESS(s)
		if err != nil {
			return
		}
		if x.String() != s {
			t.Fatalf("ParseFINESS(%q).String() = %q", s, x.String())
		}
		y, err := ParseFINESS(x.String())
		if err != nil || y != x {
			t.Fatalf("ParseFINESS(String()) = %v, %v; want the same", y, err)
		}
	})
}
