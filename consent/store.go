package consent

import (
	"context"
	"errors"
	"time"

	"github.com/vigie-sante/vigie/consent/ident"
)

var (
	// ErrStaleVersion is returned by [Store.UpdateConsent] when the
	// patient's current consent version is not the expected one: someone
	// else changed it first. Nothing was stored. Callers test for it with
	// errors.Is, re-read the consent and decide whether to retry.
	ErrStaleVersion = errors.New("consent version is not the expected one")
	// ErrNotFound is returned by [Store] methods for an absent national
	// rules version. Callers test for it with errors.Is.
	ErrNotFound = errors.New("not found")
	// ErrRulesConflict is returned by [Store.PutRules] for a version that
	// exists with other bytes, or that is not above the latest version.
	// Nothing was stored. Callers test for it with errors.Is.
	ErrRulesConflict = errors.New("national rules version conflicts with a stored one")
	// ErrConsentChanged is returned by [Recorder.RecordDecision] when the
	// patient's consent version at record time is not the one the
	// decision used. Nothing was recorded: decide again with the current
	// consent. [Service.Check] does, a bounded number of times. Callers
	// test for it with errors.Is.
	ErrConsentChanged = errors.New("patient's consent changed since the decision")
	// ErrRulesChanged is returned by [Recorder.RecordDecision] when the
	// decision's national rules version is not the latest stored at
	// record time: another version was published since (on this node or
	// another). Nothing was recorded: decide again with the latest rules.
	// [Service.Check] does, a bounded number of times. Callers test for it
	// with errors.Is.
	ErrRulesChanged = errors.New("national rules changed since the decision")
	// ErrStaleConsent is returned by [Engine.Decide] when the consent
	// snapshot is older than the request's MinConsentVersion, or older
	// than a version the engine already decided with for that patient.
	// Nothing was decided: read the consent again. Callers test for it
	// with errors.Is.
	ErrStaleConsent = errors.New("consent snapshot is older than a version already seen")
	// ErrConsentAhead is returned by [Service.Check] when the request's
	// MinConsentVersion is above the patient's consent version as the
	// store holds it now: the caller names a version that does not
	// exist. Nothing was decided, and retrying the same request does not
	// help (unlike ErrStaleConsent). Callers test for it with errors.Is.
	ErrConsentAhead = errors.New("minimum consent version is above the patient's consent version")
	// ErrRequestReused is returned by [Recorder.RecordDecision] when the
	// calling service's request id was used before for another request
	// (another patient, actor, action, document or purpose): not a retry.
	// Nothing was recorded and the first decision is not returned.
	// Callers test for it with errors.Is.
	ErrRequestReused = errors.New("request id already used by this service for another request")
	// ErrRequestErased is returned by [Recorder.RecordDecision] when the
	// request id was recorded before and that event was erased since
	// (its patient's data was erased): the first answer is gone, and the
	// request is neither decided nor recorded again under that id.
	// Callers test for it with errors.Is.
	ErrRequestErased = errors.New("request id known, its patient's data was erased")
	// ErrRequestExpired is returned by [Recorder.RecordDecision] when the
	// request id was recorded longer ago than the deployment remembers
	// answers for: the first answer is not replayed (it may no longer
	// reflect the patient's consent), and the request is neither decided
	// nor recorded again under that id. Callers test for it with
	// errors.Is.
	ErrRequestExpired = errors.New("request id older than the retention period")
)

// Change describes who made a change and when, for the history and the
// ledger.
type Change struct {
	// Time is when the change was made (UTC).
	Time time.Time
	// Author is who made it: an opaque principal such as "patient",
	// "rpps:10002727377" or "admin:jdupont". It must never be an INS.
	Author string
}

// ConsentRecord is one stored version of a patient's consent.
type ConsentRecord struct {
	Consent
	Change
}

// RulesInfo describes one stored version of the national rules.
type RulesInfo struct {
	Version int64
	Hash    [32]byte
	Change
}

