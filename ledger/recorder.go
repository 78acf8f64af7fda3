package ledger

import (
	"cmp"
	"context"
	"crypto/cipher"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/vigie-sante/vigie/ledger/event"
	"github.com/vigie-sante/vigie/ledger/sqldb"
	"github.com/vigie-sante/vigie/ledger/verify"
)

var (
	// ErrConsentChanged is returned by Record when the patient's consent
	// version is no longer the one the entry was decided under (or, for a
	// consent change, the one it expected): nothing was recorded, and the
	// caller decides again with the current consent. Callers test for it
	// with errors.Is.
	ErrConsentChanged = errors.New("the patient's consent changed")
	// ErrErased is returned when reading the body of an erased event.
	// Callers test for it with errors.Is.
	ErrErased = errors.New("erased")
	// ErrInvalidEntry wraps the errors of a malformed entry. Callers test
	// for it with errors.Is.
	ErrInvalidEntry = errors.New("invalid ledger entry")
	// ErrKeyReused is returned when an entry's idempotency key names an
	// event of another patient or kind: not a retry but another request
	// under a used key. Nothing is recorded, and the first event is not
	// returned (it is another patient's). Callers test for it with
	// errors.Is.
	ErrKeyReused = errors.New("idempotency key already used for another patient or kind of event")
	// ErrRequestErased is returned when an entry's idempotency key names
	// an event erased since (its patient's data was erased): the request
	// is known, its first answer is gone, and it is not recorded again.
	// Callers test for it with errors.Is; the caller sends a new request
	// (a new request id) if it still needs an answer.
	ErrRequestErased = errors.New("request id known, its patient's data was erased")
	// ErrRequestExpired is returned when an entry's idempotency key names
	// an event recorded longer ago than Config.RequestIDRetention: its
	// answer is no longer replayed, and it is not decided or recorded
	// again under that id. Callers test for it with errors.Is.
	ErrRequestExpired = errors.New("request id older than the retention period")
)

// Entry is an event to record.
type Entry struct {
	// Kind is the event's kind.
	Kind event.Kind
	// Patient is whom the event is about; nil for an event that concerns
	// no patient (a rules change), chained on the system chain.
	Patient PatientID
	// Pseudonym names the patient instead of Patient, when only the
	// pseudonym is known (an auditor's read or review of an event found by
	// search). Zero when Patient is set.
	Pseudonym event.Hash
	// Service is the calling service (or the user) on whose behalf the
	// event is recorded.
	Service string
	// Payload is the kind-specific content: a compact JSON object, which
	// goes into the body as is.
	Payload json.RawMessage
	// Key, if not zero, makes the entry idempotent: recording an entry
	// with a key already recorded returns the first event and records
	// nothing; if that event was erased since, or recorded longer ago
	// than Config.RequestIDRetention, it fails with ErrRequestErased or
	// ErrRequestExpired and records nothing. The store keeps only the
	// key's keyed hash (Pseudonymizer.RequestHash), which an erasure
	// keeps.
	Key Key
	// CheckConsent asks Record to fail with ErrConsentChanged unless the
	// patient's consent version is ConsentVersion: the entry was decided
	// under that version.
	CheckConsent   bool
	ConsentVersion int64
	// ConsentChange, if not nil, makes the entry a consent change: it
	// commits only if the patient's consent version is Expected, and moves
	// it to Next.
	ConsentChange *ConsentChange
	// Apply, if not nil, writes other tables of the database (the consent
	// store's) in the transaction that records the entry: both commit or
	// neither. It may be called more than once (a retried transaction) and
	// must start from scratch each time. If it fails, the entry fails with
	// its error and nothing of it is stored.
	Apply func(ctx context.Context, tx StoreTx) error
	// Erase, if not nil, makes the entry the record of an erasure, done in
	// its own transaction: just before the entry is appended, every event
	// of the patient recorded so far is erased (data key destroyed,
	// identifying columns cleared, consent version raised) with the
	// patient's rows of other tables (Config.EraseAlso); Erase(n) then
	// gives the entry's payload, n being how many events it erased. The
	// entry is the first event sealed under the patient's new data key:
	// an erasure and its record commit together or not at all. Payload is
	// ignored.
	Erase func(n int) (json.RawMessage, error)
	// Index columns for auditors' searches (plaintext, cleared by an
	// erasure): the professional's RPPS, the organisation's FINESS, and
	// whether it was a break-glass access.
	Actor, Organization string
	BreakGlass          bool
}

