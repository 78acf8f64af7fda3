package ladonpolicy_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ory/ladon"
	"github.com/ory/ladon/manager/memory"

	"github.com/vigie-sante/vigie/consent"
	"github.com/vigie-sante/vigie/consent/ident"
	"github.com/vigie-sante/vigie/consent/ladonpolicy"
	"github.com/vigie-sante/vigie/consent/nationalrules"
)

// Each test here handles one of ladon's known traps (issue 4).

// Trap 1: FindRequestCandidates may return a superset, and the stock
// memory manager returns every policy. Ours returns the patient's policies
// and the relevant rules, from indexes.
func TestTrapCandidatesFromIndex(t *testing.T) {
	ctx := context.Background()
	rules := nationalrules.Illustrative()
	e := ladonpolicy.NewEngine(ladonpolicy.Options{})
	// Ten thousand patients in the engine's cache.
	for i := range 10000 {
		req := baseRequest()
		req.Patient = patientN(i)
		c := consent.Consent{Version: 1, Directives: []consent.Directive{block("b", drOther), hideDoc("h", "doc-9"), who("t", consent.TreatingPhysician, drTreat)}}
		if _, err := e.Decide(&req, &c, rules); err != nil {
			t.Fatal(err)
		}
	}
	if n := e.CachedPatients(); n != 10000 {
		t.Fatalf("CachedPatients() = %d, want 10000", n)
	}
	req := baseRequest()
	c := consent.Consent{Version: 1, Directives: []consent.Directive{block("b", drOther), hideDoc("h", "doc-9"), who("t", consent.TreatingPhysician, drTreat)}}
	lr, err := e.LadonRequest(&req, &c, rules)
	if err != nil {
		t.Fatal(err)
	}
	cands := ladonpolicy.Candidates(e, lr)
	// The block and treating directives name other professionals: left
	// out. The hide directive and the hidden-document rule, plus the
	// purpose, justification and two care-sector rules.
	var ids []string
	for _, p := range cands {
		ids = append(ids, p.GetID())
	}
	want := []string{"purpose", "justification-required", "care-team", "break-glass", "directive/h", "hidden-document"}
	if !slices.Equal(ids, want) {
		t.Errorf("FindRequestCandidates() = %v, want %v", ids, want)
	}
	if total := ladonpolicy.RulePolicyCount(e, lr); total < 100 {
		t.Errorf("national rules compiled to %d policies; the index should be tested against more", total)
	}
	policies, err := e.Manager().FindRequestCandidates(ctx, lr)
	if err != nil || len(policies) != len(want) {
		t.Errorf("Manager.FindRequestCandidates() = %d policies, %v; want %d", len(policies), err, len(want))
	}

	// The stock memory manager returns everything it holds.
	mm := memory.NewMemoryManager()
	for i := range 1000 {
		if err := mm.Create(ctx, &ladon.DefaultPolicy{ID: fmt.Sprint(i), Subjects: []string{fmt.Sprintf("rpps:%011d", i)}, Actions: []string{"read"}, Resources: []string{"<.*>"}, Effect: ladon.AllowAccess}); err != nil {
			t.Fatal(err)
		}
	}
	all, _ := mm.FindRequestCandidates(ctx, &ladon.Request{Subject: "rpps:00000000001", Action: "read"})
	if len(all) != 1000 {
		t.Errorf("stock memory manager returned %d candidates, expected the trap (all 1000)", len(all))
	}
}

func patientN(i int) ident.INS {
	body := fmt.Sprintf("1850575%06d", i)
	var n uint64
	for _, c := range body {
		n = n*10 + uint64(c-'0')
	}
	x, err := ident.ParseINS(fmt.Sprintf("%s%02d", body, 97-n%97))
	if err != nil {
		panic(err)
	}
	return x
}

