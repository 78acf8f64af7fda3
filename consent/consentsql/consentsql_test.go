package consentsql_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/vigie-sante/vigie/consent"
	"github.com/vigie-sante/vigie/consent/consentsql"
	"github.com/vigie-sante/vigie/consent/consentstoretest"
	"github.com/vigie-sante/vigie/consent/ident"
	"github.com/vigie-sante/vigie/consent/ladonpolicy"
	"github.com/vigie-sante/vigie/consent/nationalrules"
	"github.com/vigie-sante/vigie/ledger"
	"github.com/vigie-sante/vigie/ledger/event"
	"github.com/vigie-sante/vigie/ledger/ledgertest"
	"github.com/vigie-sante/vigie/ledger/sqldb"
	"github.com/vigie-sante/vigie/ledger/verify"
)

var ctx = context.Background()

func open(t *testing.T, backend string) (*consentsql.Store, *ledgertest.Env) {
	t.Helper()
	opts := ledgertest.Options{Migrations: consentsql.Migrations, EraseAlso: consentsql.EraseRows}
	if backend == "PostgreSQL" {
		opts.PostgreSQL = ledgertest.Postgres(t)
	}
	env := ledgertest.New(t, opts)
	return consentsql.New(env.DB, env.Ledger), env
}

func TestConformance(t *testing.T) {
	for _, backend := range []string{"SQLite", "PostgreSQL"} {
		t.Run(backend, func(t *testing.T) {
			consentstoretest.Run(t, func(t *testing.T) consent.Store {
				s, _ := open(t, backend)
				return s
			})
		})
	}
}

var (
	patient   = mustINS("1 84 12 76 451 089 46")
	physician = ident.MustParseRPPS("10000000001")
	hospital  = ident.MustParseFINESS("750712184")
)

func mustINS(s string) ident.INS {
	ins, err := ident.NormalizeINS(s)
	if err != nil {
		panic(err)
	}
	return ins
}

func request(id string) consent.Request {
	return consent.Request{
		ID: id, Service: "hospital-his", Patient: patient,
		Actor:    consent.Actor{RPPS: physician, Profession: "10", Sector: "care", Organization: hospital, CareTeam: true},
		Action:   consent.ActionRead,
		Resource: consent.Resource{Kind: consent.ResourceDocument, DocumentID: "doc-1", DocumentType: "discharge-summary"},
		Purpose:  consent.PurposeTreatment,
		Time:     time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC),
	}
}