// ConsentChange is the compare-and-swap of a consent change.
type ConsentChange struct {
	Expected, Next int64
}

// Recorded is a recorded event: what the caller needs to answer, and to
// prove it later.
type Recorded struct {
	Index      uint64
	Commitment event.Hash
	Body       []byte
	Salt       [32]byte
	Time       time.Time
	// Receipt is the signed promise of inclusion at Index before Time +
	// the merge delay: of version 2 (one signature for the events of a
	// group commit) or 1 (verify.OpenReceipt reads both).
	Receipt []byte
	// Duplicate is true when the entry's key was recorded before: this is
	// that first event.
	Duplicate bool
}

func (e *Entry) validate() error {
	if !e.Kind.Valid() {
		return fmt.Errorf("%w: unknown kind %q", ErrInvalidEntry, e.Kind)
	}
	hasPatient := e.Patient != nil || !e.Pseudonym.IsZero()
	if e.Patient != nil && !e.Pseudonym.IsZero() {
		return fmt.Errorf("%w: a patient and a pseudonym", ErrInvalidEntry)
	}
	if hasPatient == e.Kind.System() {
		return fmt.Errorf("%w: a %s event needs a patient exactly when it is not a system event", ErrInvalidEntry, e.Kind)
	}
	if e.Service == "" {
		return fmt.Errorf("%w: no service", ErrInvalidEntry)
	}
	if (e.Key.Service == "") != (e.Key.RequestID == "") {
		return fmt.Errorf("%w: an idempotency key needs both a service and a request id", ErrInvalidEntry)
	}
	if e.ConsentChange != nil && (e.Kind != event.KindConsentChange || e.ConsentChange.Next <= e.ConsentChange.Expected) {
		return fmt.Errorf("%w: a consent change moves a consent_change event's version forward", ErrInvalidEntry)
	}
	if e.Erase != nil && (e.Kind != event.KindErasure || e.ConsentChange != nil || e.CheckConsent) {
		return fmt.Errorf("%w: an erasure is an erasure event, neither a consent change nor a decision", ErrInvalidEntry)
	}
	return nil
}

// Record records an entry and returns once it is durable, with its
// receipt. Concurrent calls share transactions (group commit). It fails
// with ErrConsentChanged if the patient's consent moved on, and with an
// error, never a result, if the event could not be made durable.
func (l *Ledger) Record(ctx context.Context, e Entry) (_ *Recorded, err error) {
	ctx, span := l.startSpan(ctx, "ledger.Record", 1)
	defer func() { endSpan(span, err) }()
	if err := l.halted(); err != nil {
		return nil, err
	}
	if err := e.validate(); err != nil {
		return nil, err
	}
	pseudonym := e.Pseudonym
	if e.Patient != nil {
		pseudonym = l.cfg.Pseudonyms.Pseudonym(e.Patient)
		if pseudonym == event.SystemChain {
			return nil, fmt.Errorf("%w: pseudonym collides with the system chain", ErrInvalidEntry)
		}
	}
	j := &recordJob{ctx: ctx, entry: e, pseudonym: pseudonym, done: make(chan struct{})}
	l.batch.run([]*recordJob{j}, l.runBatch)
	if j.err != nil {
		return nil, j.err
	}
	if err := l.finish(j); err != nil {
		return nil, err
	}
	notify(l.wake)
	if span.IsRecording() {
		span.SetAttributes(attribute.Int64("vigie.ledger.leaf_index", int64(j.res.Index)))
	}
	return j.res, nil
}

