package consent_test

import (
	"context"
	"errors"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigie-sante/vigie/consent"
	"github.com/vigie-sante/vigie/consent/consenttest"
	"github.com/vigie-sante/vigie/consent/ident"
	"github.com/vigie-sante/vigie/consent/ladonpolicy"
	"github.com/vigie-sante/vigie/consent/memstore"
	"github.com/vigie-sante/vigie/consent/nationalrules"
)

var ctx = context.Background()

type fixture struct {
	store    *memstore.Store
	recorder *consenttest.Recorder
	svc      *consent.Service
	now      time.Time
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{store: memstore.New(), now: time.Date(2025, 6, 1, 10, 0, 0, 0, time.UTC)}
	f.recorder = &consenttest.Recorder{Store: f.store}
	svc, err := consent.NewService(ctx, consent.Config{
		Store: f.store, Recorder: f.recorder, Engine: ladonpolicy.NewEngine(ladonpolicy.Options{}),
		Rules: nationalrules.Illustrative(), Clock: func() time.Time { return f.now },
	})
	if err != nil {
		t.Fatal(err)
	}
	f.svc = svc
	return f
}

func (f *fixture) patient() ident.INS { return validRequest().Patient }

func blockDrA() []consent.Directive {
	return []consent.Directive{{ID: "b1", Kind: consent.BlockProfessional, Professional: drA}}
}

func TestCheckRecordsEveryDecision(t *testing.T) {
	f := newFixture(t)
	req := validRequest()
	d, rec, err := f.svc.Check(ctx, req)
	if err != nil || d.Effect != consent.Allow {
		t.Fatalf("Check() = %v, %v; want ALLOW", d.Effect, err)
	}
	if _, err := f.svc.UpdateConsent(ctx, f.patient(), 0, blockDrA(), "patient"); err != nil {
		t.Fatal(err)
	}
	req.ID = "req-2"
	d2, rec2, err := f.svc.Check(ctx, req)
	if err != nil || d2.Effect != consent.Deny || d2.ConsentVersion != 1 {
		t.Fatalf("Check(blocked) = %v v%d, %v; want DENY at version 1", d2.Effect, d2.ConsentVersion, err)
	}
	ev := f.recorder.Events()
	if len(ev) != 2 || ev[0].Decision.Effect != consent.Allow || ev[1].Decision.Effect != consent.Deny {
		t.Fatalf("recorded %d events, want the ALLOW and the DENY", len(ev))
	}
	if rec.Index != 0 || rec2.Index != 1 {
		t.Errorf("receipt indexes %d, %d; want 0, 1", rec.Index, rec2.Index)
	}
}

func TestCheckInvalidRequestRecordsNothing(t *testing.T) {
	f := newFixture(t)
	req := validRequest()
	req.Actor.Profession = ""
	var fe *consent.FieldError
	if _, _, err := f.svc.Check(ctx, req); !errors.As(err, &fe) || fe.Field != "actor.profession" {
		t.Errorf("Check(no profession) = %v, want a field error", err)
	}
	if n := len(f.recorder.Events()); n != 0 {
		t.Errorf("recorded %d events for an invalid request", n)
	}
}

func TestCheckUsesTheClock(t *testing.T) {
	f := newFixture(t)
	req := validRequest()
	req.Time = time.Time{}
	d, _, err := f.svc.Check(ctx, req)
	if err != nil || !d.Time.Equal(f.now) {
		t.Errorf("Check(no time) decided at %v, %v; want the clock's %v", d.Time, err, f.now)
	}
}

// Never an ALLOW without a record.
func TestCheckRecordFailsNotPersisted(t *testing.T) {
	f := newFixture(t)
	f.recorder.FailNext(consenttest.FailNotPersisted)
	req := validRequest()
	d, _, err := f.svc.Check(ctx, req)
	if !errors.Is(err, consenttest.ErrInjected) || d.Effect != consent.Deny {
		t.Fatalf("Check(record fails) = %v, %v; want an error and no ALLOW", d.Effect, err)
	}
	if n := len(f.recorder.Events()); n != 0 {
		t.Fatalf("%d events recorded", n)
	}
	// The caller retries with the same key: decided and recorded now.
	d, _, err = f.svc.Check(ctx, req)
	if err != nil || d.Effect != consent.Allow || len(f.recorder.Events()) != 1 {
		t.Errorf("retried Check() = %v, %v with %d events; want ALLOW recorded once", d.Effect, err, len(f.recorder.Events()))
	}
}

