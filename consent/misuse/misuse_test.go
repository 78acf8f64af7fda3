package misuse

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"testing"
	"time"

	"github.com/vigie-sante/vigie/consent"
	"github.com/vigie-sante/vigie/consent/ident"
	"github.com/vigie-sante/vigie/consent/nationalrules"
	"github.com/vigie-sante/vigie/ledger/event"
)

// noon is a working day's noon in Paris.
var noon = time.Date(2026, 11, 24, 11, 0, 0, 0, time.UTC)

// builder makes events of a test.
type builder struct {
	t      *testing.T
	events []event.Logged
}

type accessSpec struct {
	rpps     string
	patient  int
	at       time.Time
	purpose  consent.Purpose
	effect   consent.Effect
	careTeam bool
	grounds  []consent.Ground
	// rulesVersion is the decision's (default 1).
	rulesVersion int64
}

// oneThings matches "1 accesses", "1 attempts", "1 patients".
var oneThings = regexp.MustCompile(`\b1 [^0-9]*?\b(accesses|attempts|patients)\b`)

func pseudonym(n int) event.Hash { return sha256.Sum256([]byte(fmt.Sprint("patient ", n))) }

func (b *builder) add(kind event.Kind, patient event.Hash, at time.Time, payload []byte) event.Ref {
	i := uint64(len(b.events))
	ref := event.Ref{Index: i, Commitment: sha256.Sum256([]byte(fmt.Sprint("event ", i)))}
	body := &event.Body{V: 1, ID: fmt.Sprintf("%032x", i), Time: at, Kind: kind, Patient: patient, Seq: 1, Service: "his", Payload: payload}
	b.events = append(b.events, event.Logged{Ref: ref, Body: body})
	return ref
}

func (b *builder) access(s accessSpec) event.Ref {
	b.t.Helper()
	rpps, err := ident.ParseRPPS(s.rpps)
	if err != nil {
		b.t.Fatal(err)
	}
	org, err := ident.ParseFINESS("750712184")
	if err != nil {
		b.t.Fatal(err)
	}
	if s.purpose == "" {
		s.purpose = consent.PurposeTreatment
	}
	if s.grounds == nil {
		s.grounds = []consent.Ground{{Source: consent.SourceRule, ID: "care-team", Kind: consent.RuleCareTeam, Effect: s.effect}}
	}
	req := consent.Request{ID: fmt.Sprint("r", len(b.events)), Service: "his",
		Actor:  consent.Actor{RPPS: rpps, Profession: "10", Sector: "care", Organization: org, CareTeam: s.careTeam},
		Action: consent.ActionRead, Resource: consent.Resource{Kind: consent.ResourceRecord},
		Purpose: s.purpose, Time: s.at}
	if s.purpose != consent.PurposeTreatment {
		req.Justification = "unconscious patient"
	}
	if s.rulesVersion == 0 {
		s.rulesVersion = 1
	}
	d := consent.Decision{Effect: s.effect, Reason: consent.CoarseReason(s.effect, s.grounds), Grounds: s.grounds, ConsentVersion: 0, RulesVersion: s.rulesVersion, Time: s.at}
	p, err := consent.FormatAccessRecord(&req, &d)
	if err != nil {
		b.t.Fatal(err)
	}
	return b.add(event.KindAccess, pseudonym(s.patient), s.at, p)
}

func (b *builder) review(of event.Ref, patient int, at time.Time) {
	b.reviewBy("dpo:dpo-a", of, patient, at)
}

func (b *builder) reviewBy(reviewer string, of event.Ref, patient int, at time.Time) {
	p := fmt.Sprintf(`{"format":"vigie.break-glass-review.v1","event":"%s","leaf_index":%d,"verdict":"justified","reviewer":"%s"}`, of.Commitment, of.Index, reviewer)
	b.add(event.KindBreakGlassReview, pseudonym(patient), at, []byte(p))
}

