package ladonpolicy_test

import (
	"fmt"
	"time"

	"github.com/vigie-sante/vigie/consent"
	"github.com/vigie-sante/vigie/consent/ident"
	"github.com/vigie-sante/vigie/consent/ladonpolicy"
	"github.com/vigie-sante/vigie/consent/nationalrules"
)

func ExampleEngine_Decide() {
	rules := nationalrules.Illustrative()
	e := ladonpolicy.NewEngine(ladonpolicy.Options{})
	patient, _ := ident.ParseINS("184127645108946")
	treating := ident.MustParseRPPS("10000000033")
	snap := consent.Consent{Version: 2, Directives: []consent.Directive{
		{ID: "t1", Kind: consent.TreatingPhysician, Professional: treating},
		{ID: "o1", Kind: consent.OpposeEmergency},
	}}
	req := consent.Request{
		ID: "r1", Service: "his.example", Patient: patient,
		Actor: consent.Actor{RPPS: ident.MustParseRPPS("10000000044"), Profession: "10", Sector: "care",
			Organization: ident.MustParseFINESS("750712184")},
		Action:        consent.ActionRead,
		Resource:      consent.Resource{Kind: consent.ResourceRecord},
		Purpose:       consent.PurposeBreakGlass,
		Justification: "unconscious patient",
		Time:          time.Date(2025, 6, 1, 3, 0, 0, 0, time.UTC),
	}
	d, err := e.Decide(&req, &snap, rules)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(d.Effect, d.Reason, d.Grounds[0].Source, d.Grounds[0].ID, d.Grounds[0].EN)

	req.Actor.RPPS, req.Purpose, req.Justification = treating, consent.PurposeTreatment, ""
	d, _ = e.Decide(&req, &snap, rules)
	fmt.Println(d.Effect, d.Reason, d.Grounds[0].Source, d.Grounds[0].ID, d.Grounds[0].EN)
	// Output:
	// DENY consent directive o1 the patient opposed emergency access
	// ALLOW allowed directive t1 treating physician named by the patient
}
