package ladonpolicy

import (
	"slices"

	"github.com/ory/ladon"

	"github.com/vigie-sante/vigie/consent"
)

// compiledRules is one version of the national rules compiled to ladon
// policies, indexed so that a request gets only the policies that can
// apply to its action, profession, sector and document type.
type compiledRules struct {
	version int64
	hash    [32]byte

	carePurposes, emergencyPurposes []string
	treatingReadsHidden             bool

	sectors     map[string]consent.SectorAccess
	professions map[string]bool
	docTypes    map[string]bool

	// always apply: the purpose rule and the justification rule.
	always []ladon.Policy
	// bySector: never-access for never sectors; care-team and break-glass
	// for care sectors; the SAMU regulator for regulation sectors.
	bySector map[string][]ladon.Policy
	// matrix holds a deny for each (action, profession, document type)
	// the access matrix does not permit.
	matrix map[matrixKey]*rulePolicy

	unknownSector, unknownProfession, unknownDocType *rulePolicy
	authorHide                                       *rulePolicy

	// boxed holds every code of the rules as an interface value, so that
	// building a request's context does not allocate.
	boxed map[string]any
}

type matrixKey struct {
	action     consent.Action
	profession string
	docType    string
}

func compileRules(r *consent.Rules) *compiledRules {
	d := r.Data()
	cr := &compiledRules{
		version:             r.Version(),
		hash:                r.Hash(),
		treatingReadsHidden: d.TreatingPhysicianReadsHidden,
		sectors:             make(map[string]consent.SectorAccess),
		professions:         make(map[string]bool),
		docTypes:            make(map[string]bool),
		bySector:            make(map[string][]ladon.Policy),
		matrix:              make(map[matrixKey]*rulePolicy),
		boxed:               make(map[string]any),
	}
	box := func(s string) {
		if _, ok := cr.boxed[s]; !ok {
			cr.boxed[s] = s
		}
	}
	for _, p := range d.CarePurposes {
		cr.carePurposes = append(cr.carePurposes, string(p))
	}
	for _, p := range d.EmergencyPurposes {
		cr.emergencyPurposes = append(cr.emergencyPurposes, string(p))
	}
	for _, p := range []consent.Purpose{consent.PurposeTreatment, consent.PurposeEmergencyTreatment, consent.PurposeBreakGlass,
		consent.PurposePayment, consent.PurposeOperations, consent.PurposeResearch} {
		box(string(p))
	}
	var knownSectors, careSectors, regulationSectors, neverSectors []string
	for _, s := range d.Sectors {
		cr.sectors[s.Code] = s.Access
		knownSectors = append(knownSectors, s.Code)
		box(s.Code)
		switch s.Access {
		case consent.AccessCare:
			careSectors = append(careSectors, s.Code)
		case consent.AccessRegulation:
			regulationSectors = append(regulationSectors, s.Code)
		case consent.AccessNever:
			neverSectors = append(neverSectors, s.Code)
		}
	}
	profSet := make(map[string]bool)
	for _, p := range d.Professions {
		cr.professions[p.Code] = true
		profSet[p.Code] = true
		box(p.Code)
	}
	for _, t := range d.DocumentTypes {
		cr.docTypes[t.Code] = true
		box(t.Code)
	}

	// Denies: their conditions apply when the value is missing.
	cr.unknownSector = newRulePolicy("unknown-sector", consent.RuleUnknownSector, false, actionsAll, anything, nil,
		keyedCondition{KeySector, &StringNotIn{Values: knownSectors, OnMissing: true}})
	cr.unknownProfession = newRulePolicy("unknown-profession", consent.RuleUnknownProfession, false, actionsAll, anything, nil,
		keyedCondition{KeyProfession, &StringSetNotIn{Values: profSet, OnMissing: true}})
	cr.unknownDocType = newRulePolicy("unknown-document-type", consent.RuleUnknownDocumentType, false, actionsAll, anyDocuments, nil,
		keyedCondition{KeyDocumentType, &StringSetNotIn{Values: cr.docTypes, OnMissing: true}})
	never := newRulePolicy("never-access", consent.RuleNeverAccess, false, actionsAll, anything, nil,
		keyedCondition{KeySector, &StringIn{Values: neverSectors, OnMissing: true}})
	allowedPurposes := append(slices.Clone(cr.carePurposes), cr.emergencyPurposes...)
	cr.always = append(cr.always, newRulePolicy("purpose", consent.RulePurpose, false, actionsAll, anything, nil,
		keyedCondition{KeyPurpose, &StringNotIn{Values: allowedPurposes, OnMissing: true}}))
	if d.EmergencyJustificationRequired {
		cr.always = append(cr.always, newRulePolicy("justification-required", consent.RuleJustification, false, actionsAll, anything, oblReview,
			keyedCondition{KeyPurpose, &StringIn{Values: cr.emergencyPurposes, OnMissing: true}},
			keyedCondition{KeyJustified, &BoolIs{Want: false, OnMissing: true}}))
	}
	for _, p := range d.Professions {
		for _, t := range d.DocumentTypes {
			for _, a := range []struct {
				action  consent.Action
				allowed []string
			}{{consent.ActionRead, p.Read}, {consent.ActionWrite, p.Write}} {
				if _, ok := slices.BinarySearch(a.allowed, t.Code); ok {
					continue
				}
				id := "matrix/" + p.Code + "/" + string(a.action) + "/" + t.Code
				cr.matrix[matrixKey{a.action, p.Code, t.Code}] = newRulePolicy(id, consent.RuleMatrix, false,
					[]string{string(a.action)}, []string{documentPrefix + t.Code + "/<.*>"}, nil,
					keyedCondition{KeyProfession, &StringEquals{Value: p.Code, OnMissing: true}})
			}
		}
	}

	// Allows: their conditions do not apply when the value is missing.
	justified := func(conds ...keyedCondition) []keyedCondition {
		if d.EmergencyJustificationRequired {
			conds = append(conds, keyedCondition{KeyJustified, &BoolIs{Want: true}})
		}
		return conds
	}
	var careTeam *rulePolicy
	if d.CareTeamPresumption {
		careTeam = newRulePolicy("care-team", consent.RuleCareTeam, true, actionsReadWrite, anything, nil,
			keyedCondition{KeyCareTeam, &BoolIs{Want: true}},
			keyedCondition{KeyPurpose, &StringIn{Values: cr.carePurposes}},
			keyedCondition{KeySector, &StringIn{Values: careSectors}})
	}
	breakGlass := newRulePolicy("break-glass", consent.RuleBreakGlass, true, actionsRead, anything, oblEmergency,
		justified(
			keyedCondition{KeyPurpose, &StringIn{Values: cr.emergencyPurposes}},
			keyedCondition{KeyProfession, &StringIn{Values: d.EmergencyProfessions}},
			keyedCondition{KeySector, &StringIn{Values: careSectors}})...)
	samu := newRulePolicy("samu-regulator", consent.RuleSAMURegulator, true, actionsRead, anything, oblEmergency,
		justified(
			keyedCondition{KeyPurpose, &StringIn{Values: cr.emergencyPurposes}},
			keyedCondition{KeyProfession, &StringIn{Values: d.RegulatorProfessions}},
			keyedCondition{KeySector, &StringIn{Values: regulationSectors}})...)
	cr.authorHide = newRulePolicy("author-hide", consent.RuleAuthorHide, true, actionsHide, anyDocuments, nil,
		keyedCondition{KeyAuthor, &ladon.EqualsSubjectCondition{}},
		keyedCondition{KeyPurpose, &StringIn{Values: cr.carePurposes}})

	for _, s := range d.Sectors {
		switch s.Access {
		case consent.AccessNever:
			cr.bySector[s.Code] = []ladon.Policy{never}
		case consent.AccessCare:
			if careTeam != nil {
				cr.bySector[s.Code] = append(cr.bySector[s.Code], careTeam)
			}
			cr.bySector[s.Code] = append(cr.bySector[s.Code], breakGlass)
		case consent.AccessRegulation:
			cr.bySector[s.Code] = []ladon.Policy{samu}
		}
	}
	return cr
}

// appendCandidates appends the national rules' policies that can apply to
// r: the index is by action, profession, document type and sector, never
// the whole rule set.
func (cr *compiledRules) appendCandidates(dst []ladon.Policy, r *ladon.Request) []ladon.Policy {
	dst = append(dst, cr.always...)
	sector, _ := r.Context[KeySector].(string)
	if ps, ok := cr.bySector[sector]; ok {
		dst = append(dst, ps...)
	} else if _, known := cr.sectors[sector]; !known {
		dst = append(dst, cr.unknownSector)
	}
	prof, _ := r.Context[KeyProfession].(string)
	if !cr.professions[prof] {
		dst = append(dst, cr.unknownProfession)
	}
	if len(r.Resource) > len(documentPrefix) && r.Resource[:len(documentPrefix)] == documentPrefix {
		docType, _ := r.Context[KeyDocumentType].(string)
		if !cr.docTypes[docType] {
			dst = append(dst, cr.unknownDocType)
		} else if p := cr.matrix[matrixKey{consent.Action(r.Action), prof, docType}]; p != nil {
			dst = append(dst, p)
		}
		if r.Action == string(consent.ActionHide) {
			dst = append(dst, cr.authorHide)
		}
	}
	return dst
}