// A retry after a failure that did persist gets the first answer back,
// even though the consent changed since.
func TestCheckRecordFailsPersisted(t *testing.T) {
	f := newFixture(t)
	f.recorder.FailNext(consenttest.FailPersisted)
	req := validRequest()
	d, _, err := f.svc.Check(ctx, req)
	if !errors.Is(err, consenttest.ErrInjected) || d.Effect != consent.Deny {
		t.Fatalf("Check(record fails after persisting) = %v, %v; want an error and no ALLOW", d.Effect, err)
	}
	if _, err := f.svc.UpdateConsent(ctx, f.patient(), 0, blockDrA(), "patient"); err != nil {
		t.Fatal(err)
	}
	d, rec, err := f.svc.Check(ctx, req)
	if err != nil || d.Effect != consent.Allow || d.ConsentVersion != 0 {
		t.Errorf("retried Check() = %v v%d, %v; want the first answer, ALLOW at version 0", d.Effect, d.ConsentVersion, err)
	}
	if ev := f.recorder.Events(); len(ev) != 1 || rec.Index != 0 {
		t.Errorf("%d events, receipt index %d; want the single first event", len(ev), rec.Index)
	}
	// A new request sees the block.
	req.ID = "req-2"
	if d, _, err := f.svc.Check(ctx, req); err != nil || d.Effect != consent.Deny {
		t.Errorf("new Check() = %v, %v; want DENY", d.Effect, err)
	}
}

// The consent changes between decision and record: decided again with the
// new consent, and recorded under it.
func TestCheckConsentChangedRedecides(t *testing.T) {
	f := newFixture(t)
	var once sync.Once
	f.recorder.BeforeRecord = func(ctx context.Context, _ consent.RequestKey, _ *consent.Request, d *consent.Decision) {
		once.Do(func() {
			if d.ConsentVersion != 0 {
				t.Errorf("first decision used version %d, want 0", d.ConsentVersion)
			}
			if _, err := f.svc.UpdateConsent(ctx, f.patient(), 0, blockDrA(), "patient"); err != nil {
				t.Error(err)
			}
		})
	}
	d, _, err := f.svc.Check(ctx, validRequest())
	if err != nil || d.Effect != consent.Deny || d.ConsentVersion != 1 {
		t.Fatalf("Check() = %v v%d, %v; want DENY decided again at version 1", d.Effect, d.ConsentVersion, err)
	}
	ev := f.recorder.Events()
	if len(ev) != 1 || ev[0].Decision.ConsentVersion != 1 || ev[0].Decision.Effect != consent.Deny {
		t.Errorf("events = %+v; want one DENY under version 1", ev)
	}
}

// National rules published elsewhere (the store, as another node would)
// between decision and record: the decision is not recorded under the old
// version; the service reads the latest rules and decides again.
func TestCheckRulesChangedRedecides(t *testing.T) {
	f := newFixture(t)
	d2 := nationalrules.Illustrative().Data()
	d2.Version = 2
	v2, err := consent.NewRules(d2)
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	f.recorder.BeforeRecord = func(ctx context.Context, _ consent.RequestKey, _ *consent.Request, d *consent.Decision) {
		once.Do(func() {
			if d.RulesVersion != 1 {
				t.Errorf("first decision under rules version %d, want 1", d.RulesVersion)
			}
			if err := f.store.PutRules(ctx, v2, consent.Change{Time: f.now, Author: "admin:other-node"}); err != nil {
				t.Error(err)
			}
		})
	}
	d, _, err := f.svc.Check(ctx, validRequest())
	if err != nil || d.RulesVersion != 2 {
		t.Fatalf("Check() = rules version %d, %v; want decided again under version 2", d.RulesVersion, err)
	}
	if ev := f.recorder.Events(); len(ev) != 1 || ev[0].Decision.RulesVersion != 2 {
		t.Errorf("events = %+v; want one decision under rules version 2", ev)
	}
	if got := f.svc.Rules().Version(); got != 2 {
		t.Errorf("Rules().Version() = %d after the retry, want 2", got)
	}
}

