package consent_test

import (
	"bytes"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/vigie-sante/vigie/consent"
	"github.com/vigie-sante/vigie/consent/ident"
	"github.com/vigie-sante/vigie/consent/nationalrules"
)

func sampleDecision() (consent.Request, consent.Decision) {
	patient, _ := ident.NormalizeINS("1 84 12 76 451 089 46")
	req := consent.Request{
		ID: "r-1", Service: "samu-software", Patient: patient,
		Actor: consent.Actor{RPPS: ident.MustParseRPPS("10000000001"), Profession: "10", Specialty: "SM26", Sector: "samu",
			Organization: ident.MustParseFINESS("750712184")},
		Action:        consent.ActionRead,
		Resource:      consent.Resource{Kind: consent.ResourceDocument, DocumentID: "d-9", DocumentType: "lab-result", Author: ident.MustParseRPPS("10000000002")},
		Purpose:       consent.PurposeBreakGlass,
		Justification: "patient unconscious, \"quotes\" and <html> kept as is",
		Time:          time.Date(2026, 11, 28, 3, 4, 5, 6, time.UTC),
	}
	rules := nationalrules.Illustrative()
	d := consent.Decision{
		Effect: consent.Allow, Reason: consent.ReasonAllowed,
		Grounds:        []consent.Ground{{Source: consent.SourceRule, ID: "break-glass/samu", Kind: consent.RuleSAMURegulator, Effect: consent.Allow}},
		Obligations:    []consent.Obligation{consent.NotifyPatient, consent.FlagForReview},
		ConsentVersion: 4, RulesVersion: rules.Version(), RulesHash: rules.Hash(), Time: req.Time,
	}
	return req, d
}

func TestAccessRecordRoundTrip(t *testing.T) {
	req, d := sampleDecision()
	b, err := consent.FormatAccessRecord(&req, &d)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(b, []byte(req.Patient.Canonical())) {
		t.Fatalf("the access record holds the INS: %s", b)
	}
	gotReq, gotD, err := consent.ParseAccessRecord(b)
	if err != nil {
		t.Fatalf("ParseAccessRecord: %v\n%s", err, b)
	}
	if gotReq.Actor != req.Actor || gotReq.Resource != req.Resource || gotReq.Justification != req.Justification || !gotReq.Time.Equal(req.Time) || gotReq.Purpose != req.Purpose {
		t.Errorf("request = %+v, want %+v", gotReq, req)
	}
	if gotD.Effect != d.Effect || gotD.ConsentVersion != 4 || gotD.RulesHash != d.RulesHash || len(gotD.Grounds) != 1 || gotD.Grounds[0].FR == "" || len(gotD.Obligations) != 2 {
		t.Errorf("decision = %+v, want %+v", gotD, d)
	}
	again, err := consent.FormatAccessRecord(&gotReq, &gotD)
	if err != nil || !bytes.Equal(again, b) {
		t.Errorf("Format(Parse(x)) != x:\n%s\n%s", again, b)
	}
	for name, bad := range map[string]string{
		"unknown field":  strings.Replace(string(b), `"format"`, `"extra":1,"format"`, 1),
		"other format":   strings.Replace(string(b), consent.AccessRecordFormat, "vigie.access.v2", 1),
		"spaces":         strings.Replace(string(b), `":`, `": `, 1),
		"bad rules hash": strings.Replace(string(b), `"rules_hash":"`, `"rules_hash":"zz`, 1),
		"trailing data":  string(b) + "{}",
	} {
		if _, _, err := consent.ParseAccessRecord([]byte(bad)); err == nil {
			t.Errorf("ParseAccessRecord accepted %s", name)
		}
	}
}

