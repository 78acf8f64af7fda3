// Package consentstoretest is the conformance suite of consent.Store.
// Every Store implementation runs it against a real engine:
//
//	func TestConformance(t *testing.T) {
//		consentstoretest.Run(t, func(t *testing.T) consent.Store { return openStore(t) })
//	}
//
// Each subtest gets a new, empty store from the factory.
package consentstoretest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigie-sante/vigie/consent"
	"github.com/vigie-sante/vigie/consent/ident"
)

// Factory returns a new, empty store for one subtest; it registers its
// own cleanup with t.
type Factory func(t *testing.T) consent.Store

// Run runs the conformance suite.
func Run(t *testing.T, newStore Factory) {
	tests := []struct {
		name string
		f    func(t *testing.T, s consent.Store)
	}{
		{"AbsentPatient", testAbsentPatient},
		{"UpdateAndRead", testUpdateAndRead},
		{"EveryField", testEveryField},
		{"StaleVersion", testStaleVersion},
		{"EmptyDirectivesIsAVersion", testEmptyDirectives},
		{"PatientsIsolated", testIsolation},
		{"NoAliasing", testNoAliasing},
		{"History", testHistory},
		{"HistoryArguments", testHistoryArguments},
		{"ConcurrentCompareAndSwap", testConcurrentCAS},
		{"MaxDirectives", testMaxDirectives},
		{"CanceledContext", testCanceledContext},
		{"RulesAbsent", testRulesAbsent},
		{"RulesVersions", testRulesVersions},
		{"RulesOfDecision", testRulesOf},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.f(t, newStore(t)) })
	}
}

var (
	ctx = context.Background()
	t0  = time.Date(2025, 3, 1, 9, 30, 0, 0, time.UTC)

	drA = ident.MustParseRPPS("10002727377")
	drB = ident.MustParseRPPS("10100901734")
	org = ident.MustParseFINESS("750712184")
	cor = ident.MustParseFINESS("2A0000013")
)

// Patient returns a valid INS for test patient i (0 <= i < 1e6).
func Patient(i int) ident.INS {
	body := fmt.Sprintf("2950675%06d", i)
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

func change(author string) consent.Change { return consent.Change{Time: t0, Author: author} }

func sameDirectives(a, b []consent.Directive) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if !x.From.Equal(y.From) || !x.Until.Equal(y.Until) {
			return false
		}
		x.From, x.Until, y.From, y.Until = time.Time{}, time.Time{}, time.Time{}, time.Time{}
		if !reflect.DeepEqual(x, y) {
			return false
		}
	}
	return true
}

func mustUpdate(t *testing.T, s consent.Store, p ident.INS, expected int64, ds []consent.Directive) consent.ConsentRecord {
	t.Helper()
	rec, err := s.UpdateConsent(ctx, p, expected, ds, change("patient"))
	if err != nil {
		t.Fatalf("UpdateConsent(expected %d) = %v", expected, err)
	}
	return rec
}

func mustConsent(t *testing.T, s consent.Store, p ident.INS) consent.Consent {
	t.Helper()
	c, err := s.Consent(ctx, p)
	if err != nil {
		t.Fatalf("Consent() = %v", err)
	}
	return c
}

func testAbsentPatient(t *testing.T, s consent.Store) {
	c := mustConsent(t, s, Patient(1))
	if c.Version != 0 || len(c.Directives) != 0 {
		t.Errorf("Consent(absent) = version %d, %d directives; want 0, none", c.Version, len(c.Directives))
	}
	h, err := s.ConsentHistory(ctx, Patient(1), 1, 10)
	if err != nil || len(h) != 0 {
		t.Errorf("ConsentHistory(absent) = %d records, %v; want none, nil", len(h), err)
	}
}