func TestCheckConsentKeepsChanging(t *testing.T) {
	f := newFixture(t)
	f.recorder.BeforeRecord = func(ctx context.Context, _ consent.RequestKey, req *consent.Request, _ *consent.Decision) {
		c, err := f.store.Consent(ctx, req.Patient)
		if err != nil {
			t.Error(err)
			return
		}
		if _, err := f.store.UpdateConsent(ctx, req.Patient, c.Version, nil, consent.Change{Time: f.now, Author: "patient"}); err != nil {
			t.Error(err)
		}
	}
	d, _, err := f.svc.Check(ctx, validRequest())
	if !errors.Is(err, consent.ErrConsentChanged) || d.Effect != consent.Deny {
		t.Errorf("Check(consent changing) = %v, %v; want ErrConsentChanged", d.Effect, err)
	}
	if n := len(f.recorder.Events()); n != 0 {
		t.Errorf("%d events recorded", n)
	}
	if c, _ := f.store.Consent(ctx, f.patient()); c.Version != 3 {
		t.Errorf("%d attempts, want 3 (MaxAttempts)", c.Version)
	}
}

func TestCheckMinConsentVersion(t *testing.T) {
	f := newFixture(t)
	req := validRequest()
	req.MinConsentVersion = 1
	// Not ErrStaleConsent, which says "retry": the store was read, and
	// version 1 does not exist.
	if _, _, err := f.svc.Check(ctx, req); !errors.Is(err, consent.ErrConsentAhead) || errors.Is(err, consent.ErrStaleConsent) {
		t.Errorf("Check(caller saw version 1, store has 0) = %v, want ErrConsentAhead", err)
	}
	if n := len(f.recorder.Events()); n != 0 {
		t.Errorf("%d events recorded", n)
	}
	if _, err := f.svc.UpdateConsent(ctx, f.patient(), 0, nil, "patient"); err != nil {
		t.Fatal(err)
	}
	if d, _, err := f.svc.Check(ctx, req); err != nil || d.ConsentVersion != 1 {
		t.Errorf("Check(caller saw version 1) = v%d, %v; want version 1", d.ConsentVersion, err)
	}
}

// A decision after an update, in another goroutine, reflects it.
func TestCheckReadsItsWrites(t *testing.T) {
	f := newFixture(t)
	for v := int64(0); v < 20; v++ {
		var ds []consent.Directive
		if v%2 == 0 {
			ds = blockDrA()
		}
		rec, err := f.svc.UpdateConsent(ctx, f.patient(), v, ds, "patient")
		if err != nil {
			t.Fatal(err)
		}
		want := consent.Allow
		if len(ds) > 0 {
			want = consent.Deny
		}
		var wg sync.WaitGroup
		wg.Go(func() {
			req := validRequest()
			req.ID = "req-" + string(rune('a'+v))
			d, _, err := f.svc.Check(ctx, req)
			if err != nil || d.Effect != want || d.ConsentVersion != rec.Version {
				t.Errorf("Check() after update to version %d = %v v%d, %v; want %v", rec.Version, d.Effect, d.ConsentVersion, err, want)
			}
		})
		wg.Wait()
	}
}

func TestCheckRecordsObligations(t *testing.T) {
	f := newFixture(t)
	req := validRequest()
	req.Actor.CareTeam = false
	req.Purpose = consent.PurposeBreakGlass
	req.Justification = "unconscious, no relative reachable"
	d, _, err := f.svc.Check(ctx, req)
	if err != nil || d.Effect != consent.Allow {
		t.Fatalf("Check(break-glass) = %v, %v", d.Effect, err)
	}
	ev := f.recorder.Events()
	want := []consent.Obligation{consent.NotifyPatient, consent.NotifyTreatingPhysician, consent.FlagForReview}
	if len(ev) != 1 || len(ev[0].Decision.Obligations) != 3 {
		t.Fatalf("events = %+v, want one with obligations %v", ev, want)
	}
	for i, o := range want {
		if ev[0].Decision.Obligations[i] != o {
			t.Errorf("recorded obligations = %v, want %v", ev[0].Decision.Obligations, want)
		}
	}
	if ev[0].Request.Justification != req.Justification {
		t.Error("the justification was not recorded")
	}
}

