package main

import (
	"fmt"
	"strings"
	"testing"

	"github.com/vigie-sante/vigie/api/auth"
	vigiev1 "github.com/vigie-sante/vigie/api/vigie/v1"
)

// TestPatternCannotBlockRecord is issue 10 (2) through the running
// service: a patient hides documents with a pattern on which a
// backtracking engine takes exponential time; every Check on the record
// still answers, ALLOW or DENY as the precedence table of hidden documents
// says (docs/consent.md), never an error.
func TestPatternCannotBlockRecord(t *testing.T) {
	e := startE2E(t)
	const treating = "10000000019"
	consents := vigiev1.NewConsentServiceClient(e.conn)
	dirs := []*vigiev1.Directive{
		{Id: "tp", Kind: &vigiev1.Directive_TreatingPhysician{TreatingPhysician: &vigiev1.TreatingPhysician{Rpps: treating}}},
		{Id: "h", Kind: &vigiev1.Directive_HideDocument{HideDocument: &vigiev1.HideDocument{DocumentId: "<(a+)+b>"}}},
	}
	if _, err := consents.UpdateConsent(e.as(auth.RolePatient, e2ePatient), &vigiev1.UpdateConsentRequest{Directives: dirs}); err != nil {
		t.Fatalf("UpdateConsent: %v", err)
	}
	access := vigiev1.NewAccessServiceClient(e.conn)
	service := e.as(auth.RoleService, "hospital-his", e2eHospital)
	hiddenDoc, otherDoc := strings.Repeat("a", 100)+"b", strings.Repeat("a", 100)
	for i, tt := range []struct {
		reader string
		edit   func(*vigiev1.CheckRequest)
		doc    string
		want   vigiev1.Decision
	}{
		{"care team, hidden", nil, hiddenDoc, vigiev1.Decision_DECISION_DENY},
		{"care team, not hidden", nil, otherDoc, vigiev1.Decision_DECISION_ALLOW},
		{"treating physician, hidden", func(r *vigiev1.CheckRequest) { r.Actor.Rpps, r.Actor.CareTeam = treating, false }, hiddenDoc, vigiev1.Decision_DECISION_ALLOW},
		{"treating physician, not hidden", func(r *vigiev1.CheckRequest) { r.Actor.Rpps, r.Actor.CareTeam = treating, false }, otherDoc, vigiev1.Decision_DECISION_ALLOW},
		{"break-glass, hidden", breakGlass, hiddenDoc, vigiev1.Decision_DECISION_DENY},
		{"break-glass, not hidden", breakGlass, otherDoc, vigiev1.Decision_DECISION_ALLOW},
	} {
		req := checkRequest(fmt.Sprint("pattern-", i))
		req.Resource = &vigiev1.Resource{Kind: &vigiev1.Resource_Document{Document: &vigiev1.Document{Id: tt.doc, Type: "lab-report"}}}
		if tt.edit != nil {
			tt.edit(req)
		}
		got, err := access.Check(service, req)
		if err != nil || got.Decision != tt.want {
			t.Errorf("Check(%s) = %v, %v; want %v", tt.reader, got.GetDecision(), err, tt.want)
		}
	}
}

func breakGlass(r *vigiev1.CheckRequest) {
	r.Actor.CareTeam = false
	r.PurposeOfUse = vigiev1.PurposeOfUse_PURPOSE_OF_USE_BTG
	r.BreakGlassJustification = "unconscious patient"
}
