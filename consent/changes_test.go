package consent_test

import (
	"context"
	"crypto/sha256"
	"testing"
	"time"

	"github.com/vigie-sante/vigie/consent"
	"github.com/vigie-sante/vigie/consent/consenttest"
	"github.com/vigie-sante/vigie/consent/ident"
	"github.com/vigie-sante/vigie/consent/ladonpolicy"
	"github.com/vigie-sante/vigie/consent/memstore"
	"github.com/vigie-sante/vigie/consent/nationalrules"
)

// feed is a consent.ChangeFeed whose changes the test sends.
type feed struct {
	changes chan consent.Changes
	errs    chan error // what the service's follow returned
}

func (f *feed) PatientKey(p ident.INS) consent.PatientKey {
	return sha256.Sum256([]byte(p.Canonical()))
}

func (f *feed) Watch(ctx context.Context, fn func(consent.Changes) error) error {
	for {
		select {
		case c := <-f.changes:
			f.errs <- fn(c)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// TestServiceFollowsChanges: what a change feed reports reaches the
// service: a kept patient's consent is read again, the national rules
// are loaded, and everything is forgotten after a gap.
func TestServiceFollowsChanges(t *testing.T) {
	store := memstore.New()
	f := &feed{changes: make(chan consent.Changes), errs: make(chan error)}
	svc, err := consent.NewService(ctx, consent.Config{
		Store: store, Recorder: &consenttest.Recorder{Store: store}, Engine: ladonpolicy.NewEngine(ladonpolicy.Options{}),
		Rules: nationalrules.Illustrative(), Changes: f,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	send := func(c consent.Changes) {
		t.Helper()
		select {
		case f.changes <- c:
		case <-time.After(time.Minute):
			t.Fatal("the service does not follow the feed")
		}
		if err := <-f.errs; err != nil {
			t.Fatalf("follow(%+v) = %v", c, err)
		}
	}
	p := validRequest().Patient
	// The service keeps what it writes.
	if _, err := svc.UpdateConsent(ctx, p, 0, blockDrA(), "patient"); err != nil {
		t.Fatal(err)
	}
	if v, ok := svc.CachedConsentVersion(p); !ok || v != 1 {
		t.Fatalf("CachedConsentVersion = %d, %v; want 1", v, ok)
	}
	// Another node changes the consent (straight in the store), then
	// publishes rules version 2.
	if _, err := store.UpdateConsent(ctx, p, 1, nil, consent.Change{Time: time.Now(), Author: "patient"}); err != nil {
		t.Fatal(err)
	}
	other, err := ident.NormalizeINS("2 90 01 75 123 456 05")
	if err != nil {
		t.Fatal(err)
	}
	send(consent.Changes{Patients: []consent.PatientKey{f.PatientKey(other)}})
	if v, _ := svc.CachedConsentVersion(p); v != 1 {
		t.Errorf("after another patient's change: version %d, want 1 kept", v)
	}
	send(consent.Changes{Patients: []consent.PatientKey{f.PatientKey(p)}})
	if v, ok := svc.CachedConsentVersion(p); !ok || v != 2 {
		t.Errorf("after the patient's change: CachedConsentVersion = %d, %v; want 2", v, ok)
	}
	d := nationalrules.Illustrative().Data()
	d.Version = 2
	v2, err := consent.NewRules(d)
	if err != nil {
		t.Fatal(err)
	}
	if err := store.PutRules(ctx, v2, consent.Change{Time: time.Now(), Author: "admin:other"}); err != nil {
		t.Fatal(err)
	}
	send(consent.Changes{Rules: true})
	if got := svc.Rules().Version(); got != 2 {
		t.Errorf("after a rules publication: rules version %d, want 2", got)
	}
	send(consent.Changes{All: true})
	if v, ok := svc.CachedConsentVersion(p); ok {
		t.Errorf("after a gap: version %d kept, want nothing", v)
	}
}