// Trap 2: the default matcher compiles patterns into a 512-entry cache.
// Ours compiles them when written, and never per request.
func TestTrapPatternsCompiledWhenWritten(t *testing.T) {
	ctx := context.Background()
	m := ladonpolicy.NewManager()
	bad := &ladon.DefaultPolicy{ID: "bad", Subjects: []string{"a"}, Actions: []string{"read"}, Resources: []string{"doc:<[0-9>"}, Effect: ladon.AllowAccess}
	if err := m.Create(ctx, bad); err == nil {
		t.Error("Manager.Create(pattern that does not compile) = nil, want an error")
	}
	unbalanced := &ladon.DefaultPolicy{ID: "unbalanced", Subjects: []string{"a"}, Actions: []string{"read"}, Resources: []string{"doc:<.*"}, Effect: ladon.AllowAccess}
	if err := m.Update(ctx, unbalanced); err == nil {
		t.Error("Manager.Update(unbalanced pattern) = nil, want an error")
	}

	// A foreign policy with a regular expression that was not compiled
	// when written is an error, not a compilation per request.
	foreign := &ladon.DefaultPolicy{ID: "foreign", Subjects: []string{"a"}, Actions: []string{"read"}, Resources: []string{"doc:<[0-9]+>"}, Effect: ladon.AllowAccess}
	if _, err := (ladonpolicy.Matcher{}).Matches(foreign, foreign.Resources, "doc:12"); err == nil || !strings.Contains(err.Error(), "not compiled") {
		t.Errorf("Matcher.Matches(uncompiled pattern) = %v, want a not-compiled error", err)
	}
	// Shapes need no compilation.
	shaped := &ladon.DefaultPolicy{ID: "shaped", Resources: []string{"doc:<.*>"}}
	if ok, err := (ladonpolicy.Matcher{}).Matches(shaped, shaped.Resources, "doc:12"); !ok || err != nil {
		t.Errorf("Matcher.Matches(doc:<.*>, doc:12) = %v, %v; want true", ok, err)
	}
	// Written through the Manager, it is compiled.
	if err := m.Create(ctx, foreign); err != nil {
		t.Fatal(err)
	}
	w := &ladonpolicy.Warden{Manager: m}
	if err := w.IsAllowed(ctx, &ladon.Request{Subject: "a", Action: "read", Resource: "doc:12"}); err != nil {
		t.Errorf("Warden.IsAllowed(compiled pattern) = %v, want nil", err)
	}

	// The engine compiles a consent's patterns once per version.
	rules := nationalrules.Illustrative()
	e := ladonpolicy.NewEngine(ladonpolicy.Options{})
	c := consent.Consent{Version: 1, Directives: []consent.Directive{hideDoc("h1", "stay-<[0-9]+>-<[a-z]+>")}}
	for i := range 1000 {
		req := baseRequest()
		req.Resource.DocumentID = fmt.Sprintf("stay-%d-x", i)
		d, err := e.Decide(&req, &c, rules)
		if err != nil {
			t.Fatal(err)
		}
		if d.Effect != consent.Deny {
			t.Fatalf("Decide(hidden by pattern) = %v, want DENY", d.Effect)
		}
	}
	if n := ladonpolicy.CompileCount(e); n != 1 {
		t.Errorf("1000 decisions compiled the consent %d times, want 1", n)
	}
	var fe *consent.FieldError
	badConsent := consent.Consent{Version: 2, Directives: []consent.Directive{hideDoc("h1", "x-<[0-9>")}}
	if err := e.CheckConsent(&badConsent, rules); !errors.As(err, &fe) || fe.Field != "directives[0].document" {
		t.Errorf("CheckConsent(bad pattern) = %v, want a field error on directives[0].document", err)
	}
}

// Trap 3: Ladon.metric() writes the Metric field lazily, racing between
// goroutines; NewLadon sets Metric, AuditLogger and Matcher. Run with
// -race.
func TestTrapNewLadonSetsEveryHook(t *testing.T) {
	l := ladonpolicy.NewLadon(ladonpolicy.NewManager(), nil)
	if l.Metric == nil || l.AuditLogger == nil || l.Matcher == nil {
		t.Fatalf("NewLadon() = Metric %v, AuditLogger %v, Matcher %v; want all set", l.Metric, l.AuditLogger, l.Matcher)
	}
	if err := l.Manager.Create(context.Background(), &ladon.DefaultPolicy{ID: "p", Subjects: []string{"a"}, Actions: []string{"read"}, Resources: []string{"<.*>"}, Effect: ladon.AllowAccess}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				subject := "a"
				if (g+i)%2 == 0 {
					subject = "b" // denied: exercises the metric path
				}
				err := l.IsAllowed(context.Background(), &ladon.Request{Subject: subject, Action: "read", Resource: "x"})
				if (err == nil) != (subject == "a") {
					t.Errorf("IsAllowed(%s) = %v", subject, err)
				}
			}
		})
	}
	wg.Wait()
}