// TestCheckRecordsWhatItDecides runs the consent service on the real store
// and ledger: every decision is in the ledger, with its request and its
// outcome, in the patient's verifiable chain; a consent change is in the
// chain too, and the next decision follows it.
func TestCheckRecordsWhatItDecides(t *testing.T) {
	for _, backend := range []string{"SQLite", "PostgreSQL"} {
		t.Run(backend, func(t *testing.T) {
			store, env := open(t, backend)
			svc, err := consent.NewService(ctx, consent.Config{
				Store: store, Recorder: store,
				Engine: ladonpolicy.NewEngine(ladonpolicy.Options{}),
				Rules:  nationalrules.Illustrative(),
			})
			if err != nil {
				t.Fatal(err)
			}
			d, rec, err := svc.Check(ctx, request("r1"))
			if err != nil {
				t.Fatalf("Check: %v", err)
			}
			if d.Effect != consent.Allow {
				t.Fatalf("Check = %v (%v), want ALLOW for a care-team physician", d.Effect, d.Grounds)
			}
			r, err := verify.OpenReceipt(rec.Note, env.ReceiptKey)
			if err != nil || r.Index != uint64(rec.Index) || r.Commitment != rec.Commitment {
				t.Fatalf("receipt %+v, %v", r, err)
			}

			// A retry gets the first answer, and records nothing.
			d2, rec2, err := svc.Check(ctx, request("r1"))
			if err != nil || rec2.Index != rec.Index || d2.Effect != d.Effect || len(d2.Grounds) != len(d.Grounds) {
				t.Fatalf("retry = %v %d, %v; want the first answer at %d", d2.Effect, rec2.Index, err, rec.Index)
			}

			// The patient blocks the physician: the change is recorded, and
			// the next decision denies.
			if _, err := svc.UpdateConsent(ctx, patient, 0, []consent.Directive{{ID: "b1", Kind: consent.BlockProfessional, Professional: physician}}, "patient"); err != nil {
				t.Fatalf("UpdateConsent: %v", err)
			}
			if _, err := svc.UpdateConsent(ctx, patient, 0, nil, "patient"); !errors.Is(err, consent.ErrStaleVersion) {
				t.Errorf("UpdateConsent from a stale version = %v, want ErrStaleVersion", err)
			}
			d3, _, err := svc.Check(ctx, request("r2"))
			if err != nil || d3.Effect != consent.Deny || d3.ConsentVersion != 1 {
				t.Fatalf("Check after the block = %v (consent %d), %v; want DENY under version 1", d3.Effect, d3.ConsentVersion, err)
			}

			// A decision made under an older consent is refused by the
			// ledger, in its transaction.
			req := request("r3")
			stale := d
			if _, err := store.RecordDecision(ctx, req.Key(), &req, &stale); !errors.Is(err, consent.ErrConsentChanged) {
				t.Errorf("RecordDecision under version 0 after a change = %v, want ErrConsentChanged", err)
			}

			// The patient's chain: access, consent change, access; each
			// body replays into the request and decision.
			if err := env.Ledger.WaitCheckpoint(ctx, uint64(rec.Index)+2); err != nil {
				t.Fatal(err)
			}
			h, err := env.Ledger.History(ctx, patient, 1, 100, 0)
			if err != nil {
				t.Fatal(err)
			}
			var kinds []event.Kind
			var links []verify.Link
			for _, e := range h.Events {
				b, err := verify.VerifyEvent(e.Body, e.Salt, e.Commitment)
				if err != nil {
					t.Fatal(err)
				}
				kinds = append(kinds, b.Kind)
				links = append(links, verify.LinkOf(b, e.Commitment))
				switch b.Kind {
				case event.KindAccess:
					r, dec, err := consent.ParseAccessRecord(b.Payload)
					if err != nil {
						t.Fatalf("access record: %v", err)
					}
					if r.Actor.RPPS != physician || dec.RulesVersion != nationalrules.Illustrative().Version() {
						t.Errorf("access record = %+v, %+v", r, dec)
					}
				case event.KindConsentChange:
					c, author, err := consent.ParseConsentChangeRecord(b.Payload)
					if err != nil || c.Version != 1 || author != "patient" || len(c.Directives) != 1 {
						t.Errorf("consent-change record = %+v %q, %v", c, author, err)
					}
				}
			}
			if err := verify.VerifyChain(links); err != nil {
				t.Error(err)
			}
			want := []event.Kind{event.KindAccess, event.KindConsentChange, event.KindAccess}
			if len(kinds) != len(want) {
				t.Fatalf("chain kinds %v, want %v", kinds, want)
			}
			for i := range want {
				if kinds[i] != want[i] {
					t.Errorf("chain kinds %v, want %v", kinds, want)
				}
			}

			// The national rules were published through the ledger too.
			infos, err := store.ListRules(ctx)
			if err != nil || len(infos) != 1 || infos[0].Hash != nationalrules.Illustrative().Hash() {
				t.Errorf("ListRules = %+v, %v", infos, err)
			}
			var rulesEvents int
			if err := env.Store.Read(ctx, func(ctx context.Context, tx ledger.StoreReader) error {
				rows, err := tx.SearchEvents(ctx, ledger.SearchFilter{Kind: event.KindRulesChange}, -1, 10)
				rulesEvents = len(rows)
				return err
			}); err != nil {
				t.Fatal(err)
			}
			if rulesEvents != 1 {
				t.Errorf("%d rules-change events, want 1", rulesEvents)
			}
		})
	}
}

