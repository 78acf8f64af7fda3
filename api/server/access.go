package server

import (
	"context"
	"log/slog"

	vigiev1 "github.com/vigie-sante/vigie/api/vigie/v1"
	"github.com/vigie-sante/vigie/consent"
	"github.com/vigie-sante/vigie/consent/ident"
)

// MaxJustification bounds a break-glass justification, in bytes.
const MaxJustification = 1024

type accessService struct {
	vigiev1.UnimplementedAccessServiceServer
	b *Backend
}

// Check decides and records. The decision returned is the recorded one; a
// recording failure is Unavailable, never an answer.
func (s *accessService) Check(ctx context.Context, req *vigiev1.CheckRequest) (*vigiev1.CheckResponse, error) {
	id, err := identity(ctx)
	if err != nil {
		return nil, err
	}
	r, err := ValidateCheck(req)
	if err != nil {
		return nil, err
	}
	// The calling service speaks only for its organisations; the
	// authorization interceptor checked the actor's organisation too.
	if !id.SpeaksFor(r.Actor.Organization.String()) {
		return nil, errOrganization
	}
	r.Service = id.Principal()
	AddLogAttrs(ctx, slog.String("request_id", r.ID), slog.String("purpose", string(r.Purpose)))
	d, rec, err := s.b.Consent.Check(ctx, r)
	if err != nil {
		return nil, unavailable(err)
	}
	AddLogAttrs(ctx, slog.String("decision", d.Effect.String()), slog.Int64("leaf_index", rec.Index))
	resp := &vigiev1.CheckResponse{
		Decision:             vigiev1.Decision_DECISION_DENY,
		ConsentVersion:       d.ConsentVersion,
		NationalRulesVersion: d.RulesVersion,
		Event:                recorded(uint64(rec.Index), rec.Commitment, rec.Note),
	}
	if d.Effect == consent.Allow {
		resp.Decision = vigiev1.Decision_DECISION_ALLOW
	}
	fr, en := d.Reason.Text()
	resp.Reason = &vigiev1.CoarseReason{Code: reasonCode(d.Reason), Text: en, TextFr: fr}
	// Obligations bind the caller only for an access it may perform; on a
	// denial they would tell which directive applied (an opposition to
	// emergency access is flagged for review): they stay in the ledger.
	for _, o := range d.Obligations {
		if d.Effect != consent.Allow {
			break
		}
		resp.Obligations = append(resp.Obligations, obligation(o))
	}
	return resp, nil
}

