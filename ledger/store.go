package ledger

import (
	"context"
	"errors"
	"time"

	"github.com/vigie-sante/vigie/ledger/event"
	"github.com/vigie-sante/vigie/ledger/sqldb"
)

// Store holds the ledger's tables: patients' chain heads and wrapped keys,
// events (the durable record; the events beyond the sent size are the
// outbox: recorded, not yet acknowledged by the log), signed checkpoints
// and security events. Implementations must pass ledger/ledgerstoretest;
// ledger/ledgersql is the one on SQLite, PostgreSQL and CockroachDB.
//
// A Store is safe for concurrent use.
type Store interface {
	// ReadWrite runs f in a read-write transaction and commits it if f
	// returns nil. f may be called more than once (a retried transaction):
	// it must start from scratch each time. If the outcome of the commit
	// is unknown, ReadWrite returns an error wrapping
	// sqldb.ErrCommitUnknown.
	ReadWrite(ctx context.Context, f func(ctx context.Context, tx StoreTx) error) error
	// Read runs f in a read-only transaction that sees one consistent
	// state. f may be called more than once.
	Read(ctx context.Context, f func(ctx context.Context, tx StoreReader) error) error
	// Scrub makes what committed transactions deleted or cleared (an
	// erasure's keys and bodies) unrecoverable from the store's own
	// files, as far as the engine allows: on SQLite, freed content is
	// zeroed as it is freed and Scrub empties the write-ahead log of the
	// older page versions; on PostgreSQL it does nothing, dead tuples
	// stay until VACUUM (docs/operations.md). It may be retried; after an
	// error the content leaves the files at a later scrub or checkpoint.
	Scrub(ctx context.Context) error
}

// ErrNotFound is returned by StoreReader lookups when there is nothing.
// Callers test for it with errors.Is.
var ErrNotFound = errors.New("not found")

// ErrMissing is returned by StoreReader.Commitments when an event of the
// range is not there: the table was changed behind the ledger's back.
// Callers test for it with errors.Is.
var ErrMissing = errors.New("event missing")

// ErrConflict is returned by the compare-and-swap writes of StoreTx when
// the value they expected is no longer there: another writer went first.
// Callers test with errors.Is; the transaction should be abandoned.
var ErrConflict = errors.New("concurrent update")

// ErrLeaseHeld is returned by StoreTx.AcquireLease when another owner
// holds the lease and has not let it expire. Callers test with errors.Is.
var ErrLeaseHeld = errors.New("lease held by another node")

// ErrLeaseLost is returned by StoreTx.CheckLease, and by a duty's write,
// when the lease is no longer held at the epoch the writer holds: another
// node took it over. The transaction must be abandoned and the duty
// stopped. Callers test with errors.Is.
var ErrLeaseLost = errors.New("lease lost")

// Lease is a lease's row: the duty it is for, its holder and the term.
type Lease struct {
	Name string
	// Owner is the holder (a node's Config.Owner), "" once released.
	Owner string
	// Epoch counts the lease's owners: every takeover bumps it, a renewal
	// keeps it. Writes made under a lease check it (StoreTx.CheckLease).
	Epoch uint64
	// Expires is when the lease may be taken over, on the database's
	// clock.
	Expires time.Time
}