// Store keeps patients' consents, with their history, and the versions of
// the national rules. Implementations keep them in the database of the
// ledger, so that a consent change and its ledger event commit together,
// or neither does.
//
// Implementations MUST be safe for concurrent use by multiple goroutines
// and, for shared databases, by multiple processes. Every method MAY be
// retried by the caller after an error: each is either read-only or
// atomic (all or nothing). A method that returns an error other than the
// documented sentinels MAY or MAY NOT have taken effect only in the sense
// that a commit's outcome was unknown; in that case a retry of
// UpdateConsent returns ErrStaleVersion if the first attempt committed,
// which the caller resolves by reading the consent back.
//
// Implementations MUST NOT store an INS in clear: key patients by a keyed
// pseudonym (the ledger's HMAC of [ident.INS.Canonical]) or encrypt it.
// They MUST NOT log INS values or directives.
//
// consentstoretest.Run is the conformance suite every implementation passes.
type Store interface {
	// Consent returns the patient's current consent. A patient with no
	// stored consent has Version 0 and no directives, and err == nil.
	// The returned directives are the caller's (not shared with the
	// store).
	Consent(ctx context.Context, patient ident.INS) (Consent, error)

	// UpdateConsent replaces the patient's directives if, and only if,
	// the current version is expected (compare-and-swap: two writers
	// that read the same version cannot both write, and no write is
	// lost). The new version is expected+1; it is returned with the
	// stored record. If the current version is not expected it returns
	// ErrStaleVersion and stores nothing. directives may be empty (the
	// patient withdrew every directive), which is still a new version.
	//
	// The caller validates directives first ([ValidateConsent]); the
	// store keeps them as given, at whole-second precision in UTC. The
	// store MUST NOT keep a reference to the directives slice.
	// Implementations backed by the ledger's database record the change
	// event (author, new version, [ConsentHash]) in the same
	// transaction.
	UpdateConsent(ctx context.Context, patient ident.INS, expected int64, directives []Directive, change Change) (ConsentRecord, error)

	// ConsentHistory returns the patient's stored versions from version
	// from (inclusive, at least 1) in increasing version order, at most
	// limit of them (limit at least 1). A patient with no history gets
	// an empty list and err == nil.
	ConsentHistory(ctx context.Context, patient ident.INS, from int64, limit int) ([]ConsentRecord, error)

	// PutRules stores a national rules version with its exact bytes
	// ([Rules.Bytes]). Storing a version that exists with the same bytes
	// succeeds and changes nothing (a retry). A version that exists with
	// other bytes, or a new version not above the latest stored one,
	// returns ErrRulesConflict and stores nothing.
	PutRules(ctx context.Context, rules *Rules, change Change) error

	// Rules returns a national rules version, parsed from its exact
	// stored bytes, or ErrNotFound.
	Rules(ctx context.Context, version int64) (*Rules, error)

	// LatestRules returns the national rules version with the highest
	// number, or ErrNotFound when none was stored.
	LatestRules(ctx context.Context) (*Rules, error)

	// ListRules returns every stored national rules version in increasing
	// version order; an empty list when none.
	ListRules(ctx context.Context) ([]RulesInfo, error)

	// RulesOf returns the national rules version decision d was made with
	// (d.RulesVersion), which must be stored with d's hash (d.RulesHash):
	// ErrNotFound for a version not stored, another error for one stored
	// with another hash (that decision was not made with these rules). A
	// version is immutable: implementations may cache it.
	RulesOf(ctx context.Context, d *Decision) (*Rules, error)
}

// Receipt is the ledger's acknowledgement of a recorded decision.
type Receipt struct {
	// Decision is the decision as recorded: the one passed to
	// RecordDecision, or for a request key already recorded, the first
	// one.
	Decision Decision
	// Index is the event's index in the log.
	Index int64
	// Commitment is the event's commitment (docs/formats.md, "The three
	// hashes").
	Commitment [32]byte
	// Note is the signed receipt, a signed note promising inclusion.
	Note []byte
}

// Recorder durably records decisions in the ledger. The ledger package
// implements it.
//
// RecordDecision records decision d, made for req with req.Key() == key,
// under the consent version d.ConsentVersion. It MUST:
//
//   - return only once the event is durable, with its receipt; a nil
//     error means durable;
//   - in the same transaction, check that the patient's current consent
//     version is d.ConsentVersion, and if it is not, record nothing and
//     return an error wrapping ErrConsentChanged;
//   - in the same transaction, check that d.RulesVersion is the latest
//     national rules version stored, and if it is not, record nothing and
//     return an error wrapping ErrRulesChanged (a decision is recorded
//     only under the rules in force when it commits);
//   - be idempotent by key: if an event was already recorded for key,
//     record nothing and return that event's receipt, whose Decision is
//     the first decision, with a nil error (even if d differs, or the
//     consent changed since); if that event was erased since, or is
//     older than the retention period, record nothing and return
//     ErrRequestErased or ErrRequestExpired;
//   - store d's obligations with the event.
//
// Any other error means the event may or may not be durable ("failed, not
// persisted" or "failed but persisted": the caller cannot tell). Because
// RecordDecision is idempotent by key, a retry with the same key is always
// safe and returns the first answer if the first attempt persisted.
//
// Implementations MUST be safe for concurrent use. They MUST NOT log the
// request's INS, justification or document identifiers.
type Recorder interface {
	RecordDecision(ctx context.Context, key RequestKey, req *Request, d *Decision) (Receipt, error)
}

// Engine decides requests against a patient's consent and the national
// rules. Package consent/ladonpolicy implements it on ory/ladon.
//
// Implementations MUST be safe for concurrent use and deterministic: the
// same request (with its time), consent and rules always give the same
// decision.
type Engine interface {
	// CheckConsent checks, beyond [ValidateConsent], what only the engine
	// can (that patterns compile), before a consent is written. It
	// returns a *FieldError.
	CheckConsent(c *Consent, rules *Rules) error

	// Decide decides req with snap, the patient's consent as read from
	// the Store, and rules. It returns a *FieldError for an invalid
	// request, ErrStaleConsent if snap is older than
	// req.MinConsentVersion or than a version it already decided with
	// for that patient, and an error if snap does not compile (it was
	// not validated when written). A version identifies the consent's
	// content: an implementation may reuse what it compiled for the same
	// patient and version.
	Decide(req *Request, snap *Consent, rules *Rules) (Decision, error)
}