// startSpan starts the span of a recording of n entries. Its attributes
// are counts and leaf indices, never what identifies a patient; they are
// built only when tracing is on (Record is the hot path).
func (l *Ledger) startSpan(ctx context.Context, name string, n int) (context.Context, trace.Span) {
	ctx, span := l.tracer.Start(ctx, name)
	if span.IsRecording() {
		span.SetAttributes(attribute.Int("vigie.ledger.entries", n))
	}
	return ctx, span
}

// endSpan ends a recording's span, marking a failure without its text.
func endSpan(span trace.Span, err error) {
	if err != nil {
		span.SetStatus(codes.Error, "not recorded")
	}
	span.End()
}

// RecordAll records entries as Record does, all of them in one transaction
// when there are at most Config.MaxGroup (with other concurrent calls'),
// and returns their results in order. Each entry succeeds or fails on its
// own, as with a Record call each: on an error, the entries recorded are
// those whose result is not nil, and the error is the first entry's that
// failed.
func (l *Ledger) RecordAll(ctx context.Context, entries []Entry) (_ []*Recorded, err error) {
	ctx, span := l.startSpan(ctx, "ledger.RecordAll", len(entries))
	defer func() { endSpan(span, err) }()
	if err := l.halted(); err != nil {
		return make([]*Recorded, len(entries)), err
	}
	jobs := make([]*recordJob, 0, len(entries))
	var first error
	for _, e := range entries {
		j := &recordJob{ctx: ctx, entry: e, pseudonym: e.Pseudonym, done: make(chan struct{})}
		if j.err = e.validate(); j.err == nil && e.Patient != nil {
			j.pseudonym = l.cfg.Pseudonyms.Pseudonym(e.Patient)
			if j.pseudonym == event.SystemChain {
				j.err = fmt.Errorf("%w: pseudonym collides with the system chain", ErrInvalidEntry)
			}
		}
		if j.err != nil {
			close(j.done)
		}
		jobs = append(jobs, j)
	}
	var live []*recordJob
	for _, j := range jobs {
		if j.err == nil {
			live = append(live, j)
		}
	}
	if len(live) > 0 {
		l.batch.run(live, l.runBatch)
	}
	out := make([]*Recorded, len(jobs))
	for i, j := range jobs {
		if j.err == nil {
			j.err = l.finish(j)
		}
		if j.err != nil {
			first = cmp.Or(first, j.err)
			continue
		}
		out[i] = j.res
	}
	if len(live) > 0 {
		notify(l.wake)
	}
	return out, first
}

// finish signs the receipt of a recorded job, if it has none yet.
func (l *Ledger) finish(j *recordJob) error {
	if j.res.Receipt != nil {
		return nil
	}
	r, err := l.receipt(j.res)
	if err != nil {
		return err
	}
	j.res.Receipt = r
	return nil
}

// receipt signs the receipt of a recorded event. Ed25519 signatures are
// deterministic: the receipt of an event is always the same bytes.
func (l *Ledger) receipt(r *Recorded) ([]byte, error) {
	signed, err := verify.SignReceipt(verify.Receipt{
		Origin:     l.cfg.Origin,
		Index:      r.Index,
		Commitment: r.Commitment,
		Time:       r.Time,
		Deadline:   r.Time.Add(l.cfg.MergeDelay),
	}, l.cfg.ReceiptSigner)
	if err != nil {
		return nil, fmt.Errorf("sign receipt: %w", err)
	}
	return signed, nil
}