func TestConsentChangeRecordRoundTrip(t *testing.T) {
	c := consent.Consent{Version: 3, Directives: []consent.Directive{{ID: "b1", Kind: consent.BlockProfessional, Professional: ident.MustParseRPPS("10000000001")}}}
	b, err := consent.FormatConsentChangeRecord(c, "patient")
	if err != nil {
		t.Fatal(err)
	}
	got, author, err := consent.ParseConsentChangeRecord(b)
	if err != nil || author != "patient" || got.Version != 3 || len(got.Directives) != 1 {
		t.Fatalf("ParseConsentChangeRecord = %+v %q, %v", got, author, err)
	}
	tampered := strings.Replace(string(b), `"kind":"block-professional"`, `"kind":"allow-professional"`, 1)
	if tampered == string(b) {
		t.Fatalf("test does not tamper: %s", b)
	}
	if _, _, err := consent.ParseConsentChangeRecord([]byte(tampered)); err == nil {
		t.Errorf("a consent-change record whose hash is not its consent's was accepted")
	}
}

func TestRulesChangeRecordRoundTrip(t *testing.T) {
	rules := nationalrules.Illustrative()
	b, err := consent.FormatRulesChangeRecord(rules, "admin:ops")
	if err != nil {
		t.Fatal(err)
	}
	r, err := consent.ParseRulesChangeRecord(b)
	h := rules.Hash()
	if err != nil || r.Version != rules.Version() || r.Hash != hex.EncodeToString(h[:]) || !strings.Contains(string(b), r.Hash) || r.Author != "admin:ops" {
		t.Fatalf("ParseRulesChangeRecord = %+v, %v", r, err)
	}
}

func TestReadAndReviewRecords(t *testing.T) {
	read := consent.ReadRecord{Reader: "regulator:cnil", Method: "SearchEvents", Events: 2}
	b, err := consent.FormatReadRecord(read)
	if err != nil || string(b) != `{"format":"vigie.ledger-read.v2","reader":"regulator:cnil","method":"SearchEvents","events":2}` {
		t.Fatalf("FormatReadRecord = %s, %v", b, err)
	}
	if got, err := consent.ParseReadRecord(b); err != nil || got.Reader != read.Reader || got.Events != 2 {
		t.Errorf("ParseReadRecord = %+v, %v", got, err)
	}
	review := consent.ReviewRecord{Event: strings.Repeat("ab", 32), LeafIndex: 7, Verdict: consent.VerdictJustified, Comment: "<ER> & co", Reviewer: "dpo:a"}
	b, err = consent.FormatReviewRecord(review)
	if err != nil || !strings.Contains(string(b), `"comment":"<ER> & co"`) {
		t.Fatalf("FormatReviewRecord = %s, %v (no HTML escaping: one byte form)", b, err)
	}
	if got, err := consent.ParseReviewRecord(b); err != nil || got.LeafIndex != 7 || got.Comment != review.Comment {
		t.Errorf("ParseReviewRecord = %+v, %v", got, err)
	}
	for name, bad := range map[string]string{
		"escaped":       strings.Replace(string(b), "<ER>", `\u003cER\u003e`, 1),
		"spaced":        strings.Replace(string(b), `"verdict":`, `"verdict": `, 1),
		"unknown field": strings.Replace(string(b), `"verdict"`, `"x":1,"verdict"`, 1),
		"bad verdict":   strings.Replace(string(b), `"justified"`, `"maybe"`, 1),
		"other format":  strings.Replace(string(b), `break-glass-review`, `ledger-read`, 1),
	} {
		if _, err := consent.ParseReviewRecord([]byte(bad)); err == nil {
			t.Errorf("%s review record accepted: %s", name, bad)
		}
	}
	if _, err := consent.FormatReviewRecord(consent.ReviewRecord{Event: "ab", Verdict: consent.VerdictJustified, Reviewer: "x"}); err == nil {
		t.Errorf("a review of a malformed commitment was formatted")
	}
}