func testUpdateAndRead(t *testing.T, s consent.Store) {
	p := Patient(2)
	ds := []consent.Directive{
		{ID: "t1", Kind: consent.TreatingPhysician, Professional: drA},
		{ID: "b1", Kind: consent.BlockProfessional, Professional: drB, From: t0, Until: t0.Add(48 * time.Hour)},
	}
	rec := mustUpdate(t, s, p, 0, ds)
	if rec.Version != 1 || !sameDirectives(rec.Directives, ds) || !rec.Time.Equal(t0) || rec.Author != "patient" {
		t.Errorf("UpdateConsent() = %+v, want version 1 with the directives and change", rec)
	}
	c := mustConsent(t, s, p)
	if c.Version != 1 || !sameDirectives(c.Directives, ds) {
		t.Errorf("Consent() = %+v, want version 1 with the directives", c)
	}
	rec = mustUpdate(t, s, p, 1, ds[:1])
	if rec.Version != 2 {
		t.Errorf("second UpdateConsent() version = %d, want 2", rec.Version)
	}
	if c := mustConsent(t, s, p); c.Version != 2 || !sameDirectives(c.Directives, ds[:1]) {
		t.Errorf("Consent() after the second update = %+v", c)
	}
}

func testEveryField(t *testing.T, s consent.Store) {
	p := Patient(3)
	ds := []consent.Directive{
		{ID: "a", Kind: consent.BlockProfessional, Professional: drA, Until: t0},
		{ID: "b", Kind: consent.BlockOrganization, Organization: cor},
		{ID: "c", Kind: consent.AllowProfessional, Professional: drB, From: t0},
		{ID: "d", Kind: consent.ExtendedRights, Professional: drB, From: t0, Until: t0.Add(time.Hour)},
		{ID: "e", Kind: consent.HideDocument, Document: "stay-2024-<[0-9]+>"},
		{ID: "f:g.h_i-j", Kind: consent.HideDocument, Document: "1.2.250.1.213.1.1.9:doc"},
		{ID: "g", Kind: consent.HideDocumentType, DocumentType: "psychiatric-summary"},
		{ID: "h", Kind: consent.HideEverything},
		{ID: "i", Kind: consent.OpposeEmergency},
		{ID: "j", Kind: consent.OptOut, From: t0.Add(24 * time.Hour)},
		{ID: "k", Kind: consent.BlockOrganization, Organization: org},
	}
	mustUpdate(t, s, p, 0, ds)
	c := mustConsent(t, s, p)
	if !sameDirectives(c.Directives, ds) {
		t.Errorf("Consent() directives =\n%+v\nwant\n%+v", c.Directives, ds)
	}
	for i, d := range c.Directives {
		for _, tm := range []time.Time{d.From, d.Until} {
			if !tm.IsZero() && tm.Location() != time.UTC {
				t.Errorf("directive %d: time in %v, want UTC", i, tm.Location())
			}
		}
	}
	h1, _ := consent.ConsentHash(consent.Consent{Version: 1, Directives: ds})
	h2, _ := consent.ConsentHash(c)
	if h1 != h2 {
		t.Error("ConsentHash of the stored consent differs from the written one")
	}
}

func testStaleVersion(t *testing.T, s consent.Store) {
	p := Patient(4)
	ds := []consent.Directive{{ID: "b1", Kind: consent.BlockProfessional, Professional: drA}}
	mustUpdate(t, s, p, 0, ds)
	for _, expected := range []int64{0, 2, 7} {
		_, err := s.UpdateConsent(ctx, p, expected, nil, change("patient"))
		if !errors.Is(err, consent.ErrStaleVersion) {
			t.Errorf("UpdateConsent(expected %d, current 1) = %v, want ErrStaleVersion", expected, err)
		}
	}
	if c := mustConsent(t, s, p); c.Version != 1 || !sameDirectives(c.Directives, ds) {
		t.Errorf("a stale update changed the consent: %+v", c)
	}
	if h, _ := s.ConsentHistory(ctx, p, 1, 10); len(h) != 1 {
		t.Errorf("a stale update changed the history: %d records", len(h))
	}
	// An absent patient is at version 0.
	if _, err := s.UpdateConsent(ctx, Patient(5), 1, nil, change("patient")); !errors.Is(err, consent.ErrStaleVersion) {
		t.Errorf("UpdateConsent(absent, expected 1) = %v, want ErrStaleVersion", err)
	}
	if c := mustConsent(t, s, Patient(5)); c.Version != 0 {
		t.Errorf("a stale update created a consent: version %d", c.Version)
	}
}

