package server

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/vigie-sante/vigie/api/auth"
	"github.com/vigie-sante/vigie/consent"
	"github.com/vigie-sante/vigie/ledger"
	"github.com/vigie-sante/vigie/ledger/sqldb"
)

// Errors that handlers return, or wrap, to say what went wrong when the
// domain package's own error does not say it (the domain packages' errors
// are recognised as they are: see Status). Test with errors.Is.
var (
	// ErrNotFound: what the request names does not exist (NOT_FOUND).
	ErrNotFound = errors.New("not found")
	// ErrStale: the request was based on a version that is no longer
	// current (ABORTED, HTTP 409): read again, then retry.
	ErrStale = errors.New("stale version")
	// ErrUnavailable: the request could not be carried out now, and
	// nothing was decided (UNAVAILABLE): in particular, the ledger could
	// not record. Retrying the same request (same request_id) is safe.
	// Check MUST wrap every recording failure in it: fail closed.
	ErrUnavailable = errors.New("unavailable")
	// ErrPermissionDenied: the caller may call the method, but not about
	// this (PERMISSION_DENIED), e.g. a DPO reviewing an access of another
	// organisation.
	ErrPermissionDenied = errors.New("permission denied")
)

// FieldError is a request field that is missing or invalid
// (INVALID_ARGUMENT, HTTP 400). Its message names the field; Problem must
// not quote the field's value (it may be an INS).
type FieldError struct {
	// Field is the field's path in the request, with the .proto names:
	// "actor.rpps", "directives[2].valid_until".
	Field string
	// Problem says what is wrong, e.g. "required", "must be 11 digits".
	Problem string
	// Kind is what is wrong, for machines (consent.FieldError's kinds);
	// "" is consent.ProblemInvalid.
	Kind consent.ProblemKind
	// Limit is the limit a consent.ProblemTooLong or ProblemTooMany
	// passed.
	Limit int
	// Err is the underlying error, for the server log only.
	Err error
}

func (e *FieldError) Error() string { return "invalid " + e.Field + ": " + e.Problem }

func (e *FieldError) Unwrap() error { return e.Err }

// InvalidField returns a *FieldError. A problem that is "required" or
// starts with "required:" is of kind consent.ProblemRequired; any other,
// consent.ProblemInvalid.
func InvalidField(field, problem string) error {
	e := &FieldError{Field: field, Problem: problem}
	if problem == "required" || strings.HasPrefix(problem, "required:") {
		e.Kind = consent.ProblemRequired
	}
	return e
}

// Errors of the interceptors.
var (
	errRateLimited  = errors.New("rate limit exceeded")
	errNoRule       = errors.New("no authorization rule for this method")
	errRoleNotAllow = errors.New("role not allowed")
	errOrganization = errors.New("organization not bound to the caller")
	errTooLarge     = errors.New("request too large")
)

