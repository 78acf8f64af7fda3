package consent_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/vigie-sante/vigie/consent"
	"github.com/vigie-sante/vigie/consent/ident"
	"github.com/vigie-sante/vigie/consent/nationalrules"
)

const patientINS = "184127645108946"

var (
	drA = ident.MustParseRPPS("10002727377")
	drB = ident.MustParseRPPS("10100901734")
	hop = ident.MustParseFINESS("750712184")
)

func validRequest() consent.Request {
	p, err := ident.ParseINS(patientINS)
	if err != nil {
		panic(err)
	}
	return consent.Request{
		ID:      "req-1",
		Service: "his.example",
		Patient: p,
		Actor:   consent.Actor{RPPS: drA, Profession: "10", Sector: "care", Organization: hop, CareTeam: true},
		Action:  consent.ActionRead,
		Resource: consent.Resource{
			Kind: consent.ResourceDocument, DocumentID: "doc-1", DocumentType: "consultation-note",
		},
		Purpose: consent.PurposeTreatment,
		Time:    time.Date(2025, 6, 1, 10, 0, 0, 0, time.UTC),
	}
}

func TestValidateRequest(t *testing.T) {
	tests := []struct {
		name  string
		edit  func(r *consent.Request)
		field string // "" for valid
	}{
		{"valid", func(r *consent.Request) {}, ""},
		{"valid record", func(r *consent.Request) { r.Resource = consent.Resource{Kind: consent.ResourceRecord} }, ""},
		{"missing id", func(r *consent.Request) { r.ID = "" }, "id"},
		{"bad id", func(r *consent.Request) { r.ID = "a b" }, "id"},
		{"missing service", func(r *consent.Request) { r.Service = "" }, "service"},
		{"missing patient", func(r *consent.Request) { r.Patient = ident.INS{} }, "patient"},
		{"missing rpps", func(r *consent.Request) { r.Actor.RPPS = ident.RPPS{} }, "actor.rpps"},
		{"missing profession", func(r *consent.Request) { r.Actor.Profession = "" }, "actor.profession"},
		{"bad profession", func(r *consent.Request) { r.Actor.Profession = "1 0" }, "actor.profession"},
		{"bad specialty", func(r *consent.Request) { r.Actor.Specialty = "<x>" }, "actor.specialty"},
		{"missing sector", func(r *consent.Request) { r.Actor.Sector = "" }, "actor.sector"},
		{"missing organization", func(r *consent.Request) { r.Actor.Organization = ident.FINESS{} }, "actor.organization"},
		{"missing action", func(r *consent.Request) { r.Action = "" }, "action"},
		{"bad action", func(r *consent.Request) { r.Action = "delete" }, "action"},
		{"missing kind", func(r *consent.Request) { r.Resource.Kind = "" }, "resource.kind"},
		{"write record", func(r *consent.Request) {
			r.Action = consent.ActionWrite
			r.Resource = consent.Resource{Kind: consent.ResourceRecord}
		}, "resource.kind"},
		{"record with document", func(r *consent.Request) { r.Resource.Kind = consent.ResourceRecord }, "resource"},
		{"missing document id", func(r *consent.Request) { r.Resource.DocumentID = "" }, "resource.document_id"},
		{"document id with slash", func(r *consent.Request) { r.Resource.DocumentID = "a/b" }, "resource.document_id"},
		{"document id with pattern", func(r *consent.Request) { r.Resource.DocumentID = "<.*>" }, "resource.document_id"},
		{"missing document type", func(r *consent.Request) { r.Resource.DocumentType = "" }, "resource.document_type"},
		{"missing purpose", func(r *consent.Request) { r.Purpose = "" }, "purpose"},
		{"bad purpose", func(r *consent.Request) { r.Purpose = "TREATMENT" }, "purpose"},
		{"long justification", func(r *consent.Request) { r.Justification = strings.Repeat("x", 1025) }, "justification"},
		{"control in justification", func(r *consent.Request) { r.Justification = "a\nb" }, "justification"},
		{"missing time", func(r *consent.Request) { r.Time = time.Time{} }, "time"},
		{"negative version", func(r *consent.Request) { r.MinConsentVersion = -1 }, "min_consent_version"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := validRequest()
			tt.edit(&r)
			err := consent.ValidateRequest(&r)
			if tt.field == "" {
				if err != nil {
					t.Fatalf("ValidateRequest() = %v, want nil", err)
				}
				return
			}
			var fe *consent.FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("ValidateRequest() = %v, want a *FieldError", err)
			}
			if fe.Field != tt.field {
				t.Errorf("ValidateRequest() field = %q, want %q (%v)", fe.Field, tt.field, err)
			}
			if strings.Contains(err.Error(), patientINS) {
				t.Errorf("error %q contains the INS", err)
			}
		})
	}
}

