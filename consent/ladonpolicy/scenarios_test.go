package ladonpolicy_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vigie-sante/vigie/consent"
	"github.com/vigie-sante/vigie/consent/ident"
	"github.com/vigie-sante/vigie/consent/ladonpolicy"
	"github.com/vigie-sante/vigie/consent/nationalrules"
)

var (
	now = time.Date(2025, 6, 1, 10, 0, 0, 0, time.UTC)

	drCare   = ident.MustParseRPPS("10000000011") // physician of the care team
	drAuthor = ident.MustParseRPPS("10000000022") // author of doc-1
	drTreat  = ident.MustParseRPPS("10000000033") // treating physician
	drOther  = ident.MustParseRPPS("10000000044") // physician outside the care team
	nurse    = ident.MustParseRPPS("20000000011")
	dentist  = ident.MustParseRPPS("40000000011")
	podiat   = ident.MustParseRPPS("80000000011")
	midwife  = ident.MustParseRPPS("50000000011")

	hospital = ident.MustParseFINESS("750712184")
	clinic   = ident.MustParseFINESS("690781810")
)

func mustINS(s string) ident.INS {
	x, err := ident.ParseINS(s)
	if err != nil {
		panic(err)
	}
	return x
}

var patient = mustINS("184127645108946")

// baseRequest: a care-team physician reads doc-1, a consultation note by
// drAuthor, for treatment.
func baseRequest() consent.Request {
	return consent.Request{
		ID: "r1", Service: "his.example", Patient: patient,
		Actor:  consent.Actor{RPPS: drCare, Profession: "10", Sector: "care", Organization: hospital, CareTeam: true},
		Action: consent.ActionRead,
		Resource: consent.Resource{
			Kind: consent.ResourceDocument, DocumentID: "doc-1", DocumentType: "consultation-note", Author: drAuthor,
		},
		Purpose: consent.PurposeTreatment,
		Time:    now,
	}
}

// Request edits.
func as(r ident.RPPS, profession string, careTeam bool) func(*consent.Request) {
	return func(q *consent.Request) {
		q.Actor.RPPS, q.Actor.Profession, q.Actor.CareTeam = r, profession, careTeam
	}
}
func sector(s string) func(*consent.Request) { return func(q *consent.Request) { q.Actor.Sector = s } }
func purpose(p consent.Purpose) func(*consent.Request) {
	return func(q *consent.Request) { q.Purpose = p }
}
func justify(j string) func(*consent.Request) {
	return func(q *consent.Request) { q.Justification = j }
}
func emergency(q *consent.Request) {
	q.Purpose = consent.PurposeBreakGlass
	q.Justification = "unconscious patient, suspected overdose"
	q.Actor.CareTeam = false
}
func docType(t string) func(*consent.Request) {
	return func(q *consent.Request) { q.Resource.DocumentType = t }
}
func docID(id string) func(*consent.Request) {
	return func(q *consent.Request) { q.Resource.DocumentID = id }
}
func hidden(q *consent.Request)   { q.Resource.Hidden = true }
func noAuthor(q *consent.Request) { q.Resource.Author = ident.RPPS{} }
func record(q *consent.Request)   { q.Resource = consent.Resource{Kind: consent.ResourceRecord} }
func action(a consent.Action) func(*consent.Request) {
	return func(q *consent.Request) { q.Action = a }
}
func org(f ident.FINESS) func(*consent.Request) {
	return func(q *consent.Request) { q.Actor.Organization = f }
}

// Directives.
func block(id string, r ident.RPPS) consent.Directive {
	return consent.Directive{ID: id, Kind: consent.BlockProfessional, Professional: r}
}
func dir(id string, k consent.DirectiveKind) consent.Directive {
	return consent.Directive{ID: id, Kind: k}
}
func who(id string, k consent.DirectiveKind, r ident.RPPS) consent.Directive {
	return consent.Directive{ID: id, Kind: k, Professional: r}
}
func hideDoc(id, doc string) consent.Directive {
	return consent.Directive{ID: id, Kind: consent.HideDocument, Document: doc}
}
func from(d consent.Directive, t time.Time) consent.Directive  { d.From = t; return d }
func until(d consent.Directive, t time.Time) consent.Directive { d.Until = t; return d }