// Status is THE place where errors become gRPC statuses: every error a
// handler or an interceptor returns goes through it, once, in the
// outermost interceptor. It returns the status for the client, whose
// message never contains an identifier or health data, and whether the
// error is the server's fault (logged at error level).
//
// The table, in order (the first that matches):
//
//	context.Canceled                         CANCELED
//	context.DeadlineExceeded                 DEADLINE_EXCEEDED
//	auth.ErrNoCredentials                    UNAUTHENTICATED "authentication required"
//	auth.ErrKeys                             UNAVAILABLE (the issuer's keys cannot be had)
//	other auth errors                        UNAUTHENTICATED "invalid credentials: <reason>"
//	*FieldError                              INVALID_ARGUMENT "invalid <field>: <problem>", with an ErrorInfo
//	                                         detail (reason INVALID_FIELD, or BEYOND_CHECKPOINT if it wraps
//	                                         ledger.ErrBeyondCheckpoint; metadata field, problem (its kind),
//	                                         other and limit when set)
//	request too large                        INVALID_ARGUMENT
//	ledger.ErrBeyondCheckpoint               INVALID_ARGUMENT, ErrorInfo reason BEYOND_CHECKPOINT (handlers should
//	                                         wrap it in a FieldError naming tree_size)
//	consent.ErrRequestReused,                INVALID_ARGUMENT "invalid request_id: ..." (not a retry: another request)
//	  ledger.ErrKeyReused
//	consent.ErrRequestErased,                FAILED_PRECONDITION "request_id already used; its patient's data was erased since: ..."
//	  ledger.ErrRequestErased                (a retry after an erasure: never decided or recorded again)
//	consent.ErrRequestExpired,               FAILED_PRECONDITION "request_id older than the retention period: ..."
//	  ledger.ErrRequestExpired               (a retry past --request-id-retention: never decided or recorded again)
//	ledger.ErrInvalidEntry                   INTERNAL (the server built an entry the ledger refuses: its bug, the request was validated)
//	no rule, role not allowed, organization  PERMISSION_DENIED
//	ErrPermissionDenied                      PERMISSION_DENIED
//	ErrNotFound, ledger.ErrNotFound          NOT_FOUND
//	ledger.ErrErased                         NOT_FOUND "erased"
//	ErrStale, ledger.ErrConsentChanged       ABORTED (HTTP 409)
//	consent.ErrConsentAhead                  FAILED_PRECONDITION (HTTP 400): not retryable
//	consent.ErrReviewed                      FAILED_PRECONDITION (HTTP 400) "already reviewed: ..."
//	rate limit                               RESOURCE_EXHAUSTED (HTTP 429)
//	ledger.ErrCorrupt (no event named)      DATA_LOSS "the patient's stored data cannot be read: it was altered"
//	*ledger.CorruptEventError                DATA_LOSS (HTTP 500) "event <seq> (log entry <index>) cannot be read: its stored form was altered",
//	                                         with an ErrorInfo detail (reason EVENT_UNREADABLE, metadata seq and leaf_index)
//	ErrUnavailable, sqldb.ErrCommitUnknown,  UNAVAILABLE: fail closed, retry with the same request_id
//	  ledger.ErrInconsistent, ErrGap, ErrLogConflict
//	a *status.Status error                   its code, with that code's generic message (handlers should not build statuses)
//	anything else                            INTERNAL "internal error"
//
// The consent package's errors are in the table too: *consent.FieldError
// as *FieldError, consent.ErrNotFound as ErrNotFound, ErrStaleVersion,
// ErrRulesConflict, ErrStaleConsent, ErrConsentChanged and
// ErrRulesChanged as ABORTED.
func Status(err error) (st *status.Status, serverFault bool) {
	if err == nil {
		return status.New(codes.OK, ""), false
	}
	var fe *FieldError
	var cfe *consent.FieldError
	var ce *ledger.CorruptEventError
	switch {
	case errors.Is(err, context.Canceled):
		return status.New(codes.Canceled, "canceled"), false
	case errors.Is(err, context.DeadlineExceeded):
		return status.New(codes.DeadlineExceeded, "deadline exceeded"), false

	case errors.Is(err, auth.ErrNoCredentials):
		return status.New(codes.Unauthenticated, "authentication required"), false
	case errors.Is(err, auth.ErrKeys):
		return status.New(codes.Unavailable, "credentials cannot be verified now"), true
	case authError(err) != nil:
		return status.New(codes.Unauthenticated, "invalid credentials: "+authError(err).Error()), false

	case errors.As(err, &fe):
		return fieldStatus(ErrorText(fe.Error()), err, fieldInfo(fe.Field, fe.Kind, "", fe.Limit)), false
	case errors.As(err, &cfe):
		return fieldStatus(ErrorText("invalid "+cfe.Error()), err, fieldInfo(cfe.Field, cfe.KindOf(), cfe.Other, cfe.Limit)), false
	case errors.Is(err, errTooLarge):
		return status.New(codes.InvalidArgument, ErrorText(err.Error())), false
	case errors.Is(err, ledger.ErrBeyondCheckpoint):
		return withInfo(status.New(codes.InvalidArgument, "tree size beyond the latest signed checkpoint"), ReasonBeyondCheckpoint, nil), false
	case errors.Is(err, consent.ErrRequestReused), errors.Is(err, ledger.ErrKeyReused):
		return status.New(codes.InvalidArgument, "invalid request_id: already used by this service for another request"), false
	case errors.Is(err, consent.ErrRequestErased), errors.Is(err, ledger.ErrRequestErased):
		return status.New(codes.FailedPrecondition, "request_id already used; its patient's data was erased since: send a new request_id"), false
	case errors.Is(err, consent.ErrRequestExpired), errors.Is(err, ledger.ErrRequestExpired):
		return status.New(codes.FailedPrecondition, "request_id older than the retention period: send a new request_id"), false

	case errors.Is(err, errNoRule), errors.Is(err, errRoleNotAllow), errors.Is(err, errOrganization):
		return status.New(codes.PermissionDenied, ErrorText(err.Error())), false
	case errors.Is(err, ErrPermissionDenied):
		return status.New(codes.PermissionDenied, "permission denied"), false

	case errors.Is(err, ErrNotFound), errors.Is(err, ledger.ErrNotFound), errors.Is(err, consent.ErrNotFound):
		return status.New(codes.NotFound, "not found"), false
	case errors.Is(err, ledger.ErrErased):
		return status.New(codes.NotFound, "erased"), false

	case errors.Is(err, ErrStale), errors.Is(err, ledger.ErrConsentChanged), errors.Is(err, consent.ErrStaleVersion):
		return status.New(codes.Aborted, "the version changed: read it again, then retry"), false
	case errors.Is(err, consent.ErrRulesConflict):
		return status.New(codes.Aborted, "a national rules version with this number exists, or a later one"), false
	case errors.Is(err, consent.ErrConsentAhead):
		return status.New(codes.FailedPrecondition, "min_consent_version is above the patient's consent version: do not retry this request"), false
	case errors.Is(err, consent.ErrStaleConsent), errors.Is(err, consent.ErrConsentChanged):
		return status.New(codes.Aborted, "the patient's consent changed: retry with the same request"), false
	case errors.Is(err, consent.ErrRulesChanged):
		return status.New(codes.Aborted, "the national rules changed: retry with the same request"), false

	case errors.Is(err, consent.ErrReviewed):
		return status.New(codes.FailedPrecondition, "already reviewed: only a regulator may overrule a DPO's review, and a regulator's review is final"), false

	case errors.Is(err, errRateLimited):
		return status.New(codes.ResourceExhausted, "rate limit exceeded: slow down"), false

	case errors.As(err, &ce):
		return corruptEvent(ce), true
	case errors.Is(err, ledger.ErrCorrupt):
		return status.New(codes.DataLoss, "the patient's stored data cannot be read: it was altered"), true

	case errors.Is(err, ErrUnavailable), errors.Is(err, sqldb.ErrCommitUnknown):
		return status.New(codes.Unavailable, "not recorded: retry later with the same request"), true
	case errors.Is(err, ledger.ErrInconsistent), errors.Is(err, ledger.ErrGap), errors.Is(err, ledger.ErrLogConflict):
		return status.New(codes.Unavailable, "the ledger is unavailable"), true
	}
	if s, ok := status.FromError(err); ok && s.Code() != codes.Unknown {
		// A status built elsewhere (a handler, gRPC itself): keep the code,
		// not the message, which nobody checked.
		return status.New(s.Code(), genericMessage(s.Code())), s.Code() == codes.Internal || s.Code() == codes.Unavailable
	}
	return status.New(codes.Internal, "internal error"), true
}