func day(d int) time.Time { return time.Date(2025, 1, d, 0, 0, 0, 0, time.UTC) }

func TestValidateConsent(t *testing.T) {
	rules := nationalrules.Illustrative()
	block := func(id string, r ident.RPPS) consent.Directive {
		return consent.Directive{ID: id, Kind: consent.BlockProfessional, Professional: r}
	}
	tests := []struct {
		name  string
		ds    []consent.Directive
		field string
	}{
		{"empty", nil, ""},
		{"typical", []consent.Directive{
			{ID: "d1", Kind: consent.TreatingPhysician, Professional: drA},
			block("d2", drB),
			{ID: "d3", Kind: consent.BlockOrganization, Organization: hop},
			{ID: "d4", Kind: consent.HideDocument, Document: "doc-7"},
			{ID: "d5", Kind: consent.HideDocument, Document: "stay-2024-<[0-9]+>"},
			{ID: "d6", Kind: consent.HideDocumentType, DocumentType: "psychiatric-summary"},
			{ID: "d7", Kind: consent.OpposeEmergency},
			{ID: "d8", Kind: consent.HideEverything, From: day(1), Until: day(2)},
			{ID: "d9", Kind: consent.OptOut, From: day(3)},
		}, ""},
		{"missing id", []consent.Directive{{Kind: consent.OptOut}}, "directives[0].id"},
		{"duplicate id", []consent.Directive{block("d1", drA), {ID: "d1", Kind: consent.OptOut}}, "directives[1].id"},
		{"unknown kind", []consent.Directive{{ID: "d1", Kind: "ban"}}, "directives[0].kind"},
		{"block without rpps", []consent.Directive{{ID: "d1", Kind: consent.BlockProfessional}}, "directives[0].professional"},
		{"block org without finess", []consent.Directive{{ID: "d1", Kind: consent.BlockOrganization}}, "directives[0].organization"},
		{"opt-out with target", []consent.Directive{{ID: "d1", Kind: consent.OptOut, Professional: drA}}, "directives[0].professional"},
		{"hide without document", []consent.Directive{{ID: "d1", Kind: consent.HideDocument}}, "directives[0].document"},
		{"pattern does not compile", []consent.Directive{{ID: "d1", Kind: consent.HideDocument, Document: "x-<[0-9>"}}, "directives[0].document"},
		{"pattern unbalanced", []consent.Directive{{ID: "d1", Kind: consent.HideDocument, Document: "x-<[0-9]+"}}, "directives[0].document"},
		{"unknown document type", []consent.Directive{{ID: "d1", Kind: consent.HideDocumentType, DocumentType: "horoscope"}}, "directives[0].document_type"},
		{"until before from", []consent.Directive{{ID: "d1", Kind: consent.OptOut, From: day(2), Until: day(1)}}, "directives[0].until"},
		{"not whole seconds", []consent.Directive{{ID: "d1", Kind: consent.OptOut, From: day(2).Add(time.Millisecond)}}, "directives[0].from"},
		{"not UTC", []consent.Directive{{ID: "d1", Kind: consent.OptOut, From: day(2).In(time.FixedZone("CET", 3600))}}, "directives[0].from"},
		{"blocked and allowed", []consent.Directive{block("d1", drA), {ID: "d2", Kind: consent.AllowProfessional, Professional: drA}}, "directives[1].professional"},
		{"blocked and treating", []consent.Directive{{ID: "d1", Kind: consent.TreatingPhysician, Professional: drA}, block("d2", drA)}, "directives[1].professional"},
		{"blocked then allowed later", []consent.Directive{
			{ID: "d1", Kind: consent.BlockProfessional, Professional: drA, Until: day(10)},
			{ID: "d2", Kind: consent.AllowProfessional, Professional: drA, From: day(10)},
		}, ""},
		{"two treating physicians", []consent.Directive{
			{ID: "d1", Kind: consent.TreatingPhysician, Professional: drA},
			{ID: "d2", Kind: consent.TreatingPhysician, Professional: drB, From: day(5)},
		}, "directives[1].professional"},
		{"treating physicians in turn", []consent.Directive{
			{ID: "d1", Kind: consent.TreatingPhysician, Professional: drA, Until: day(5)},
			{ID: "d2", Kind: consent.TreatingPhysician, Professional: drB, From: day(5)},
		}, ""},
		{"duplicate directive", []consent.Directive{block("d1", drB), block("d2", drB)}, "directives[1]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := consent.Consent{Version: 1, Directives: tt.ds}
			err := consent.ValidateConsent(&c, rules)
			if tt.field == "" {
				if err != nil {
					t.Fatalf("ValidateConsent() = %v, want nil", err)
				}
				return
			}
			var fe *consent.FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("ValidateConsent() = %v, want a *FieldError", err)
			}
			if fe.Field != tt.field {
				t.Errorf("ValidateConsent() field = %q, want %q (%v)", fe.Field, tt.field, err)
			}
		})
	}
}

