package server

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"google.golang.org/genproto/googleapis/api/httpbody"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	vigiev1 "github.com/vigie-sante/vigie/api/vigie/v1"
	"github.com/vigie-sante/vigie/consent"
	"github.com/vigie-sante/vigie/consent/enrolment"
)

type adminService struct {
	vigiev1.UnimplementedAdminServiceServer
	b *Backend
}

// LoadNationalRules publishes a new version of the national rules: stored
// with its exact bytes and recorded in the ledger (a rules-change event),
// then used for every decision.
func (s *adminService) LoadNationalRules(ctx context.Context, req *vigiev1.LoadNationalRulesRequest) (*vigiev1.NationalRulesVersion, error) {
	id, err := identity(ctx)
	if err != nil {
		return nil, err
	}
	if len(req.Rules) == 0 {
		return nil, InvalidField("rules", "required")
	}
	rules, err := consent.ParseRules(req.Rules)
	if err != nil {
		return nil, &FieldError{Field: "rules", Problem: "not a national rules file in canonical form: " + err.Error(), Err: err}
	}
	if err := s.b.Consent.PublishRules(ctx, rules, id.Principal()); err != nil {
		return nil, unavailable(err)
	}
	h := rules.Hash()
	AddLogAttrs(ctx, slog.Int64("rules_version", rules.Version()))
	return &vigiev1.NationalRulesVersion{Version: rules.Version(), Sha256: hex.EncodeToString(h[:]), LoadTime: timestamppb.New(s.b.Now()), LoadedBy: id.Principal(), Illustrative: rules.Illustrative()}, nil
}

const listRulesScope = "ListNationalRules"

func (s *adminService) ListNationalRules(ctx context.Context, req *vigiev1.ListNationalRulesRequest) (*vigiev1.ListNationalRulesResponse, error) {
	size, err := PageSize(req.PageSize, 100, 100)
	if err != nil {
		return nil, err
	}
	var after int64
	if req.PageToken != "" {
		v, err := s.b.Pages.Open(listRulesScope, nil, req.PageToken, 1)
		if err != nil {
			return nil, err
		}
		after = int64(v[0])
	}
	infos, err := s.b.Consents.ListRules(ctx)
	if err != nil {
		return nil, err
	}
	resp := &vigiev1.ListNationalRulesResponse{}
	for _, info := range infos {
		if info.Version <= after {
			continue
		}
		if len(resp.Versions) == size {
			resp.NextPageToken = s.b.Pages.Seal(listRulesScope, nil, uint64(resp.Versions[size-1].Version))
			break
		}
		resp.Versions = append(resp.Versions, &vigiev1.NationalRulesVersion{
			Version: info.Version, Sha256: hex.EncodeToString(info.Hash[:]), LoadTime: timestamppb.New(info.Time), LoadedBy: info.Author,
		})
	}
	// The illustrative flag is in the rules themselves.
	for _, v := range resp.Versions {
		if r, err := s.b.Consents.Rules(ctx, v.Version); err == nil {
			v.Illustrative = r.Illustrative()
		}
	}
	return resp, nil
}

// GetNationalRules returns a version's exact bytes, so that anyone can
// replay the decisions that name it (their hash is in each decision).
func (s *adminService) GetNationalRules(ctx context.Context, req *vigiev1.GetNationalRulesRequest) (*httpbody.HttpBody, error) {
	if req.Version <= 0 {
		return nil, InvalidField("version", "must be positive")
	}
	rules, err := s.b.Consents.Rules(ctx, req.Version)
	if errors.Is(err, consent.ErrNotFound) {
		return nil, fmt.Errorf("rules version %d: %w", req.Version, ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	return &httpbody.HttpBody{ContentType: "application/json", Data: rules.Bytes()}, nil
}

// ErasePatient erases a patient on an administrator's decision, after the
// configured delay.
func (s *adminService) ErasePatient(ctx context.Context, req *vigiev1.ErasePatientRequest) (*vigiev1.Erasure, error) {
	id, err := identity(ctx)
	if err != nil {
		return nil, err
	}
	ins, err := parseINS("patient_ins", req.PatientIns)
	if err != nil {
		return nil, err
	}
	if len(req.Reference) > 256 || !printableASCII(req.Reference) && req.Reference != "" {
		return nil, InvalidField("reference", "at most 256 printable ASCII characters")
	}
	return s.b.erase(ctx, ins, id.Principal(), req.Reference)
}

// IssueEnrolmentCode makes a one-time enrolment code for a patient.
func (s *adminService) IssueEnrolmentCode(ctx context.Context, req *vigiev1.IssueEnrolmentCodeRequest) (*vigiev1.EnrolmentCode, error) {
	if s.b.Enrolments == nil {
		return nil, status.Error(codes.Unimplemented, "this service enrols no patients")
	}
	ins, err := parseINS("patient_ins", req.PatientIns)
	if err != nil {
		return nil, err
	}
	if req.TtlSeconds < 0 || req.TtlSeconds > int64(enrolment.MaxTTL/time.Second) {
		return nil, InvalidField("ttl_seconds", fmt.Sprintf("0 to %d", int64(enrolment.MaxTTL/time.Second)))
	}
	c, err := s.b.Enrolments.Issue(ctx, ins, time.Duration(req.TtlSeconds)*time.Second)
	if err != nil {
		return nil, err
	}
	return &vigiev1.EnrolmentCode{Code: c.Text, ExpireTime: timestamppb.New(c.Expires)}, nil
}

// RevokeEnrolments removes the links of a patient's sign-ins, recorded.
func (s *adminService) RevokeEnrolments(ctx context.Context, req *vigiev1.RevokeEnrolmentsRequest) (*vigiev1.RevokeEnrolmentsResponse, error) {
	if s.b.Enrolments == nil {
		return nil, status.Error(codes.Unimplemented, "this service enrols no patients")
	}
	id, err := identity(ctx)
	if err != nil {
		return nil, err
	}
	ins, err := parseINS("patient_ins", req.PatientIns)
	if err != nil {
		return nil, err
	}
	if len(req.Issuer) > enrolment.MaxIssuerLen || !printableASCII(req.Issuer) {
		return nil, InvalidField("issuer", fmt.Sprintf("at most %d printable ASCII characters", enrolment.MaxIssuerLen))
	}
	n, err := s.b.Enrolments.Revoke(ctx, ins, req.Issuer, id.Principal())
	if errors.Is(err, enrolment.ErrNotEnrolled) {
		return nil, fmt.Errorf("revoke enrolments: %w", ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	return &vigiev1.RevokeEnrolmentsResponse{Revoked: int32(n)}, nil
}
