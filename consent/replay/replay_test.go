package replay

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/vigie-sante/vigie/consent"
	"github.com/vigie-sante/vigie/consent/ident"
	"github.com/vigie-sante/vigie/consent/ladonpolicy"
	"github.com/vigie-sante/vigie/consent/nationalrules"
	"github.com/vigie-sante/vigie/ledger/event"
)

var t0 = time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)

func mustRPPS(t *testing.T, s string) ident.RPPS {
	r, err := ident.ParseRPPS(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// ledger builds the events of a test as the service records them: each
// decision made by the engine under the consent the test holds, unless
// the test forges it.
type ledger struct {
	t       *testing.T
	engine  *ladonpolicy.Engine
	rules   *consent.Rules
	events  []event.Logged
	seq     map[event.Hash]uint64
	consent map[event.Hash]consent.Consent
	ins     map[event.Hash]ident.INS
}

func newLedger(t *testing.T) *ledger {
	l := &ledger{t: t, engine: ladonpolicy.NewEngine(ladonpolicy.Options{}), rules: nationalrules.Illustrative(),
		seq: map[event.Hash]uint64{}, consent: map[event.Hash]consent.Consent{}, ins: map[event.Hash]ident.INS{}}
	p, err := consent.FormatRulesChangeRecord(l.rules, "config")
	if err != nil {
		t.Fatal(err)
	}
	l.add(event.SystemChain, event.KindRulesChange, p)
	return l
}

func (l *ledger) add(p event.Hash, k event.Kind, payload []byte) event.Logged {
	l.seq[p]++
	i := uint64(len(l.events))
	e := event.Logged{Ref: event.Ref{Index: i, Commitment: sha256.Sum256([]byte(fmt.Sprint(i)))},
		Body: &event.Body{V: 1, ID: fmt.Sprintf("%032x", i), Time: t0.Add(time.Duration(i) * time.Minute), Kind: k, Patient: p, Seq: l.seq[p], Service: "his", Payload: payload}}
	l.events = append(l.events, e)
	return e
}

func patient(n int) event.Hash { return sha256.Sum256([]byte(fmt.Sprint("patient ", n))) }

// setConsent records a consent change of p to the directives.
func (l *ledger) setConsent(p event.Hash, ds ...consent.Directive) {
	c := consent.Consent{Version: l.consent[p].Version + 1, Directives: ds}
	b, err := consent.FormatConsentChangeRecord(c, "patient")
	if err != nil {
		l.t.Fatal(err)
	}
	l.consent[p] = c
	l.add(p, event.KindConsentChange, b)
}

// access records a read of p's record by rpps, decided by the engine under
// p's consent; forge, if not nil, changes the decision before it is
// recorded.
func (l *ledger) access(p event.Hash, rpps string, careTeam bool, forge func(*consent.Request, *consent.Decision)) event.Logged {
	l.t.Helper()
	if _, ok := l.ins[p]; !ok {
		n := uint64(2_000_000_000_000) + uint64(len(l.ins))
		l.ins[p], _ = ident.ParseINS(fmt.Sprintf("%013d%02d", n, 97-n%97))
	}
	org, _ := ident.ParseFINESS("750712184")
	req := consent.Request{ID: fmt.Sprint("r", len(l.events)), Service: "his", Patient: l.ins[p],
		Actor:  consent.Actor{RPPS: mustRPPS(l.t, rpps), Profession: "10", Sector: "care", Organization: org, CareTeam: careTeam},
		Action: consent.ActionRead, Resource: consent.Resource{Kind: consent.ResourceRecord}, Purpose: consent.PurposeTreatment,
		Time: t0.Add(time.Duration(len(l.events)) * time.Minute)}
	snap := l.consent[p]
	d, err := l.engine.Decide(&req, &snap, l.rules)
	if err != nil {
		l.t.Fatal(err)
	}
	if forge != nil {
		forge(&req, &d)
	}
	b, err := consent.FormatAccessRecord(&req, &d)
	if err != nil {
		l.t.Fatal(err)
	}
	return l.add(p, event.KindAccess, b)
}

func (l *ledger) rulesSource(ctx context.Context, v int64) ([]byte, error) {
	if v != l.rules.Version() {
		return nil, ErrNoRules
	}
	return l.rules.Bytes(), nil
}

func replay(t *testing.T, l *ledger, complete bool, events []event.Logged, src RulesSource) *Report {
	t.Helper()
	if src == nil {
		src = l.rulesSource
	}
	r, err := Replay(context.Background(), Config{Engine: ladonpolicy.NewEngine(ladonpolicy.Options{}), Rules: src, Complete: complete}, events)
	if err != nil {
		t.Fatalf("Replay: %v", err)
	}
	return r
}

func findingKinds(fs []Finding) []Kind {
	var out []Kind
	for _, f := range fs {
		out = append(out, f.Kind)
	}
	return out
}

const (
	drX = "10000000001"
	drY = "10000000019"
)

func block(rpps string, t *testing.T) consent.Directive {
	return consent.Directive{ID: "no-x", Kind: consent.BlockProfessional, Professional: mustRPPS(t, rpps)}
}

// TestReplayAgrees replays honest decisions of two patients, across
// consent changes and an erasure: every one agrees.
func TestReplayAgrees(t *testing.T) {
	l := newLedger(t)
	a, b := patient(1), patient(2)
	l.access(a, drX, true, nil)
	l.setConsent(a, block(drX, t))
	l.access(a, drX, true, nil) // denied by the block
	l.access(a, drY, true, nil)
	l.access(b, drX, false, nil) // no care relationship: denied
	l.setConsent(a)              // the block lifted
	l.access(a, drX, true, nil)
	// b is erased: its earlier events are gone, its consent is reset.
	l.events = slices.DeleteFunc(l.events, func(e event.Logged) bool { return e.Body.Patient == b })
	l.seq[b] = 5
	l.add(b, event.KindErasure, []byte(`{"format":"vigie.erasure.v1","state":"done","erased":4}`))
	l.consent[b] = consent.Consent{Version: 2}
	l.access(b, drX, true, nil)
	r := replay(t, l, true, l.events, nil)
	if len(r.Findings) != 0 || r.Accesses != 5 || r.Replayed != 5 || r.Agreed != 5 {
		t.Fatalf("findings %v; accesses %d, replayed %d, agreed %d, not replayable %v", r.Findings, r.Accesses, r.Replayed, r.Agreed, r.NotReplayable)
	}
	if len(r.Rules) != 1 || r.Rules[0].Event == nil || r.Rules[0].Version != 1 {
		t.Errorf("rules %+v", r.Rules)
	}
}

// TestReplayOldJustifications replays emergency accesses recorded before
// the free-text rule, whose justifications hold characters the engine now
// refuses: each replays, to the same decision.
func TestReplayOldJustifications(t *testing.T) {
	l := newLedger(t)
	p := patient(1)
	l.access(p, drX, true, nil) // the patient's INS
	for i, tc := range []struct{ decidedWith, recorded string }{
		{"justified", "\u202edeifitsuj"},               // a bidirectional override: a justification
		{"", "\u2028 \u2029"},                          // separators: blank
		{"justified", "admis \u2066inconscient\u2069"}, // isolates
	} {
		org, _ := ident.ParseFINESS("750712184")
		req := consent.Request{ID: fmt.Sprint("bg", i), Service: "his", Patient: l.ins[p],
			Actor:  consent.Actor{RPPS: mustRPPS(t, drY), Profession: "10", Sector: "care", Organization: org},
			Action: consent.ActionRead, Resource: consent.Resource{Kind: consent.ResourceRecord}, Purpose: consent.PurposeBreakGlass,
			Justification: tc.decidedWith, Time: t0.Add(time.Duration(len(l.events)) * time.Minute)}
		snap := l.consent[p]
		d, err := l.engine.Decide(&req, &snap, l.rules)
		if err != nil {
			t.Fatal(err)
		}
		req.Justification = tc.recorded
		b, err := consent.FormatAccessRecord(&req, &d)
		if err != nil {
			t.Fatal(err)
		}
		l.add(p, event.KindAccess, b)
	}
	r := replay(t, l, true, l.events, nil)
	if len(r.Findings) != 0 || r.Accesses != 4 || r.Replayed != 4 || r.Agreed != 4 {
		t.Fatalf("findings %v; accesses %d, replayed %d, agreed %d, not replayable %v", r.Findings, r.Accesses, r.Replayed, r.Agreed, r.NotReplayable)
	}
}

// TestReplayFindings forges one decision or one record at a time and
// checks the finding.
func TestReplayFindings(t *testing.T) {
	a := patient(1)
	tests := []struct {
		name  string
		build func(l *ledger) (rules RulesSource)
		want  Kind
		sev   Severity
	}{
		{"an ALLOW the consent in force denies", func(l *ledger) RulesSource {
			l.setConsent(a, block(drX, t))
			// Decided as if the block were not there, recorded under the
			// version that holds it.
			l.access(a, drX, true, func(req *consent.Request, d *consent.Decision) {
				var err error
				if *d, err = ladonpolicy.NewEngine(ladonpolicy.Options{}).Decide(req, &consent.Consent{Version: 1}, l.rules); err != nil || d.Effect != consent.Allow {
					t.Fatalf("forged decision %v, %v", d.Effect, err)
				}
			})
			return nil
		}, KindAllowDenied, Critical},
		{"a DENY the rules allow", func(l *ledger) RulesSource {
			l.access(a, drX, true, func(_ *consent.Request, d *consent.Decision) {
				d.Effect = consent.Deny
				d.Reason = consent.ReasonConsent
			})
			return nil
		}, KindDenyAllowed, High},
		{"other grounds", func(l *ledger) RulesSource {
			l.access(a, drX, true, func(_ *consent.Request, d *consent.Decision) {
				d.Obligations = append(d.Obligations, consent.FlagForReview)
			})
			return nil
		}, KindExplanation, Medium},
		{"an outdated consent version", func(l *ledger) RulesSource {
			l.setConsent(a, block(drY, t))
			l.access(a, drX, true, func(_ *consent.Request, d *consent.Decision) { d.ConsentVersion = 0 })
			return nil
		}, KindConsentVersion, High},
		{"a consent version skipped", func(l *ledger) RulesSource {
			l.setConsent(a)
			l.consent[a] = consent.Consent{Version: 2}
			l.setConsent(a)
			return nil
		}, KindConsentChange, High},
		{"rules served that are not those decided with", func(l *ledger) RulesSource {
			l.access(a, drX, true, nil)
			return func(context.Context, int64) ([]byte, error) {
				return bytes.Replace(l.rules.Bytes(), []byte(`"title": "`), []byte(`"title": "X`), 1), nil
			}
		}, KindRules, High},
		{"rules not served", func(l *ledger) RulesSource {
			l.access(a, drX, true, nil)
			return func(context.Context, int64) ([]byte, error) { return nil, ErrNoRules }
		}, KindRules, High},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newLedger(t)
			src := tt.build(l)
			r := replay(t, l, true, l.events, src)
			if len(r.Findings) == 0 || r.Findings[0].Kind != tt.want || r.Findings[0].Severity != tt.sev {
				t.Fatalf("findings %v (%v), want first %s (%s)", findingKinds(r.Findings), r.Findings, tt.want, tt.sev)
			}
			f := r.Findings[0]
			if f.Message == "" || f.Event.Commitment.IsZero() {
				t.Errorf("finding %+v", f)
			}
		})
	}
}