func TestValidateConsentLimits(t *testing.T) {
	rules := nationalrules.Illustrative()
	var ds []consent.Directive
	for i := range consent.MaxDirectives + 1 {
		ds = append(ds, consent.Directive{ID: "h" + string(rune('a'+i/26)) + string(rune('a'+i%26)), Kind: consent.HideDocument, Document: "doc-" + string(rune('a'+i/26)) + string(rune('a'+i%26))})
	}
	c := consent.Consent{Directives: ds[:consent.MaxDirectives]}
	if err := consent.ValidateConsent(&c, rules); err != nil {
		t.Fatalf("ValidateConsent(%d directives) = %v, want nil", consent.MaxDirectives, err)
	}
	c.Directives = ds
	var fe *consent.FieldError
	if err := consent.ValidateConsent(&c, rules); !errors.As(err, &fe) || fe.Field != "directives" {
		t.Errorf("ValidateConsent(%d directives) = %v, want a directives field error", len(ds), err)
	}
	var pats []consent.Directive
	for i := range consent.MaxPatterns + 1 {
		pats = append(pats, consent.Directive{ID: "p" + string(rune('a'+i)), Kind: consent.HideDocument, Document: "s" + string(rune('a'+i)) + "-<.*>"})
	}
	c.Directives = pats
	if err := consent.ValidateConsent(&c, rules); !errors.As(err, &fe) || fe.Field != "directives[4].document" {
		t.Errorf("ValidateConsent(%d patterns) = %v, want directives[4].document", len(pats), err)
	}
}