func testEmptyDirectives(t *testing.T, s consent.Store) {
	p := Patient(6)
	mustUpdate(t, s, p, 0, []consent.Directive{{ID: "o", Kind: consent.OptOut}})
	rec := mustUpdate(t, s, p, 1, nil)
	if rec.Version != 2 || len(rec.Directives) != 0 {
		t.Errorf("UpdateConsent(no directives) = version %d, %d directives; want 2, none", rec.Version, len(rec.Directives))
	}
	if c := mustConsent(t, s, p); c.Version != 2 || len(c.Directives) != 0 {
		t.Errorf("Consent() = version %d, %d directives; want 2, none", c.Version, len(c.Directives))
	}
}

func testIsolation(t *testing.T, s consent.Store) {
	a, b := Patient(7), Patient(8)
	mustUpdate(t, s, a, 0, []consent.Directive{{ID: "o", Kind: consent.OptOut}})
	if c := mustConsent(t, s, b); c.Version != 0 {
		t.Errorf("another patient's update shows: version %d", c.Version)
	}
	mustUpdate(t, s, b, 0, nil)
	mustUpdate(t, s, b, 1, nil)
	if c := mustConsent(t, s, a); c.Version != 1 || len(c.Directives) != 1 {
		t.Errorf("patient a = %+v after b's updates", c)
	}
}

func testNoAliasing(t *testing.T, s consent.Store) {
	p := Patient(9)
	ds := []consent.Directive{{ID: "b1", Kind: consent.BlockProfessional, Professional: drA}}
	rec := mustUpdate(t, s, p, 0, ds)
	ds[0].ID = "changed"
	if len(rec.Directives) > 0 {
		rec.Directives[0].ID = "changed too"
	}
	c := mustConsent(t, s, p)
	c.Directives[0].Professional = drB
	if c := mustConsent(t, s, p); c.Directives[0].ID != "b1" || c.Directives[0].Professional != drA {
		t.Errorf("the store shares directives with its callers: %+v", c.Directives[0])
	}
}

func testHistory(t *testing.T, s consent.Store) {
	p := Patient(10)
	for v := range int64(5) {
		ds := []consent.Directive{{ID: fmt.Sprintf("d%d", v), Kind: consent.HideDocument, Document: fmt.Sprintf("doc-%d", v)}}
		if _, err := s.UpdateConsent(ctx, p, v, ds, consent.Change{Time: t0.Add(time.Duration(v) * time.Hour), Author: fmt.Sprintf("author-%d", v)}); err != nil {
			t.Fatal(err)
		}
	}
	h, err := s.ConsentHistory(ctx, p, 1, 100)
	if err != nil || len(h) != 5 {
		t.Fatalf("ConsentHistory(1, 100) = %d records, %v; want 5", len(h), err)
	}
	for i, r := range h {
		v := int64(i)
		if r.Version != v+1 || r.Directives[0].ID != fmt.Sprintf("d%d", v) || r.Author != fmt.Sprintf("author-%d", v) || !r.Time.Equal(t0.Add(time.Duration(v)*time.Hour)) {
			t.Errorf("history[%d] = version %d %+v by %s at %v", i, r.Version, r.Directives, r.Author, r.Time)
		}
	}
	h, err = s.ConsentHistory(ctx, p, 3, 2)
	if err != nil || len(h) != 2 || h[0].Version != 3 || h[1].Version != 4 {
		t.Errorf("ConsentHistory(3, 2) = %v, %v; want versions 3 and 4", versions(h), err)
	}
	h, err = s.ConsentHistory(ctx, p, 6, 2)
	if err != nil || len(h) != 0 {
		t.Errorf("ConsentHistory(6, 2) = %v, %v; want none", versions(h), err)
	}
}

func versions(h []consent.ConsentRecord) []int64 {
	var out []int64
	for _, r := range h {
		out = append(out, r.Version)
	}
	return out
}

func testHistoryArguments(t *testing.T, s consent.Store) {
	for _, a := range []struct {
		from  int64
		limit int
	}{{0, 1}, {1, 0}, {-1, 5}, {1, -1}} {
		if _, err := s.ConsentHistory(ctx, Patient(11), a.from, a.limit); err == nil {
			t.Errorf("ConsentHistory(from %d, limit %d) = nil error", a.from, a.limit)
		}
	}
}

