package ladonpolicy_test

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/vigie-sante/vigie/consent"
	"github.com/vigie-sante/vigie/consent/ladonpolicy"
	"github.com/vigie-sante/vigie/consent/nationalrules"
)

func TestFreshness(t *testing.T) {
	rules := nationalrules.Illustrative()
	e := ladonpolicy.NewEngine(ladonpolicy.Options{})
	req := baseRequest()
	v1 := consent.Consent{Version: 1}
	v2 := consent.Consent{Version: 2, Directives: dirs(block("b1", drCare))}
	v3 := consent.Consent{Version: 3}

	d, err := e.Decide(&req, &v1, rules)
	if err != nil || d.Effect != consent.Allow || d.ConsentVersion != 1 {
		t.Fatalf("Decide(v1) = %s, %v; want ALLOW at version 1", describe(d), err)
	}
	d, err = e.Decide(&req, &v2, rules)
	if err != nil || d.Effect != consent.Deny || d.ConsentVersion != 2 {
		t.Fatalf("Decide(v2 blocks) = %s, %v; want DENY at version 2", describe(d), err)
	}
	// Never back in time.
	if _, err := e.Decide(&req, &v1, rules); !errors.Is(err, consent.ErrStaleConsent) {
		t.Errorf("Decide(v1 after v2) = %v, want ErrStaleConsent", err)
	}
	// Never older than the caller saw.
	req.MinConsentVersion = 3
	if _, err := e.Decide(&req, &v2, rules); !errors.Is(err, consent.ErrStaleConsent) {
		t.Errorf("Decide(v2, caller saw 3) = %v, want ErrStaleConsent", err)
	}
	d, err = e.Decide(&req, &v3, rules)
	if err != nil || d.Effect != consent.Allow || d.ConsentVersion != 3 {
		t.Errorf("Decide(v3 unblocks) = %s, %v; want ALLOW at version 3", describe(d), err)
	}
	if n := ladonpolicy.CompileCount(e); n != 3 {
		t.Errorf("compiled %d times, want 3 (one per version)", n)
	}
	// Invalid input is an error, not a decision.
	bad := baseRequest()
	bad.Purpose = ""
	var fe *consent.FieldError
	if _, err := e.Decide(&bad, &v3, rules); !errors.As(err, &fe) || fe.Field != "purpose" {
		t.Errorf("Decide(no purpose) = %v, want a purpose field error", err)
	}
	if _, err := e.Decide(&req, nil, rules); err == nil {
		t.Error("Decide(nil snapshot) = nil error")
	}
	invalid := consent.Consent{Version: 4, Directives: dirs(consent.Directive{ID: "x", Kind: consent.BlockProfessional})}
	if _, err := e.Decide(&req, &invalid, rules); err == nil {
		t.Error("Decide(consent that does not compile) = nil error")
	}
}

func TestRulesVersions(t *testing.T) {
	r1 := nationalrules.Illustrative()
	d := r1.Data()
	d.Version = 2
	for i := range d.Professions {
		if d.Professions[i].Code == "40" {
			d.Professions[i].Read = append(d.Professions[i].Read, "advance-directives")
		}
	}
	consentSort(d.Professions)
	r2, err := consent.NewRules(d)
	if err != nil {
		t.Fatal(err)
	}
	e := ladonpolicy.NewEngine(ladonpolicy.Options{})
	req := baseRequest()
	as(dentist, "40", true)(&req)
	docType("advance-directives")(&req)
	c := consent.Consent{}
	for _, tt := range []struct {
		rules *consent.Rules
		want  consent.Effect
	}{{r1, consent.Deny}, {r2, consent.Allow}, {r1, consent.Deny}} {
		got, err := e.Decide(&req, &c, tt.rules)
		if err != nil {
			t.Fatal(err)
		}
		if got.Effect != tt.want || got.RulesVersion != tt.rules.Version() || got.RulesHash != tt.rules.Hash() {
			t.Errorf("Decide(rules v%d) = %s (rules v%d), want %v", tt.rules.Version(), describe(got), got.RulesVersion, tt.want)
		}
	}
}

func consentSort(ps []consent.Profession) {
	for i := range ps {
		r := ps[i].Read
		for a := 1; a < len(r); a++ {
			for b := a; b > 0 && r[b] < r[b-1]; b-- {
				r[b], r[b-1] = r[b-1], r[b]
			}
		}
	}
}

func TestEviction(t *testing.T) {
	rules := nationalrules.Illustrative()
	e := ladonpolicy.NewEngine(ladonpolicy.Options{MaxPatients: 64})
	c := consent.Consent{Version: 1, Directives: dirs(block("b1", drOther))}
	for i := range 1000 {
		req := baseRequest()
		req.Patient = patientN(i)
		if _, err := e.Decide(&req, &c, rules); err != nil {
			t.Fatal(err)
		}
	}
	if n := e.CachedPatients(); n > 64 {
		t.Errorf("CachedPatients() = %d, want at most 64", n)
	}
}

// TestConcurrentDecide runs decisions, consent updates and rules changes
// at once; run with -race. Odd versions block the professional, even
// versions do not: every decision must match the version it names.
func TestConcurrentDecide(t *testing.T) {
	r1 := nationalrules.Illustrative()
	d := r1.Data()
	d.Version = 2
	r2, err := consent.NewRules(d)
	if err != nil {
		t.Fatal(err)
	}
	e := ladonpolicy.NewEngine(ladonpolicy.Options{MaxPatients: 256})
	const patients = 16
	var latest [patients]atomic.Pointer[consent.Consent]
	for p := range patients {
		latest[p].Store(&consent.Consent{Version: 0})
	}
	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Go(func() { // writer
		for v := int64(1); v <= 300; v++ {
			for p := range patients {
				c := &consent.Consent{Version: v}
				if v%2 == 1 {
					c.Directives = dirs(block("b1", drCare), hideDoc("h1", "doc-<[0-9]+>"))
				}
				latest[p].Store(c)
			}
		}
		stop.Store(true)
	})
	var decided, stale atomic.Int64
	for g := range 4 {
		wg.Go(func() {
			seen := make([]int64, patients)
			for i := 0; !stop.Load() || i < 200; i++ {
				p := (g + i) % patients
				c := latest[p].Load()
				req := baseRequest()
				req.Patient = patientN(p)
				req.MinConsentVersion = seen[p]
				rules := r1
				if i%3 == 0 {
					rules = r2
				}
				got, err := e.Decide(&req, c, rules)
				if errors.Is(err, consent.ErrStaleConsent) {
					stale.Add(1)
					continue
				}
				if err != nil {
					t.Errorf("Decide() = %v", err)
					return
				}
				decided.Add(1)
				if got.ConsentVersion < seen[p] {
					t.Errorf("patient %d: decided with version %d after %d", p, got.ConsentVersion, seen[p])
				}
				seen[p] = got.ConsentVersion
				want := consent.Allow
				if got.ConsentVersion%2 == 1 {
					want = consent.Deny
				}
				if got.Effect != want || got.ConsentVersion != c.Version || got.RulesVersion != rules.Version() {
					t.Errorf("patient %d: Decide(version %d) = %s v%d rules v%d, want %v", p, c.Version, describe(got), got.ConsentVersion, got.RulesVersion, want)
				}
			}
		})
	}
	wg.Wait()
	if decided.Load() == 0 {
		t.Fatal("no decision made")
	}
	t.Logf("%d decisions, %d refused as stale", decided.Load(), stale.Load())
}