// signBatch signs one receipt of version 2 for the events a committed
// group recorded (verify.SignBatchReceipts), when there are two or more:
// one signature instead of one per event. A lone event, a retry's first
// event and a repeat of a key get a receipt of version 1 (finish).
func (l *Ledger) signBatch(group []*recordJob) {
	var fresh []*recordJob
	for _, j := range group {
		if j.err == nil && j.res != nil && !j.res.Duplicate {
			fresh = append(fresh, j)
		}
	}
	if len(fresh) < 2 {
		return
	}
	slices.SortFunc(fresh, func(a, b *recordJob) int { return cmp.Compare(a.res.Index, b.res.Index) })
	first, t := fresh[0].res.Index, fresh[0].res.Time
	cs := make([]event.Hash, len(fresh))
	for i, j := range fresh {
		if j.res.Index != first+uint64(i) || !j.res.Time.Equal(t) {
			return // not one batch of the log: each gets its own receipt
		}
		cs[i] = j.res.Commitment
	}
	receipts, err := verify.SignBatchReceipts(verify.BatchReceipt{
		Origin:   l.cfg.Origin,
		First:    first,
		Time:     t,
		Deadline: t.Add(l.cfg.MergeDelay),
	}, cs, l.cfg.ReceiptSigner)
	if err != nil {
		l.cfg.Logger.Warn("ledger: signing a batch receipt failed; signing each event's", "err", err)
		return
	}
	for i, j := range fresh {
		j.res.Receipt = receipts[i]
	}
}

type recordJob struct {
	ctx       context.Context
	entry     Entry
	pseudonym event.Hash
	res       *Recorded
	err       error
	done      chan struct{}
}

// batcher groups concurrent jobs: whoever holds the token runs every job
// queued, in one transaction; the others wait for their result. Jobs run
// on a submitter's goroutine.
type batcher struct {
	token   chan struct{}
	mu      sync.Mutex
	pending []*recordJob
}

func (b *batcher) run(jobs []*recordJob, runBatch func([]*recordJob)) {
	b.mu.Lock()
	b.pending = append(b.pending, jobs...)
	b.mu.Unlock()
	// The last job queued is done last: jobs run in the order queued.
	last := jobs[len(jobs)-1]
	select {
	case b.token <- struct{}{}:
		for {
			b.mu.Lock()
			batch := b.pending
			b.pending = nil
			b.mu.Unlock()
			if len(batch) == 0 {
				break
			}
			runBatch(batch)
			select {
			case <-last.done:
				<-b.token
				return
			default:
			}
		}
		<-b.token
	case <-last.done:
	}
	for _, j := range jobs {
		<-j.done
	}
}

// jobError is a failure caused by one job (its Apply failed): the batch is
// rolled back and the others run again without it.
type jobError struct {
	job *recordJob
	err error
}

func (e *jobError) Error() string { return e.err.Error() }
func (e *jobError) Unwrap() error { return e.err }

// runBatch records jobs in transactions of at most MaxGroup jobs.
func (l *Ledger) runBatch(all []*recordJob) {
	defer func() {
		for _, j := range all {
			close(j.done)
		}
	}()
	var live []*recordJob
	for _, j := range all {
		if err := j.ctx.Err(); err != nil {
			j.err = err
			continue
		}
		live = append(live, j)
	}
	for len(live) > 0 {
		n := min(len(live), l.cfg.MaxGroup)
		l.commitGroup(live[:n])
		live = live[n:]
	}
}

func (l *Ledger) commitGroup(group []*recordJob) {
	for len(group) > 0 {
		var g groupState
		err := l.store.ReadWrite(context.WithoutCancel(group[0].ctx), func(ctx context.Context, tx StoreTx) error {
			g = groupState{patients: make(map[event.Hash]*patientState), erasing: make(map[event.Hash]bool)}
			return l.recordGroup(ctx, tx, group, &g)
		})
		if l.heads != nil {
			if err == nil {
				l.heads.put(g.patients, g.erasing)
			} else {
				l.heads.drop(g.patients)
			}
		}
		var je *jobError
		switch {
		case err == nil:
			l.recordOutcome(nil)
			l.signBatch(group)
			return
		case errors.As(err, &je):
			je.job.err = je.err
			group = remove(group, je.job)
			continue
		case errors.Is(err, sqldb.ErrCommitUnknown):
			l.recordOutcome(err)
			l.cfg.Logger.Warn("ledger: commit outcome unknown; checking by idempotency key", "err", err)
			l.resolveUnknown(group, err)
			return
		default:
			l.recordOutcome(err)
			for _, j := range group {
				if j.err == nil {
					j.err = fmt.Errorf("record: %w", err)
				}
				j.res = nil
			}
			return
		}
	}
}