// TestReplayPartial replays a DPO's view: only accesses, no consent
// changes. Decisions under version 0 are replayed, the others counted as
// not replayable, and none is reported.
func TestReplayPartial(t *testing.T) {
	l := newLedger(t)
	a, b := patient(1), patient(2)
	l.access(a, drX, true, nil)
	l.setConsent(b, block(drX, t))
	l.access(b, drX, true, nil)
	var accesses []event.Logged
	for _, e := range l.events {
		if e.Body.Kind == event.KindAccess {
			accesses = append(accesses, e)
		}
	}
	r := replay(t, l, false, accesses, nil)
	if len(r.Findings) != 0 || r.Replayed != 1 || r.Agreed != 1 || r.NotReplayable["consent not visible"] != 1 {
		t.Fatalf("findings %v, replayed %d, agreed %d, not replayable %v", r.Findings, r.Replayed, r.Agreed, r.NotReplayable)
	}
}

func TestReplayErrors(t *testing.T) {
	l := newLedger(t)
	l.access(patient(1), drX, true, nil)
	boom := errors.New("network down")
	_, err := Replay(context.Background(), Config{Engine: ladonpolicy.NewEngine(ladonpolicy.Options{}), Rules: func(context.Context, int64) ([]byte, error) { return nil, boom }}, l.events)
	if !errors.Is(err, boom) {
		t.Errorf("Replay with a failing rules source = %v", err)
	}
	if _, err := Replay(context.Background(), Config{}, nil); err == nil {
		t.Error("Replay without an engine succeeded")
	}
}

func TestSeverityText(t *testing.T) {
	for _, s := range []Severity{Critical, High, Medium} {
		b, _ := s.MarshalText()
		var got Severity
		if err := got.UnmarshalText(b); err != nil || got != s {
			t.Errorf("%s: round trip %v, %v", b, got, err)
		}
	}
	var s Severity
	if err := s.UnmarshalText([]byte("low")); err == nil {
		t.Error("an unknown severity parsed")
	}
}