// ValidateCheck validates a Check request into the consent model, as Check
// does before deciding; the caller sets the request's Service. Every error
// names the field.
func ValidateCheck(req *vigiev1.CheckRequest) (consent.Request, error) {
	var r consent.Request
	if err := validateRequestID(req.RequestId); err != nil {
		return r, err
	}
	r.ID = req.RequestId
	var err error
	if r.Patient, err = parseINS("patient_ins", req.PatientIns); err != nil {
		return r, err
	}
	a := req.GetActor()
	if a == nil {
		return r, InvalidField("actor", "required")
	}
	if r.Actor.RPPS, err = ident.ParseRPPS(a.Rpps); err != nil {
		return r, &FieldError{Field: "actor.rpps", Problem: "must be an RPPS number (11 digits)", Kind: consent.ProblemInvalidFormat, Err: err}
	}
	if r.Actor.Organization, err = ident.ParseFINESS(a.Organization); err != nil {
		return r, &FieldError{Field: "actor.organization", Problem: "must be a FINESS number", Kind: consent.ProblemInvalidFormat, Err: err}
	}
	if a.Profession == "" {
		return r, InvalidField("actor.profession", "required")
	}
	if a.Sector == "" {
		return r, InvalidField("actor.sector", "required")
	}
	r.Actor.Profession, r.Actor.Specialty, r.Actor.Sector, r.Actor.CareTeam = a.Profession, a.Specialty, a.Sector, a.CareTeam

	switch req.Action {
	case vigiev1.Action_ACTION_READ:
		r.Action = consent.ActionRead
	case vigiev1.Action_ACTION_WRITE:
		r.Action = consent.ActionWrite
	case vigiev1.Action_ACTION_HIDE:
		r.Action = consent.ActionHide
	case vigiev1.Action_ACTION_UNSPECIFIED:
		return r, InvalidField("action", "required")
	default:
		return r, InvalidField("action", "unknown value")
	}

	switch k := req.GetResource().GetKind().(type) {
	case *vigiev1.Resource_Record:
		r.Resource.Kind = consent.ResourceRecord
	case *vigiev1.Resource_Document:
		doc := k.Document
		if doc == nil || doc.Id == "" {
			return r, InvalidField("resource.document.id", "required")
		}
		if doc.Type == "" {
			return r, InvalidField("resource.document.type", "required")
		}
		r.Resource = consent.Resource{Kind: consent.ResourceDocument, DocumentID: doc.Id, DocumentType: doc.Type, Hidden: doc.Hidden}
		if doc.AuthorRpps != "" {
			if r.Resource.Author, err = ident.ParseRPPS(doc.AuthorRpps); err != nil {
				return r, &FieldError{Field: "resource.document.author_rpps", Problem: "must be an RPPS number (11 digits)", Kind: consent.ProblemInvalidFormat, Err: err}
			}
		}
	default:
		return r, InvalidField("resource", "required: record or document")
	}

	switch req.PurposeOfUse {
	case vigiev1.PurposeOfUse_PURPOSE_OF_USE_TREAT:
		r.Purpose = consent.PurposeTreatment
	case vigiev1.PurposeOfUse_PURPOSE_OF_USE_ETREAT:
		r.Purpose = consent.PurposeEmergencyTreatment
	case vigiev1.PurposeOfUse_PURPOSE_OF_USE_BTG:
		r.Purpose = consent.PurposeBreakGlass
	case vigiev1.PurposeOfUse_PURPOSE_OF_USE_HPAYMT:
		r.Purpose = consent.PurposePayment
	case vigiev1.PurposeOfUse_PURPOSE_OF_USE_HOPERAT:
		r.Purpose = consent.PurposeOperations
	case vigiev1.PurposeOfUse_PURPOSE_OF_USE_HRESCH:
		r.Purpose = consent.PurposeResearch
	case vigiev1.PurposeOfUse_PURPOSE_OF_USE_UNSPECIFIED:
		return r, InvalidField("purpose_of_use", "required")
	default:
		return r, InvalidField("purpose_of_use", "unknown value")
	}
	if err := consent.CheckText(req.BreakGlassJustification, MaxJustification); err != nil {
		return r, &FieldError{Field: "break_glass_justification", Problem: err.Error()}
	}
	r.Justification = req.BreakGlassJustification
	if req.MinConsentVersion < 0 {
		return r, InvalidField("min_consent_version", "must not be negative")
	}
	r.MinConsentVersion = req.MinConsentVersion
	return r, nil
}

// MaxRequestID is the longest request_id, in bytes.
const MaxRequestID = consent.MaxRequestID

// validateRequestID checks a caller's request_id with the consent model's
// rule (consent.CheckRequestID).
func validateRequestID(id string) error { return consent.CheckRequestID("request_id", id) }

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e || s[i] == '"' || s[i] == '\\' {
			return false
		}
	}
	return true
}

func reasonCode(r consent.Reason) vigiev1.ReasonCode {
	switch r {
	case consent.ReasonAllowed:
		return vigiev1.ReasonCode_REASON_CODE_ALLOWED
	case consent.ReasonNotPermitted:
		return vigiev1.ReasonCode_REASON_CODE_NOT_PERMITTED
	case consent.ReasonPurpose:
		return vigiev1.ReasonCode_REASON_CODE_PURPOSE_NOT_PERMITTED
	case consent.ReasonJustification:
		return vigiev1.ReasonCode_REASON_CODE_JUSTIFICATION_REQUIRED
	}
	return vigiev1.ReasonCode_REASON_CODE_CONSENT
}

func obligation(o consent.Obligation) vigiev1.Obligation {
	switch o {
	case consent.NotifyPatient:
		return vigiev1.Obligation_OBLIGATION_NOTIFY_PATIENT
	case consent.NotifyTreatingPhysician:
		return vigiev1.Obligation_OBLIGATION_NOTIFY_TREATING_PHYSICIAN
	case consent.FlagForReview:
		return vigiev1.Obligation_OBLIGATION_FLAG_FOR_REVIEW
	}
	return vigiev1.Obligation_OBLIGATION_UNSPECIFIED
}
