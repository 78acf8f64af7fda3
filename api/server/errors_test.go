package server

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/vigie-sante/vigie/api/auth"
	"github.com/vigie-sante/vigie/consent"
	"github.com/vigie-sante/vigie/ledger"
	"github.com/vigie-sante/vigie/ledger/sqldb"
)

func TestStatus(t *testing.T) {
	tests := []struct {
		name  string
		err   error
		code  codes.Code
		msg   string // a substring of the message
		fault bool
	}{
		{"canceled", fmt.Errorf("record: %w", context.Canceled), codes.Canceled, "canceled", false},
		{"deadline", fmt.Errorf("record: %w", context.DeadlineExceeded), codes.DeadlineExceeded, "deadline", false},
		{"no credentials", auth.ErrNoCredentials, codes.Unauthenticated, "authentication required", false},
		{"expired token", fmt.Errorf("x: %w", auth.ErrExpired), codes.Unauthenticated, "token expired", false},
		{"wrong audience", auth.ErrAudience, codes.Unauthenticated, "wrong audience", false},
		{"patient not enrolled", fmt.Errorf("%w: no enrolment of this sign-in", auth.ErrNotEnrolled), codes.Unauthenticated, "invalid credentials: patient not enrolled", false},
		{"issuer keys unavailable", fmt.Errorf("%w: fetch: boom", auth.ErrKeys), codes.Unavailable, "cannot be verified", true},
		{"field", &FieldError{Field: "actor.rpps", Problem: "must be 11 digits"}, codes.InvalidArgument, "invalid actor.rpps: must be 11 digits", false},
		{"wrapped field", fmt.Errorf("check: %w", InvalidField("purpose_of_use", "required")), codes.InvalidArgument, "invalid purpose_of_use: required", false},
		{"too large", fmt.Errorf("%w: 9 bytes", errTooLarge), codes.InvalidArgument, "too large", false},
		{"beyond checkpoint", fmt.Errorf("tree size 9: %w", ledger.ErrBeyondCheckpoint), codes.InvalidArgument, "beyond", false},
		{"role", fmt.Errorf("%w: x", errRoleNotAllow), codes.PermissionDenied, "role not allowed", false},
		{"organization", fmt.Errorf("%w: actor.organization", errOrganization), codes.PermissionDenied, "actor.organization", false},
		{"no rule", errNoRule, codes.PermissionDenied, "no authorization rule", false},
		{"handler's permission denied", fmt.Errorf("review: %w", ErrPermissionDenied), codes.PermissionDenied, "permission denied", false},
		{"not found", fmt.Errorf("rules 7: %w", ErrNotFound), codes.NotFound, "not found", false},
		{"ledger not found", fmt.Errorf("checkpoint: %w", ledger.ErrNotFound), codes.NotFound, "not found", false},
		{"erased", ledger.ErrErased, codes.NotFound, "erased", false},
		{"request erased", fmt.Errorf("record decision: %w", consent.ErrRequestErased), codes.FailedPrecondition, "erased since", false},
		{"review request erased", fmt.Errorf("record: %w", ledger.ErrRequestErased), codes.FailedPrecondition, "erased since", false},
		{"request expired", fmt.Errorf("record decision: %w", consent.ErrRequestExpired), codes.FailedPrecondition, "retention period", false},
		{"unavailable request expired", unavailable(fmt.Errorf("record decision: %w", consent.ErrRequestExpired)), codes.FailedPrecondition, "retention period", false},
		// unavailable passes through every error Status knows (one list):
		// a consent changed within a batch (an erasure before a review or a
		// consent change) is ABORTED, not a storage failure.
		{"unavailable consent changed", unavailable(fmt.Errorf("record: %w", ledger.ErrConsentChanged)), codes.Aborted, "version changed", false},
		{"unavailable altered event", unavailable(fmt.Errorf("record: %w", ledger.ErrCorrupt)), codes.DataLoss, "altered", true},
		{"unavailable disk full", unavailable(errors.New("database or disk is full")), codes.Unavailable, "not recorded", true},
		{"stale", fmt.Errorf("update: %w", ErrStale), codes.Aborted, "version changed", false},
		{"consent changed", ledger.ErrConsentChanged, codes.Aborted, "version changed", false},
		{"consent field", fmt.Errorf("check: %w", &consent.FieldError{Field: "actor.profession", Problem: "unknown profession"}), codes.InvalidArgument, "invalid actor.profession: unknown profession", false},
		{"consent not found", fmt.Errorf("rules: %w", consent.ErrNotFound), codes.NotFound, "not found", false},
		{"stale consent version", fmt.Errorf("update: %w", consent.ErrStaleVersion), codes.Aborted, "version changed", false},
		{"rules conflict", consent.ErrRulesConflict, codes.Aborted, "national rules", false},
		{"stale consent snapshot", consent.ErrStaleConsent, codes.Aborted, "consent changed", false},
		{"national rules changed", fmt.Errorf("check: %w", consent.ErrRulesChanged), codes.Aborted, "national rules changed", false},
		{"consent version ahead", fmt.Errorf("check: %w", consent.ErrConsentAhead), codes.FailedPrecondition, "min_consent_version is above", false},
		{"already reviewed", fmt.Errorf("record review: %w", consent.ErrReviewed), codes.FailedPrecondition, "already reviewed", false},
		{"rate limited", errRateLimited, codes.ResourceExhausted, "rate limit", false},
		{"not recorded", fmt.Errorf("%w: record: disk full", ErrUnavailable), codes.Unavailable, "not recorded", true},
		{"commit unknown", fmt.Errorf("record: %w", sqldb.ErrCommitUnknown), codes.Unavailable, "not recorded", true},
		{"inconsistent log", fmt.Errorf("checkpoint: %w", ledger.ErrInconsistent), codes.Unavailable, "ledger is unavailable", true},
		{"altered event", fmt.Errorf("history: %w", &ledger.CorruptEventError{Index: 17, Seq: 4, Err: fmt.Errorf("%w: patient 137047624348415", ledger.ErrCorrupt)}), codes.DataLoss, "event 4 (log entry 17) cannot be read: its stored form was altered", true},
		{"altered key", fmt.Errorf("record: unwrap data key: %w", ledger.ErrCorrupt), codes.DataLoss, "the patient's stored data cannot be read: it was altered", true},
		{"status from elsewhere", status.Error(codes.NotFound, "patient 137047624348415 has no consent"), codes.NotFound, "not found", false},
		{"internal status", status.Error(codes.Internal, "db: 137047624348415"), codes.Internal, "error", true},
		{"anything else", errors.New("pq: relation consent does not exist"), codes.Internal, "internal error", true},
		{"panic", errPanic, codes.Internal, "internal error", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, fault := Status(tt.err)
			if st.Code() != tt.code || !strings.Contains(st.Message(), tt.msg) || fault != tt.fault {
				t.Errorf("Status(%v) = %v %q, fault %v; want %v containing %q, fault %v", tt.err, st.Code(), st.Message(), fault, tt.code, tt.msg, tt.fault)
			}
			if strings.Contains(st.Message(), testINS) {
				t.Errorf("Status(%v) message %q shows an INS", tt.err, st.Message())
			}
		})
	}
	if st, _ := Status(nil); st.Code() != codes.OK {
		t.Errorf("Status(nil) = %v, want OK", st.Code())
	}
}