var (
	yesterday = now.Add(-24 * time.Hour)
	tomorrow  = now.Add(24 * time.Hour)
	emergObl  = []consent.Obligation{consent.NotifyPatient, consent.NotifyTreatingPhysician, consent.FlagForReview}
	reviewObl = []consent.Obligation{consent.FlagForReview}
)

type scenario struct {
	name        string
	directives  []consent.Directive
	edits       []func(*consent.Request)
	effect      consent.Effect
	reason      consent.Reason
	grounds     []string // "rule:<id>" or "directive:<id>"
	obligations []consent.Obligation
}

var scenarios = []scenario{
	// Care team and consent.
	{name: "care team reads a consultation note", effect: consent.Allow, reason: consent.ReasonAllowed, grounds: []string{"rule:care-team"}},
	{name: "care team opens the record", edits: fns(record), effect: consent.Allow, reason: consent.ReasonAllowed, grounds: []string{"rule:care-team"}},
	{name: "outside the care team without consent", edits: fns(as(drOther, "10", false)), effect: consent.Deny, reason: consent.ReasonConsent, grounds: []string{"rule:default-deny"}},
	{name: "allowed professional outside the care team", directives: dirs(who("a1", consent.AllowProfessional, drOther)), edits: fns(as(drOther, "10", false)),
		effect: consent.Allow, reason: consent.ReasonAllowed, grounds: []string{"directive:a1"}},
	{name: "allowed professional for research", directives: dirs(who("a1", consent.AllowProfessional, drOther)), edits: fns(as(drOther, "10", false), purpose(consent.PurposeResearch)),
		effect: consent.Deny, reason: consent.ReasonPurpose, grounds: []string{"rule:purpose"}},
	{name: "purpose payment denied to the care team", edits: fns(purpose(consent.PurposePayment)), effect: consent.Deny, reason: consent.ReasonPurpose, grounds: []string{"rule:purpose"}},
	{name: "purpose operations denied to the care team", edits: fns(purpose(consent.PurposeOperations)), effect: consent.Deny, reason: consent.ReasonPurpose, grounds: []string{"rule:purpose"}},

	// Blocking.
	{name: "blocked professional", directives: dirs(block("b1", drCare)), effect: consent.Deny, reason: consent.ReasonConsent, grounds: []string{"directive:b1"}},
	{name: "block beats the care team even in an emergency", directives: dirs(block("b1", drCare)), edits: fns(emergency), effect: consent.Deny, reason: consent.ReasonConsent, grounds: []string{"directive:b1"}},
	{name: "block of another professional", directives: dirs(block("b1", drOther)), effect: consent.Allow, reason: consent.ReasonAllowed, grounds: []string{"rule:care-team"}},
	{name: "blocked organization", directives: dirs(consent.Directive{ID: "bo", Kind: consent.BlockOrganization, Organization: hospital}),
		effect: consent.Deny, reason: consent.ReasonConsent, grounds: []string{"directive:bo"}},
	{name: "blocked organization, professional acting elsewhere", directives: dirs(consent.Directive{ID: "bo", Kind: consent.BlockOrganization, Organization: hospital}), edits: fns(org(clinic)),
		effect: consent.Allow, reason: consent.ReasonAllowed, grounds: []string{"rule:care-team"}},
	{name: "block of the organization beats the treating physician", directives: dirs(who("t1", consent.TreatingPhysician, drTreat), consent.Directive{ID: "bo", Kind: consent.BlockOrganization, Organization: hospital}),
		edits: fns(as(drTreat, "10", false)), effect: consent.Deny, reason: consent.ReasonConsent, grounds: []string{"directive:bo"}},
	{name: "expired block", directives: dirs(until(block("b1", drCare), yesterday)), effect: consent.Allow, reason: consent.ReasonAllowed, grounds: []string{"rule:care-team"}},
	{name: "block not yet in force", directives: dirs(from(block("b1", drCare), tomorrow)), effect: consent.Allow, reason: consent.ReasonAllowed, grounds: []string{"rule:care-team"}},
	{name: "block from exactly now", directives: dirs(from(block("b1", drCare), now)), effect: consent.Deny, reason: consent.ReasonConsent, grounds: []string{"directive:b1"}},
	{name: "block until exactly now", directives: dirs(until(block("b1", drCare), now)), effect: consent.Allow, reason: consent.ReasonAllowed, grounds: []string{"rule:care-team"}},
	{name: "blocked author cannot read their own hidden document", directives: dirs(block("b1", drAuthor)), edits: fns(as(drAuthor, "10", true), hidden),
		effect: consent.Deny, reason: consent.ReasonConsent, grounds: []string{"directive:b1"}},

	// Hidden documents.
	{name: "hidden document, care team", edits: fns(hidden), effect: consent.Deny, reason: consent.ReasonConsent, grounds: []string{"rule:hidden-document"}},
	{name: "hidden document, its author", edits: fns(hidden, as(drAuthor, "10", true)), effect: consent.Allow, reason: consent.ReasonAllowed, grounds: []string{"rule:care-team"}},
	{name: "hidden document, treating physician", directives: dirs(who("t1", consent.TreatingPhysician, drTreat)), edits: fns(hidden, as(drTreat, "10", false)),
		effect: consent.Allow, reason: consent.ReasonAllowed, grounds: []string{"directive:t1"}},
	{name: "hidden document, nurse with extended rights", directives: dirs(who("x1", consent.ExtendedRights, nurse)), edits: fns(hidden, as(nurse, "60", false)),
		effect: consent.Allow, reason: consent.ReasonAllowed, grounds: []string{"directive:x1"}},
	{name: "hidden document, former treating physician", directives: dirs(until(who("t1", consent.TreatingPhysician, drTreat), yesterday)), edits: fns(hidden, as(drTreat, "10", true)),
		effect: consent.Deny, reason: consent.ReasonConsent, grounds: []string{"rule:hidden-document"}},
	{name: "hidden document, author unknown", edits: fns(hidden, noAuthor), effect: consent.Deny, reason: consent.ReasonConsent, grounds: []string{"rule:hidden-document"}},
	{name: "document hidden by the patient, care team", directives: dirs(hideDoc("h1", "doc-1")), effect: consent.Deny, reason: consent.ReasonConsent, grounds: []string{"directive:h1"}},
	{name: "document hidden by the patient, its author", directives: dirs(hideDoc("h1", "doc-1")), edits: fns(as(drAuthor, "10", true)),
		effect: consent.Allow, reason: consent.ReasonAllowed, grounds: []string{"rule:care-team"}},
	{name: "document hidden by the patient, treating physician", directives: dirs(hideDoc("h1", "doc-1"), who("t1", consent.TreatingPhysician, drTreat)), edits: fns(as(drTreat, "10", false)),
		effect: consent.Allow, reason: consent.ReasonAllowed, grounds: []string{"directive:t1"}},
	{name: "another document hidden by the patient", directives: dirs(hideDoc("h1", "doc-2")), effect: consent.Allow, reason: consent.ReasonAllowed, grounds: []string{"rule:care-team"}},
	{name: "documents hidden by pattern", directives: dirs(hideDoc("h1", "stay-2024-<[0-9]+>")), edits: fns(docID("stay-2024-17")),
		effect: consent.Deny, reason: consent.ReasonConsent, grounds: []string{"directive:h1"}},
	{name: "document outside the pattern", directives: dirs(hideDoc("h1", "stay-2024-<[0-9]+>")), edits: fns(docID("stay-2025-17")),
		effect: consent.Allow, reason: consent.ReasonAllowed, grounds: []string{"rule:care-team"}},
	{name: "documents hidden by prefix", directives: dirs(hideDoc("h1", "stay-2024-<.*>")), edits: fns(docID("stay-2024-x")),
		effect: consent.Deny, reason: consent.ReasonConsent, grounds: []string{"directive:h1"}},
	{name: "document type hidden by the patient", directives: dirs(consent.Directive{ID: "ht", Kind: consent.HideDocumentType, DocumentType: "consultation-note"}),
		effect: consent.Deny, reason: consent.ReasonConsent, grounds: []string{"directive:ht"}},
	{name: "another document type hidden", directives: dirs(consent.Directive{ID: "ht", Kind: consent.HideDocumentType, DocumentType: "lab-report"}),
		effect: consent.Allow, reason: consent.ReasonAllowed, grounds: []string{"rule:care-team"}},
	{name: "hide everything, care team", directives: dirs(dir("he", consent.HideEverything)), effect: consent.Deny, reason: consent.ReasonConsent, grounds: []string{"directive:he"}},
	{name: "hide everything, the record still opens", directives: dirs(dir("he", consent.HideEverything)), edits: fns(record),
		effect: consent.Allow, reason: consent.ReasonAllowed, grounds: []string{"rule:care-team"}},
	{name: "hide everything, treating physician still reads", directives: dirs(dir("he", consent.HideEverything), who("t1", consent.TreatingPhysician, drTreat)), edits: fns(as(drTreat, "10", false)),
		effect: consent.Allow, reason: consent.ReasonAllowed, grounds: []string{"directive:t1"}},
	{name: "hide everything, even from emergency access", directives: dirs(dir("he", consent.HideEverything)), edits: fns(as(drOther, "10", false), emergency),
		effect: consent.Deny, reason: consent.ReasonConsent, grounds: []string{"directive:he"}},

	// Access matrix.
	{name: "dentist and advance directives", edits: fns(as(dentist, "40", true), docType("advance-directives")),
		effect: consent.Deny, reason: consent.ReasonNotPermitted, grounds: []string{"rule:matrix/40/read/advance-directives"}},
	{name: "dentist and psychiatric summary", edits: fns(as(dentist, "40", true), docType("psychiatric-summary")),
		effect: consent.Deny, reason: consent.ReasonNotPermitted, grounds: []string{"rule:matrix/40/read/psychiatric-summary"}},
	{name: "dentist and dental record", edits: fns(as(dentist, "40", true), docType("dental-record")), effect: consent.Allow, reason: consent.ReasonAllowed, grounds: []string{"rule:care-team"}},
	{name: "podiatrist and delivery report", edits: fns(as(podiat, "80", true), docType("delivery-report")),
		effect: consent.Deny, reason: consent.ReasonNotPermitted, grounds: []string{"rule:matrix/80/read/delivery-report"}},
	{name: "midwife and delivery report", edits: fns(as(midwife, "50", true), docType("delivery-report")), effect: consent.Allow, reason: consent.ReasonAllowed, grounds: []string{"rule:care-team"}},
	{name: "physician and proof of residence", edits: fns(docType("proof-of-residence")),
		effect: consent.Deny, reason: consent.ReasonNotPermitted, grounds: []string{"rule:matrix/10/read/proof-of-residence"}},
	{name: "treating physician and proof of residence", directives: dirs(who("t1", consent.TreatingPhysician, drTreat)), edits: fns(as(drTreat, "10", false), docType("proof-of-residence")),
		effect: consent.Deny, reason: consent.ReasonNotPermitted, grounds: []string{"rule:matrix/10/read/proof-of-residence"}},
	{name: "matrix reason before consent reason", directives: dirs(block("b1", dentist)), edits: fns(as(dentist, "40", true), docType("advance-directives")),
		effect: consent.Deny, reason: consent.ReasonNotPermitted, grounds: []string{"rule:matrix/40/read/advance-directives", "directive:b1"}},
	{name: "unknown profession", edits: fns(as(drOther, "99", true)), effect: consent.Deny, reason: consent.ReasonNotPermitted, grounds: []string{"rule:unknown-profession"}},
	{name: "unknown sector", edits: fns(sector("astrology")), effect: consent.Deny, reason: consent.ReasonNotPermitted, grounds: []string{"rule:unknown-sector"}},
	{name: "unknown document type", edits: fns(docType("horoscope")), effect: consent.Deny, reason: consent.ReasonNotPermitted, grounds: []string{"rule:unknown-document-type"}},

	// Emergency access.
	{name: "break-glass allowed", edits: fns(as(drOther, "10", false), emergency),
		effect: consent.Allow, reason: consent.ReasonAllowed, grounds: []string{"rule:break-glass"}, obligations: emergObl},
	{name: "break-glass by a nurse for emergency treatment", edits: fns(as(nurse, "60", false), emergency, purpose(consent.PurposeEmergencyTreatment)),
		effect: consent.Allow, reason: consent.ReasonAllowed, grounds: []string{"rule:break-glass"}, obligations: emergObl},
	{name: "break-glass opens the record", edits: fns(as(drOther, "10", false), emergency, record),
		effect: consent.Allow, reason: consent.ReasonAllowed, grounds: []string{"rule:break-glass"}, obligations: emergObl},
	{name: "break-glass opposed", directives: dirs(dir("o1", consent.OpposeEmergency)), edits: fns(as(drOther, "10", false), emergency),
		effect: consent.Deny, reason: consent.ReasonConsent, grounds: []string{"directive:o1"}, obligations: reviewObl},
	{name: "opposition expired", directives: dirs(until(dir("o1", consent.OpposeEmergency), yesterday)), edits: fns(as(drOther, "10", false), emergency),
		effect: consent.Allow, reason: consent.ReasonAllowed, grounds: []string{"rule:break-glass"}, obligations: emergObl},
	{name: "opposition does not touch ordinary care", directives: dirs(dir("o1", consent.OpposeEmergency)),
		effect: consent.Allow, reason: consent.ReasonAllowed, grounds: []string{"rule:care-team"}},
	{name: "opposition beats the treating physician's emergency purpose", directives: dirs(dir("o1", consent.OpposeEmergency), who("t1", consent.TreatingPhysician, drTreat)),
		edits: fns(as(drTreat, "10", false), emergency), effect: consent.Deny, reason: consent.ReasonConsent, grounds: []string{"directive:o1"}, obligations: reviewObl},
	{name: "break-glass without justification", edits: fns(as(drOther, "10", false), emergency, justify("")),
		effect: consent.Deny, reason: consent.ReasonJustification, grounds: []string{"rule:justification-required"}, obligations: reviewObl},
	{name: "break-glass with a blank justification", edits: fns(as(drOther, "10", false), emergency, justify("   ")),
		effect: consent.Deny, reason: consent.ReasonJustification, grounds: []string{"rule:justification-required"}, obligations: reviewObl},
	{name: "break-glass by a podiatrist", edits: fns(as(podiat, "80", false), emergency), effect: consent.Deny, reason: consent.ReasonConsent, grounds: []string{"rule:default-deny"}},
	{name: "break-glass never reveals a hidden document", edits: fns(as(drOther, "10", false), emergency, hidden),
		effect: consent.Deny, reason: consent.ReasonConsent, grounds: []string{"rule:hidden-document"}},
	{name: "break-glass never reveals a document the patient hid", directives: dirs(hideDoc("h1", "doc-1")), edits: fns(as(drOther, "10", false), emergency),
		effect: consent.Deny, reason: consent.ReasonConsent, grounds: []string{"directive:h1"}},
	{name: "break-glass is still bound by the matrix", edits: fns(as(nurse, "60", false), emergency, docType("psychiatric-summary")),
		effect: consent.Deny, reason: consent.ReasonNotPermitted, grounds: []string{"rule:matrix/60/read/psychiatric-summary"}},
	{name: "break-glass does not write", edits: fns(as(drOther, "10", false), emergency, action(consent.ActionWrite)),
		effect: consent.Deny, reason: consent.ReasonConsent, grounds: []string{"rule:default-deny"}},
	{name: "SAMU regulator", edits: fns(as(drOther, "10", false), sector("samu"), emergency, purpose(consent.PurposeEmergencyTreatment)),
		effect: consent.Allow, reason: consent.ReasonAllowed, grounds: []string{"rule:samu-regulator"}, obligations: emergObl},
	{name: "SAMU regulator opposed", directives: dirs(dir("o1", consent.OpposeEmergency)), edits: fns(as(drOther, "10", false), sector("samu"), emergency),
		effect: consent.Deny, reason: consent.ReasonConsent, grounds: []string{"directive:o1"}, obligations: reviewObl},
	{name: "SAMU regulator without justification", edits: fns(as(drOther, "10", false), sector("samu"), emergency, justify("")),
		effect: consent.Deny, reason: consent.ReasonJustification, grounds: []string{"rule:justification-required"}, obligations: reviewObl},
	{name: "SAMU nurse is not a regulator", edits: fns(as(nurse, "60", false), sector("samu"), emergency), effect: consent.Deny, reason: consent.ReasonConsent, grounds: []string{"rule:default-deny"}},
	{name: "SAMU regulator for ordinary treatment", edits: fns(sector("samu")), effect: consent.Deny, reason: consent.ReasonConsent, grounds: []string{"rule:default-deny"}},

	// Sectors.
	{name: "insurer never, even with express consent", directives: dirs(who("a1", consent.AllowProfessional, drOther)), edits: fns(as(drOther, "10", true), sector("insurer")),
		effect: consent.Deny, reason: consent.ReasonNotPermitted, grounds: []string{"rule:never-access"}},
	{name: "employer never", edits: fns(sector("employer")), effect: consent.Deny, reason: consent.ReasonNotPermitted, grounds: []string{"rule:never-access"}},
	{name: "bank never, even in an emergency", edits: fns(sector("bank"), emergency), effect: consent.Deny, reason: consent.ReasonNotPermitted, grounds: []string{"rule:never-access"}},
	{name: "occupational physician without express consent", edits: fns(sector("occupational-health")), effect: consent.Deny, reason: consent.ReasonConsent, grounds: []string{"rule:default-deny"}},
	{name: "occupational physician with express consent", directives: dirs(who("a1", consent.AllowProfessional, drCare)), edits: fns(sector("occupational-health")),
		effect: consent.Allow, reason: consent.ReasonAllowed, grounds: []string{"directive:a1"}},
	{name: "fire-brigade physician, express consent expired", directives: dirs(until(who("a1", consent.AllowProfessional, drCare), yesterday)), edits: fns(sector("fire-brigade")),
		effect: consent.Deny, reason: consent.ReasonConsent, grounds: []string{"rule:default-deny"}},
	{name: "fire-brigade physician cannot break the glass", edits: fns(sector("fire-brigade"), emergency), effect: consent.Deny, reason: consent.ReasonConsent, grounds: []string{"rule:default-deny"}},

	// Opt-out.
	{name: "opt-out denies the care team", directives: dirs(dir("x", consent.OptOut)), effect: consent.Deny, reason: consent.ReasonConsent, grounds: []string{"directive:x"}},
	{name: "opt-out denies the treating physician", directives: dirs(dir("x", consent.OptOut), who("t1", consent.TreatingPhysician, drTreat)), edits: fns(as(drTreat, "10", false)),
		effect: consent.Deny, reason: consent.ReasonConsent, grounds: []string{"directive:x"}},
	{name: "opt-out denies emergency access", directives: dirs(dir("x", consent.OptOut)), edits: fns(as(drOther, "10", false), emergency),
		effect: consent.Deny, reason: consent.ReasonConsent, grounds: []string{"directive:x"}},
	{name: "opt-out withdrawn", directives: dirs(until(dir("x", consent.OptOut), yesterday)), effect: consent.Allow, reason: consent.ReasonAllowed, grounds: []string{"rule:care-team"}},
	{name: "every deny is named", directives: dirs(dir("x", consent.OptOut), block("b1", drCare)), effect: consent.Deny, reason: consent.ReasonConsent, grounds: []string{"directive:x", "directive:b1"}},

	// Writing and hiding.
	{name: "care team writes a consultation note", edits: fns(action(consent.ActionWrite)), effect: consent.Allow, reason: consent.ReasonAllowed, grounds: []string{"rule:care-team"}},
	{name: "nurse cannot write a consultation note", edits: fns(as(nurse, "60", true), action(consent.ActionWrite)),
		effect: consent.Deny, reason: consent.ReasonNotPermitted, grounds: []string{"rule:matrix/60/write/consultation-note"}},
	{name: "blocked professional cannot write", directives: dirs(block("b1", drCare)), edits: fns(action(consent.ActionWrite)),
		effect: consent.Deny, reason: consent.ReasonConsent, grounds: []string{"directive:b1"}},
	{name: "author hides their document", edits: fns(as(drAuthor, "10", true), action(consent.ActionHide)), effect: consent.Allow, reason: consent.ReasonAllowed, grounds: []string{"rule:author-hide"}},
	{name: "care team cannot hide another's document", edits: fns(action(consent.ActionHide)), effect: consent.Deny, reason: consent.ReasonConsent, grounds: []string{"rule:default-deny"}},
	{name: "treating physician hides a document", directives: dirs(who("t1", consent.TreatingPhysician, drTreat)), edits: fns(as(drTreat, "10", false), action(consent.ActionHide)),
		effect: consent.Allow, reason: consent.ReasonAllowed, grounds: []string{"directive:t1"}},
	{name: "allowed professional cannot hide", directives: dirs(who("a1", consent.AllowProfessional, drOther)), edits: fns(as(drOther, "10", false), action(consent.ActionHide)),
		effect: consent.Deny, reason: consent.ReasonConsent, grounds: []string{"rule:default-deny"}},
}

