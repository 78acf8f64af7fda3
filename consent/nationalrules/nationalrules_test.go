package nationalrules

import (
	"bytes"
	"crypto/sha256"
	"slices"
	"strings"
	"testing"

	"github.com/vigie-sante/vigie/consent"
)

func TestIllustrative(t *testing.T) {
	r := Illustrative()
	if !r.Illustrative() {
		t.Error("Illustrative().Illustrative() = false, want true")
	}
	if r.Hash() != sha256.Sum256(illustrative) {
		t.Error("Hash() is not the SHA-256 of the embedded bytes")
	}
	if !bytes.Equal(r.Bytes(), illustrative) {
		t.Error("Bytes() differ from the embedded bytes")
	}
	d := r.Data()
	if !strings.Contains(d.Title, "ILLUSTRATIVE") {
		t.Errorf("title %q does not say ILLUSTRATIVE", d.Title)
	}
	if len(d.Professions) < 8 || len(d.DocumentTypes) < 15 {
		t.Errorf("matrix is %d professions x %d document types, want at least 8 x 15", len(d.Professions), len(d.DocumentTypes))
	}
}

// TestDomainExamples checks the matrix against the examples of the DMP's
// access matrix that docs/consent.md lists ("The illustrative rules
// shipped").
func TestDomainExamples(t *testing.T) {
	r := Illustrative()
	d := r.Data()
	for _, dt := range d.DocumentTypes {
		want := dt.Code != "proof-of-residence"
		if got := r.Permits("10", consent.ActionRead, dt.Code); got != want {
			t.Errorf("Permits(physician, read, %s) = %v, want %v", dt.Code, got, want)
		}
	}
	tests := []struct {
		prof, doc string
		want      bool
	}{
		{"40", "advance-directives", false},
		{"40", "psychiatric-summary", false},
		{"40", "dental-record", true},
		{"80", "delivery-report", false},
		{"80", "rehabilitation-report", true},
		{"50", "delivery-report", true},
		{"99", "consultation-note", false},
		{"10", "no-such-type", false},
	}
	for _, tt := range tests {
		if got := r.Permits(tt.prof, consent.ActionRead, tt.doc); got != tt.want {
			t.Errorf("Permits(%s, read, %s) = %v, want %v", tt.prof, tt.doc, got, tt.want)
		}
	}
	var never []string
	for _, s := range d.Sectors {
		if s.Access == consent.AccessNever {
			never = append(never, s.Code)
		}
	}
	if want := []string{"bank", "employer", "insurer"}; !slices.Equal(never, want) {
		t.Errorf("never-access sectors = %v, want %v", never, want)
	}
	for _, code := range []string{"occupational-health", "fire-brigade"} {
		if a, _ := r.SectorAccess(code); a != consent.AccessExpressConsent {
			t.Errorf("SectorAccess(%s) = %q, want express-consent", code, a)
		}
	}
}

// TestCanonical checks that the embedded file is its own canonical form.
func TestCanonical(t *testing.T) {
	c, err := consent.CanonicalRules(illustrative)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(c, illustrative) {
		t.Error("CanonicalRules(illustrative.json) differs from the file")
	}
}
