package server

import (
	"context"
	"fmt"
	"log/slog"

	"google.golang.org/protobuf/types/known/timestamppb"

	vigiev1 "github.com/vigie-sante/vigie/api/vigie/v1"
	"github.com/vigie-sante/vigie/consent"
	"github.com/vigie-sante/vigie/consent/ident"
)

type consentService struct {
	vigiev1.UnimplementedConsentServiceServer
	b *Backend
}

func (s *consentService) GetConsent(ctx context.Context, _ *vigiev1.GetConsentRequest) (*vigiev1.Consent, error) {
	_, ins, err := me(ctx)
	if err != nil {
		return nil, err
	}
	c, err := s.b.Consents.Consent(ctx, ins)
	if err != nil {
		return nil, err
	}
	out := consentMessage(c)
	if c.Version > 0 {
		h, err := s.b.Consents.ConsentHistory(ctx, ins, c.Version, 1)
		if err == nil && len(h) == 1 {
			out.UpdateTime, out.UpdatedBy = timestamppb.New(h[0].Time), h[0].Author
		}
	}
	return out, nil
}

func (s *consentService) UpdateConsent(ctx context.Context, req *vigiev1.UpdateConsentRequest) (*vigiev1.UpdateConsentResponse, error) {
	id, ins, err := me(ctx)
	if err != nil {
		return nil, err
	}
	ds, err := directives(req.Directives)
	if err != nil {
		return nil, err
	}
	rec, err := s.b.Consent.UpdateConsent(ctx, ins, req.ExpectedVersion, ds, author(id))
	if err != nil {
		return nil, unavailable(err)
	}
	AddLogAttrs(ctx, slog.Int64("consent_version", int64(rec.Version)))
	return &vigiev1.UpdateConsentResponse{Version: rec.Version}, nil
}

// historyScope names page tokens of ListConsentHistory.
const consentHistoryScope = "ListConsentHistory"

func (s *consentService) ListConsentHistory(ctx context.Context, req *vigiev1.ListConsentHistoryRequest) (*vigiev1.ListConsentHistoryResponse, error) {
	id, ins, err := me(ctx)
	if err != nil {
		return nil, err
	}
	size, err := PageSize(req.PageSize, 20, 100)
	if err != nil {
		return nil, err
	}
	from := int64(1)
	if req.PageToken != "" {
		v, err := s.b.Pages.Open(consentHistoryScope, Binding(id), req.PageToken, 1)
		if err != nil {
			return nil, err
		}
		from = int64(v[0])
	}
	recs, err := s.b.Consents.ConsentHistory(ctx, ins, from, size+1)
	if err != nil {
		return nil, err
	}
	resp := &vigiev1.ListConsentHistoryResponse{}
	if len(recs) > size {
		resp.NextPageToken = s.b.Pages.Seal(consentHistoryScope, Binding(id), uint64(recs[size].Version))
		recs = recs[:size]
	}
	for _, r := range recs {
		m := consentMessage(r.Consent)
		m.UpdateTime, m.UpdatedBy = timestamppb.New(r.Time), r.Author
		resp.Versions = append(resp.Versions, m)
	}
	return resp, nil
}

func (s *consentService) RequestErasure(ctx context.Context, req *vigiev1.RequestErasureRequest) (*vigiev1.Erasure, error) {
	_, ins, err := me(ctx)
	if err != nil {
		return nil, err
	}
	if !req.Confirm {
		return nil, InvalidField("confirm", "must be true: erasure cannot be undone")
	}
	return s.b.erase(ctx, ins, "patient", "")
}

// erase schedules a patient's erasure after the configured delay, and runs
// it at once when the delay is zero. The request is recorded first.
func (b *Backend) erase(ctx context.Context, ins ident.INS, by, reference string) (*vigiev1.Erasure, error) {
	_, at, err := b.Ledger.RequestErasure(ctx, ins, b.Now().Add(b.ErasureDelay), by, reference)
	if err != nil {
		return nil, unavailable(err)
	}
	if b.ErasureDelay <= 0 {
		// This patient's erasure only: another's failure is not this
		// caller's (nor its business).
		if _, err := b.Ledger.RunErasureOf(ctx, ins, by); err != nil {
			return nil, unavailable(fmt.Errorf("run erasure: %w", err))
		}
	}
	return &vigiev1.Erasure{ScheduledTime: timestamppb.New(at)}, nil
}