const (
	drA = "10000000001"
	drB = "10000000019"
)

func detect(t *testing.T, events []event.Logged, cfg Config) *Result {
	t.Helper()
	if cfg.Rules == nil {
		cfg.Rules = illustrative
	}
	if cfg.Location == nil {
		paris, err := time.LoadLocation("Europe/Paris")
		if err != nil {
			t.Skip("no time zone data:", err)
		}
		cfg.Location = paris
	}
	r, err := Detect(events, cfg)
	if err != nil {
		t.Fatalf("Detect: %v", err)
	}
	return r
}

// illustrative is the Rules of a Config: the illustrative rules for
// every decision.
func illustrative(*consent.Decision) (*consent.Rules, error) {
	return nationalrules.Illustrative(), nil
}

// TestEmergencyFromRules: which accesses are break-glass follows the
// emergency purposes of the rules each decision was made with: under
// rules whose emergency purposes are BTG and HRESCH, HRESCH accesses are
// counted and ETREAT ones are not. A failing Rules stops Detect.
func TestEmergencyFromRules(t *testing.T) {
	d := nationalrules.Illustrative().Data()
	d.Version = 2
	d.CarePurposes = []consent.Purpose{consent.PurposeEmergencyTreatment, consent.PurposeTreatment}
	d.EmergencyPurposes = []consent.Purpose{consent.PurposeBreakGlass, consent.PurposeResearch}
	v2, err := consent.NewRules(d)
	if err != nil {
		t.Fatal(err)
	}
	byVersion := func(d *consent.Decision) (*consent.Rules, error) {
		if d.RulesVersion == 2 {
			return v2, nil
		}
		return nationalrules.Illustrative(), nil
	}
	for _, tc := range []struct {
		name    string
		purpose consent.Purpose
		version int64
		want    []Kind
	}{
		{"ETREAT under the illustrative rules", consent.PurposeEmergencyTreatment, 1, []Kind{KindBreakGlassRate}},
		{"ETREAT under rules where it is a care purpose", consent.PurposeEmergencyTreatment, 2, nil},
		{"HRESCH under rules where it is an emergency purpose", consent.PurposeResearch, 2, []Kind{KindBreakGlassRate}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := &builder{t: t}
			for i := range 3 {
				ref := b.access(accessSpec{rpps: drA, patient: i, at: noon.Add(time.Duration(i) * time.Hour), purpose: tc.purpose, effect: consent.Deny, rulesVersion: tc.version,
					grounds: []consent.Ground{{Source: consent.SourceRule, ID: "purpose", Kind: consent.RulePurpose, Effect: consent.Deny}}})
				b.review(ref, i, noon.Add(48*time.Hour))
			}
			r := detect(t, b.events, Config{Rules: byVersion, NoCareMin: 100, Denials: 100})
			if got := alertKinds(r.Alerts); !slices.Equal(got, tc.want) {
				t.Errorf("alerts %v, want %v", got, tc.want)
			}
		})
	}
	b := &builder{t: t}
	b.access(accessSpec{rpps: drA, patient: 1, at: noon, purpose: consent.PurposeBreakGlass, effect: consent.Allow})
	boom := errors.New("rules unavailable")
	if _, err := Detect(b.events, Config{Rules: func(*consent.Decision) (*consent.Rules, error) { return nil, boom }}); !errors.Is(err, boom) {
		t.Errorf("Detect with failing rules = %v, want its error", err)
	}
}

func alertKinds(as []Alert) []Kind {
	var out []Kind
	for _, a := range as {
		out = append(out, a.Kind)
	}
	return out
}

