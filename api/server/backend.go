package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/vigie-sante/vigie/api/auth"
	vigiev1 "github.com/vigie-sante/vigie/api/vigie/v1"
	"github.com/vigie-sante/vigie/consent"
	"github.com/vigie-sante/vigie/consent/enrolment"
	"github.com/vigie-sante/vigie/consent/ident"
	"github.com/vigie-sante/vigie/ledger"
	"github.com/vigie-sante/vigie/ledger/event"
)

// Backend is what the handlers call: the consent service and its store,
// the ledger, the page-token key and the log's public keys. Handlers map
// requests to the domain and back; the decisions are the domain's.
type Backend struct {
	Consent  *consent.Service
	Consents consent.Store
	// Reviews records break-glass reviews (consent/consentsql.Store).
	Reviews ReviewRecorder
	Ledger  *ledger.Ledger
	// Checkpoints serves GetCheckpoint (GET /checkpoint): the checkpoint
	// with the witnesses' cosignatures. Nil: the ledger's latest.
	Checkpoints CheckpointSource
	Pages       *PageTokens
	// Keys are the log's note verifier keys (GET /v1/log/key).
	Keys PublicKeys
	// Directory is the public directories, for names beside numbers
	// (DirectoryService). Nil: every number is absent from them.
	Directory Directory
	// Alerts configures the misuse alerts (AuditService.ListAlerts). Nil:
	// no alert rules, ListAlerts is NOT_FOUND.
	Alerts *AlertsConfig
	// Enrolments issues enrolment codes and revokes enrolments
	// (consent/enrolment.Store), for AdminService. Nil: those methods are
	// UNIMPLEMENTED.
	Enrolments EnrolmentAdmin
	// ErasureDelay is how long after a request an erasure runs. Default 0.
	ErasureDelay time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Logger receives what handlers log (never an INS or a body).
	Logger *slog.Logger
}

// ReviewRecorder records the review of a break-glass access in the
// patient's chain. consent/consentsql.Store implements it.
type ReviewRecorder interface {
	// RecordReview records r, the review of the break-glass access event
	// access, idempotently by key: a retry gets the first event back, key
	// used for another review is consent.ErrRequestReused. It records
	// only a review that counts (consent.Overrules, checked in the
	// transaction that records it), and returns consent.ErrReviewed,
	// nothing recorded, for one that does not. Safe for concurrent use.
	RecordReview(ctx context.Context, access ledger.EventRow, r consent.ReviewRecord, key ledger.Key) (*ledger.Recorded, error)
}

// EnrolmentAdmin is the operator's side of patients' enrolment.
// consent/enrolment.Store implements it.
type EnrolmentAdmin interface {
	// Issue makes a one-time code for patient, lasting ttl.
	Issue(ctx context.Context, patient ident.INS, ttl time.Duration) (enrolment.Code, error)
	// Revoke removes the links of patient's sign-ins (at issuer, or all),
	// each recorded; an error wrapping enrolment.ErrNotEnrolled if none.
	Revoke(ctx context.Context, patient ident.INS, issuer, operator string) (int, error)
}

// PublicKeys are the log's published keys.
type PublicKeys struct {
	Origin, CheckpointKey, ReceiptKey string
}

// Services returns the handlers of every service on b.
func (b *Backend) Services() Services {
	if b.Now == nil {
		b.Now = time.Now
	}
	if b.Logger == nil {
		b.Logger = slog.Default()
	}
	audit := &auditService{b: b}
	if b.Alerts != nil {
		audit.alerts = newAlerter(b, *b.Alerts)
	}
	return Services{
		Access:    &accessService{b: b},
		Consent:   &consentService{b: b},
		History:   &historyService{b: b},
		Admin:     &adminService{b: b},
		Log:       &logService{b: b},
		Audit:     audit,
		Directory: &directoryService{b: b},
	}
}

// identity returns the caller; the authentication interceptor put it there.
func identity(ctx context.Context) (*auth.Identity, error) {
	id, ok := auth.FromContext(ctx)
	if !ok {
		return nil, auth.ErrNoCredentials
	}
	return id, nil
}

// me returns the calling patient's INS.
func me(ctx context.Context) (*auth.Identity, ident.INS, error) {
	id, err := identity(ctx)
	if err != nil {
		return nil, ident.INS{}, err
	}
	p, ok := id.Patient()
	if !ok {
		return nil, ident.INS{}, ErrPermissionDenied
	}
	ins, err := ident.ParseINS(p.Canonical())
	if err != nil {
		// The authenticator checked it; a failure here is ours.
		return nil, ident.INS{}, fmt.Errorf("token subject: %w", err)
	}
	return id, ins, nil
}

