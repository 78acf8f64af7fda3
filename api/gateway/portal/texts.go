package portal

import "github.com/vigie-sante/vigie/consent"

// text is a French and an English wording.
type text struct {
	FR string `json:"fr"`
	EN string `json:"en"`
}

// decisionTexts returns the wording of decisions, from package consent
// (one source for the API, the ledger's readers and the pages): the
// grounds of every national rule and directive kind, and the coarse
// reasons.
func decisionTexts() map[string]map[string]text {
	rules := []string{
		consent.RuleNeverAccess, consent.RuleUnknownSector, consent.RuleUnknownProfession,
		consent.RuleUnknownDocumentType, consent.RuleMatrix, consent.RulePurpose,
		consent.RuleJustification, consent.RuleHiddenDocument, consent.RuleCareTeam,
		consent.RuleBreakGlass, consent.RuleSAMURegulator, consent.RuleAuthorHide,
		consent.RuleDefaultDeny,
	}
	directives := []consent.DirectiveKind{
		consent.BlockProfessional, consent.BlockOrganization, consent.AllowProfessional,
		consent.TreatingPhysician, consent.ExtendedRights, consent.HideDocument,
		consent.HideDocumentType, consent.HideEverything, consent.OpposeEmergency,
		consent.OptOut,
	}
	reasons := []consent.Reason{
		consent.ReasonAllowed, consent.ReasonNotPermitted, consent.ReasonPurpose,
		consent.ReasonJustification, consent.ReasonConsent,
	}
	out := map[string]map[string]text{"rule": {}, "directive": {}, "reason": {}}
	for _, k := range rules {
		fr, en := consent.GroundText(consent.SourceRule, k)
		out["rule"][k] = text{fr, en}
	}
	for _, k := range directives {
		fr, en := consent.GroundText(consent.SourceDirective, string(k))
		out["directive"][string(k)] = text{fr, en}
	}
	for _, r := range reasons {
		fr, en := r.Text()
		out["reason"][string(r)] = text{fr, en}
	}
	return out
}
