package scrutiny

import (
	"context"
	"crypto/sha256"
	"fmt"
	"testing"
	"time"

	"github.com/vigie-sante/vigie/consent"
	"github.com/vigie-sante/vigie/consent/ident"
	"github.com/vigie-sante/vigie/consent/ladonpolicy"
	"github.com/vigie-sante/vigie/consent/misuse"
	"github.com/vigie-sante/vigie/consent/nationalrules"
	"github.com/vigie-sante/vigie/consent/replay"
	"github.com/vigie-sante/vigie/ledger/audit"
	"github.com/vigie-sante/vigie/ledger/event"
)

var t0 = time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)

// events builds the events an audit reads, each decision made by the
// engine under the patient's consent, unless forge changes it.
type events struct {
	t      *testing.T
	engine consent.Engine
	rules  *consent.Rules
	seq    uint64
	list   []event.Logged
	ins    ident.INS
	snap   consent.Consent
}

var p = event.Hash(sha256.Sum256([]byte("patient")))

func newEvents(t *testing.T) *events {
	ins, err := ident.ParseINS("200000000000094")
	if err != nil {
		t.Fatal(err)
	}
	e := &events{t: t, engine: ladonpolicy.NewEngine(ladonpolicy.Options{}), rules: nationalrules.Illustrative(), ins: ins}
	b, err := consent.FormatRulesChangeRecord(e.rules, "config")
	if err != nil {
		t.Fatal(err)
	}
	e.add(event.SystemChain, event.KindRulesChange, b) // leaf 1
	return e
}

func (e *events) add(patient event.Hash, k event.Kind, payload []byte) {
	e.seq++
	i := e.seq
	e.list = append(e.list, event.Logged{Ref: event.Ref{Index: i, Commitment: sha256.Sum256([]byte(fmt.Sprint(i)))},
		Body: &event.Body{V: 1, ID: fmt.Sprintf("%032x", i), Time: t0.Add(time.Duration(i) * time.Minute), Kind: k, Patient: patient, Seq: i, Service: "his", Payload: payload}})
}

func (e *events) access(rpps string, purpose consent.Purpose, forge func(*consent.Decision)) {
	r, err := ident.ParseRPPS(rpps)
	if err != nil {
		e.t.Fatal(err)
	}
	org, _ := ident.ParseFINESS("750712184")
	req := consent.Request{ID: fmt.Sprint("r", e.seq), Service: "his", Patient: e.ins,
		Actor:  consent.Actor{RPPS: r, Profession: "10", Sector: "care", Organization: org},
		Action: consent.ActionRead, Resource: consent.Resource{Kind: consent.ResourceRecord}, Purpose: purpose,
		Time: t0.Add(time.Duration(e.seq+1) * time.Minute)}
	if purpose == consent.PurposeBreakGlass {
		req.Justification = "admis inconscient"
	}
	d, err := e.engine.Decide(&req, &e.snap, e.rules)
	if err != nil {
		e.t.Fatal(err)
	}
	if forge != nil {
		forge(&d)
	}
	b, err := consent.FormatAccessRecord(&req, &d)
	if err != nil {
		e.t.Fatal(err)
	}
	e.add(p, event.KindAccess, b)
}

// source serves the illustrative rules and counts the calls.
func (e *events) source(calls *int) replay.RulesSource {
	return func(_ context.Context, v int64) ([]byte, error) {
		*calls++
		if v != e.rules.Version() {
			return nil, replay.ErrNoRules
		}
		return e.rules.Bytes(), nil
	}
}

func examine(t *testing.T, e *events, calls *int, r *audit.LogAuditReport) *Report {
	t.Helper()
	rep, err := Examine(context.Background(), Config{Engine: ladonpolicy.NewEngine(ladonpolicy.Options{}), Rules: e.source(calls),
		Misuse: misuse.Config{Now: t0.Add(time.Hour), OddHoursMin: 1000}}, r)
	if err != nil {
		t.Fatalf("Examine: %v", err)
	}
	return rep
}

func alertsOf(r *Report, k misuse.Kind) (out []uint64) {
	for _, a := range r.Alerts {
		if a.Kind == k {
			for _, ref := range a.Events {
				out = append(out, ref.Index)
			}
		}
	}
	return out
}

