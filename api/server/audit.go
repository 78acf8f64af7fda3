package server

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/vigie-sante/vigie/api/auth"
	vigiev1 "github.com/vigie-sante/vigie/api/vigie/v1"
	"github.com/vigie-sante/vigie/consent"
	"github.com/vigie-sante/vigie/ledger"
	"github.com/vigie-sante/vigie/ledger/event"
)

// MaxReviewComment bounds a break-glass review's comment, in bytes.
const MaxReviewComment = 4096

type auditService struct {
	vigiev1.UnimplementedAuditServiceServer
	b *Backend
	// alerts serves ListAlerts; nil without Backend.Alerts.
	alerts *alerter
}

const searchScope = "SearchEvents"

var eventKinds = map[vigiev1.EventKind]event.Kind{
	vigiev1.EventKind_EVENT_KIND_ACCESS:             event.KindAccess,
	vigiev1.EventKind_EVENT_KIND_CONSENT_CHANGE:     event.KindConsentChange,
	vigiev1.EventKind_EVENT_KIND_RULES_CHANGE:       event.KindRulesChange,
	vigiev1.EventKind_EVENT_KIND_LEDGER_READ:        event.KindLedgerRead,
	vigiev1.EventKind_EVENT_KIND_BREAK_GLASS_REVIEW: event.KindBreakGlassReview,
	vigiev1.EventKind_EVENT_KIND_ERASURE:            event.KindErasure,
	vigiev1.EventKind_EVENT_KIND_ENROLMENT:          event.KindEnrolment,
	vigiev1.EventKind_EVENT_KIND_LOG_SUCCESSION:     event.KindLogSuccession,
}

// SearchEvents returns the events matching the filters, with their bodies,
// to a regulator (every event) or a DPO (the events of its organisations).
// Before anything is returned, the read is recorded in the chain of every
// patient whose events are in the page.
func (s *auditService) SearchEvents(ctx context.Context, req *vigiev1.SearchEventsRequest) (*vigiev1.SearchEventsResponse, error) {
	id, err := identity(ctx)
	if err != nil {
		return nil, err
	}
	size, err := PageSize(req.PageSize, 100, 500)
	if err != nil {
		return nil, err
	}
	var f ledger.SearchFilter
	if req.PatientIns != "" {
		ins, err := parseINS("patient_ins", req.PatientIns)
		if err != nil {
			return nil, err
		}
		p := s.b.Ledger.Pseudonym(ins)
		f.Pseudonym = &p
	}
	if req.ActorRpps != "" {
		if len(req.ActorRpps) != 11 || !digits(req.ActorRpps) {
			return nil, InvalidField("actor_rpps", "must be 11 digits")
		}
		f.Actor = req.ActorRpps
	}
	f.Organization = req.Organization
	if id.Role() == auth.RoleDPO && !id.SpeaksFor(f.Organization) {
		// The authorization interceptor requires a DPO's organization
		// and checks it; this is the second lock of the same door.
		return nil, ErrPermissionDenied
	}
	if req.StartTime != nil {
		if err := req.StartTime.CheckValid(); err != nil {
			return nil, InvalidField("start_time", "invalid timestamp")
		}
		f.FromNanos = req.StartTime.AsTime().UnixNano()
	}
	if req.EndTime != nil {
		if err := req.EndTime.CheckValid(); err != nil {
			return nil, InvalidField("end_time", "invalid timestamp")
		}
		f.ToNanos = req.EndTime.AsTime().UnixNano()
		if f.ToNanos <= f.FromNanos {
			return nil, InvalidField("end_time", "must be after start_time")
		}
	}
	if req.Kind != vigiev1.EventKind_EVENT_KIND_UNSPECIFIED {
		k, ok := eventKinds[req.Kind]
		if !ok {
			return nil, InvalidField("kind", "unknown value")
		}
		f.Kind = k
	}
	f.BreakGlassOnly = req.BreakGlassOnly
	if req.ErasedOnly {
		if req.PatientIns != "" || req.ActorRpps != "" || req.Organization != "" || req.StartTime != nil || req.EndTime != nil ||
			req.Kind != vigiev1.EventKind_EVENT_KIND_UNSPECIFIED || req.BreakGlassOnly {
			return nil, InvalidField("erased_only", "no other filter may be set with it")
		}
		f.ErasedOnly = true
	}
	after := int64(-1)
	if req.PageToken != "" {
		v, err := s.b.Pages.Open(searchScope, Binding(id), req.PageToken, 1)
		if err != nil {
			return nil, err
		}
		after = int64(v[0])
	}
	rows, err := s.b.Ledger.Search(ctx, f, after, size+1)
	if err != nil {
		return nil, err
	}
	resp := &vigiev1.SearchEventsResponse{}
	if len(rows) > size {
		rows = rows[:size]
		resp.NextPageToken = s.b.Pages.Seal(searchScope, Binding(id), rows[size-1].Index)
	}
	// Open the events first (nothing goes out yet), then record the reads,
	// one event per patient, all in one transaction, before answering:
	// fail closed. Reads of ledger-read events are not recorded when the
	// search is not about one patient: they tell only who read a record,
	// which its patient sees anyway, and recording them would make every
	// audit of the whole log grow the log by as much again. The kind is
	// the body's (OpenForAudit checks the searchable column against it).
	var reads ledger.ReadSet
	for _, r := range rows {
		if f.ErasedOnly {
			if !r.Erased {
				return nil, fmt.Errorf("search: event %d is not erased", r.Index)
			}
			resp.Events = append(resp.Events, &vigiev1.LedgerEvent{LeafIndex: r.Index, Commitment: r.Commitment.String(), Erased: true})
			continue
		}
		e, err := s.b.Ledger.OpenForAudit(ctx, r)
		if err != nil {
			return nil, err
		}
		resp.Events = append(resp.Events, &vigiev1.LedgerEvent{Sequence: r.Seq, LeafIndex: r.Index, Commitment: r.Commitment.String(), Body: e.Body, Salt: e.Salt[:]})
		if e.Parsed.Kind == event.KindLedgerRead && f.Pseudonym == nil {
			continue
		}
		reads.Add(r.Pseudonym)
	}
	var readFor []string // the organisation a DPO acted for; a regulator acts for none
	if id.Role() == auth.RoleDPO {
		readFor = []string{f.Organization}
	}
	if err := s.b.recordReads(ctx, &reads, id.Principal(), readFor, searchScope); err != nil {
		return nil, err
	}
	AddLogAttrs(ctx, slog.Int("events", len(resp.Events)), slog.Int("patients", reads.Patients()))
	return resp, nil
}

