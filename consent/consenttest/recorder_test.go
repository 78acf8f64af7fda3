package consenttest_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/vigie-sante/vigie/consent"
	"github.com/vigie-sante/vigie/consent/consenttest"
	"github.com/vigie-sante/vigie/consent/ident"
	"github.com/vigie-sante/vigie/consent/memstore"
	"github.com/vigie-sante/vigie/consent/nationalrules"
)

func TestRecorder(t *testing.T) {
	ctx := context.Background()
	store := memstore.New()
	if err := store.PutRules(ctx, nationalrules.Illustrative(), consent.Change{Author: "config"}); err != nil {
		t.Fatal(err)
	}
	r := &consenttest.Recorder{Store: store}
	p, _ := ident.ParseINS("184127645108946")
	req := &consent.Request{ID: "a", Service: "s", Patient: p}
	key := req.Key()
	allow := &consent.Decision{Effect: consent.Allow, Time: time.Unix(0, 0), RulesVersion: 1}

	r.FailNext(consenttest.FailNotPersisted, consenttest.FailPersisted)
	if _, err := r.RecordDecision(ctx, key, req, allow); !errors.Is(err, consenttest.ErrInjected) || len(r.Events()) != 0 {
		t.Errorf("FailNotPersisted: %v, %d events; want an error and none", err, len(r.Events()))
	}
	if _, err := r.RecordDecision(ctx, key, req, allow); !errors.Is(err, consenttest.ErrInjected) || len(r.Events()) != 1 {
		t.Errorf("FailPersisted: %v, %d events; want an error and one", err, len(r.Events()))
	}
	deny := &consent.Decision{Effect: consent.Deny, RulesVersion: 1}
	rec, err := r.RecordDecision(ctx, key, req, deny)
	if err != nil || rec.Decision.Effect != consent.Allow || len(r.Events()) != 1 {
		t.Errorf("same key again = %v, %v, %d events; want the first decision and no new event", rec.Decision.Effect, err, len(r.Events()))
	}
	if _, err := store.UpdateConsent(ctx, p, 0, nil, consent.Change{Author: "patient"}); err != nil {
		t.Fatal(err)
	}
	other := &consent.Request{ID: "b", Service: "s", Patient: p}
	if _, err := r.RecordDecision(ctx, other.Key(), other, allow); !errors.Is(err, consent.ErrConsentChanged) {
		t.Errorf("decided with version 0, store at 1: %v, want ErrConsentChanged", err)
	}
	allow1 := &consent.Decision{Effect: consent.Allow, ConsentVersion: 1}
	if _, err := r.RecordDecision(ctx, other.Key(), other, allow1); !errors.Is(err, consent.ErrRulesChanged) {
		t.Errorf("decided under rules version 0, store at 1: %v, want ErrRulesChanged", err)
	}
	allow1.RulesVersion = 1
	if rec, err := r.RecordDecision(ctx, other.Key(), other, allow1); err != nil || rec.Index != 1 {
		t.Errorf("decided with version 1 = index %d, %v; want index 1", rec.Index, err)
	}
}