// TestErasureResetsConsent erases a patient who had a consent: the consent
// and its history are gone, the patient's consent is the default one at
// the next version, and decisions go on under it (the engine does not
// keep deciding with the erased consent).
func TestErasureResetsConsent(t *testing.T) {
	for _, backend := range []string{"SQLite", "PostgreSQL"} {
		t.Run(backend, func(t *testing.T) {
			store, env := open(t, backend)
			svc, err := consent.NewService(ctx, consent.Config{
				Store: store, Recorder: store,
				Engine: ladonpolicy.NewEngine(ladonpolicy.Options{}),
				Rules:  nationalrules.Illustrative(),
			})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := svc.UpdateConsent(ctx, patient, 0, []consent.Directive{{ID: "b1", Kind: consent.BlockProfessional, Professional: physician}}, "patient"); err != nil {
				t.Fatal(err)
			}
			if d, _, err := svc.Check(ctx, request("before")); err != nil || d.Effect != consent.Deny {
				t.Fatalf("Check while blocked = %v, %v; want DENY", d.Effect, err)
			}
			if _, _, err := env.Ledger.RequestErasure(ctx, patient, time.Unix(0, 0), "patient", ""); err != nil {
				t.Fatal(err)
			}
			if n, err := env.Ledger.RunDueErasures(ctx); err != nil || n != 1 {
				t.Fatalf("RunDueErasures = %d, %v", n, err)
			}
			c, err := store.Consent(ctx, patient)
			if err != nil || c.Version != 2 || len(c.Directives) != 0 {
				t.Errorf("consent after erasure = %+v, %v; want version 2, no directive", c, err)
			}
			if h, err := store.ConsentHistory(ctx, patient, 1, 10); err != nil || len(h) != 0 {
				t.Errorf("consent history after erasure = %d versions, %v; want none", len(h), err)
			}
			d, _, err := svc.Check(ctx, request("after"))
			if err != nil || d.Effect != consent.Allow || d.ConsentVersion != 2 {
				t.Fatalf("Check after erasure = %v (consent %d), %v; want ALLOW under version 2", d.Effect, d.ConsentVersion, err)
			}
			if _, err := svc.UpdateConsent(ctx, patient, 2, nil, "patient"); err != nil {
				t.Errorf("UpdateConsent from version 2 after erasure: %v", err)
			}
		})
	}
}

// TestCheckFollowsChangesMadeElsewhere runs two consent services on one
// store and ledger, as two nodes would: each decides with the consent it
// last saw, and a change made through the other is still followed at
// once, because the ledger refuses to record a decision made with a
// consent version that is no longer current.
func TestCheckFollowsChangesMadeElsewhere(t *testing.T) {
	store, _ := open(t, "SQLite")
	node := func() *consent.Service {
		svc, err := consent.NewService(ctx, consent.Config{
			Store: store, Recorder: store,
			Engine: ladonpolicy.NewEngine(ladonpolicy.Options{}),
			Rules:  nationalrules.Illustrative(),
		})
		if err != nil {
			t.Fatal(err)
		}
		return svc
	}
	a, b := node(), node()
	if d, _, err := a.Check(ctx, request("a1")); err != nil || d.Effect != consent.Allow {
		t.Fatalf("first Check on a = %v, %v", d.Effect, err)
	}
	for i, ds := range [][]consent.Directive{{{ID: "b1", Kind: consent.BlockProfessional, Professional: physician}}, nil} {
		if _, err := b.UpdateConsent(ctx, patient, int64(i), ds, "patient"); err != nil {
			t.Fatal(err)
		}
		want := consent.Deny
		if ds == nil {
			want = consent.Allow
		}
		d, _, err := a.Check(ctx, request(fmt.Sprint("a-after-", i)))
		if err != nil || d.Effect != want || d.ConsentVersion != int64(i+1) {
			t.Fatalf("Check on a after change %d on b = %v under version %d, %v; want %v under version %d", i+1, d.Effect, d.ConsentVersion, err, want, i+1)
		}
	}
}