// TestDetectClean: care-team accesses in working hours, a reviewed
// emergency access: nothing to report.
func TestDetectClean(t *testing.T) {
	b := &builder{t: t}
	for i := range 10 {
		b.access(accessSpec{rpps: drA, patient: i % 3, at: noon.Add(time.Duration(i) * 20 * time.Minute), effect: consent.Allow, careTeam: true})
	}
	bg := b.access(accessSpec{rpps: drB, patient: 1, at: noon, purpose: consent.PurposeBreakGlass, effect: consent.Allow,
		grounds: []consent.Ground{{Source: consent.SourceRule, ID: "break-glass", Kind: consent.RuleBreakGlass, Effect: consent.Allow}}})
	b.review(bg, 1, noon.Add(time.Hour))
	b.add(event.KindLedgerRead, pseudonym(1), noon, []byte(`{"format":"vigie.ledger-read.v1"}`))
	r := detect(t, b.events, Config{})
	if len(r.Alerts) != 0 || r.Accesses != 11 || r.Reviews != 1 || r.Unreadable != 0 {
		t.Fatalf("alerts %v, accesses %d, reviews %d, unreadable %d", r.Alerts, r.Accesses, r.Reviews, r.Unreadable)
	}
}

// TestDetectSignals triggers each signal just at its threshold, and checks
// that one event less does not.
func TestDetectSignals(t *testing.T) {
	night := time.Date(2026, 11, 24, 2, 30, 0, 0, time.UTC) // 03:30 in Paris
	bgGround := []consent.Ground{{Source: consent.SourceRule, ID: "break-glass", Kind: consent.RuleBreakGlass, Effect: consent.Allow}}
	tests := []struct {
		name   string
		events func(b *builder, n int) // n events of the signal
		n      int                     // the threshold
		cfg    Config
		want   Kind
	}{
		{"break-glass rate", func(b *builder, n int) {
			for i := range n {
				ref := b.access(accessSpec{rpps: drA, patient: i, at: noon.Add(time.Duration(i) * time.Hour), purpose: consent.PurposeBreakGlass, effect: consent.Allow, grounds: bgGround})
				b.review(ref, i, noon.Add(48*time.Hour))
			}
		}, 3, Config{}, KindBreakGlassRate},
		{"break-glass not reviewed", func(b *builder, n int) {
			ref := b.access(accessSpec{rpps: drA, patient: 1, at: noon, purpose: consent.PurposeEmergencyTreatment, effect: consent.Allow, grounds: bgGround})
			if n == 0 {
				b.review(ref, 1, noon.Add(time.Hour))
			}
		}, 1, Config{}, KindBreakGlassUnreviewed},
		{"break-glass reviewed by no reviewer", func(b *builder, n int) {
			// A review event whose principal is no reviewer does not count
			// (consent.FinalReview).
			ref := b.access(accessSpec{rpps: drA, patient: 1, at: noon, purpose: consent.PurposeBreakGlass, effect: consent.Allow, grounds: bgGround})
			b.reviewBy("admin:ops", ref, 1, noon.Add(time.Hour))
			if n == 0 {
				b.reviewBy("regulator:cnil", ref, 1, noon.Add(2*time.Hour))
			}
		}, 1, Config{}, KindBreakGlassUnreviewed},
		{"no care relationship", func(b *builder, n int) {
			for i := range n {
				b.access(accessSpec{rpps: drA, patient: i, at: noon, effect: consent.Deny,
					grounds: []consent.Ground{{Source: consent.SourceRule, ID: "default-deny", Kind: consent.RuleDefaultDeny, Effect: consent.Deny}}})
			}
			// Named by the patient: a care relationship.
			b.access(accessSpec{rpps: drA, patient: 9, at: noon, effect: consent.Allow,
				grounds: []consent.Ground{{Source: consent.SourceDirective, ID: "mt", Kind: string(consent.TreatingPhysician), Effect: consent.Allow}}})
		}, 2, Config{NoCareMin: 2}, KindNoCareRelationship},
		{"burst", func(b *builder, n int) {
			for i := range n {
				b.access(accessSpec{rpps: drA, patient: i, at: noon.Add(time.Duration(i) * 20 * time.Second), effect: consent.Allow, careTeam: true})
			}
			// The same patients again: not more distinct patients.
			for i := range n {
				b.access(accessSpec{rpps: drA, patient: i % 2, at: noon.Add(time.Duration(i)*20*time.Second + time.Second), effect: consent.Allow, careTeam: true})
			}
		}, 20, Config{}, KindBurst},
		{"odd hours", func(b *builder, n int) {
			for i := range n {
				b.access(accessSpec{rpps: drA, patient: i, at: night.Add(time.Duration(i) * time.Minute), effect: consent.Allow, careTeam: true})
			}
			// At night in an emergency: not odd.
			ref := b.access(accessSpec{rpps: drB, patient: 1, at: night, purpose: consent.PurposeBreakGlass, effect: consent.Allow, grounds: bgGround})
			b.review(ref, 1, noon)
		}, 2, Config{OddHoursMin: 2}, KindOddHours},
		{"repeated denials", func(b *builder, n int) {
			for i := range n {
				b.access(accessSpec{rpps: drA, patient: 1, at: noon.Add(time.Duration(i) * 10 * time.Minute), effect: consent.Deny, careTeam: true,
					grounds: []consent.Ground{{Source: consent.SourceDirective, ID: "block", Kind: string(consent.BlockProfessional), Effect: consent.Deny}}})
			}
		}, 5, Config{}, KindRepeatedDenials},
		{"outside the matrix", func(b *builder, n int) {
			for i := range n {
				b.access(accessSpec{rpps: drA, patient: i, at: noon, effect: consent.Deny, careTeam: true,
					grounds: []consent.Ground{{Source: consent.SourceRule, ID: "matrix/10/read/x", Kind: consent.RuleMatrix, Effect: consent.Deny}}})
			}
		}, 1, Config{}, KindOutsideMatrix},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := &builder{t: t}
			tt.events(b, tt.n)
			r := detect(t, b.events, tt.cfg)
			if got := alertKinds(r.Alerts); !slices.Equal(got, []Kind{tt.want}) {
				t.Fatalf("at the threshold: alerts %v, want [%s]", got, tt.want)
			}
			a := r.Alerts[0]
			if a.Actor != drA || a.Count < 1 || len(a.Events) != a.Count || a.Message == "" || a.From.After(a.To) {
				t.Errorf("alert %+v", a)
			}
			if oneThings.MatchString(a.Message) {
				t.Errorf("message %q: one of a thing in the plural", a.Message)
			}
			for _, ref := range a.Events {
				if b.events[ref.Index].Ref != ref {
					t.Errorf("alert names %v, not an event of the input", ref)
				}
			}
			b = &builder{t: t}
			tt.events(b, tt.n-1)
			if r := detect(t, b.events, tt.cfg); len(r.Alerts) != 0 {
				t.Errorf("below the threshold: alerts %v", alertKinds(r.Alerts))
			}
		})
	}
}

