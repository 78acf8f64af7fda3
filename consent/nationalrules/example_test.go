package nationalrules_test

import (
	"fmt"

	"github.com/vigie-sante/vigie/consent"
	"github.com/vigie-sante/vigie/consent/nationalrules"
)

func ExampleIllustrative() {
	r := nationalrules.Illustrative()
	fmt.Println("version", r.Version(), "illustrative:", r.Illustrative())
	fmt.Println("dentist reads advance directives:", r.Permits("40", consent.ActionRead, "advance-directives"))
	fmt.Println("midwife reads delivery reports:", r.Permits("50", consent.ActionRead, "delivery-report"))
	access, _ := r.SectorAccess("insurer")
	fmt.Println("insurer:", access)
	// Output:
	// version 1 illustrative: true
	// dentist reads advance directives: false
	// midwife reads delivery reports: true
	// insurer: never
}
