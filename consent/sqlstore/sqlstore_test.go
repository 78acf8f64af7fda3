package sqlstore_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/vigie-sante/vigie/consent"
	"github.com/vigie-sante/vigie/consent/ident"
	"github.com/vigie-sante/vigie/consent/ladonpolicy"
	"github.com/vigie-sante/vigie/consent/nationalrules"
	"github.com/vigie-sante/vigie/consent/sqlstore"
	"github.com/vigie-sante/vigie/consent/storetest"
	"github.com/vigie-sante/vigie/ledger"
	"github.com/vigie-sante/vigie/ledger/event"
	"github.com/vigie-sante/vigie/ledger/ledgertest"
	"github.com/vigie-sante/vigie/ledger/verify"
)

var ctx = context.Background()

func open(t *testing.T, backend string) (*sqlstore.Store, *ledgertest.Env) {
	t.Helper()
	opts := ledgertest.Options{Migrations: sqlstore.Migrations, EraseAlso: sqlstore.EraseRows}
	if backend == "PostgreSQL" {
		opts.PostgreSQL = ledgertest.Postgres(t)
	}
	env := ledgertest.New(t, opts)
	return sqlstore.New(env.DB, env.Ledger), env
}

func TestConformance(t *testing.T) {
	for _, backend := range []string{"SQLite", "PostgreSQL"} {
		t.Run(backend, func(t *testing.T) {
			storetest.Run(t, func(t *testing.T) consent.Store {
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
			if err := env.Store.View(ctx, func(ctx context.Context, tx ledger.StoreReader) error {
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