func digits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// ReviewBreakGlass records the review of a break-glass access, in the
// patient's chain, idempotently by (reviewer, request_id), if it counts
// (consent.Overrules: the first review decides, only a higher standing
// overrules it); otherwise FAILED_PRECONDITION, nothing recorded.
func (s *auditService) ReviewBreakGlass(ctx context.Context, req *vigiev1.ReviewBreakGlassRequest) (*vigiev1.ReviewBreakGlassResponse, error) {
	id, err := identity(ctx)
	if err != nil {
		return nil, err
	}
	if err := validateRequestID(req.RequestId); err != nil {
		return nil, err
	}
	c, err := event.ParseHash(req.EventCommitment)
	if err != nil {
		return nil, InvalidField("event_commitment", "must be 64 lowercase hex digits")
	}
	var verdict string
	switch req.Verdict {
	case vigiev1.BreakGlassVerdict_BREAK_GLASS_VERDICT_JUSTIFIED:
		verdict = consent.VerdictJustified
	case vigiev1.BreakGlassVerdict_BREAK_GLASS_VERDICT_UNJUSTIFIED:
		verdict = consent.VerdictUnjustified
	case vigiev1.BreakGlassVerdict_BREAK_GLASS_VERDICT_UNSPECIFIED:
		return nil, InvalidField("verdict", "required")
	default:
		return nil, InvalidField("verdict", "unknown value")
	}
	if err := consent.CheckText(req.Comment, MaxReviewComment); err != nil {
		return nil, &FieldError{Field: "comment", Problem: err.Error()}
	}
	row, err := s.b.Ledger.EventByCommitment(ctx, c)
	if err != nil {
		return nil, err
	}
	// A DPO learns nothing of events outside its organisations, not even
	// that they exist: one answer for all of them.
	if id.Role() == auth.RoleDPO && (row.Erased || !id.SpeaksFor(row.Organization)) {
		return nil, ErrNotFound
	}
	if row.Erased {
		return nil, ledger.ErrErased
	}
	if row.Kind != event.KindAccess || !row.BreakGlass {
		return nil, InvalidField("event_commitment", "not a break-glass access")
	}
	review := consent.ReviewRecord{Verdict: verdict, Comment: req.Comment, Reviewer: id.Principal()}
	if id.Role() == auth.RoleDPO {
		review.Organization = row.Organization // the DPO's, checked above
	}
	rec, err := s.b.Reviews.RecordReview(ctx, row, review,
		ledger.Key{Service: id.Principal(), RequestID: req.RequestId})
	if err != nil {
		return nil, unavailable(err)
	}
	return &vigiev1.ReviewBreakGlassResponse{Event: recorded(rec.Index, rec.Commitment, rec.Receipt)}, nil
}
