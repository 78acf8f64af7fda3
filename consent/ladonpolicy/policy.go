package ladonpolicy

import (
	"github.com/ory/ladon"

	"github.com/vigie-sante/vigie/consent"
)

// Actions of the ladon requests, and the action lists of policies.
var (
	actionsAll       = []string{string(consent.ActionHide), string(consent.ActionRead), string(consent.ActionWrite)}
	actionsRead      = []string{string(consent.ActionRead)}
	actionsReadWrite = []string{string(consent.ActionRead), string(consent.ActionWrite)}
	actionsHide      = []string{string(consent.ActionHide)}
	anything         = []string{"<.*>"}
	anyDocuments     = []string{anyDocument}
)

// grounded is implemented by Vigie's policies: the ground a decision
// names when the policy decides, and the obligations it adds.
type grounded interface {
	ground() consent.Ground
	obligations() []consent.Obligation
}

// rulePolicy is a policy of the national rules. It is built once per
// rules version and shared by every request.
type rulePolicy struct {
	id, name  string
	allow     bool
	subjects  []string
	actions   []string
	resources []string
	conds     []keyedCondition
	condMap   ladon.Conditions
	obl       []consent.Obligation
	fr, en    string
}

func newRulePolicy(id, name string, allow bool, actions, resources []string, obl []consent.Obligation, conds ...keyedCondition) *rulePolicy {
	p := &rulePolicy{id: id, name: name, allow: allow, subjects: anything, actions: actions, resources: resources, conds: conds, obl: obl}
	p.condMap = conditionMap(conds)
	p.fr, p.en = consent.GroundText(consent.SourceRule, name)
	return p
}

var _ ladon.Policy = (*rulePolicy)(nil)

func (p *rulePolicy) GetID() string          { return p.id }
func (p *rulePolicy) GetDescription() string { return p.en }
func (p *rulePolicy) GetSubjects() []string  { return p.subjects }
func (p *rulePolicy) AllowAccess() bool      { return p.allow }
func (p *rulePolicy) GetEffect() string      { return effectString(p.allow) }
func (p *rulePolicy) GetResources() []string { return p.resources }
func (p *rulePolicy) GetActions() []string   { return p.actions }
func (p *rulePolicy) GetConditions() ladon.Conditions {
	return p.condMap
}
func (p *rulePolicy) GetMeta() []byte                 { return nil }
func (p *rulePolicy) GetStartDelimiter() byte         { return '<' }
func (p *rulePolicy) GetEndDelimiter() byte           { return '>' }
func (p *rulePolicy) conditionList() []keyedCondition { return p.conds }
func (p *rulePolicy) obligations() []consent.Obligation {
	return p.obl
}
func (p *rulePolicy) ground() consent.Ground {
	return consent.Ground{Source: consent.SourceRule, ID: p.id, Kind: p.name, Effect: effectOf(p.allow), FR: p.fr, EN: p.en}
}

func effectString(allow bool) string {
	if allow {
		return ladon.AllowAccess
	}
	return ladon.DenyAccess
}

func effectOf(allow bool) consent.Effect {
	if allow {
		return consent.Allow
	}
	return consent.Deny
}

// dirPolicy is the ladon policy of one directive of a compiled consent, or
// (i < 0) the patient's instance of the national hidden-document rule. It
// is a view: its strings are the compiled consent's, its conditions point
// into itself, and the engine builds it in a pooled buffer.
type dirPolicy struct {
	c     *Compiled
	i     int // index of the directive in c, or -1 for the hidden-document rule
	allow bool
	id    string
	kind  string
	src   consent.GroundSource

	subjects  [1]string
	resources [1]string
	actions   []string

	during    During
	org       StringEquals
	purpose   StringIn
	hidden    BoolIs
	notAuthor SubjectIsNot
	unless    unlessTreating
	conds     [4]keyedCondition
	n         int
	obl       []consent.Obligation
}

var _ ladon.Policy = (*dirPolicy)(nil)