func remove(group []*recordJob, j *recordJob) []*recordJob {
	out := group[:0:0]
	for _, g := range group {
		if g != j {
			out = append(out, g)
		}
	}
	return out
}

// resolveUnknown finds out, after a commit whose outcome is unknown, which
// jobs were recorded: those with a key are looked up; the others cannot be
// told apart and fail (a caller without a key accepted that).
func (l *Ledger) resolveUnknown(group []*recordJob, cause error) {
	for _, j := range group {
		if j.err != nil && !errors.Is(j.err, sqldb.ErrCommitUnknown) {
			continue
		}
		// A retry (found by its key) or a repeat of a key of the batch
		// stays one: only the first call of a key recorded the event.
		wasDuplicate := j.res != nil && j.res.Duplicate
		j.res = nil
		if j.entry.Key.IsZero() {
			j.err = fmt.Errorf("record: %w", cause)
			continue
		}
		err := l.store.ReadWrite(context.WithoutCancel(j.ctx), func(ctx context.Context, tx StoreTx) error {
			res, err := l.existing(ctx, tx, j)
			if err != nil {
				return err
			}
			res.Duplicate = wasDuplicate
			j.res = res
			return nil
		})
		if err != nil {
			j.err = fmt.Errorf("record: %w (and the check by key failed: %v)", cause, err)
			j.res = nil
		} else {
			j.err = nil
		}
	}
}

// patientState is a patient's chain head and row as the batch moves them.
type patientState struct {
	row        PatientRow
	oldConsent int64
	isNew      bool
	dirty      bool // the row changed (consent version, key)
	seq        uint64
	head       event.Hash
	dk         cipher.AEAD
}

// groupState is what a recording transaction moves: its patients' chain
// heads and rows, and the patients whose erasure is in it.
type groupState struct {
	patients map[event.Hash]*patientState
	erasing  map[event.Hash]bool
	// rows and heads are the group's patients' rows and the chain heads
	// not held in memory, read at the start of the transaction
	// (prefetch).
	rows  map[event.Hash]PatientRow
	heads map[event.Hash]ChainHead
}

// prefetch reads the rows of the group's patients, then the chain heads
// of those that have one and whose head is not in memory: a few
// statements for the group (one round trip each on PostgreSQL) instead of
// up to three per patient.
func (l *Ledger) prefetch(ctx context.Context, tx StoreTx, group []*recordJob, g *groupState) error {
	seen := make(map[event.Hash]bool, len(group))
	var want []event.Hash
	for _, j := range group {
		if !seen[j.pseudonym] {
			seen[j.pseudonym] = true
			want = append(want, j.pseudonym)
		}
	}
	var err error
	if g.rows, err = tx.Patients(ctx, want); err != nil {
		return err
	}
	want = want[:0]
	for p := range g.rows {
		if l.heads == nil || !l.heads.has(p) {
			want = append(want, p)
		}
	}
	g.heads, err = tx.ChainHeads(ctx, want)
	return err
}