func consentMessage(c consent.Consent) *vigiev1.Consent {
	out := &vigiev1.Consent{Version: c.Version}
	for _, d := range c.Directives {
		m := &vigiev1.Directive{Id: d.ID}
		if !d.From.IsZero() {
			m.ValidFrom = timestamppb.New(d.From)
		}
		if !d.Until.IsZero() {
			m.ValidUntil = timestamppb.New(d.Until)
		}
		switch d.Kind {
		case consent.BlockProfessional:
			m.Kind = &vigiev1.Directive_BlockProfessional{BlockProfessional: &vigiev1.BlockProfessional{Rpps: d.Professional.String()}}
		case consent.BlockOrganization:
			m.Kind = &vigiev1.Directive_BlockOrganization{BlockOrganization: &vigiev1.BlockOrganization{Finess: d.Organization.String()}}
		case consent.AllowProfessional:
			m.Kind = &vigiev1.Directive_AllowProfessional{AllowProfessional: &vigiev1.AllowProfessional{Rpps: d.Professional.String()}}
		case consent.TreatingPhysician:
			m.Kind = &vigiev1.Directive_TreatingPhysician{TreatingPhysician: &vigiev1.TreatingPhysician{Rpps: d.Professional.String()}}
		case consent.ExtendedRights:
			m.Kind = &vigiev1.Directive_ExtendedRights{ExtendedRights: &vigiev1.ExtendedRights{Rpps: d.Professional.String()}}
		case consent.HideDocument:
			m.Kind = &vigiev1.Directive_HideDocument{HideDocument: &vigiev1.HideDocument{DocumentId: d.Document}}
		case consent.HideDocumentType:
			m.Kind = &vigiev1.Directive_HideDocumentType{HideDocumentType: &vigiev1.HideDocumentType{DocumentType: d.DocumentType}}
		case consent.HideEverything:
			m.Kind = &vigiev1.Directive_HideEverything{HideEverything: &vigiev1.HideEverything{}}
		case consent.OpposeEmergency:
			m.Kind = &vigiev1.Directive_OpposeEmergency{OpposeEmergency: &vigiev1.OpposeEmergency{}}
		case consent.OptOut:
			m.Kind = &vigiev1.Directive_OptOut{OptOut: &vigiev1.OptOut{}}
		}
		out.Directives = append(out.Directives, m)
	}
	return out
}

// directives converts a request's directives; errors name the field.
func directives(in []*vigiev1.Directive) ([]consent.Directive, error) {
	if len(in) > consent.MaxDirectives {
		return nil, &FieldError{Field: "directives", Problem: fmt.Sprintf("at most %d", consent.MaxDirectives), Kind: consent.ProblemTooMany, Limit: consent.MaxDirectives}
	}
	out := make([]consent.Directive, 0, len(in))
	for i, m := range in {
		field := func(f string) string { return fmt.Sprintf("directives[%d].%s", i, f) }
		d := consent.Directive{ID: m.GetId()}
		if m.GetValidFrom() != nil {
			if err := m.ValidFrom.CheckValid(); err != nil {
				return nil, InvalidField(field("valid_from"), "invalid timestamp")
			}
			d.From = m.ValidFrom.AsTime().UTC()
		}
		if m.GetValidUntil() != nil {
			if err := m.ValidUntil.CheckValid(); err != nil {
				return nil, InvalidField(field("valid_until"), "invalid timestamp")
			}
			d.Until = m.ValidUntil.AsTime().UTC()
		}
		rpps := func(f, s string) (ident.RPPS, error) {
			r, err := ident.ParseRPPS(s)
			if err != nil {
				return r, &FieldError{Field: field(f), Problem: "must be an RPPS number (11 digits)", Kind: consent.ProblemInvalidFormat, Err: err}
			}
			return r, nil
		}
		var err error
		switch k := m.GetKind().(type) {
		case *vigiev1.Directive_BlockProfessional:
			d.Kind = consent.BlockProfessional
			d.Professional, err = rpps("block_professional.rpps", k.BlockProfessional.GetRpps())
		case *vigiev1.Directive_BlockOrganization:
			d.Kind = consent.BlockOrganization
			if d.Organization, err = ident.ParseFINESS(k.BlockOrganization.GetFiness()); err != nil {
				err = &FieldError{Field: field("block_organization.finess"), Problem: "must be a FINESS number", Kind: consent.ProblemInvalidFormat, Err: err}
			}
		case *vigiev1.Directive_AllowProfessional:
			d.Kind = consent.AllowProfessional
			d.Professional, err = rpps("allow_professional.rpps", k.AllowProfessional.GetRpps())
		case *vigiev1.Directive_TreatingPhysician:
			d.Kind = consent.TreatingPhysician
			d.Professional, err = rpps("treating_physician.rpps", k.TreatingPhysician.GetRpps())
		case *vigiev1.Directive_ExtendedRights:
			d.Kind = consent.ExtendedRights
			d.Professional, err = rpps("extended_rights.rpps", k.ExtendedRights.GetRpps())
		case *vigiev1.Directive_HideDocument:
			d.Kind, d.Document = consent.HideDocument, k.HideDocument.GetDocumentId()
		case *vigiev1.Directive_HideDocumentType:
			d.Kind, d.DocumentType = consent.HideDocumentType, k.HideDocumentType.GetDocumentType()
		case *vigiev1.Directive_HideEverything:
			d.Kind = consent.HideEverything
		case *vigiev1.Directive_OpposeEmergency:
			d.Kind = consent.OpposeEmergency
		case *vigiev1.Directive_OptOut:
			d.Kind = consent.OptOut
		default:
			return nil, InvalidField(field("kind"), "required")
		}
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}