// TestBurstWindows checks that overlapping windows make one alert and
// separate bursts two.
func TestBurstWindows(t *testing.T) {
	b := &builder{t: t}
	for burst := range 2 {
		start := noon.Add(time.Duration(burst) * 3 * time.Hour)
		for i := range 30 {
			b.access(accessSpec{rpps: drA, patient: 100*burst + i, at: start.Add(time.Duration(i) * 15 * time.Second), effect: consent.Allow, careTeam: true})
		}
	}
	r := detect(t, b.events, Config{})
	if len(r.Alerts) != 2 || r.Alerts[0].Count != 30 || r.Alerts[1].Count != 30 || r.Alerts[0].Patients != 30 {
		t.Fatalf("alerts %+v", r.Alerts)
	}
	if !r.Alerts[0].From.Before(r.Alerts[1].From) {
		t.Error("alerts not in time order")
	}
}

// TestReviewDelay: an emergency access is reported unreviewed only once
// older than the delay.
func TestReviewDelay(t *testing.T) {
	b := &builder{t: t}
	b.access(accessSpec{rpps: drA, patient: 1, at: noon, purpose: consent.PurposeBreakGlass, effect: consent.Allow,
		grounds: []consent.Ground{{Source: consent.SourceRule, ID: "break-glass", Kind: consent.RuleBreakGlass, Effect: consent.Allow}}})
	if r := detect(t, b.events, Config{ReviewDelay: 72 * time.Hour, Now: noon.Add(24 * time.Hour)}); len(r.Alerts) != 0 {
		t.Errorf("within the delay: %v", alertKinds(r.Alerts))
	}
	r := detect(t, b.events, Config{ReviewDelay: 72 * time.Hour, Now: noon.Add(96 * time.Hour)})
	if got := alertKinds(r.Alerts); !slices.Equal(got, []Kind{KindBreakGlassUnreviewed}) || r.Alerts[0].Patient == nil {
		t.Errorf("after the delay: %v", got)
	}
}