// recordGroup is the body of one transaction. It may run more than once:
// every job's outcome is reset first, and g starts empty.
func (l *Ledger) recordGroup(ctx context.Context, tx StoreTx, group []*recordJob, g *groupState) error {
	if err := tx.TakeTurn(ctx); err != nil {
		return err
	}
	if err := l.prefetch(ctx, tx, group, g); err != nil {
		return err
	}
	now := l.cfg.Now().UTC()
	byKey := make(map[Key]*recordJob)
	patients, erasing := g.patients, g.erasing
	var accepted []*recordJob
	for _, j := range group {
		j.res, j.err = nil, nil
		if !j.entry.Key.IsZero() {
			if first, ok := byKey[j.entry.Key]; ok {
				// The same key twice in this batch: the second waits for
				// the first's result, if it is the same patient and kind.
				j.res = nil
				j.err = errSameBatch{first}
				if first.pseudonym != j.pseudonym || first.entry.Kind != j.entry.Kind {
					j.err = ErrKeyReused
				}
				continue
			}
			byKey[j.entry.Key] = j
			res, err := l.existing(ctx, tx, j)
			if err == nil || errors.Is(err, ErrKeyReused) || errors.Is(err, ErrRequestErased) || errors.Is(err, ErrRequestExpired) {
				j.res, j.err = res, err
				continue
			}
			if errors.Is(err, ErrCorrupt) {
				// This job's first event cannot be read (altered): this
				// job fails, not the batch.
				return &jobError{job: j, err: err}
			}
			if !errors.Is(err, ErrNotFound) {
				return err
			}
		}
		ps, err := l.patientState(g, j.pseudonym)
		if errors.Is(err, ErrCorrupt) {
			// This patient's key no longer opens (altered): the jobs of
			// this patient fail, not the others of the batch.
			return &jobError{job: j, err: err}
		}
		if err != nil {
			return err
		}
		if j.entry.CheckConsent && ps.row.ConsentVersion != j.entry.ConsentVersion {
			j.err = ErrConsentChanged
			continue
		}
		if c := j.entry.ConsentChange; c != nil {
			if ps.row.ConsentVersion != c.Expected {
				j.err = ErrConsentChanged
				continue
			}
			ps.row.ConsentVersion = c.Next
			ps.dirty = true
		}
		if j.entry.Apply != nil && erasing[j.pseudonym] {
			// The erasure earlier in this batch deletes the patient's
			// other rows (Config.EraseAlso) and replaces the data key when
			// its record is appended, after every Apply of the batch: what
			// this entry wrote now would be deleted, or sealed under the
			// destroyed key, while its event said it was done. It decides
			// again, after the erasure.
			j.err = ErrConsentChanged
			continue
		}
		if j.entry.Apply != nil {
			if err := j.entry.Apply(ctx, applyTx{StoreTx: tx, dk: &DataKey{aead: ps.dk, rand: l.cfg.Rand}}); err != nil {
				return &jobError{job: j, err: err}
			}
		}
		if j.entry.Erase != nil {
			// The erasure resets the consent: a decision later in this
			// batch, made under the consent before, must decide again.
			ps.row.ConsentVersion++
			ps.dirty = true
			erasing[j.pseudonym] = true
		}
		accepted = append(accepted, j)
	}
	if len(accepted) > 0 {
		first, err := tx.ReserveIndices(ctx, uint64(len(accepted)))
		if err != nil {
			return err
		}
		// The events go to the store together (one round trip on
		// PostgreSQL); those before an erasure go first, since it erases
		// them too.
		rows := make([]EventRow, 0, len(accepted))
		for i, j := range accepted {
			if j.entry.Erase != nil && len(rows) > 0 {
				if err := tx.InsertEvents(ctx, rows); err != nil {
					return err
				}
				rows = rows[:0]
			}
			res, row, err := l.append(ctx, tx, patients[j.pseudonym], j, first+uint64(i), now)
			if err != nil {
				return err
			}
			j.res = res
			rows = append(rows, row)
		}
		if len(rows) > 0 {
			if err := tx.InsertEvents(ctx, rows); err != nil {
				return err
			}
		}
	}
	var added []PatientRow
	for _, ps := range patients {
		switch {
		case ps.isNew:
			added = append(added, ps.row)
		case ps.dirty:
			if err := tx.UpdatePatient(ctx, ps.row, ps.oldConsent); err != nil {
				return err
			}
		}
	}
	if len(added) > 0 {
		if err := tx.InsertPatients(ctx, added); err != nil {
			return err
		}
	}
	// Jobs that repeated a key of this batch get the first one's result.
	for _, j := range group {
		if e, ok := j.err.(errSameBatch); ok {
			j.err = e.first.err
			if e.first.res != nil {
				dup := *e.first.res
				dup.Duplicate = true
				j.res = &dup
			}
		}
	}
	return nil
}

type errSameBatch struct{ first *recordJob }

func (errSameBatch) Error() string { return "same key earlier in the batch" }