// StoreReader reads the ledger's tables in a transaction.
type StoreReader interface {
	// State returns the ledger's counters.
	State(ctx context.Context) (State, error)
	// Meta returns a named value (the log's origin, its tree), or
	// ErrNotFound.
	Meta(ctx context.Context, name string) ([]byte, error)
	// Patient returns the patient's row, or ErrNotFound.
	Patient(ctx context.Context, pseudonym event.Hash) (PatientRow, error)
	// PatientsAfter returns up to limit patients' rows in pseudonym order
	// (bytewise), erased ones included: from the first if after is nil
	// (the system chain's all-zero pseudonym included), else those
	// greater than *after.
	PatientsAfter(ctx context.Context, after *event.Hash, limit int) ([]PatientRow, error)
	// ChainHead returns the sequence number and commitment of the
	// patient's latest event, erased or not; zero values if there is none.
	ChainHead(ctx context.Context, pseudonym event.Hash) (uint64, event.Hash, error)
	// Patients returns the rows of those of these patients that have one,
	// as Patient does each, in few statements where the database gains
	// by it (PostgreSQL: one round trip for a group commit's patients).
	Patients(ctx context.Context, pseudonyms []event.Hash) (map[event.Hash]PatientRow, error)
	// ChainHeads returns the chain heads of these patients, as ChainHead
	// does each (patients without an event are absent), in few
	// statements where the database gains by it.
	ChainHeads(ctx context.Context, pseudonyms []event.Hash) (map[event.Hash]ChainHead, error)
	// EventByKey returns the event recorded with this idempotency key's
	// hash, erased or not (an erasure keeps the hash), or ErrNotFound.
	EventByKey(ctx context.Context, key RequestHash) (EventRow, error)
	// EventByIndex returns the event at a leaf index, or ErrNotFound.
	EventByIndex(ctx context.Context, index uint64) (EventRow, error)
	// PatientEvents returns up to limit events of the patient with
	// sequence numbers from fromSeq on, in order, erased ones included.
	PatientEvents(ctx context.Context, pseudonym event.Hash, fromSeq uint64, limit int) ([]EventRow, error)
	// Commitments returns the commitments of the events at indices
	// [start, end), in order; it fails with an error wrapping ErrMissing
	// if one is missing.
	Commitments(ctx context.Context, start, end uint64) ([]event.Hash, error)
	// LatestCheckpoint returns the latest signed checkpoint, or
	// ErrNotFound before the first.
	LatestCheckpoint(ctx context.Context) (CheckpointRow, error)
	// Checkpoint returns the checkpoint of this size, or ErrNotFound.
	Checkpoint(ctx context.Context, size uint64) (CheckpointRow, error)
	// Checkpoints returns up to limit checkpoints with size > after, in
	// order of size.
	Checkpoints(ctx context.Context, after uint64, limit int) ([]CheckpointRow, error)
	// SearchEvents returns up to limit events matching the filter, in
	// order of index, from index after on (exclusive).
	SearchEvents(ctx context.Context, f SearchFilter, after int64, limit int) ([]EventRow, error)
	// SecurityEvents returns the security events recorded, oldest first.
	SecurityEvents(ctx context.Context, limit int) ([]SecurityEvent, error)
	// DueErasures returns up to limit erasures due at now, earliest first.
	DueErasures(ctx context.Context, now time.Time, limit int) ([]Erasure, error)
	// RecentEventByCommitment returns the event with commitment c among
	// those from index from on (the ones not in a checkpoint yet: lookups
	// of older ones go to the log), or ErrNotFound.
	RecentEventByCommitment(ctx context.Context, c event.Hash, from uint64) (EventRow, error)
}

// StoreTx reads and writes the ledger's tables in a transaction.
type StoreTx interface {
	StoreReader
	// SQL returns the underlying transaction, so that other tables of the
	// same database (the consent store's) change in the same transaction.
	SQL() sqldb.Tx
	// SetMeta sets a named value once; setting it again to a different
	// value fails.
	SetMeta(ctx context.Context, name string, value []byte) error
	// TakeTurn, called first in a recording transaction (before any
	// read), makes the recording transactions of every node take turns
	// where several writers run at once, so that the compare-and-swap on
	// the next index waits for the transaction before it rather than
	// failing at SERIALIZABLE and running again. It must not take the
	// transaction's snapshot. Where writers already take turns, or the
	// database offers no such lock, it does nothing.
	TakeTurn(ctx context.Context) error
	// ReserveIndices takes n consecutive leaf indices and returns the
	// first. It reads and moves the next index at once (one statement on
	// SQL), so two writers can never take the same indices (one of them
	// waits for the other, or gets ErrConflict or a serialization
	// failure). With n = 0 it takes none and returns the
	// next index, writing the same row all the same: Ledger.Ready's probe
	// of a store that failed to record.
	ReserveIndices(ctx context.Context, n uint64) (uint64, error)
	// InsertPatient adds a patient's row; it fails with ErrConflict if the
	// patient exists.
	InsertPatient(ctx context.Context, p PatientRow) error
	// InsertPatients adds patients' rows as InsertPatient adds each,
	// where the database gains by it in fewer statements. After an
	// error, the transaction must be abandoned.
	InsertPatients(ctx context.Context, ps []PatientRow) error
	// UpdatePatient sets a patient's consent version and wrapped key: a
	// compare-and-swap on the consent version, so that two consent changes
	// from the same version cannot both commit (ErrConflict).
	UpdatePatient(ctx context.Context, p PatientRow, oldConsentVersion int64) error
	// InsertEvent adds an event. It fails with ErrConflict if the index,
	// the patient's sequence number or the idempotency key is taken: the
	// unique sequence number is what keeps a patient's chain from forking
	// when two writers extend it from the same head.
	InsertEvent(ctx context.Context, e EventRow) error
	// InsertEvents adds events as InsertEvent adds each, where the
	// database gains by it in fewer statements (PostgreSQL: one round
	// trip for a group commit's events). After an error, the transaction
	// must be abandoned.
	InsertEvents(ctx context.Context, events []EventRow) error
	// MarkSent records that the leaves [from, to) are in the log: the sent
	// size moves from from to to (compare-and-swap: ErrConflict if another
	// sender went first).
	MarkSent(ctx context.Context, from, to uint64) error
	// AddCheckpoint stores a signed checkpoint and makes it the latest,
	// by compare-and-swap on the latest size (ErrConflict): two signers
	// can never both extend the same checkpoint.
	AddCheckpoint(ctx context.Context, cp CheckpointRow, prevSize uint64) error
	// AddSecurityEvent records evidence of an inconsistency.
	AddSecurityEvent(ctx context.Context, s SecurityEvent) error
	// ScheduleErasure schedules an erasure; a patient with one scheduled
	// keeps the earlier time. It returns the time scheduled.
	ScheduleErasure(ctx context.Context, e Erasure) (time.Time, error)
	// DeleteErasure removes a patient's scheduled erasure, or returns
	// ErrNotFound if there is none: whoever deletes it runs the erasure,
	// once.
	DeleteErasure(ctx context.Context, pseudonym event.Hash) error
	// AcquireLease takes or renews the lease name for owner until ttl
	// from now on the database's clock, and returns it. A lease that is
	// free (never taken, or released) or expired is taken with its epoch
	// bumped by one; a lease already owner's is renewed with its epoch
	// kept. A lease another owner holds and has not let expire is left
	// alone: AcquireLease returns it with an error wrapping ErrLeaseHeld.
	// Every change of owner is a compare-and-swap on the epoch, so two
	// nodes taking an expired lease at once cannot both commit.
	AcquireLease(ctx context.Context, name, owner string, ttl time.Duration) (Lease, error)
	// CheckLease fails with an error wrapping ErrLeaseLost unless owner
	// holds the lease name at epoch (whether or not it expired: only a
	// takeover, which bumps the epoch, ends a term). It writes the lease's
	// row, so that a takeover and the transaction it is called in conflict
	// at any isolation level: a duty calls it in the transaction of every
	// write it makes, and a node that lost the lease writes nothing.
	CheckLease(ctx context.Context, name, owner string, epoch uint64) error
	// ReleaseLease frees the lease name if owner holds it at epoch, so
	// that another node takes it at once; otherwise it does nothing.
	ReleaseLease(ctx context.Context, name, owner string, epoch uint64) error
	// ErasePatient destroys the patient's wrapped key and clears every
	// column of the patient's events that could identify them, keeping
	// commitments, indices, idempotency keys' hashes (a retry after the
	// erasure is recognised) and, in a table of its own, the positions of
	// the erased events in the patient's chain. The patient's consent
	// version goes up by one: their consent is erased too (by the
	// caller's EraseAlso), which is a change of consent. It returns the
	// number of events erased.
	ErasePatient(ctx context.Context, pseudonym event.Hash, at int64) (int, error)
}