func FuzzValidateRequest(f *testing.F) {
	f.Add("req-1", "10", "care", "read", "document", "doc-1", "lab-report", "TREAT", "", int64(0))
	f.Add("", "", "", "", "", "", "", "", "x\x00", int64(-1))
	f.Fuzz(func(t *testing.T, id, prof, sector, action, kind, docID, docType, purpose, just string, minVersion int64) {
		r := validRequest()
		r.ID, r.Actor.Profession, r.Actor.Sector = id, prof, sector
		r.Action, r.Resource.Kind = consent.Action(action), consent.ResourceKind(kind)
		r.Resource.DocumentID, r.Resource.DocumentType = docID, docType
		r.Purpose, r.Justification, r.MinConsentVersion = consent.Purpose(purpose), just, minVersion
		err := consent.ValidateRequest(&r)
		if err == nil {
			// A valid request has well-formed parts.
			if !r.Action.Valid() || !r.Purpose.Valid() || r.ID == "" || strings.ContainsAny(r.Resource.DocumentID, "/<>\n") {
				t.Fatalf("ValidateRequest accepted a malformed request: %+v", r)
			}
			return
		}
		var fe *consent.FieldError
		if !errors.As(err, &fe) || fe.Field == "" {
			t.Fatalf("ValidateRequest() = %v, want a *FieldError with a field", err)
		}
		if strings.Contains(err.Error(), patientINS) {
			t.Fatalf("error %q contains the INS", err)
		}
	})
}

// TestPatternErrorQuotesNothing: a pattern that does not compile is
// refused naming the problem, never quoting the pattern (a document's
// name can be health data).
func TestPatternErrorQuotesNothing(t *testing.T) {
	err := consent.ValidateConsent(&consent.Consent{Directives: []consent.Directive{{ID: "d1", Kind: consent.HideDocument, Document: "cr-<(sainte-anne-psychiatrie>"}}}, nationalrules.Illustrative())
	if err == nil || !strings.Contains(err.Error(), "does not compile") || strings.Contains(err.Error(), "sainte-anne") {
		t.Errorf("error = %v: want the problem, not the pattern", err)
	}
}