// patientState returns the state of a patient's chain for this batch. A
// data key that does not open fails even an erasure: a wrong KEK looks
// the same as an altered key, and erasing then would wrap the patient's
// new key under the wrong KEK.
func (l *Ledger) patientState(g *groupState, pseudonym event.Hash) (*patientState, error) {
	patients := g.patients
	if ps, ok := patients[pseudonym]; ok {
		return ps, nil
	}
	var err error
	row, ok := g.rows[pseudonym]
	if !ok {
		err = ErrNotFound
	}
	ps := &patientState{row: row, oldConsent: row.ConsentVersion}
	// The row is read from the store every time (its consent version and
	// wrapped key); the chain head, and the data key while the wrapped key
	// is the same, come from the cache where this process is the only
	// writer, or else from the store (prefetch).
	var cached bool
	var dk cipher.AEAD
	if l.heads != nil && err == nil {
		ps.seq, ps.head, dk, cached = l.heads.get(pseudonym, row.WrappedKey)
	}
	switch {
	case errors.Is(err, ErrNotFound):
		dk, wrapped, err := l.keys.newDataKey(pseudonym)
		if err != nil {
			return nil, err
		}
		ps.row = PatientRow{Pseudonym: pseudonym, WrappedKey: wrapped}
		ps.isNew, ps.dk = true, dk
	case err != nil:
		return nil, err
	case row.WrappedKey == nil:
		// Erased: events recorded from now on get a new data key.
		dk, wrapped, err := l.keys.newDataKey(pseudonym)
		if err != nil {
			return nil, err
		}
		ps.row.WrappedKey, ps.dk, ps.dirty = wrapped, dk, true
	default:
		if cached && dk != nil {
			ps.dk = dk
		} else if ps.dk, err = l.keys.dataKey(pseudonym, row.WrappedKey); err != nil {
			return nil, err
		}
	}
	if !ps.isNew && !cached {
		h := g.heads[pseudonym]
		ps.seq, ps.head = h.Seq, h.Head
	}
	patients[pseudonym] = ps
	return ps, nil
}

// append builds the event at index on the patient's chain and returns
// its row, for the caller to store.
func (l *Ledger) append(ctx context.Context, tx StoreTx, ps *patientState, j *recordJob, index uint64, now time.Time) (*Recorded, EventRow, error) {
	id, err := event.NewID(l.cfg.Rand)
	if err != nil {
		return nil, EventRow{}, err
	}
	payload := j.entry.Payload
	if j.entry.Erase != nil {
		if payload, err = l.eraseBefore(ctx, tx, ps, j); err != nil {
			return nil, EventRow{}, err
		}
	}
	b := event.Body{
		V:       event.Version,
		ID:      id,
		Time:    now,
		Kind:    j.entry.Kind,
		Patient: j.pseudonym,
		Seq:     ps.seq + 1,
		Prev:    ps.head,
		Service: j.entry.Service,
		Payload: payload,
	}
	body, err := b.Marshal()
	if err != nil {
		return nil, EventRow{}, &jobError{job: j, err: fmt.Errorf("%w: %w", ErrInvalidEntry, err)}
	}
	var salt [32]byte
	if _, err := io.ReadFull(l.cfg.Rand, salt[:]); err != nil {
		return nil, EventRow{}, fmt.Errorf("salt: %w", err)
	}
	c := verify.Commitment(salt, body)
	sealed, err := l.keys.sealBody(ps.dk, salt, body, c)
	if err != nil {
		return nil, EventRow{}, err
	}
	row := EventRow{
		Index:        index,
		Commitment:   c,
		Pseudonym:    j.pseudonym,
		Seq:          b.Seq,
		Kind:         b.Kind,
		TimeNanos:    now.UnixNano(),
		Service:      b.Service,
		Actor:        j.entry.Actor,
		Organization: j.entry.Organization,
		BreakGlass:   j.entry.BreakGlass,
		Sealed:       sealed,
		Key:          l.cfg.Pseudonyms.RequestHash(j.entry.Key),
	}
	ps.seq, ps.head = b.Seq, c
	return &Recorded{Index: index, Commitment: c, Body: body, Salt: salt, Time: now}, row, nil
}