// blockingMetric blocks RequestNoMatch until released.
type blockingMetric struct {
	ladon.MetricNoOp
	called  chan struct{}
	release chan struct{}
}

func (m *blockingMetric) RequestNoMatch(ladon.Request) {
	m.called <- struct{}{}
	<-m.release
}

// Trap 4: stock DoPoliciesAllow starts a goroutine for the Metric on every
// deny and no-match. The engine's own loop starts none.
func TestTrapNoGoroutinePerDenial(t *testing.T) {
	ctx := context.Background()
	m := ladonpolicy.NewManager()
	metric := &blockingMetric{called: make(chan struct{}, 1), release: make(chan struct{})}
	stock := &ladon.Ladon{Manager: m, Matcher: ladonpolicy.Matcher{}, AuditLogger: &ladon.AuditLoggerNoOp{}, Metric: metric}
	// RequestNoMatch blocks, yet IsAllowed returns: it ran in another
	// goroutine.
	if err := stock.IsAllowed(ctx, &ladon.Request{Subject: "nobody", Action: "read"}); err == nil {
		t.Fatal("IsAllowed(no policy) = nil")
	}
	select {
	case <-metric.called:
	case <-time.After(time.Minute): // only so as to fail rather than hang
		t.Fatal("stock ladon did not call RequestNoMatch within a minute")
	}
	close(metric.release)

	rules := nationalrules.Illustrative()
	e := ladonpolicy.NewEngine(ladonpolicy.Options{})
	c := consent.Consent{Version: 1, Directives: []consent.Directive{block("b1", drCare)}}
	req := baseRequest()
	if _, err := e.Decide(&req, &c, rules); err != nil { // warm up
		t.Fatal(err)
	}
	before := runtime.NumGoroutine()
	for range 1000 {
		d, err := e.Decide(&req, &c, rules)
		if err != nil || d.Effect != consent.Deny {
			t.Fatalf("Decide(blocked) = %v, %v", d.Effect, err)
		}
	}
	if after := runtime.NumGoroutine(); after > before {
		t.Errorf("1000 denials: goroutines %d -> %d, want no new goroutine", before, after)
	}
	allocs := testing.AllocsPerRun(100, func() { _, _ = e.Decide(&req, &c, rules) })
	if allocs > 20 {
		t.Errorf("Decide allocates %.0f times per denial, want at most 20", allocs)
	}
}

// Trap 5: national rules are indexed by action, profession and document
// type: a request gets at most the one matrix policy of its cell.
func TestTrapRulesIndexed(t *testing.T) {
	rules := nationalrules.Illustrative()
	e := ladonpolicy.NewEngine(ladonpolicy.Options{})
	d := rules.Data()
	c := consent.Consent{}
	for _, p := range d.Professions {
		for _, dt := range d.DocumentTypes {
			for _, a := range []consent.Action{consent.ActionRead, consent.ActionWrite} {
				req := baseRequest()
				req.Actor.Profession, req.Action, req.Resource.DocumentType = p.Code, a, dt.Code
				lr, err := e.LadonRequest(&req, &c, rules)
				if err != nil {
					t.Fatal(err)
				}
				var matrix []string
				cands := ladonpolicy.Candidates(e, lr)
				for _, cp := range cands {
					if strings.HasPrefix(cp.GetID(), "matrix/") {
						matrix = append(matrix, cp.GetID())
					}
				}
				if len(cands) > 8 {
					t.Errorf("%s %s %s: %d candidates, want at most 8", p.Code, a, dt.Code, len(cands))
				}
				permitted := rules.Permits(p.Code, a, dt.Code)
				wantMatrix := []string{"matrix/" + p.Code + "/" + string(a) + "/" + dt.Code}
				if permitted {
					wantMatrix = nil
				}
				if !slices.Equal(matrix, wantMatrix) {
					t.Errorf("%s %s %s: matrix candidates %v, want %v", p.Code, a, dt.Code, matrix, wantMatrix)
				}
			}
		}
	}
}