func testConcurrentCAS(t *testing.T, s consent.Store) {
	p := Patient(12)
	const writers, rounds = 8, 10
	var mu sync.Mutex
	wins := map[int64]int{}
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for range rounds {
				c, err := s.Consent(ctx, p)
				if err != nil {
					t.Errorf("Consent() = %v", err)
					return
				}
				ds := []consent.Directive{{ID: fmt.Sprintf("w%d", w), Kind: consent.OptOut}}
				rec, err := s.UpdateConsent(ctx, p, c.Version, ds, change(fmt.Sprintf("writer-%d", w)))
				switch {
				case errors.Is(err, consent.ErrStaleVersion):
				case err != nil:
					t.Errorf("UpdateConsent() = %v", err)
					return
				default:
					mu.Lock()
					wins[rec.Version]++
					mu.Unlock()
					if rec.Version != c.Version+1 {
						t.Errorf("UpdateConsent(expected %d) = version %d", c.Version, rec.Version)
					}
				}
			}
		})
	}
	wg.Wait()
	final := mustConsent(t, s, p)
	if final.Version != int64(len(wins)) {
		t.Errorf("final version %d after %d successful updates", final.Version, len(wins))
	}
	for v, n := range wins {
		if n != 1 {
			t.Errorf("version %d written %d times, want once", v, n)
		}
	}
	h, err := s.ConsentHistory(ctx, p, 1, 1000)
	if err != nil || int64(len(h)) != final.Version {
		t.Fatalf("ConsentHistory() = %d records, %v; want %d", len(h), err, final.Version)
	}
	for i, r := range h {
		if r.Version != int64(i+1) {
			t.Errorf("history[%d].Version = %d, want %d (no gaps)", i, r.Version, i+1)
		}
		if want := strings.Replace(r.Author, "writer-", "w", 1); r.Directives[0].ID != want {
			t.Errorf("history[%d] has directive %s by %s: versions mixed up", i, r.Directives[0].ID, r.Author)
		}
	}
}

func testMaxDirectives(t *testing.T, s consent.Store) {
	p := Patient(13)
	ds := make([]consent.Directive, consent.MaxDirectives)
	for i := range ds {
		ds[i] = consent.Directive{ID: fmt.Sprintf("h%02d", i), Kind: consent.HideDocument, Document: fmt.Sprintf("doc-%02d", i)}
	}
	mustUpdate(t, s, p, 0, ds)
	if c := mustConsent(t, s, p); !sameDirectives(c.Directives, ds) {
		t.Errorf("Consent() holds %d directives, want the %d written", len(c.Directives), len(ds))
	}
}

func testCanceledContext(t *testing.T, s consent.Store) {
	p := Patient(14)
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	ds := []consent.Directive{{ID: "o", Kind: consent.OptOut}}
	rec, err := s.UpdateConsent(cctx, p, 0, ds, change("patient"))
	c := mustConsent(t, s, p)
	switch {
	case err != nil && c.Version != 0:
		t.Errorf("UpdateConsent(canceled) = %v but stored version %d", err, c.Version)
	case err == nil && (rec.Version != 1 || c.Version != 1):
		t.Errorf("UpdateConsent(canceled) succeeded partly: record %d, stored %d", rec.Version, c.Version)
	}
}

func testRulesAbsent(t *testing.T, s consent.Store) {
	if _, err := s.LatestRules(ctx); !errors.Is(err, consent.ErrNotFound) {
		t.Errorf("LatestRules(none) = %v, want ErrNotFound", err)
	}
	if _, err := s.Rules(ctx, 1); !errors.Is(err, consent.ErrNotFound) {
		t.Errorf("Rules(absent) = %v, want ErrNotFound", err)
	}
	l, err := s.ListRules(ctx)
	if err != nil || len(l) != 0 {
		t.Errorf("ListRules(none) = %v, %v; want empty", l, err)
	}
}