// eraseBefore erases, in tx, every event of j's patient recorded so far
// (this batch's included), with the patient's rows of other tables, gives
// the patient a new data key, and returns j's payload.
func (l *Ledger) eraseBefore(ctx context.Context, tx StoreTx, ps *patientState, j *recordJob) (json.RawMessage, error) {
	n, err := tx.ErasePatient(ctx, j.pseudonym, l.cfg.Now().UnixNano())
	if err != nil {
		return nil, err
	}
	if !ps.isNew {
		ps.oldConsent++ // ErasePatient raised the stored version
	}
	if l.cfg.EraseAlso != nil {
		if err := l.cfg.EraseAlso(j.pseudonym)(ctx, tx.SQL()); err != nil {
			return nil, &jobError{job: j, err: fmt.Errorf("erase the patient's other rows: %w", err)}
		}
	}
	dk, wrapped, err := l.keys.newDataKey(j.pseudonym)
	if err != nil {
		return nil, err
	}
	ps.dk, ps.row.WrappedKey, ps.dirty = dk, wrapped, true
	payload, err := j.entry.Erase(n)
	if err != nil {
		return nil, &jobError{job: j, err: fmt.Errorf("%w: %w", ErrInvalidEntry, err)}
	}
	return payload, nil
}

// existing returns the event recorded with j's key, with its body; or
// ErrKeyReused if that event is of another patient or kind than j,
// ErrRequestErased if it was erased, ErrRequestExpired if it is older than
// the retention period.
func (l *Ledger) existing(ctx context.Context, tx StoreReader, j *recordJob) (*Recorded, error) {
	row, err := tx.EventByKey(ctx, l.cfg.Pseudonyms.RequestHash(j.entry.Key))
	if err != nil {
		return nil, err
	}
	if row.Erased {
		// Whose it was is erased with it: not told apart from a reuse.
		return nil, ErrRequestErased
	}
	if row.Pseudonym != j.pseudonym || row.Kind != j.entry.Kind {
		return nil, ErrKeyReused
	}
	if l.cfg.Now().Sub(time.Unix(0, row.TimeNanos)) > l.cfg.RequestIDRetention {
		return nil, ErrRequestExpired
	}
	salt, body, err := l.openEvent(ctx, tx, row)
	if err != nil {
		return nil, corrupt(row, err)
	}
	return &Recorded{Index: row.Index, Commitment: row.Commitment, Body: body, Salt: salt, Time: time.Unix(0, row.TimeNanos).UTC(), Duplicate: true}, nil
}

// openEvent decrypts an event's salt and body, and checks them against
// its commitment.
func (l *Ledger) openEvent(ctx context.Context, tx StoreReader, row EventRow) ([32]byte, []byte, error) {
	return l.openEventWith(ctx, tx, row, nil)
}

// openEventWith is openEvent with a cache of patients' data keys, for
// reading many events of one patient (nil: no cache).
func (l *Ledger) openEventWith(ctx context.Context, tx StoreReader, row EventRow, keys map[event.Hash]cipher.AEAD) ([32]byte, []byte, error) {
	var salt [32]byte
	if row.Erased || row.Sealed == nil {
		return salt, nil, ErrErased
	}
	dk := keys[row.Pseudonym]
	if dk == nil {
		p, err := tx.Patient(ctx, row.Pseudonym)
		if err != nil {
			return salt, nil, fmt.Errorf("event %d: patient: %w", row.Index, err)
		}
		if dk, err = l.keys.dataKey(row.Pseudonym, p.WrappedKey); err != nil {
			return salt, nil, fmt.Errorf("event %d: %w", row.Index, err)
		}
		if keys != nil {
			keys[row.Pseudonym] = dk
		}
	}
	salt, body, err := openBody(dk, row.Sealed, row.Commitment)
	if err != nil {
		return salt, nil, fmt.Errorf("event %d: %w", row.Index, err)
	}
	if verify.Commitment(salt, body) != row.Commitment {
		return salt, nil, fmt.Errorf("event %d: %w: body does not match its commitment", row.Index, ErrCorrupt)
	}
	return salt, body, nil
}