// parseINS parses an INS given in a request body (spaces allowed).
func parseINS(field, s string) (ident.INS, error) {
	if s == "" {
		return ident.INS{}, InvalidField(field, "required")
	}
	ins, err := ident.NormalizeINS(s)
	if err != nil {
		// The ident errors never contain the number.
		return ident.INS{}, &FieldError{Field: field, Problem: err.Error(), Err: err}
	}
	return ins, nil
}

// author says who makes a change, for the ledger: a principal, never an
// INS ("patient" for the patient themselves).
func author(id *auth.Identity) string {
	if id.Role() == auth.RolePatient {
		return "patient"
	}
	return id.Principal()
}

// recordRead records, before the data goes out, that reader read n events
// of a patient (by INS or pseudonym). Every read of bodies is an event.
func (b *Backend) recordRead(ctx context.Context, patient ledger.PatientID, pseudonym event.Hash, reader, method string, n int, size, fromSeq uint64) error {
	e, err := readEntry(patient, pseudonym, reader, method, n, size, fromSeq)
	if err != nil {
		return err
	}
	if _, err := b.Ledger.Record(ctx, e); err != nil {
		return fmt.Errorf("%w: record the read: %v", ErrUnavailable, err)
	}
	return nil
}

// recordReads records the reads of reads by reader, acting for the
// organisations orgs (sorted; none for a regulator), through method, one
// ledger-read event per patient, before anything is returned: fail closed.
func (b *Backend) recordReads(ctx context.Context, reads *ledger.ReadSet, reader string, orgs []string, method string) error {
	if len(orgs) == 0 {
		orgs = nil
	}
	err := b.Ledger.RecordReads(ctx, reads, reader, func(n int) ([]byte, error) {
		return consent.FormatReadRecord(consent.ReadRecord{Reader: reader, Organizations: orgs, Method: method, Events: n})
	})
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return nil
}

// readEntry is the ledger entry of a read of n events of a patient, named
// by patient or, if nil, by pseudonym.
func readEntry(patient ledger.PatientID, pseudonym event.Hash, reader, method string, n int, size, fromSeq uint64) (ledger.Entry, error) {
	payload, err := consent.FormatReadRecord(consent.ReadRecord{Reader: reader, Method: method, Events: n, CheckpointSize: size, FromSeq: fromSeq})
	if err != nil {
		return ledger.Entry{}, err
	}
	e := ledger.Entry{Kind: event.KindLedgerRead, Service: reader, Payload: payload}
	if patient != nil {
		e.Patient = patient
	} else {
		e.Pseudonym = pseudonym
	}
	return e, nil
}

// unavailable classifies the error of a call that records: every
// recording handler returns its domain errors through it. An error that
// Status maps to a code of its own (what is wrong with the request or the
// stored data, a lost compare-and-swap: nothing stored) is returned as it
// is, and so is ErrInvalidEntry (the server's own bug, INTERNAL); any
// other, which Status would call INTERNAL, is a recording failure (a full
// disk, a read-only file, a lost connection): ErrUnavailable, fail closed,
// retry. Status is the one list of known errors.
func unavailable(err error) error {
	if err == nil || errors.Is(err, ErrUnavailable) || errors.Is(err, ledger.ErrInvalidEntry) {
		return err
	}
	if st, _ := Status(err); st.Code() != codes.Internal {
		return err
	}
	return fmt.Errorf("%w: %v", ErrUnavailable, err)
}

// recorded converts a ledger result.
func recorded(index uint64, c event.Hash, receipt []byte) *vigiev1.RecordedEvent {
	return &vigiev1.RecordedEvent{Commitment: c.String(), LeafIndex: index, Receipt: receipt}
}

// CheckpointSource serves the log's latest checkpoint as a signed note
// (ledger/witness.Checkpoints: with the witnesses' cosignatures) and its
// size; ledger.ErrNotFound before the first.
type CheckpointSource interface {
	LatestCheckpoint(ctx context.Context) ([]byte, uint64, error)
}

// latestCheckpoint returns the checkpoint the public reads are served and
// proved against: with a witness policy, the newest the witnesses'
// cosignatures meet the quorum of (Checkpoints), so that a reader never
// sees a listing newer than GET /checkpoint; else the ledger's latest.
func (b *Backend) latestCheckpoint(ctx context.Context) ([]byte, uint64, error) {
	if b.Checkpoints != nil {
		return b.Checkpoints.LatestCheckpoint(ctx)
	}
	return b.Ledger.LatestCheckpoint(ctx)
}