func TestUpdateConsentValidates(t *testing.T) {
	f := newFixture(t)
	p := f.patient()
	var fe *consent.FieldError
	tests := []struct {
		name   string
		ds     []consent.Directive
		author string
		field  string
	}{
		{"contradiction", []consent.Directive{blockDrA()[0], {ID: "t1", Kind: consent.TreatingPhysician, Professional: drA}}, "patient", "directives[1].professional"},
		{"pattern does not compile", []consent.Directive{{ID: "h", Kind: consent.HideDocument, Document: "x-<(>"}}, "patient", "directives[0].document"},
		{"unknown document type", []consent.Directive{{ID: "h", Kind: consent.HideDocumentType, DocumentType: "tarot"}}, "patient", "directives[0].document_type"},
		{"no author", nil, "", "author"},
		{"author is an INS", nil, "1 84 12 76 451 089 46", "author"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := f.svc.UpdateConsent(ctx, p, 0, tt.ds, tt.author)
			if !errors.As(err, &fe) || fe.Field != tt.field {
				t.Errorf("UpdateConsent(%s) = %v, want a field error on %s", tt.name, err, tt.field)
			}
		})
	}
	if c, _ := f.store.Consent(ctx, p); c.Version != 0 {
		t.Errorf("invalid updates stored version %d", c.Version)
	}
	if _, err := f.svc.UpdateConsent(ctx, p, 0, blockDrA(), "patient"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.UpdateConsent(ctx, p, 0, nil, "patient"); !errors.Is(err, consent.ErrStaleVersion) {
		t.Errorf("UpdateConsent(stale) = %v, want ErrStaleVersion", err)
	}
	h, _ := f.store.ConsentHistory(ctx, p, 1, 10)
	if len(h) != 1 || h[0].Author != "patient" || !h[0].Time.Equal(f.now) {
		t.Errorf("history = %+v, want one change by the patient at the clock's time", h)
	}
}

func TestServiceRules(t *testing.T) {
	store := memstore.New()
	rec := &consenttest.Recorder{Store: store}
	engine := ladonpolicy.NewEngine(ladonpolicy.Options{})
	if _, err := consent.NewService(ctx, consent.Config{Store: store, Recorder: rec, Engine: engine}); err == nil {
		t.Error("NewService(no rules anywhere) = nil error")
	}
	r1 := nationalrules.Illustrative()
	svc, err := consent.NewService(ctx, consent.Config{Store: store, Recorder: rec, Engine: engine, Rules: r1})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := store.LatestRules(ctx); got == nil || got.Hash() != r1.Hash() {
		t.Error("NewService did not publish the configured rules")
	}
	d := r1.Data()
	d.Version = 2
	d.Title += " (v2)"
	r2, err := consent.NewRules(d)
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.PublishRules(ctx, r2, "admin:jdupont"); err != nil {
		t.Fatal(err)
	}
	dec, _, err := svc.Check(ctx, validRequest())
	if err != nil || dec.RulesVersion != 2 || dec.RulesHash != r2.Hash() {
		t.Errorf("Check() after publishing v2 = rules v%d, %v; want v2", dec.RulesVersion, err)
	}
	if err := svc.PublishRules(ctx, r1, "admin:jdupont"); err != nil {
		t.Errorf("PublishRules(v1 again, same bytes) = %v, want nil (a retry)", err)
	}
	if svc.Rules().Version() != 2 {
		t.Error("republishing v1 went back to v1")
	}
	// A restarted service configured with v1 keeps the store's v2.
	svc2, err := consent.NewService(ctx, consent.Config{Store: store, Recorder: rec, Engine: engine, Rules: r1})
	if err != nil || svc2.Rules().Version() != 2 {
		t.Errorf("NewService(store has v2, config v1) = %v; want v2", err)
	}
	d.Title += " (edited)"
	r2b, err := consent.NewRules(d)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := consent.NewService(ctx, consent.Config{Store: store, Recorder: rec, Engine: engine, Rules: r2b}); !errors.Is(err, consent.ErrRulesConflict) {
		t.Errorf("NewService(other bytes for v2) = %v, want ErrRulesConflict", err)
	}
}