// State are the ledger's counters.
type State struct {
	// NextIndex is the next leaf index to assign: events [0, NextIndex)
	// are recorded.
	NextIndex uint64
	// SentSize is how many leaves the log has acknowledged: [0, SentSize).
	SentSize uint64
	// CheckpointSize is the size of the latest signed checkpoint.
	CheckpointSize uint64
}

// ChainHead is the sequence number and commitment of a patient's latest
// event.
type ChainHead struct {
	Seq  uint64
	Head event.Hash
}

// PatientRow is a patient's key and consent version. (The chain head is
// the patient's latest event: see ChainHead.)
type PatientRow struct {
	Pseudonym event.Hash
	// ConsentVersion is the patient's consent version (0: none).
	ConsentVersion int64
	// WrappedKey is the patient's data key wrapped by the key-encryption
	// key; nil once erased.
	WrappedKey []byte
	// ErasedNanos is when the patient's events were erased (0: never).
	ErasedNanos int64
}

// Key is an idempotency key: the calling service and its request id.
type Key struct {
	Service   string
	RequestID string
}

// IsZero reports whether there is no key.
func (k Key) IsZero() bool { return k.Service == "" && k.RequestID == "" }

// EventRow is an event as stored.
type EventRow struct {
	Index      uint64
	Commitment event.Hash
	// Key is the keyed hash of the event's idempotency key (zero: none).
	// An erasure keeps it.
	Key RequestHash
	// The fields below are cleared by an erasure (Erased is then true):
	// Pseudonym, Kind, TimeNanos, Service, Actor, Organization,
	// BreakGlass, Sealed.
	Erased       bool
	Pseudonym    event.Hash
	Seq          uint64
	Kind         event.Kind
	TimeNanos    int64
	Service      string
	Actor        string
	Organization string
	BreakGlass   bool
	// Sealed is salt ‖ body encrypted with the patient's data key.
	Sealed []byte
}

// CheckpointRow is a signed checkpoint with the compact range of the tree
// it signs, from which the next checkpoint's root is computed.
type CheckpointRow struct {
	Size        uint64
	Root        event.Hash
	Note        []byte
	Range       [][]byte
	SignedNanos int64
}

// SecurityEvent is evidence of an inconsistency between the log and the
// ledger, or of a tampered store.
type SecurityEvent struct {
	Kind     string
	Detail   string
	Evidence []byte
	Nanos    int64
}

// SearchFilter selects events for auditors. Zero fields do not filter.
type SearchFilter struct {
	Pseudonym      *event.Hash
	Actor          string
	Organization   string
	FromNanos      int64
	ToNanos        int64 // exclusive
	Kind           event.Kind
	BreakGlassOnly bool
	// ErasedOnly selects the erased events instead (their rows keep only
	// the leaf index and commitment); the other fields must be zero.
	ErasedOnly bool
}