func fns(f ...func(*consent.Request)) []func(*consent.Request) { return f }
func dirs(d ...consent.Directive) []consent.Directive          { return d }

func groundIDs(d consent.Decision) []string {
	var out []string
	for _, g := range d.Grounds {
		out = append(out, string(g.Source)+":"+g.ID)
	}
	return out
}

func describe(d consent.Decision) string {
	return fmt.Sprintf("%v %s %v %v", d.Effect, d.Reason, groundIDs(d), d.Obligations)
}

func TestScenarios(t *testing.T) {
	if len(scenarios) < 40 {
		t.Fatalf("%d scenarios, want at least 40", len(scenarios))
	}
	rules := nationalrules.Illustrative()
	seen := map[string]bool{}
	for _, sc := range scenarios {
		if seen[sc.name] {
			t.Fatalf("duplicate scenario %q", sc.name)
		}
		seen[sc.name] = true
		t.Run(strings.ReplaceAll(sc.name, " ", "_"), func(t *testing.T) {
			e := ladonpolicy.NewEngine(ladonpolicy.Options{})
			c := consent.Consent{Version: 1, Directives: sc.directives}
			if err := e.CheckConsent(&c, rules); err != nil {
				t.Fatalf("CheckConsent() = %v", err)
			}
			req := baseRequest()
			for _, f := range sc.edits {
				f(&req)
			}
			got, err := e.Decide(&req, &c, rules)
			if err != nil {
				t.Fatalf("Decide(%s) error: %v", sc.name, err)
			}
			want := consent.Decision{Effect: sc.effect, Reason: sc.reason, Obligations: sc.obligations}
			for _, g := range sc.grounds {
				src, id, _ := strings.Cut(g, ":")
				want.Grounds = append(want.Grounds, consent.Ground{Source: consent.GroundSource(src), ID: id})
			}
			if got.Effect != sc.effect || got.Reason != sc.reason || !slices.Equal(groundIDs(got), sc.grounds) || !slices.Equal(got.Obligations, sc.obligations) {
				t.Errorf("Decide(%s) = %s, want %s", sc.name, describe(got), describe(want))
			}
			if got.ConsentVersion != 1 || got.RulesVersion != rules.Version() || got.RulesHash != rules.Hash() || !got.Time.Equal(req.Time) {
				t.Errorf("Decide(%s) versions = consent %d rules %d, time %v; want 1, %d, %v", sc.name, got.ConsentVersion, got.RulesVersion, got.Time, rules.Version(), req.Time)
			}
			for _, g := range got.Grounds {
				if g.FR == "" || g.EN == "" || g.Kind == "" {
					t.Errorf("Decide(%s) ground %+v lacks a kind or a reason", sc.name, g)
				}
				if g.Effect != got.Effect {
					t.Errorf("Decide(%s) ground %s has effect %v in a %v decision", sc.name, g.ID, g.Effect, got.Effect)
				}
			}
			// Deterministic: the same inputs give the same decision, from
			// the cache and from a fresh engine.
			again, _ := e.Decide(&req, &c, rules)
			fresh, _ := ladonpolicy.NewEngine(ladonpolicy.Options{}).Decide(&req, &c, rules)
			if describe(again) != describe(got) || describe(fresh) != describe(got) {
				t.Errorf("Decide(%s) is not deterministic: %s, %s, %s", sc.name, describe(got), describe(again), describe(fresh))
			}
		})
	}
}
