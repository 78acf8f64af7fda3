package consent_test

import (
	"context"
	"fmt"
	"time"

	"github.com/vigie-sante/vigie/consent"
	"github.com/vigie-sante/vigie/consent/consenttest"
	"github.com/vigie-sante/vigie/consent/ident"
	"github.com/vigie-sante/vigie/consent/ladonpolicy"
	"github.com/vigie-sante/vigie/consent/memstore"
	"github.com/vigie-sante/vigie/consent/nationalrules"
)

func ExampleService_Check() {
	ctx := context.Background()
	store := memstore.New()
	svc, err := consent.NewService(ctx, consent.Config{
		Store:    store,
		Recorder: &consenttest.Recorder{Store: store}, // the ledger, in production
		Engine:   ladonpolicy.NewEngine(ladonpolicy.Options{}),
		Rules:    nationalrules.Illustrative(),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	patient, _ := ident.NormalizeINS("1 84 12 76 451 089 46")
	dentist := ident.MustParseRPPS("40000000011")
	req := consent.Request{
		ID: "req-1", Service: "dental-software.example", Patient: patient,
		Actor: consent.Actor{RPPS: dentist, Profession: "40", Sector: "care",
			Organization: ident.MustParseFINESS("750712184"), CareTeam: true},
		Action:   consent.ActionRead,
		Resource: consent.Resource{Kind: consent.ResourceDocument, DocumentID: "doc-7", DocumentType: "advance-directives"},
		Purpose:  consent.PurposeTreatment,
		Time:     time.Date(2025, 6, 1, 10, 0, 0, 0, time.UTC),
	}
	d, receipt, err := svc.Check(ctx, req)
	if err != nil {
		fmt.Println(err)
		return
	}
	_, en := d.Reason.Text()
	fmt.Println("caller sees:", d.Effect, en)
	fmt.Println("ledger records:", d.Grounds[0].ID, "at index", receipt.Index)

	// The patient blocks the dentist; the next decision reflects it.
	if _, err := svc.UpdateConsent(ctx, patient, 0, []consent.Directive{
		{ID: "b1", Kind: consent.BlockProfessional, Professional: dentist},
	}, "patient"); err != nil {
		fmt.Println(err)
		return
	}
	req.ID = "req-2"
	req.Resource.DocumentType = "dental-record"
	d, _, _ = svc.Check(ctx, req)
	_, en = d.Reason.Text()
	fmt.Println("caller sees:", d.Effect, en)
	fmt.Println("ledger records: directive", d.Grounds[0].ID, "of consent version", d.ConsentVersion)
	// Output:
	// caller sees: DENY not permitted for this profession or document type
	// ledger records: matrix/40/read/advance-directives at index 0
	// caller sees: DENY denied by the patient's consent
	// ledger records: directive b1 of consent version 1
}

func ExampleParseRules() {
	r, err := consent.ParseRules(nationalrules.IllustrativeBytes())
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(r.Version(), r.Illustrative(), r.Permits("80", consent.ActionRead, "delivery-report"))
	_, err = consent.ParseRules([]byte(`{"format": "vigie-national-rules-v1"}`))
	fmt.Println(err != nil)
	// Output:
	// 1 true false
	// true
}
