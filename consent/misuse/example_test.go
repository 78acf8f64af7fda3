package misuse_test

import (
	"crypto/sha256"
	"fmt"
	"log"
	"time"

	"github.com/vigie-sante/vigie/consent"
	"github.com/vigie-sante/vigie/consent/ident"
	"github.com/vigie-sante/vigie/consent/misuse"
	"github.com/vigie-sante/vigie/consent/nationalrules"
	"github.com/vigie-sante/vigie/ledger/event"
)

// Example finds a burst in the access events an auditor read: one
// professional opening 25 patients' records in five minutes.
func Example() {
	rpps, _ := ident.ParseRPPS("10000000001")
	org, _ := ident.ParseFINESS("750712184")
	start := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	var events []event.Logged
	for i := range 25 {
		at := start.Add(time.Duration(i) * 12 * time.Second)
		req := consent.Request{ID: fmt.Sprint("req-", i), Service: "his",
			Actor:  consent.Actor{RPPS: rpps, Profession: "10", Sector: "care", Organization: org, CareTeam: true},
			Action: consent.ActionRead, Resource: consent.Resource{Kind: consent.ResourceRecord},
			Purpose: consent.PurposeTreatment, Time: at}
		grounds := []consent.Ground{{Source: consent.SourceRule, ID: "care-team", Kind: consent.RuleCareTeam, Effect: consent.Allow}}
		d := consent.Decision{Effect: consent.Allow, Reason: consent.ReasonAllowed, Grounds: grounds, RulesVersion: 1, Time: at}
		payload, err := consent.FormatAccessRecord(&req, &d)
		if err != nil {
			log.Fatal(err)
		}
		// In an audit, the events come from the log, verified: here, made
		// up, with a leaf index and a commitment to name them.
		ref := event.Ref{Index: uint64(100 + i), Commitment: sha256.Sum256([]byte(fmt.Sprint(i)))}
		patient := event.Hash(sha256.Sum256([]byte(fmt.Sprint("patient ", i))))
		events = append(events, event.Logged{Ref: ref, Body: &event.Body{V: 1, ID: fmt.Sprintf("%032x", i), Time: at,
			Kind: event.KindAccess, Patient: patient, Seq: 1, Service: "his", Payload: payload}})
	}
	res, err := misuse.Detect(events, misuse.Config{
		// The rules each decision was made with: here, the illustrative
		// ones for all (vigie audit fetches them by version).
		Rules:         func(*consent.Decision) (*consent.Rules, error) { return nationalrules.Illustrative(), nil },
		BurstPatients: 20, BurstWindow: 10 * time.Minute,
	})
	if err != nil {
		log.Fatal(err)
	}
	for _, a := range res.Alerts {
		fmt.Printf("%s %s by %s: %s; events from leaf %d to %d\n", a.Severity, a.Kind, a.Actor, a.Message, a.Events[0].Index, a.Events[len(a.Events)-1].Index)
	}
	// Output:
	// high burst by 10000000001: 25 accesses to 25 distinct patients within 10m0s; events from leaf 100 to 124
}
