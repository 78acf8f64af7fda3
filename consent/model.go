// Package consent decides who may access a patient's shared health record
// (the French DMP, inside Mon espace santé): it holds the patient's
// directives, the national access rules, the requests and the decisions,
// and the contracts of the stores and of the ledger recorder it uses.
//
// The reference behaviour is the public health code (CSP, articles
// L1111-14 to L1111-24 and R1111-26 to R1111-52) and the access matrix of
// the arrêté of 26 October 2023; the semantics, the table of cases and the
// file formats are in docs/consent.md. Purposes of use are HL7 v3
// [ActReason] codes.
//
// A check goes: validate the [Request] ([ValidateRequest]), read the
// patient's [Consent] from the [Store], decide with an [Engine] (package
// consent/ladonpolicy), record the [Decision] with the [Recorder] (the
// ledger), and answer. [Service] does exactly that, and never answers
// ALLOW for a decision it could not record.
//
// [ActReason]: https://terminology.hl7.org/ValueSet-v3-PurposeOfUse.html
package consent

import (
	"time"

	"github.com/vigie-sante/vigie/consent/ident"
)

// Purpose is the purpose of use of a request, an HL7 v3 ActReason code.
type Purpose string

// The purposes of use Vigie knows. Which of them permit access is national
// rules data ([RulesData.CarePurposes], [RulesData.EmergencyPurposes]).
const (
	PurposeTreatment          Purpose = "TREAT"   // treatment
	PurposeEmergencyTreatment Purpose = "ETREAT"  // emergency treatment
	PurposeBreakGlass         Purpose = "BTG"     // break the glass
	PurposePayment            Purpose = "HPAYMT"  // healthcare payment
	PurposeOperations         Purpose = "HOPERAT" // healthcare operations
	PurposeResearch           Purpose = "HRESCH"  // healthcare research
)

// Valid reports whether p is one of the six known purposes.
func (p Purpose) Valid() bool {
	switch p {
	case PurposeTreatment, PurposeEmergencyTreatment, PurposeBreakGlass,
		PurposePayment, PurposeOperations, PurposeResearch:
		return true
	}
	return false
}

// Action is what the actor wants to do.
type Action string

const (
	// ActionRead reads the record (lists its documents) or a document.
	ActionRead Action = "read"
	// ActionWrite adds a document to the record.
	ActionWrite Action = "write"
	// ActionHide hides a document from other professionals, as its
	// author or the treating physician may.
	ActionHide Action = "hide"
)

// Valid reports whether a is a known action.
func (a Action) Valid() bool {
	return a == ActionRead || a == ActionWrite || a == ActionHide
}

// Actor is the professional on whose behalf a calling service asks. The
// calling service asserts every field (it vouches for the professional, as
// in the DMP); Vigie records both.
type Actor struct {
	// RPPS is the professional's number. Required.
	RPPS ident.RPPS
	// Profession is the national profession code (e.g. "10" physician,
	// "40" dentist, "80" podiatrist). Required; a code the national rules
	// do not know is denied.
	Profession string
	// Specialty is the physician's specialty code. Optional; recorded,
	// not used by the national rules shipped.
	Specialty string
	// Sector is where the professional acts, a sector code of the
	// national rules (e.g. "care", "samu", "occupational-health",
	// "insurer"). Required; it decides the care-team presumption, the
	// SAMU regulator path, express-consent-only and never-access sectors.
	Sector string
	// Organization is the FINESS number of the organisation the
	// professional acts for. Required: a block of an organisation must
	// not be escaped by leaving it out.
	Organization ident.FINESS
	// CareTeam is the calling service's assertion that the professional
	// belongs to the patient's care team (équipe de soins, L1110-12).
	CareTeam bool
}

// ResourceKind says whether a request is about the whole record or one
// document.
type ResourceKind string

const (
	// ResourceRecord is the whole record: opening it, listing documents.
	ResourceRecord ResourceKind = "record"
	// ResourceDocument is one document.
	ResourceDocument ResourceKind = "document"
)

// Resource is what a request is about.
type Resource struct {
	Kind ResourceKind
	// DocumentID identifies the document (its unique ID in the record).
	// Required for a document, empty for the record.
	DocumentID string
	// DocumentType is the document type code of the national rules.
	// Required for a document, empty for the record.
	DocumentType string
	// Author is the RPPS number of the document's author, if known.
	Author ident.RPPS
	// Hidden is the document's own hidden flag, as the record holds it
	// (hidden by the patient or by a professional). A document may also
	// be hidden by the patient's directives.
	Hidden bool
}