// TestExamineWindow: the alerts judge the accesses of the audit's window
// by their recorded time; the replay replays every access read; the rules
// are fetched once.
func TestExamineWindow(t *testing.T) {
	e := newEvents(t)
	e.access("10000000001", consent.PurposeTreatment, nil) // no care relationship, in the window
	e.access("10000000019", consent.PurposeTreatment, nil) // the same, after it
	calls := 0
	r := examine(t, e, &calls, &audit.LogAuditReport{Reader: audit.Regulator, Events: &audit.EventsRead{}, Logged: e.list, To: e.list[2].Body.Time})
	if got := alertsOf(r, misuse.KindNoCareRelationship); len(got) != 1 || got[0] != 2 {
		t.Errorf("no-care alerts on leaves %v, want leaf 2 only", got)
	}
	if r.Replay.Accesses != 2 || r.Replay.Agreed != 2 || len(r.Replay.Findings) != 0 {
		t.Errorf("replay %+v", r.Replay)
	}
	if calls != 1 {
		t.Errorf("the rules were fetched %d times, want once", calls)
	}
	if r := examine(t, e, &calls, &audit.LogAuditReport{}); r != nil || !r.Confirmed() {
		t.Errorf("an audit of the log alone: %+v, want nothing", r)
	}
}

// TestExamineReader: a regulator's events are complete, a DPO's are not: a
// decision under a consent whose change the DPO cannot see is not replayed.
func TestExamineReader(t *testing.T) {
	e := newEvents(t)
	e.snap = consent.Consent{Version: 1}
	e.access("10000000001", consent.PurposeTreatment, nil)
	calls := 0
	dpo := examine(t, e, &calls, &audit.LogAuditReport{Reader: audit.DPO, Events: &audit.EventsRead{}, Logged: e.list})
	if dpo.Replay.NotReplayable["consent not visible"] != 1 || !dpo.Confirmed() {
		t.Errorf("a DPO's replay %+v, want the access not replayable", dpo.Replay)
	}
	reg := examine(t, e, &calls, &audit.LogAuditReport{Reader: audit.Regulator, Events: &audit.EventsRead{}, Logged: e.list})
	if reg.Replay.NotReplayable["consent not visible"] != 0 || reg.Confirmed() {
		t.Errorf("a regulator's replay %+v, want a finding: the consent version is not the one in force", reg.Replay)
	}
}

// TestExamineRulesHash: the rules a decision names count for the misuse
// signals only if their bytes hash to the decision's hash, checked for
// every decision (the CLI checked the first decision of each version).
func TestExamineRulesHash(t *testing.T) {
	e := newEvents(t)
	e.access("10000000001", consent.PurposeBreakGlass, nil)
	e.access("10000000001", consent.PurposeBreakGlass, func(d *consent.Decision) { d.RulesHash[0] ^= 1 })
	calls := 0
	r := examine(t, e, &calls, &audit.LogAuditReport{Reader: audit.Regulator, Events: &audit.EventsRead{}, Logged: e.list})
	if got := alertsOf(r, misuse.KindBreakGlassUnreviewed); len(got) != 1 || got[0] != 2 {
		t.Errorf("unreviewed emergency accesses on leaves %v, want leaf 2 only (leaf 3 names rules it was not decided with)", got)
	}
}

// TestRulesCache: a decision gets the rules it names only when the
// source's bytes for its version hash to its RulesHash, for every
// decision (not only the first of a version); each version is asked for
// once, and again after a transient failure (vigie verify's labels kept
// the failure for the whole run, and flagged emergencies from the
// grounds alone after it).
func TestRulesCache(t *testing.T) {
	rules := nationalrules.Illustrative()
	var other [32]byte
	asked := map[int64]int{}
	fail := 1 // the first ask of rules.Version() fails
	c := NewRulesCache(func(_ context.Context, v int64) ([]byte, error) {
		asked[v]++
		switch {
		case v == rules.Version() && fail > 0:
			fail--
			return nil, fmt.Errorf("unavailable")
		case v == rules.Version():
			return rules.Bytes(), nil
		}
		return nil, fmt.Errorf("%w: version %d", replay.ErrNoRules, v)
	})
	for i, s := range []struct {
		version int64
		hash    [32]byte
		want    bool
	}{
		{rules.Version(), rules.Hash(), false}, // the source fails
		{rules.Version(), rules.Hash(), true},  // asked again
		{rules.Version(), other, false},        // same version, another hash
		{rules.Version(), rules.Hash(), true},
		{99, other, false},
		{99, other, false},
	} {
		got := c.Of(context.Background(), &consent.Decision{RulesVersion: s.version, RulesHash: s.hash})
		if (got != nil) != s.want {
			t.Errorf("decision %d (version %d): Of = %v, want rules %v", i, s.version, got != nil, s.want)
		}
		if got != nil && got.Hash() != s.hash {
			t.Errorf("decision %d: Of returned rules of hash %x, want %x", i, got.Hash(), s.hash)
		}
	}
	if asked[rules.Version()] != 2 || asked[99] != 1 {
		t.Errorf("source asked %v, want version %d twice (once failed), 99 once", asked, rules.Version())
	}
}