// setDirective makes p the view of directive i of c under the rules cr.
func (p *dirPolicy) setDirective(c *Compiled, i int, cr *compiledRules) {
	dv := c.dir(i)
	d := &dv
	*p = dirPolicy{c: c, i: i, id: c.str(d.id), kind: string(kindNames[d.kind]), src: consent.SourceDirective}
	p.subjects[0] = "<.*>"
	p.resources[0] = "<.*>"
	p.actions = actionsAll
	// Deny conditions apply when their value is missing; allow conditions
	// do not (see the fail-safe conditions in condition.go).
	switch d.kind {
	case kBlockProfessional:
		p.subjects[0] = c.str(d.subj)
		p.addDuring(d, true)
	case kBlockOrganization:
		p.addDuring(d, true)
		p.org = StringEquals{Value: c.str(d.arg), OnMissing: true}
		p.add(KeyOrganization, &p.org)
	case kAllowProfessional, kTreatingPhysician, kExtendedRights:
		p.allow = true
		p.subjects[0] = c.str(d.subj)
		p.actions = actionsReadWrite
		if d.kind != kAllowProfessional {
			p.actions = actionsAll
		}
		p.addDuring(d, false)
		p.purpose = StringIn{Values: cr.carePurposes, OnMissing: false}
		p.add(KeyPurpose, &p.purpose)
	case kHideDocument, kHideDocumentType, kHideEverything:
		p.actions = actionsRead
		p.resources[0] = anyDocument
		if d.kind != kHideEverything {
			p.resources[0] = c.str(d.arg)
		}
		p.addDuring(d, true)
		p.addHiddenExceptions(c, cr)
	case kOpposeEmergency:
		p.addDuring(d, true)
		p.purpose = StringIn{Values: cr.emergencyPurposes, OnMissing: true}
		p.add(KeyPurpose, &p.purpose)
		p.obl = oblReview
	case kOptOut:
		p.addDuring(d, true)
	}
}

// setHiddenRule makes p the patient's instance of the national rule that a
// document hidden by its own flag is read only by its author and the
// treating physician.
func (p *dirPolicy) setHiddenRule(c *Compiled, cr *compiledRules) {
	*p = dirPolicy{c: c, i: -1, id: consent.RuleHiddenDocument, kind: consent.RuleHiddenDocument, src: consent.SourceRule}
	p.subjects[0] = "<.*>"
	p.resources[0] = anyDocument
	p.actions = actionsRead
	p.hidden = BoolIs{Want: true, OnMissing: true}
	p.add(KeyHidden, &p.hidden)
	p.addHiddenExceptions(c, cr)
}

func (p *dirPolicy) add(key string, c ladon.Condition) {
	p.conds[p.n] = keyedCondition{key, c}
	p.n++
}

func (p *dirPolicy) addDuring(d *cdir, onMissing bool) {
	p.during = During{From: d.from, Until: d.until, OnMissing: onMissing}
	p.add(KeyTime, &p.during)
}

func (p *dirPolicy) addHiddenExceptions(c *Compiled, cr *compiledRules) {
	p.add(KeyAuthor, &p.notAuthor)
	if cr.treatingReadsHidden {
		p.unless = unlessTreating{c: c}
		p.add("unless.treating", &p.unless)
	}
}

func (p *dirPolicy) GetID() string {
	if p.src == consent.SourceRule {
		return p.id
	}
	return "directive/" + p.id
}
func (p *dirPolicy) GetDescription() string {
	_, en := consent.GroundText(p.src, p.kind)
	return en
}
func (p *dirPolicy) GetSubjects() []string             { return p.subjects[:] }
func (p *dirPolicy) AllowAccess() bool                 { return p.allow }
func (p *dirPolicy) GetEffect() string                 { return effectString(p.allow) }
func (p *dirPolicy) GetResources() []string            { return p.resources[:] }
func (p *dirPolicy) GetActions() []string              { return p.actions }
func (p *dirPolicy) GetConditions() ladon.Conditions   { return conditionMap(p.conds[:p.n]) }
func (p *dirPolicy) GetMeta() []byte                   { return nil }
func (p *dirPolicy) GetStartDelimiter() byte           { return '<' }
func (p *dirPolicy) GetEndDelimiter() byte             { return '>' }
func (p *dirPolicy) conditionList() []keyedCondition   { return p.conds[:p.n] }
func (p *dirPolicy) obligations() []consent.Obligation { return p.obl }

func (p *dirPolicy) ground() consent.Ground {
	fr, en := consent.GroundText(p.src, p.kind)
	return consent.Ground{Source: p.src, ID: p.id, Kind: p.kind, Effect: effectOf(p.allow), FR: fr, EN: en}
}

func (p *dirPolicy) compiledPattern(tpl string) (*Pattern, bool) {
	if p.i < 0 {
		return nil, false
	}
	d := p.c.dir(p.i)
	if d.pat == 0 || tpl != p.resources[0] || p.c.pats == nil || int(d.pat) > len(*p.c.pats) {
		return nil, false
	}
	return (*p.c.pats)[d.pat-1], true
}

var (
	oblReview    = []consent.Obligation{consent.FlagForReview}
	oblEmergency = []consent.Obligation{consent.NotifyPatient, consent.NotifyTreatingPhysician, consent.FlagForReview}
)