// TestStatusRedactsINS covers domain errors that break the rule and quote
// an INS: the safety net redacts it.
// TestStatusQuotesNoInput: a field error whose problem comes from
// another package's error, which quotes its input, does not answer it.
func TestStatusQuotesNoInput(t *testing.T) {
	dep := fmt.Errorf("error parsing regexp: missing closing ): `%s`", "PSYCHIATRY-NOTE-(")
	st, _ := Status(&FieldError{Field: "directives[0].document", Problem: dep.Error(), Err: dep})
	if strings.Contains(st.Message(), "PSYCHIATRY") || !strings.Contains(st.Message(), "directives[0].document") {
		t.Errorf("message %q: want the field named, the input not quoted", st.Message())
	}
}

func TestStatusRedactsINS(t *testing.T) {
	st, _ := Status(&FieldError{Field: "patient_ins", Problem: "unknown patient " + testINS + " or " + otherINS})
	if strings.Contains(st.Message(), testINS) || strings.Contains(st.Message(), otherINS) || !strings.Contains(st.Message(), auth.Redacted) {
		t.Errorf("message %q: want both INS redacted", st.Message())
	}
}

// TestStatusReason: the answers a client acts on carry an ErrorInfo
// reason, so that it need not read the (English, changing) message.
func TestStatusReason(t *testing.T) {
	tests := []struct {
		name   string
		err    error
		reason string
		meta   map[string]string
	}{
		{"field", fmt.Errorf("check: %w", InvalidField("actor.rpps", "must be 11 digits")), ReasonInvalidField, map[string]string{"field": "actor.rpps", "problem": "invalid"}},
		{"required field", InvalidField("actor", "required"), ReasonInvalidField, map[string]string{"field": "actor", "problem": "required"}},
		{"too many", &FieldError{Field: "directives", Problem: "at most 64", Kind: consent.ProblemTooMany, Limit: 64}, ReasonInvalidField,
			map[string]string{"field": "directives", "problem": "too_many", "limit": "64"}},
		{"consent field", &consent.FieldError{Field: "directives[3].professional", Problem: "duplicates directives[0]"}, ReasonInvalidField,
			map[string]string{"field": "directives[3].professional", "problem": "invalid"}},
		{"consent field with a kind", &consent.FieldError{Field: "directives[3]", Problem: "duplicates directives[0]", Kind: consent.ProblemDuplicate, Other: "directives[0]"},
			ReasonInvalidField, map[string]string{"field": "directives[3]", "problem": "duplicate", "other": "directives[0]"}},
		{"beyond checkpoint, field", beyond(fmt.Errorf("tree size 9: %w", ledger.ErrBeyondCheckpoint), "second"), ReasonBeyondCheckpoint, map[string]string{"field": "second", "problem": "invalid"}},
		{"beyond checkpoint", fmt.Errorf("tree size 9: %w", ledger.ErrBeyondCheckpoint), ReasonBeyondCheckpoint, nil},
		{"altered event", &ledger.CorruptEventError{Index: 17, Seq: 4, Err: ledger.ErrCorrupt}, ReasonEventUnreadable, map[string]string{"seq": "4", "leaf_index": "17"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, _ := Status(tt.err)
			var infos []*errdetails.ErrorInfo
			for _, d := range st.Details() {
				if i, ok := d.(*errdetails.ErrorInfo); ok {
					infos = append(infos, i)
				}
			}
			if len(infos) != 1 {
				t.Fatalf("Status(%v) details %v: want one ErrorInfo", tt.err, st.Details())
			}
			if i := infos[0]; i.Reason != tt.reason || i.Domain != "vigie" || !maps.Equal(i.Metadata, tt.meta) {
				t.Errorf("Status(%v) ErrorInfo %v; want reason %s, metadata %v", tt.err, i, tt.reason, tt.meta)
			}
		})
	}
}