func TestDetectInput(t *testing.T) {
	b := &builder{t: t}
	b.add(event.KindAccess, pseudonym(1), noon, []byte(`{"format":"something else"}`))
	b.add(event.KindBreakGlassReview, pseudonym(1), noon, []byte(`{"format":"vigie.other.v1"}`))
	b.events = append(b.events, event.Logged{Ref: event.Ref{Index: 9}}) // erased: no body
	r := detect(t, b.events, Config{})
	if r.Unreadable != 2 || r.Accesses != 0 || len(r.Alerts) != 0 {
		t.Errorf("unreadable %d, accesses %d, alerts %d", r.Unreadable, r.Accesses, len(r.Alerts))
	}
	for _, cfg := range []Config{{Denials: -1}, {BurstWindow: -time.Second}, {OddHoursStart: 24}, {OddHoursEnd: -1}} {
		if _, err := Detect(nil, cfg); err == nil {
			t.Errorf("Detect with %+v succeeded", cfg)
		}
	}
}

func TestSeverityText(t *testing.T) {
	for _, s := range []Severity{High, Medium, Low} {
		b, _ := s.MarshalText()
		var got Severity
		if err := got.UnmarshalText(b); err != nil || got != s {
			t.Errorf("%s: round trip %v, %v", b, got, err)
		}
	}
	var s Severity
	if err := s.UnmarshalText([]byte("urgent")); err == nil {
		t.Error("an unknown severity parsed")
	}
}

func TestThreshold(t *testing.T) {
	paris, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		t.Skip(err)
	}
	rules := func(*consent.Decision) (*consent.Rules, error) { return nil, nil }
	cfg := Config{Rules: rules, Location: paris, BurstPatients: 7, Denials: 4, DenialWindow: 2 * time.Hour}
	tests := []struct {
		kind Kind
		want Threshold
	}{
		{KindBreakGlassRate, Threshold{Min: 3}},
		{KindBreakGlassUnreviewed, Threshold{}},
		{KindBurst, Threshold{Min: 7, Window: 10 * time.Minute}},
		{KindRepeatedDenials, Threshold{Min: 4, Window: 2 * time.Hour}},
		{KindOddHours, Threshold{Min: 1, OddHoursStart: 22, OddHoursEnd: 6, Location: paris}},
		{KindNoCareRelationship, Threshold{Min: 1}},
		{KindOutsideMatrix, Threshold{Min: 1}},
		{"unknown", Threshold{}},
	}
	for _, tt := range tests {
		t.Run(string(tt.kind), func(t *testing.T) {
			got, err := cfg.Threshold(tt.kind)
			if err != nil || got != tt.want {
				t.Errorf("Threshold(%s) = %+v, %v; want %+v", tt.kind, got, err, tt.want)
			}
		})
	}
	if _, err := (Config{Rules: rules, Denials: -1}).Threshold(KindRepeatedDenials); err == nil {
		t.Error("Threshold with a negative threshold = nil error")
	}
}