// ReasonEventUnreadable is the ErrorInfo reason of a DATA_LOSS answer: the
// server cannot read an event because its stored form was altered. The
// metadata "seq" and "leaf_index" say which.
const ReasonEventUnreadable = "EVENT_UNREADABLE"

// ReasonInvalidField is the ErrorInfo reason of an INVALID_ARGUMENT
// answer about one request field: the metadata "field" is its path
// ("directives[2].valid_until"), "problem" what is wrong
// (consent.ProblemKind: "required", "too_long", "invalid_format", ...),
// and, when the problem has them, "other" the path of the other field it
// names and "limit" the limit passed: for a client to mark the field at
// fault and say why in its own words without reading the message.
const ReasonInvalidField = "INVALID_FIELD"

// ReasonBeyondCheckpoint is the ErrorInfo reason of an INVALID_ARGUMENT
// answer asking for a tree size past the latest signed checkpoint: the
// metadata "field", when there is one, names the size's field. A verifier
// that saw that size signed reports a rollback.
const ReasonBeyondCheckpoint = "BEYOND_CHECKPOINT"

// fieldInfo is the ErrorInfo metadata of a field's problem.
func fieldInfo(field string, kind consent.ProblemKind, other string, limit int) map[string]string {
	if kind == "" {
		kind = consent.ProblemInvalid
	}
	md := map[string]string{"field": ErrorText(field), "problem": ErrorText(string(kind))}
	if other != "" {
		md["other"] = ErrorText(other)
	}
	if limit > 0 {
		md["limit"] = strconv.Itoa(limit)
	}
	return md
}

