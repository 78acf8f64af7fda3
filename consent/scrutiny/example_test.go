package scrutiny_test

import (
	"context"
	"crypto/sha256"
	"fmt"
	"log"
	"time"

	"github.com/vigie-sante/vigie/consent"
	"github.com/vigie-sante/vigie/consent/ident"
	"github.com/vigie-sante/vigie/consent/ladonpolicy"
	"github.com/vigie-sante/vigie/consent/nationalrules"
	"github.com/vigie-sante/vigie/consent/replay"
	"github.com/vigie-sante/vigie/consent/scrutiny"
	"github.com/vigie-sante/vigie/ledger/audit"
	"github.com/vigie-sante/vigie/ledger/event"
)

// Example examines what a regulator's audit read: the rules-change event
// and one access by a professional outside the patient's care team,
// denied. The replay confirms the decision; the alert is for a human to
// review.
func Example() {
	rules := nationalrules.Illustrative()
	engine := ladonpolicy.NewEngine(ladonpolicy.Options{})
	at := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	logged := func(i uint64, k event.Kind, patient event.Hash, payload []byte) event.Logged {
		return event.Logged{Ref: event.Ref{Index: i, Commitment: sha256.Sum256(payload)},
			Body: &event.Body{V: 1, ID: fmt.Sprintf("%032x", i), Time: at, Kind: k, Patient: patient, Seq: 1, Service: "his", Payload: payload}}
	}
	change, err := consent.FormatRulesChangeRecord(rules, "config")
	if err != nil {
		log.Fatal(err)
	}
	ins, _ := ident.ParseINS("200000000000094")
	rpps, _ := ident.ParseRPPS("10000000001")
	org, _ := ident.ParseFINESS("750712184")
	req := consent.Request{ID: "r1", Service: "his", Patient: ins,
		Actor:  consent.Actor{RPPS: rpps, Profession: "10", Sector: "care", Organization: org},
		Action: consent.ActionRead, Resource: consent.Resource{Kind: consent.ResourceRecord}, Purpose: consent.PurposeTreatment, Time: at}
	d, err := engine.Decide(&req, &consent.Consent{}, rules)
	if err != nil {
		log.Fatal(err)
	}
	access, err := consent.FormatAccessRecord(&req, &d)
	if err != nil {
		log.Fatal(err)
	}
	// In an audit, these come from audit.AuditLog, verified.
	read := &audit.LogAuditReport{Reader: audit.Regulator, Events: &audit.EventsRead{}, Logged: []event.Logged{
		logged(0, event.KindRulesChange, event.SystemChain, change),
		logged(1, event.KindAccess, sha256.Sum256([]byte("patient")), access)}}

	r, err := scrutiny.Examine(context.Background(), scrutiny.Config{Engine: engine,
		Rules: func(_ context.Context, v int64) ([]byte, error) {
			if v != rules.Version() {
				return nil, replay.ErrNoRules
			}
			return rules.Bytes(), nil
		}}, read)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s; replayed %d of %d, confirmed: %t\n", d.Effect, r.Replay.Replayed, r.Replay.Accesses, r.Confirmed())
	for _, a := range r.Alerts {
		fmt.Println(a.Kind, a.Actor)
	}
	// Output:
	// DENY; replayed 1 of 1, confirmed: true
	// no-care-relationship 10000000001
}
