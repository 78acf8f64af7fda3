package consent_test

import (
	"bytes"
	"flag"
	"os"
	"reflect"
	"testing"
	"time"

	"github.com/vigie-sante/vigie/consent"
)

var update = flag.Bool("update", false, "rewrite golden files")

func goldenConsent() consent.Consent {
	return consent.Consent{Version: 7, Directives: []consent.Directive{
		{ID: "d1", Kind: consent.TreatingPhysician, Professional: drA, From: day(1)},
		{ID: "d2", Kind: consent.BlockProfessional, Professional: drB, Until: day(31)},
		{ID: "d3", Kind: consent.BlockOrganization, Organization: hop},
		{ID: "d4", Kind: consent.HideDocument, Document: "stay-2024-<[0-9]+>"},
		{ID: "d5", Kind: consent.HideDocumentType, DocumentType: "psychiatric-summary"},
		{ID: "d6", Kind: consent.OpposeEmergency, From: day(2), Until: day(3)},
	}}
}

func TestConsentGolden(t *testing.T) {
	b, err := consent.FormatConsent(goldenConsent())
	if err != nil {
		t.Fatal(err)
	}
	const path = "testdata/consent-v1.json"
	if *update {
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, want) {
		t.Errorf("FormatConsent() =\n%s\nwant\n%s", b, want)
	}
	c, err := consent.ParseConsent(want)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c, goldenConsent()) {
		t.Errorf("ParseConsent(golden) = %+v, want %+v", c, goldenConsent())
	}
	h, err := consent.ConsentHash(c)
	if err != nil {
		t.Fatal(err)
	}
	if h == ([32]byte{}) {
		t.Error("ConsentHash is zero")
	}
	if _, err := consent.ParseConsent(bytes.Replace(want, []byte(`"version":7`), []byte(`"version": 7`), 1)); err == nil {
		t.Error("ParseConsent accepted a non-canonical spelling")
	}
}

func TestFormatConsentUTC(t *testing.T) {
	paris := time.FixedZone("CET", 3600)
	a := consent.Consent{Version: 1, Directives: []consent.Directive{{ID: "d", Kind: consent.OptOut, From: day(1).In(paris)}}}
	b := consent.Consent{Version: 1, Directives: []consent.Directive{{ID: "d", Kind: consent.OptOut, From: day(1)}}}
	ha, _ := consent.ConsentHash(a)
	hb, _ := consent.ConsentHash(b)
	if ha != hb {
		t.Error("the same instant in two zones hashes differently")
	}
}

func FuzzParseConsent(f *testing.F) {
	b, _ := consent.FormatConsent(goldenConsent())
	f.Add(b)
	f.Add([]byte(`{"format":"vigie-consent-v1","version":0,"directives":[]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := consent.ParseConsent(b)
		if err != nil {
			return
		}
		again, err := consent.FormatConsent(c)
		if err != nil {
			t.Fatalf("FormatConsent(ParseConsent()) = %v", err)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("FormatConsent(ParseConsent(%q)) = %q", b, again)
		}
	})
}