// Trap 6: a conditional deny whose context key is missing silently does
// not apply with ladon's stock conditions. Ours apply.
func TestTrapMissingContextKeyFailSafe(t *testing.T) {
	ctx := context.Background()
	// The trap, with stock conditions: a deny scoped to emergencies does
	// not apply to a request without a purpose.
	naive := ladonpolicy.NewManager()
	_ = naive.Create(ctx, &ladon.DefaultPolicy{ID: "allow", Subjects: []string{"<.*>"}, Actions: []string{"read"}, Resources: []string{"<.*>"}, Effect: ladon.AllowAccess})
	_ = naive.Create(ctx, &ladon.DefaultPolicy{ID: "oppose", Subjects: []string{"<.*>"}, Actions: []string{"read"}, Resources: []string{"<.*>"}, Effect: ladon.DenyAccess,
		Conditions: ladon.Conditions{"purpose": &ladon.StringEqualCondition{Equals: "BTG"}}})
	if err := ladonpolicy.NewLadon(naive, nil).IsAllowed(ctx, &ladon.Request{Subject: "x", Action: "read", Resource: "r"}); err != nil {
		t.Fatalf("the stock-condition trap did not reproduce: %v", err)
	}

	rules := nationalrules.Illustrative()
	e := ladonpolicy.NewEngine(ladonpolicy.Options{})
	tests := []struct {
		name       string
		directives []consent.Directive
		edits      []func(*consent.Request)
		drop       string
		wantDeny   string // a ground that must deny once the key is dropped
	}{
		{"purpose dropped: opposition still applies", dirs(dir("o1", consent.OpposeEmergency)), fns(as(drOther, "10", false), emergency), ladonpolicy.KeyPurpose, "directive/o1"},
		{"purpose dropped: justification still required", nil, fns(as(drOther, "10", false), emergency, justify("")), ladonpolicy.KeyPurpose, "justification-required"},
		{"justification flag dropped", nil, fns(as(drOther, "10", false), emergency), ladonpolicy.KeyJustified, "justification-required"},
		{"time dropped: an expired block applies", dirs(until(block("b1", drCare), yesterday)), nil, ladonpolicy.KeyTime, "directive/b1"},
		{"organization dropped: an organization block applies", dirs(consent.Directive{ID: "bo", Kind: consent.BlockOrganization, Organization: hospital}), fns(org(clinic)), ladonpolicy.KeyOrganization, "directive/bo"},
		{"hidden flag dropped: the document counts as hidden", nil, nil, ladonpolicy.KeyHidden, "hidden-document"},
		{"sector dropped: never-access rules apply", nil, fns(sector("insurer")), ladonpolicy.KeySector, "unknown-sector"},
		{"profession dropped", nil, nil, ladonpolicy.KeyProfession, "unknown-profession"},
		{"document type dropped", nil, nil, ladonpolicy.KeyDocumentType, "unknown-document-type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := consent.Consent{Version: 1, Directives: tt.directives}
			req := baseRequest()
			for _, f := range tt.edits {
				f(&req)
			}
			lr, err := e.LadonRequest(&req, &c, rules)
			if err != nil {
				t.Fatal(err)
			}
			delete(lr.Context, tt.drop)
			w := &ladonpolicy.Warden{Manager: e.Manager()}
			allowed, deciders, err := w.Evaluate(ctx, lr)
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, p := range deciders {
				ids = append(ids, p.GetID())
			}
			if allowed || !slices.Contains(ids, tt.wantDeny) {
				t.Errorf("Evaluate(without %s) = allowed %v by %v, want denied by %s", tt.drop, allowed, ids, tt.wantDeny)
			}
			if err := ladonpolicy.NewLadon(e.Manager(), nil).IsAllowed(ctx, lr); !errors.Is(err, ladon.ErrRequestForcefullyDenied) {
				t.Errorf("stock ladon IsAllowed(without %s) = %v, want forcefully denied", tt.drop, err)
			}
		})
	}
}