// countingStore counts the consent reads.
type countingStore struct {
	consent.Store
	mu    sync.Mutex
	reads int
}

func (s *countingStore) Consent(ctx context.Context, p ident.INS) (consent.Consent, error) {
	s.mu.Lock()
	s.reads++
	s.mu.Unlock()
	return s.Store.Consent(ctx, p)
}

// TestCheckDecidesFromTheCache: a patient the service has not seen is
// presumed to have no consent, then decisions use what the service saw or
// wrote, until the recorder says it changed; with the cache off, every
// Check reads.
func TestCheckDecidesFromTheCache(t *testing.T) {
	for _, tc := range []struct {
		cached    int
		wantReads int
	}{{0, 0}, {-1, 3}} {
		mem := memstore.New()
		store := &countingStore{Store: mem}
		svc, err := consent.NewService(ctx, consent.Config{
			Store: store, Recorder: &consenttest.Recorder{Store: mem}, Engine: ladonpolicy.NewEngine(ladonpolicy.Options{}),
			Rules: nationalrules.Illustrative(), CachedPatients: tc.cached,
		})
		if err != nil {
			t.Fatal(err)
		}
		req := validRequest()
		for i, id := range []string{"c1", "c2"} {
			req.ID = id
			if d, _, err := svc.Check(ctx, req); err != nil || d.Effect != consent.Allow {
				t.Fatalf("Check %d = %v, %v", i, d.Effect, err)
			}
		}
		if _, err := svc.UpdateConsent(ctx, req.Patient, 0, blockDrA(), "patient"); err != nil {
			t.Fatal(err)
		}
		req.ID = "c3"
		if d, _, err := svc.Check(ctx, req); err != nil || d.Effect != consent.Deny || d.ConsentVersion != 1 {
			t.Fatalf("Check after the change = %v under %d, %v", d.Effect, d.ConsentVersion, err)
		}
		if store.reads != tc.wantReads {
			t.Errorf("CachedPatients %d: %d consent reads for 3 checks, want %d", tc.cached, store.reads, tc.wantReads)
		}
	}
}

// TestCheckPresumesNoConsentSafely: a patient with a consent the service
// never saw (written by another node) is first presumed to have none; the
// recorder refuses that decision, and the service reads the consent and
// decides with it.
func TestCheckPresumesNoConsentSafely(t *testing.T) {
	f := newFixture(t)
	if _, err := f.store.UpdateConsent(ctx, f.patient(), 0, blockDrA(), consent.Change{Author: "patient", Time: f.now}); err != nil {
		t.Fatal(err)
	}
	d, _, err := f.svc.Check(ctx, validRequest())
	if err != nil || d.Effect != consent.Deny || d.ConsentVersion != 1 {
		t.Fatalf("Check = %v under version %d, %v; want DENY under version 1", d.Effect, d.ConsentVersion, err)
	}
	if n := len(f.recorder.Events()); n != 1 {
		t.Errorf("%d decisions recorded, want 1 (the presumed one is refused)", n)
	}
}

// An expected version whose successor does not fit an int64 is refused,
// naming expected_version, not wrapped to a negative version.
func TestUpdateConsentExpectedVersionRange(t *testing.T) {
	f := newFixture(t)
	for _, v := range []int64{-1, math.MaxInt64} {
		_, err := f.svc.UpdateConsent(ctx, f.patient(), v, nil, "patient")
		var fe *consent.FieldError
		if !errors.As(err, &fe) || fe.Field != "expected_version" || strings.Contains(fe.Problem, "negative") != (v < 0) {
			t.Errorf("UpdateConsent(expected %d) = %v, want a FieldError naming expected_version", v, err)
		}
	}
}