// rulesVersion returns minimal valid rules of the given version; title
// varies their bytes.
func rulesVersion(t *testing.T, version int64, title string) *consent.Rules {
	t.Helper()
	r, err := consent.NewRules(consent.RulesData{
		Format: consent.RulesFormat, Version: version, Illustrative: true, Title: title,
		CarePurposes: []consent.Purpose{consent.PurposeTreatment}, EmergencyPurposes: []consent.Purpose{consent.PurposeBreakGlass},
		EmergencyProfessions: []string{"10"}, RegulatorProfessions: []string{},
		Sectors:       []consent.Sector{{Code: "care", Access: consent.AccessCare, FR: "Soins", EN: "Care"}},
		DocumentTypes: []consent.DocumentType{{Code: "note", FR: "Note", EN: "Note"}},
		Professions:   []consent.Profession{{Code: "10", FR: "Médecin", EN: "Physician", Read: []string{"note"}, Write: []string{}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func testRulesVersions(t *testing.T, s consent.Store) {
	r1 := rulesVersion(t, 1, "first")
	r1b := rulesVersion(t, 1, "first, edited")
	r2 := rulesVersion(t, 2, "second")
	r3 := rulesVersion(t, 3, "third")
	if err := s.PutRules(ctx, r1, change("admin:a")); err != nil {
		t.Fatalf("PutRules(v1) = %v", err)
	}
	if err := s.PutRules(ctx, r1, change("admin:a")); err != nil {
		t.Errorf("PutRules(v1 again, same bytes) = %v, want nil", err)
	}
	if err := s.PutRules(ctx, r1b, change("admin:a")); !errors.Is(err, consent.ErrRulesConflict) {
		t.Errorf("PutRules(v1, other bytes) = %v, want ErrRulesConflict", err)
	}
	if err := s.PutRules(ctx, r3, change("admin:b")); err != nil {
		t.Fatalf("PutRules(v3) = %v", err)
	}
	if err := s.PutRules(ctx, r2, change("admin:b")); !errors.Is(err, consent.ErrRulesConflict) {
		t.Errorf("PutRules(v2 after v3) = %v, want ErrRulesConflict", err)
	}
	got, err := s.Rules(ctx, 1)
	if err != nil || string(got.Bytes()) != string(r1.Bytes()) || got.Hash() != r1.Hash() {
		t.Errorf("Rules(1) = %v; want the exact bytes of version 1", err)
	}
	if _, err := s.Rules(ctx, 2); !errors.Is(err, consent.ErrNotFound) {
		t.Errorf("Rules(2) = %v, want ErrNotFound", err)
	}
	latest, err := s.LatestRules(ctx)
	if err != nil || latest.Version() != 3 || latest.Hash() != r3.Hash() {
		t.Errorf("LatestRules() = %v; want version 3", err)
	}
	l, err := s.ListRules(ctx)
	if err != nil || len(l) != 2 {
		t.Fatalf("ListRules() = %d entries, %v; want 2", len(l), err)
	}
	if l[0].Version != 1 || l[0].Hash != r1.Hash() || l[0].Author != "admin:a" || !l[0].Time.Equal(t0) ||
		l[1].Version != 3 || l[1].Hash != r3.Hash() || l[1].Author != "admin:b" {
		t.Errorf("ListRules() = %+v", l)
	}
}

func testRulesOf(t *testing.T, s consent.Store) {
	r1 := rulesVersion(t, 1, "first")
	other := rulesVersion(t, 1, "first, edited")
	if _, err := s.RulesOf(ctx, &consent.Decision{RulesVersion: 1, RulesHash: r1.Hash()}); !errors.Is(err, consent.ErrNotFound) {
		t.Errorf("RulesOf(absent version) = %v, want ErrNotFound", err)
	}
	if err := s.PutRules(ctx, r1, change("admin:a")); err != nil {
		t.Fatalf("PutRules(v1) = %v", err)
	}
	for range 2 { // the second may come from a cache
		got, err := s.RulesOf(ctx, &consent.Decision{RulesVersion: 1, RulesHash: r1.Hash()})
		if err != nil || got.Version() != 1 || got.Hash() != r1.Hash() {
			t.Fatalf("RulesOf(version 1, its hash) = %v; want version 1", err)
		}
	}
	got, err := s.RulesOf(ctx, &consent.Decision{RulesVersion: 1, RulesHash: other.Hash()})
	if err == nil || errors.Is(err, consent.ErrNotFound) || got != nil {
		t.Errorf("RulesOf(version 1, another hash) = %v, %v; want an error other than ErrNotFound", got, err)
	}
	if _, err := s.RulesOf(ctx, &consent.Decision{RulesVersion: 2, RulesHash: r1.Hash()}); !errors.Is(err, consent.ErrNotFound) {
		t.Errorf("RulesOf(version 2) = %v, want ErrNotFound", err)
	}
}