// Trap 7: exceptions to a deny must not let a caller slip through: they
// hold only when proven.
func TestTrapExceptionsFailSafe(t *testing.T) {
	ctx := context.Background()
	rules := nationalrules.Illustrative()
	e := ladonpolicy.NewEngine(ladonpolicy.Options{})
	w := &ladonpolicy.Warden{Manager: e.Manager()}
	treating := consent.Consent{Version: 1, Directives: dirs(who("t1", consent.TreatingPhysician, drTreat), hideDoc("h1", "doc-1"))}
	tests := []struct {
		name     string
		c        consent.Consent
		edits    []func(*consent.Request)
		tamper   func(ladon.Context)
		allowed  bool
		denyRule string
	}{
		{"author reads hidden", consent.Consent{}, fns(hidden, as(drAuthor, "10", true)), nil, true, ""},
		{"author unproven: no author", consent.Consent{}, fns(hidden, as(drAuthor, "10", true)), func(c ladon.Context) { delete(c, ladonpolicy.KeyAuthor) }, false, "hidden-document"},
		{"author unproven: ill-typed", consent.Consent{}, fns(hidden, as(drAuthor, "10", true)), func(c ladon.Context) { c[ladonpolicy.KeyAuthor] = 10000000022 }, false, "hidden-document"},
		{"author unproven: empty", consent.Consent{}, fns(hidden, as(drAuthor, "10", true)), func(c ladon.Context) { c[ladonpolicy.KeyAuthor] = "" }, false, "hidden-document"},
		{"author is someone else", consent.Consent{}, fns(hidden), nil, false, "hidden-document"},
		{"treating physician reads hidden", treating, fns(as(drTreat, "10", true)), nil, true, ""},
		{"treating physician unproven: no time", treating, fns(as(drTreat, "10", true)), func(c ladon.Context) { delete(c, ladonpolicy.KeyTime) }, false, "directive/h1"},
		{"treating physician unproven: ill-typed time", treating, fns(as(drTreat, "10", true)), func(c ladon.Context) { c[ladonpolicy.KeyTime] = now }, false, "directive/h1"},
		{"treating physician at another time", treating, fns(as(drTreat, "10", true)), func(c ladon.Context) { c[ladonpolicy.KeyTime] = int64(-1) }, true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := baseRequest()
			for _, f := range tt.edits {
				f(&req)
			}
			lr, err := e.LadonRequest(&req, &tt.c, rules)
			if err != nil {
				t.Fatal(err)
			}
			if tt.tamper != nil {
				tt.tamper(lr.Context)
			}
			allowed, deciders, err := w.Evaluate(ctx, lr)
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, p := range deciders {
				ids = append(ids, p.GetID())
			}
			if allowed != tt.allowed || (!tt.allowed && !slices.Contains(ids, tt.denyRule)) {
				t.Errorf("Evaluate(%s) = allowed %v by %v, want allowed %v (deny by %q)", tt.name, allowed, ids, tt.allowed, tt.denyRule)
			}
			stockErr := ladonpolicy.NewLadon(e.Manager(), nil).IsAllowed(ctx, lr)
			if (stockErr == nil) != tt.allowed {
				t.Errorf("stock ladon IsAllowed(%s) = %v, want allowed %v", tt.name, stockErr, tt.allowed)
			}
		})
	}
}