// TestBreakGlassFromRules: the ledger's break-glass search column says
// whether the request's purpose is an emergency purpose of the national
// rules the decision was made with, whatever its code: under rules whose
// emergency purposes are BTG and HRESCH (ETREAT a care purpose), an
// HRESCH access is break-glass and an ETREAT access is not; an ETREAT
// access decided under the earlier rules stays break-glass.
func TestBreakGlassFromRules(t *testing.T) {
	store, env := open(t, "SQLite")
	svc, err := consent.NewService(ctx, consent.Config{
		Store: store, Recorder: store, Engine: ladonpolicy.NewEngine(ladonpolicy.Options{}), Rules: nationalrules.Illustrative(),
	})
	if err != nil {
		t.Fatal(err)
	}
	check := func(id string, p consent.Purpose) ledger.EventRow {
		t.Helper()
		req := request(id)
		req.Purpose, req.Justification = p, "patient unconscious"
		_, rec, err := svc.Check(ctx, req)
		if err != nil {
			t.Fatalf("Check(%s) = %v", p, err)
		}
		row, err := env.Ledger.EventByCommitment(ctx, rec.Commitment)
		if err != nil {
			t.Fatal(err)
		}
		return row
	}
	if row := check("v1-etreat", consent.PurposeEmergencyTreatment); !row.BreakGlass {
		t.Errorf("ETREAT under the illustrative rules: break-glass %v, want true", row.BreakGlass)
	}
	d := nationalrules.Illustrative().Data()
	d.Version = 2
	d.CarePurposes = []consent.Purpose{consent.PurposeEmergencyTreatment, consent.PurposeTreatment}
	d.EmergencyPurposes = []consent.Purpose{consent.PurposeBreakGlass, consent.PurposeResearch}
	v2, err := consent.NewRules(d)
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.PublishRules(ctx, v2, "admin:test"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		purpose consent.Purpose
		want    bool
	}{
		{consent.PurposeEmergencyTreatment, false},
		{consent.PurposeResearch, true},
		{consent.PurposeBreakGlass, true},
		{consent.PurposeTreatment, false},
	} {
		if row := check("v2-"+string(tc.purpose), tc.purpose); row.BreakGlass != tc.want {
			t.Errorf("%s under rules whose emergency purposes are BTG and HRESCH: break-glass %v, want %v", tc.purpose, row.BreakGlass, tc.want)
		}
	}
	rows, err := env.Ledger.Search(ctx, ledger.SearchFilter{BreakGlassOnly: true}, -1, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 3 {
		t.Errorf("search for break-glass accesses: %d events, want 3", len(rows))
	}
}

// TestConcurrentReviews: of DPOs reviewing one break-glass access at once,
// exactly one review counts and is recorded; a regulator's then counts
// once. An erasure removes the access's guard row with the patient's.
func TestConcurrentReviews(t *testing.T) {
	for _, backend := range []string{"SQLite", "PostgreSQL"} {
		t.Run(backend, func(t *testing.T) {
			store, env := open(t, backend)
			svc, err := consent.NewService(ctx, consent.Config{
				Store: store, Recorder: store, Engine: ladonpolicy.NewEngine(ladonpolicy.Options{}), Rules: nationalrules.Illustrative(),
			})
			if err != nil {
				t.Fatal(err)
			}
			req := request("bg-1")
			req.Purpose, req.Justification = consent.PurposeBreakGlass, "patient unconscious"
			_, rec, err := svc.Check(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			row, err := env.Ledger.EventByCommitment(ctx, rec.Commitment)
			if err != nil || !row.BreakGlass {
				t.Fatalf("access row = %+v, %v; want a break-glass access", row, err)
			}
			count := func(reviewer string, n int) int {
				t.Helper()
				errs := make(chan error, n)
				for i := range n {
					go func() {
						r := consent.ReviewRecord{Verdict: consent.VerdictJustified, Reviewer: fmt.Sprintf("%s%d", reviewer, i)}
						_, err := store.RecordReview(ctx, row, r, ledger.Key{Service: r.Reviewer, RequestID: "rv"})
						errs <- err
					}()
				}
				ok := 0
				for range n {
					switch err := <-errs; {
					case err == nil:
						ok++
					case !errors.Is(err, consent.ErrReviewed):
						t.Errorf("RecordReview = %v, want nil or ErrReviewed", err)
					}
				}
				return ok
			}
			if n := count("dpo:d", 8); n != 1 {
				t.Errorf("8 DPOs at once: %d reviews counted, want 1", n)
			}
			if n := count("regulator:r", 4); n != 1 {
				t.Errorf("4 regulators at once: %d reviews counted, want 1", n)
			}
			rows, err := env.Ledger.Search(ctx, ledger.SearchFilter{Kind: event.KindBreakGlassReview}, -1, 100)
			if err != nil || len(rows) != 2 {
				t.Errorf("review events: %d, %v; want 2", len(rows), err)
			}

			// Reviews recorded before the guard existed (no guard row):
			// the events say the regulator's review is final.
			if err := env.DB.ReadWrite(ctx, func(ctx context.Context, tx sqldb.Tx) error {
				_, err := tx.Exec(ctx, "DELETE FROM break_glass_reviews")
				return err
			}); err != nil {
				t.Fatal(err)
			}
			if n := count("regulator:late", 1) + count("dpo:late", 1); n != 0 {
				t.Errorf("reviews without a guard row: %d counted, want 0", n)
			}

			// The guard goes with the patient's other rows.
			var n int64
			p := env.Ledger.Pseudonym(patient)
			if err := env.DB.ReadWrite(ctx, func(ctx context.Context, tx sqldb.Tx) error {
				if err := consentsql.EraseRows(p)(ctx, tx); err != nil {
					return err
				}
				return tx.QueryRow(ctx, "SELECT COUNT(*) FROM break_glass_reviews").Scan(&n)
			}); err != nil {
				t.Fatal(err)
			}
			if n != 0 {
				t.Errorf("after EraseRows, %d guard rows remain", n)
			}
		})
	}
}