// Request asks whether an actor may do an action on a patient's record.
type Request struct {
	// ID is the calling service's request ID. Required. A retry carries
	// the same ID and gets the first answer back.
	ID string
	// Service identifies the calling service (set by the API from its
	// credentials, never by the caller's payload). Required.
	Service string
	// Patient is the patient. Required.
	Patient  ident.INS
	Actor    Actor
	Action   Action
	Resource Resource
	// Purpose is the purpose of use. Required.
	Purpose Purpose
	// Justification is the professional's free-text justification of an
	// emergency access. It is recorded, never returned to the caller.
	Justification string
	// Time is the decision time. Required: the boundary sets it from its
	// clock, and a replay of the decision uses the recorded time.
	Time time.Time
	// MinConsentVersion is the patient's consent version the caller has
	// seen, if any: the decision never uses an older consent. 0 means
	// any.
	MinConsentVersion int64
}

// Key returns the request's idempotency key.
func (r *Request) Key() RequestKey { return RequestKey{Service: r.Service, RequestID: r.ID} }

// RequestKey identifies a request for idempotency: a calling service and
// its request ID.
type RequestKey struct {
	Service   string
	RequestID string
}

// DirectiveKind is the kind of a patient's directive.
type DirectiveKind string

// The directive kinds. The target field each uses is in brackets.
const (
	// BlockProfessional denies every access by a professional
	// [Professional], even in the care team or in an emergency.
	BlockProfessional DirectiveKind = "block-professional"
	// BlockOrganization denies every access by the professionals acting
	// for an organisation [Organization].
	BlockOrganization DirectiveKind = "block-organization"
	// AllowProfessional gives a professional outside the care team
	// access, the patient's express consent [Professional]. It is the
	// only way in for express-consent-only sectors (occupational and
	// fire-brigade physicians).
	AllowProfessional DirectiveKind = "allow-professional"
	// TreatingPhysician names the treating physician (médecin traitant)
	// [Professional], who reads everything, hidden documents included.
	TreatingPhysician DirectiveKind = "treating-physician"
	// ExtendedRights gives a professional the treating physician's rights
	// [Professional].
	ExtendedRights DirectiveKind = "extended-rights"
	// HideDocument hides documents [Document]: a document ID, or a
	// pattern over document IDs in ladon's syntax (a regular expression
	// between < and >, e.g. "stay-2024-<[0-9]+>"). Hidden documents stay
	// visible to their author and to the treating physician.
	HideDocument DirectiveKind = "hide-document"
	// HideDocumentType hides every document of a type [DocumentType],
	// with the same exceptions as HideDocument.
	HideDocumentType DirectiveKind = "hide-document-type"
	// HideEverything hides every document, even from emergency access,
	// with the same exceptions as HideDocument.
	HideEverything DirectiveKind = "hide-everything"
	// OpposeEmergency opposes emergency (break-glass and SAMU) access.
	OpposeEmergency DirectiveKind = "oppose-emergency"
	// OptOut closes the record to everyone.
	OptOut DirectiveKind = "opt-out"
)

// Valid reports whether k is a known directive kind.
func (k DirectiveKind) Valid() bool {
	switch k {
	case BlockProfessional, BlockOrganization, AllowProfessional, TreatingPhysician,
		ExtendedRights, HideDocument, HideDocumentType, HideEverything, OpposeEmergency, OptOut:
		return true
	}
	return false
}

// Directive is one of a patient's choices. Exactly the target field its
// kind uses is set (see [DirectiveKind]).
type Directive struct {
	// ID identifies the directive within the patient's consent, stably
	// across versions: decisions name it. 1 to 64 characters from
	// [A-Za-z0-9._:-].
	ID   string
	Kind DirectiveKind

	Professional ident.RPPS
	Organization ident.FINESS
	Document     string
	DocumentType string

	// From and Until bound the directive's validity: it applies at times
	// t with From <= t < Until. A zero From or Until is unbounded. Both
	// are whole seconds in UTC.
	From, Until time.Time
}

// ActiveAt reports whether d applies at t.
func (d *Directive) ActiveAt(t time.Time) bool {
	return (d.From.IsZero() || !t.Before(d.From)) && (d.Until.IsZero() || t.Before(d.Until))
}

// Consent is a patient's directives at one version. Version 0 is the
// consent of a patient who never stated any directive: no directives.
// Each stored change increments the version by one.
type Consent struct {
	Version    int64
	Directives []Directive
}

// Clone returns a deep copy of c.
func (c Consent) Clone() Consent {
	c.Directives = append([]Directive(nil), c.Directives...)
	return c
}