// TestReaderOrganizations: a read and a review name the organisations the
// reader acted for (issue 19: a patient could not place "dpo:…"), in
// version 2 of their formats; the version 1 bodies already in logs still
// read, as they were written, and cannot claim an organisation.
func TestReaderOrganizations(t *testing.T) {
	const (
		hospital = "750712184"
		other    = "130000011"
	)
	b, err := consent.FormatReadRecord(consent.ReadRecord{Reader: "dpo:a", Organizations: []string{hospital}, Method: "SearchEvents", Events: 2})
	if err != nil || string(b) != `{"format":"vigie.ledger-read.v2","reader":"dpo:a","organizations":["750712184"],"method":"SearchEvents","events":2}` {
		t.Fatalf("FormatReadRecord = %s, %v", b, err)
	}
	if got, err := consent.ParseReadRecord(b); err != nil || len(got.Organizations) != 1 || got.Organizations[0] != hospital {
		t.Errorf("ParseReadRecord = %+v, %v", got, err)
	}
	b, err = consent.FormatReviewRecord(consent.ReviewRecord{Event: strings.Repeat("ab", 32), LeafIndex: 7, Verdict: consent.VerdictJustified, Reviewer: "dpo:a", Organization: hospital})
	if err != nil || string(b) != `{"format":"vigie.break-glass-review.v2","event":"`+strings.Repeat("ab", 32)+`","leaf_index":7,"verdict":"justified","reviewer":"dpo:a","organization":"750712184"}` {
		t.Fatalf("FormatReviewRecord = %s, %v", b, err)
	}
	if got, err := consent.ParseReviewRecord(b); err != nil || got.Organization != hospital {
		t.Errorf("ParseReviewRecord = %+v, %v", got, err)
	}

	// Version 1, as earlier versions wrote it.
	readV1 := `{"format":"vigie.ledger-read.v1","reader":"dpo:a","method":"SearchEvents","events":2}`
	if got, err := consent.ParseReadRecord([]byte(readV1)); err != nil || got.Reader != "dpo:a" || got.Organizations != nil || got.Format != consent.ReadRecordFormatV1 {
		t.Errorf("ParseReadRecord(v1) = %+v, %v", got, err)
	} else if again, err := consent.FormatReadRecord(got); err != nil || string(again) != readV1 {
		t.Errorf("a v1 read record formats again as %s, %v", again, err)
	}
	reviewV1 := `{"format":"vigie.break-glass-review.v1","event":"` + strings.Repeat("ab", 32) + `","leaf_index":7,"verdict":"justified","reviewer":"dpo:a"}`
	if got, err := consent.ParseReviewRecord([]byte(reviewV1)); err != nil || got.Reviewer != "dpo:a" || got.Organization != "" {
		t.Errorf("ParseReviewRecord(v1) = %+v, %v", got, err)
	}

	for name, bad := range map[string]string{
		"v1 naming an organisation": `{"format":"vigie.ledger-read.v1","reader":"dpo:a","organizations":["750712184"],"method":"SearchEvents","events":2}`,
		"not a FINESS":              `{"format":"vigie.ledger-read.v2","reader":"dpo:a","organizations":["750712185"],"method":"SearchEvents","events":2}`,
		"unsorted":                  `{"format":"vigie.ledger-read.v2","reader":"dpo:a","organizations":["750712184","130000011"],"method":"SearchEvents","events":2}`,
		"repeated":                  `{"format":"vigie.ledger-read.v2","reader":"dpo:a","organizations":["750712184","750712184"],"method":"SearchEvents","events":2}`,
		"empty list":                `{"format":"vigie.ledger-read.v2","reader":"dpo:a","organizations":[],"method":"SearchEvents","events":2}`,
		"version 3":                 `{"format":"vigie.ledger-read.v3","reader":"dpo:a","method":"SearchEvents","events":2}`,
	} {
		if _, err := consent.ParseReadRecord([]byte(bad)); err == nil {
			t.Errorf("%s: read record accepted: %s", name, bad)
		}
	}
	if _, err := consent.ParseReviewRecord([]byte(strings.Replace(reviewV1, `"dpo:a"}`, `"dpo:a","organization":"750712184"}`, 1))); err == nil {
		t.Errorf("a v1 review record naming an organisation was accepted")
	}
	if _, err := consent.FormatReviewRecord(consent.ReviewRecord{Event: strings.Repeat("ab", 32), Verdict: consent.VerdictJustified, Reviewer: "dpo:a", Organization: "x"}); err == nil {
		t.Errorf("a review naming an organisation that is no FINESS was formatted")
	}
	if _, err := consent.FormatReadRecord(consent.ReadRecord{Reader: "dpo:a", Organizations: []string{other, hospital}, Method: "Alerts"}); err != nil {
		t.Errorf("FormatReadRecord with two organisations: %v", err)
	}
}