// TestPortableExpression: the portable subset of RE2 that patterns keep
// to (the constructs both the old and the new matcher read the same way
// on document IDs), and the position of the first construct outside it.
func TestPortableExpression(t *testing.T) {
	for _, tt := range []struct {
		expr string
		bad  int
	}{
		{`[0-9]+`, -1},
		{`\d{4}-\d{2}`, -1},
		{`(?i)psy[a-z0-9_.:-]*`, -1},
		{`(?:a|b)+?[^\W\d]??\.$`, -1},
		{`^(?i:abc)\s*\S{1,}x{2,3}?`, -1},
		{`[-a-z]|[A-Z-]|[\.\-\]\\\^]`, -1},
		{`[a-z-[aeiou]]`, 4},
		{`x[[:alpha:]]`, 2},
		{`(?s).`, 0},
		{`\x41`, 0},
		{`[\b]`, 1},
		{`a b`, 1},
		{`a{,2}`, 1},
		{`[]a]`, 1},
		{`[z-a]`, 1},
		{`[a-Z]`, 1},
		{`[a-c-e]`, 4},
		{`[abc`, 0},
		{`x\`, 1},
		{`é`, 0},
	} {
		if got := consent.PortableExpression(tt.expr); got != tt.bad {
			t.Errorf("PortableExpression(%q) = %d, want %d", tt.expr, got, tt.bad)
		}
	}
	// Refused at validation, naming the field and the character, never
	// quoting the pattern.
	c := consent.Consent{Directives: []consent.Directive{{ID: "d1", Kind: consent.HideDocument, Document: "psy-<[[:alpha:]]+>"}}}
	var fe *consent.FieldError
	err := consent.ValidateConsent(&c, nationalrules.Illustrative())
	if !errors.As(err, &fe) || fe.Field != "directives[0].document" || !strings.Contains(fe.Problem, "character 7 ") || strings.Contains(err.Error(), "psy") {
		t.Errorf("ValidateConsent(POSIX class) = %v, want a field error on directives[0].document at character 7, not quoting the pattern", err)
	}
}

// TestPatternProgramSize: matching costs the length of the document ID
// times the size of the pattern's program; 128 bytes of counted
// repetitions compile to thousands of instructions, and are refused.
func TestPatternProgramSize(t *testing.T) {
	for _, tt := range []struct {
		doc string
		ok  bool
	}{
		{`stay-<[0-9]+>`, true},
		{`<(\d{1,3}\.){3}\d{1,3}>`, true},
		{`<(.*a){12}>`, true},
		{`<[a-z]{1,30}>`, true},
		{`<[a-z]{1,31}>-<[0-9]{1,30}>`, false}, // 64 + 63
		{`<(?:\w{1,99}){1,9}>`, false},
		{`<\w{1,999}>`, false},
		{`<[a-z]{1,100}>`, false},
	} {
		err := consent.CheckPattern(tt.doc)
		if (err == nil) != tt.ok {
			t.Errorf("CheckPattern(%q) = %v, want ok %v", tt.doc, err, tt.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "too complex") {
			t.Errorf("CheckPattern(%q) = %v, want too complex", tt.doc, err)
		}
	}
}

// TestFieldErrorKinds: the problems a client explains in its own words
// carry their kind, the other directive they name and their limit, so
// that no client reads the English message.
func TestFieldErrorKinds(t *testing.T) {
	block := consent.Directive{ID: "b", Kind: consent.BlockProfessional, Professional: drA}
	allow := consent.Directive{ID: "a", Kind: consent.AllowProfessional, Professional: drA}
	tp1 := consent.Directive{ID: "t1", Kind: consent.TreatingPhysician, Professional: drA}
	tp2 := consent.Directive{ID: "t2", Kind: consent.TreatingPhysician, Professional: drB}
	many := make([]consent.Directive, consent.MaxDirectives+1)
	for i := range many {
		many[i] = consent.Directive{ID: "d" + strings.Repeat("x", i), Kind: consent.HideEverything}
	}
	tests := []struct {
		name string
		ds   []consent.Directive
		want consent.FieldError
	}{
		{"required", []consent.Directive{{ID: "x", Kind: consent.BlockProfessional}}, consent.FieldError{Field: "directives[0].professional", Kind: consent.ProblemRequired}},
		{"too long", []consent.Directive{{ID: strings.Repeat("x", 65), Kind: consent.HideEverything}}, consent.FieldError{Field: "directives[0].id", Kind: consent.ProblemTooLong, Limit: 64}},
		{"format", []consent.Directive{{ID: "x y", Kind: consent.HideEverything}}, consent.FieldError{Field: "directives[0].id", Kind: consent.ProblemInvalidFormat}},
		{"too many", many, consent.FieldError{Field: "directives", Kind: consent.ProblemTooMany, Limit: consent.MaxDirectives}},
		{"same id", []consent.Directive{block, {ID: "b", Kind: consent.HideEverything}}, consent.FieldError{Field: "directives[1].id", Kind: consent.ProblemSameID, Other: "directives[0]"}},
		{"duplicate", []consent.Directive{block, {ID: "b2", Kind: consent.BlockProfessional, Professional: drA}}, consent.FieldError{Field: "directives[1]", Kind: consent.ProblemDuplicate, Other: "directives[0]"}},
		{"blocked and allowed", []consent.Directive{block, allow}, consent.FieldError{Field: "directives[1].professional", Kind: consent.ProblemBlockedAndAllowed, Other: "directives[0]"}},
		{"second physician", []consent.Directive{tp1, tp2}, consent.FieldError{Field: "directives[1].professional", Kind: consent.ProblemSecondPhysician, Other: "directives[0]"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := consent.ValidateConsent(&consent.Consent{Directives: tt.ds}, nil)
			var fe *consent.FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("ValidateConsent = %v, want a *FieldError", err)
			}
			if fe.Field != tt.want.Field || fe.Kind != tt.want.Kind || fe.Other != tt.want.Other || fe.Limit != tt.want.Limit {
				t.Errorf("ValidateConsent = field %q kind %q other %q limit %d, want %q %q %q %d",
					fe.Field, fe.Kind, fe.Other, fe.Limit, tt.want.Field, tt.want.Kind, tt.want.Other, tt.want.Limit)
			}
		})
	}
}
