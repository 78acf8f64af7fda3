package consent

import (
	"fmt"
	"time"
)

// Effect is a decision's answer. The zero Effect is Deny: whatever is not
// decided is denied.
type Effect uint8

const (
	Deny Effect = iota
	Allow
)

// String returns "DENY" or "ALLOW".
func (e Effect) String() string {
	if e == Allow {
		return "ALLOW"
	}
	return "DENY"
}

// MarshalText returns "DENY" or "ALLOW".
func (e Effect) MarshalText() ([]byte, error) { return []byte(e.String()), nil }

// UnmarshalText parses "DENY" or "ALLOW".
func (e *Effect) UnmarshalText(b []byte) error {
	switch string(b) {
	case "ALLOW":
		*e = Allow
	case "DENY":
		*e = Deny
	default:
		return fmt.Errorf("unknown effect %q", b)
	}
	return nil
}

// Reason is the coarse reason the calling service is given. It says what
// the professional may act on, never which directive applied nor that a
// hidden document exists: the full explanation ([Decision.Grounds]) goes
// to the ledger, the patient and the auditors only.
type Reason string

const (
	// ReasonAllowed: the access is allowed.
	ReasonAllowed Reason = "allowed"
	// ReasonNotPermitted: the national rules do not permit this access
	// for the professional's profession or sector, or this document
	// type.
	ReasonNotPermitted Reason = "not-permitted"
	// ReasonPurpose: the purpose of use does not permit access to the
	// record.
	ReasonPurpose Reason = "purpose-not-permitted"
	// ReasonJustification: emergency access requires a justification.
	ReasonJustification Reason = "justification-required"
	// ReasonConsent: denied by the patient's consent, including when
	// nothing gives the professional access (no care relationship, no
	// express consent, no emergency).
	ReasonConsent Reason = "consent"
)

// Text returns the reason's message for the calling service, in French
// and in English.
func (r Reason) Text() (fr, en string) {
	switch r {
	case ReasonAllowed:
		return "accès autorisé", "access allowed"
	case ReasonNotPermitted:
		return "accès non permis pour cette profession ou ce type de document", "not permitted for this profession or document type"
	case ReasonPurpose:
		return "finalité d'accès non permise", "purpose of use not permitted"
	case ReasonJustification:
		return "l'accès en urgence doit être justifié", "emergency access requires a justification"
	case ReasonConsent:
		return "accès refusé par le consentement du patient", "denied by the patient's consent"
	}
	return "accès refusé", "access denied"
}

// rank orders deny reasons: the calling service sees the first that
// applies. National-rule reasons come first because they reveal nothing
// about the patient.
func (r Reason) rank() int {
	switch r {
	case ReasonNotPermitted:
		return 0
	case ReasonPurpose:
		return 1
	case ReasonJustification:
		return 2
	}
	return 3
}

// Obligation is an action that must follow a decision. Obligations are
// recorded with the decision's event; notifications are sent later from
// those records.
type Obligation string

const (
	// NotifyPatient: tell the patient about the access.
	NotifyPatient Obligation = "notify-patient"
	// NotifyTreatingPhysician: tell the treating physician.
	NotifyTreatingPhysician Obligation = "notify-treating-physician"
	// FlagForReview: put the access in the auditors' review queue.
	FlagForReview Obligation = "flag-for-review"
)

// GroundSource says whether a ground is a national rule or a directive of
// the patient.
type GroundSource string

const (
	SourceRule      GroundSource = "rule"
	SourceDirective GroundSource = "directive"
)

// The national rules, by name. A ground's Kind is one of these for a rule,
// a [DirectiveKind] for a directive.
const (
	RuleNeverAccess         = "never-access"
	RuleUnknownSector       = "unknown-sector"
	RuleUnknownProfession   = "unknown-profession"
	RuleUnknownDocumentType = "unknown-document-type"
	RuleMatrix              = "matrix"
	RulePurpose             = "purpose"
	RuleJustification       = "justification-required"
	RuleHiddenDocument      = "hidden-document"
	RuleCareTeam            = "care-team"
	RuleBreakGlass          = "break-glass"
	RuleSAMURegulator       = "samu-regulator"
	RuleAuthorHide          = "author-hide"
	RuleDefaultDeny         = "default-deny"
)

// Ground is one rule or directive that decided, with a short reason.
type Ground struct {
	Source GroundSource
	// ID identifies the rule within the national rules (e.g.
	// "matrix/40/read/advance-directives") or the directive within the
	// patient's consent.
	ID string
	// Kind is the rule's name or the directive's kind.
	Kind string
	// Effect is what this ground says.
	Effect Effect
	// FR and EN are a short reason in French and in English.
	FR, EN string
}

