package directory

import (
	"bytes"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/vigie-sante/vigie/consent/ident"
)

// The test files are made for the tests in the published formats; their
// people and establishments do not exist.
const (
	rppsTestFile   = "testdata/PS_LibreAcces_Personne_activite_test.txt"
	finessTestFile = "testdata/etalab-cs1100507-stock-test.csv"
)

func TestParseRPPS(t *testing.T) {
	f, err := os.Open(rppsTestFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var got []Professional
	var bad []LineError
	skipped, err := ParseRPPS(f, func(p Professional) error { got = append(got, p); return nil }, func(e LineError) { bad = append(bad, e) })
	if err != nil {
		t.Fatalf("ParseRPPS: %v", err)
	}
	want := []Professional{
		{ident.MustParseRPPS("10000000003"), "Docteur", "CLAIRE LEFÈVRE", "LEFÈVRE", "Médecin", "Médecine générale"},
		{ident.MustParseRPPS("10000000003"), "Docteur", "CLAIRE LEFÈVRE", "LEFÈVRE", "Médecin", "Qualifié en Médecine Générale"},
		{ident.MustParseRPPS("10000000011"), "", "JEAN-BAPTISTE N'GUYEN-ROUX", "N'GUYEN-ROUX", "Infirmier", ""},
		{ident.MustParseRPPS("10000000011"), "", "JEAN-BAPTISTE N'GUYEN-ROUX", "N'GUYEN-ROUX", "Infirmier", "Infirmier de bloc opératoire"},
		{ident.MustParseRPPS("10000000045"), "", "ÉLODIE ŒILLET", "ŒILLET", "Pharmacien", ""},
	}
	if d := cmp.Diff(want, got, cmp.Comparer(func(a, b ident.RPPS) bool { return a == b })); d != "" {
		t.Errorf("professionals (-want +got):\n%s", d)
	}
	wantBad := []LineError{
		{7, colID, "not an RPPS number (11 digits)"},
		{8, colLastName, "empty"},
		{9, "line", "7 fields, the header has 57"},
	}
	if d := cmp.Diff(wantBad, bad); d != "" {
		t.Errorf("bad lines (-want +got):\n%s", d)
	}
	if skipped != 1 {
		t.Errorf("skipped = %d, want 1 (the ADELI line)", skipped)
	}
	// A bad line is named, never quoted.
	for _, e := range bad {
		for _, content := range []string{"1234", "SANSNOM", "trop", "COURT"} {
			if strings.Contains(e.Error(), content) {
				t.Errorf("%q quotes the line's content %q", e.Error(), content)
			}
		}
	}
}

func TestParseFINESS(t *testing.T) {
	f, err := os.Open(finessTestFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var got []Establishment
	var bad []LineError
	err = ParseFINESS(f, func(e Establishment) error { got = append(got, e); return nil }, func(e LineError) { bad = append(bad, e) })
	if err != nil {
		t.Fatalf("ParseFINESS: %v", err)
	}
	want := []Establishment{
		{ident.MustParseFINESS("750000010"), "HÔPITAL DE TEST NORD", "PARIS"},
		{ident.MustParseFINESS("690000021"), "CLINIQUE ESSAI", "LYON"},
		// The last line is in Windows-1252, as older editions were.
		{ident.MustParseFINESS("330000043"), "CENTRE MÉDICO-SOCIAL D’ESSAI", "BORDEAUX"},
	}
	if d := cmp.Diff(want, got, cmp.Comparer(func(a, b ident.FINESS) bool { return a == b })); d != "" {
		t.Errorf("establishments (-want +got):\n%s", d)
	}
	wantBad := []LineError{
		{4, "nofinesset", "not a FINESS number"},
		{5, "rs", "empty"},
		{6, "line", "3 fields, want 32"},
		{8, "type", "neither structureet nor geolocalisation"},
	}
	if d := cmp.Diff(wantBad, bad); d != "" {
		t.Errorf("bad lines (-want +got):\n%s", d)
	}
}

func TestParseRefusesOtherFormats(t *testing.T) {
	nop := func(LineError) {}
	cases := []struct {
		name  string
		parse func(string) error
		input string
	}{
		{"RPPS empty", func(s string) error {
			_, err := ParseRPPS(strings.NewReader(s), func(Professional) error { return nil }, nop)
			return err
		}, ""},
		{"RPPS without its columns", func(s string) error {
			_, err := ParseRPPS(strings.NewReader(s), func(Professional) error { return nil }, nop)
			return err
		}, "a|b|c\n1|2|3\n"},
		{"FINESS as an RPPS extract", func(s string) error {
			_, err := ParseRPPS(strings.NewReader(s), func(Professional) error { return nil }, nop)
			return err
		}, "finess;etalab;1;2026-01-01\n"},
		{"FINESS without its first line", func(s string) error {
			return ParseFINESS(strings.NewReader(s), func(Establishment) error { return nil }, nop)
		}, "structureet;750000010\n"},
		{"FINESS empty", func(s string) error {
			return ParseFINESS(strings.NewReader(s), func(Establishment) error { return nil }, nop)
		}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if err := c.parse(c.input); !errors.Is(err, ErrFormat) {
				t.Errorf("error %v, want ErrFormat", err)
			}
		})
	}
}

func TestParseLongLine(t *testing.T) {
	in := "finess;etalab;1;2026-01-01\n" + strings.Repeat("x", MaxLine+10) + "\nstructureet;750000010;;A;;;;;;;;;;;;75013 PARIS;;;;;;;;;;;;;;;;\n"
	var bad []LineError
	var got []Establishment
	err := ParseFINESS(strings.NewReader(in), func(e Establishment) error { got = append(got, e); return nil }, func(e LineError) { bad = append(bad, e) })
	if err != nil {
		t.Fatal(err)
	}
	if len(bad) != 1 || bad[0].Line != 2 || bad[0].Field != "line" {
		t.Errorf("bad = %v, want line 2 too long", bad)
	}
	if len(got) != 1 || got[0].Town != "PARIS" {
		t.Errorf("got %v, want the line after the long one", got)
	}
}

func TestSearchKey(t *testing.T) {
	for in, want := range map[string]string{
		"CLAIRE LEFÈVRE":             "CLAIRE LEFEVRE",
		"Jean-Baptiste N'Guyen-Roux": "JEAN BAPTISTE N GUYEN ROUX",
		"  élodie   Œillet ":         "ELODIE OEILLET",
		"":                           "",
	} {
		if got := SearchKey(in); got != want {
			t.Errorf("SearchKey(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzParse: no input panics, and what is emitted has a name.
func FuzzParse(f *testing.F) {
	for _, name := range []string{rppsTestFile, finessTestFile} {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = ParseRPPS(bytes.NewReader(b), func(p Professional) error {
			if p.RPPS.IsZero() || p.Name == "" {
				t.Errorf("emitted %+v", p)
			}
			return nil
		}, func(LineError) {})
		_ = ParseFINESS(bytes.NewReader(b), func(e Establishment) error {
			if e.FINESS.IsZero() || e.Name == "" {
				t.Errorf("emitted %+v", e)
			}
			return nil
		}, func(LineError) {})
	})
}