// fieldStatus is the INVALID_ARGUMENT status of an error about a field,
// with its ErrorInfo metadata md.
func fieldStatus(msg string, err error, md map[string]string) *status.Status {
	reason := ReasonInvalidField
	if errors.Is(err, ledger.ErrBeyondCheckpoint) {
		reason = ReasonBeyondCheckpoint
	}
	return withInfo(status.New(codes.InvalidArgument, msg), reason, md)
}

// withInfo adds an ErrorInfo detail to st: reason, in the domain "vigie".
func withInfo(st *status.Status, reason string, metadata map[string]string) *status.Status {
	d, err := st.WithDetails(&errdetails.ErrorInfo{Reason: reason, Domain: "vigie", Metadata: metadata})
	if err != nil {
		return st
	}
	return d
}

// corruptEvent is the DATA_LOSS status of an event the server cannot read:
// a tampered store, which a patient's verifier reports as such. It names
// the event by place (never by content).
func corruptEvent(ce *ledger.CorruptEventError) *status.Status {
	st := status.New(codes.DataLoss, fmt.Sprintf("event %d (log entry %d) cannot be read: its stored form was altered", ce.Seq, ce.Index))
	return withInfo(st, ReasonEventUnreadable, map[string]string{"seq": strconv.FormatUint(ce.Seq, 10), "leaf_index": strconv.FormatUint(ce.Index, 10)})
}

// authError returns err's auth sentinel, if it has one.
func authError(err error) error {
	for _, e := range []error{
		auth.ErrMalformed, auth.ErrAlgorithm, auth.ErrUnknownKey, auth.ErrSignature,
		auth.ErrExpired, auth.ErrNotYetValid, auth.ErrIssuer, auth.ErrAudience,
		auth.ErrRole, auth.ErrSubject, auth.ErrOrganizations, auth.ErrNotEnrolled,
	} {
		if errors.Is(err, e) {
			return e
		}
	}
	return nil
}

func genericMessage(c codes.Code) string {
	switch c {
	case codes.InvalidArgument:
		return "invalid request"
	case codes.NotFound:
		return "not found"
	case codes.PermissionDenied:
		return "permission denied"
	case codes.Unauthenticated:
		return "authentication required"
	case codes.Unimplemented:
		return "not implemented"
	}
	return fmt.Sprintf("error: %s", c)
}