// Decision is the answer to a [Request], with everything needed to
// explain and replay it.
type Decision struct {
	Effect Effect
	// Reason is the coarse reason for the calling service.
	Reason Reason
	// Grounds are the deciding rules and directives: for an ALLOW, every
	// ground that allows; for a DENY, every ground that denies, or the
	// default-deny rule when nothing allows. Never shown to the calling
	// service.
	Grounds []Ground
	// Obligations must follow the decision.
	Obligations []Obligation
	// ConsentVersion is the version of the patient's consent decided
	// with; 0 when the patient has none.
	ConsentVersion int64
	// RulesVersion and RulesHash identify the national rules decided
	// with: the SHA-256 of their exact bytes.
	RulesVersion int64
	RulesHash    [32]byte
	// Time is the decision time, the request's.
	Time time.Time
}

// CoarseReason returns the reason the calling service sees for a decision
// with the given effect and grounds: [ReasonAllowed] for an ALLOW; for a
// DENY, the first in the order not-permitted, purpose, justification,
// consent among the denying grounds' reasons, and consent when no ground
// denies (default deny).
func CoarseReason(effect Effect, grounds []Ground) Reason {
	if effect == Allow {
		return ReasonAllowed
	}
	best := ReasonConsent
	for i := range grounds {
		if grounds[i].Effect != Deny {
			continue
		}
		if r := GroundReason(grounds[i].Source, grounds[i].Kind); r.rank() < best.rank() {
			best = r
		}
	}
	return best
}

// GroundReason returns the coarse reason a denying ground maps to.
func GroundReason(source GroundSource, kind string) Reason {
	if source == SourceDirective {
		return ReasonConsent
	}
	switch kind {
	case RuleNeverAccess, RuleUnknownSector, RuleUnknownProfession, RuleUnknownDocumentType, RuleMatrix:
		return ReasonNotPermitted
	case RulePurpose:
		return ReasonPurpose
	case RuleJustification:
		return ReasonJustification
	}
	return ReasonConsent
}

// GroundText returns the short reason, in French and in English, of a
// rule or directive kind with the given effect.
func GroundText(source GroundSource, kind string) (fr, en string) {
	if source == SourceDirective {
		switch DirectiveKind(kind) {
		case BlockProfessional:
			return "le patient a bloqué ce professionnel", "the patient blocked this professional"
		case BlockOrganization:
			return "le patient a bloqué cet établissement", "the patient blocked this organisation"
		case AllowProfessional:
			return "le patient a autorisé ce professionnel", "the patient allowed this professional"
		case TreatingPhysician:
			return "médecin traitant désigné par le patient", "treating physician named by the patient"
		case ExtendedRights:
			return "droits étendus donnés par le patient", "extended rights given by the patient"
		case HideDocument:
			return "document masqué par le patient", "document hidden by the patient"
		case HideDocumentType:
			return "type de document masqué par le patient", "document type hidden by the patient"
		case HideEverything:
			return "le patient a tout masqué", "the patient hid everything"
		case OpposeEmergency:
			return "le patient s'est opposé à l'accès en urgence", "the patient opposed emergency access"
		case OptOut:
			return "le patient s'est opposé à son dossier", "the patient opted out"
		}
		return "directive du patient", "patient's directive"
	}
	switch kind {
	case RuleNeverAccess:
		return "secteur sans accès au dossier (employeur, assureur, banque)", "sector never has access (employer, insurer, bank)"
	case RuleUnknownSector:
		return "secteur inconnu des règles nationales", "sector unknown to the national rules"
	case RuleUnknownProfession:
		return "profession inconnue des règles nationales", "profession unknown to the national rules"
	case RuleUnknownDocumentType:
		return "type de document inconnu des règles nationales", "document type unknown to the national rules"
	case RuleMatrix:
		return "la matrice d'habilitations ne le permet pas à cette profession", "the access matrix does not permit it for this profession"
	case RulePurpose:
		return "finalité d'accès non permise", "purpose of use not permitted"
	case RuleJustification:
		return "accès en urgence sans justification", "emergency access without a justification"
	case RuleHiddenDocument:
		return "document masqué, visible de son auteur et du médecin traitant seulement", "hidden document, visible to its author and the treating physician only"
	case RuleCareTeam:
		return "membre de l'équipe de soins", "member of the care team"
	case RuleBreakGlass:
		return "accès en urgence (bris de glace)", "emergency access (break-glass)"
	case RuleSAMURegulator:
		return "médecin régulateur du SAMU", "SAMU regulating physician"
	case RuleAuthorHide:
		return "l'auteur masque son document", "the author hides their document"
	case RuleDefaultDeny:
		return "aucune règle ni directive ne permet cet accès", "no rule or directive permits this access"
	}
	return "règle nationale", "national rule"
}