// TestMatchesStockLadon decides random requests against random consents
// with the engine and with stock ladon (on the engine's Manager and
// Matcher) and checks they agree.
func TestMatchesStockLadon(t *testing.T) {
	ctx := context.Background()
	rules := nationalrules.Illustrative()
	e := ladonpolicy.NewEngine(ladonpolicy.Options{})
	stock := ladonpolicy.NewLadon(e.Manager(), nil)
	rng := rand.New(rand.NewPCG(1, 2))
	people := []ident.RPPS{drCare, drAuthor, drTreat, drOther, nurse, dentist}
	pick := func(n int) int { return rng.IntN(n) }
	times := []time.Time{{}, yesterday, now, tomorrow}
	var allowed, denied int
	for i := range 3000 {
		var ds []consent.Directive
		for j := range pick(4) {
			id := fmt.Sprintf("d%d", j)
			var d consent.Directive
			switch pick(8) {
			case 0:
				d = block(id, people[pick(len(people))])
			case 1:
				d = who(id, consent.AllowProfessional, people[pick(len(people))])
			case 2:
				d = who(id, consent.TreatingPhysician, people[pick(len(people))])
			case 3:
				d = who(id, consent.ExtendedRights, people[pick(len(people))])
			case 4:
				d = hideDoc(id, []string{"doc-1", "doc-2", "doc-<[0-9]>", "d<.*>"}[pick(4)])
			case 5:
				d = dir(id, []consent.DirectiveKind{consent.HideEverything, consent.OpposeEmergency, consent.OptOut}[pick(3)])
			case 6:
				d = consent.Directive{ID: id, Kind: consent.BlockOrganization, Organization: []ident.FINESS{hospital, clinic}[pick(2)]}
			case 7:
				d = consent.Directive{ID: id, Kind: consent.HideDocumentType, DocumentType: "consultation-note"}
			}
			d.From, d.Until = times[pick(2)], []time.Time{{}, tomorrow}[pick(2)]
			ds = append(ds, d)
		}
		c := consent.Consent{Version: 1, Directives: ds}
		if consent.ValidateConsent(&c, rules) != nil {
			continue
		}
		req := baseRequest()
		req.Patient = patientN(i)
		req.Actor.RPPS = people[pick(len(people))]
		req.Actor.Profession = []string{"10", "10", "10", "40", "60", "80", "99"}[pick(7)]
		req.Actor.Sector = []string{"care", "care", "care", "care", "samu", "insurer", "occupational-health", "x"}[pick(8)]
		req.Actor.Organization = []ident.FINESS{hospital, clinic}[pick(2)]
		req.Actor.CareTeam = pick(3) != 0
		req.Action = []consent.Action{consent.ActionRead, consent.ActionRead, consent.ActionWrite, consent.ActionHide}[pick(4)]
		req.Purpose = []consent.Purpose{consent.PurposeTreatment, consent.PurposeTreatment, consent.PurposeBreakGlass, consent.PurposeEmergencyTreatment, consent.PurposeResearch}[pick(5)]
		req.Justification = []string{"", "unconscious", "unconscious"}[pick(3)]
		req.Resource.DocumentID = []string{"doc-1", "doc-2", "doc-3"}[pick(3)]
		req.Resource.DocumentType = []string{"consultation-note", "consultation-note", "consultation-note", "advance-directives", "delivery-report", "zz"}[pick(6)]
		req.Resource.Hidden = pick(3) == 0
		req.Resource.Author = []ident.RPPS{{}, drAuthor, drCare}[pick(3)]
		if req.Action == consent.ActionRead && pick(4) == 0 {
			req.Resource = consent.Resource{Kind: consent.ResourceRecord}
		}
		d, err := e.Decide(&req, &c, rules)
		if err != nil {
			t.Fatalf("Decide() = %v", err)
		}
		lr, err := e.LadonRequest(&req, &c, rules)
		if err != nil {
			t.Fatal(err)
		}
		stockErr := stock.IsAllowed(ctx, lr)
		if stockErr != nil && !errors.Is(stockErr, ladon.ErrRequestDenied) && !errors.Is(stockErr, ladon.ErrRequestForcefullyDenied) {
			t.Fatalf("stock IsAllowed() = %v", stockErr)
		}
		if (d.Effect == consent.Allow) != (stockErr == nil) {
			t.Fatalf("request %d: Decide() = %s, stock ladon = %v", i, describe(d), stockErr)
		}
		if d.Effect == consent.Deny && (len(d.Grounds) == 0 || d.Grounds[0].ID != consent.RuleDefaultDeny) != errors.Is(stockErr, ladon.ErrRequestForcefullyDenied) {
			t.Fatalf("request %d: Decide() = %s, stock ladon = %v: forceful and default denials differ", i, describe(d), stockErr)
		}
		if d.Effect == consent.Allow {
			allowed++
		} else {
			denied++
		}
	}
	if allowed < 100 || denied < 100 {
		t.Errorf("%d allowed, %d denied: the random requests do not exercise both answers", allowed, denied)
	}
}
