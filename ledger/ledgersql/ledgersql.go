// Package ledgersql is the ledger's Store on Vigie's database (package
// sqldb): SQLite in the embedded mode, PostgreSQL or CockroachDB otherwise,
// with the same SQL. It passes ledger/ledgerstoretest on SQLite and
// PostgreSQL.
//
// The writes the ledger's invariants rest on are compare-and-swaps in SQL
// (UPDATE ... WHERE value = expected): the next leaf index, a patient's
// chain head, the sent size and the latest checkpoint. Two writers that
// read the same value cannot both succeed, whatever the isolation level.
package ledgersql

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/vigie-sante/vigie/ledger"
	"github.com/vigie-sante/vigie/ledger/event"
	"github.com/vigie-sante/vigie/ledger/sqldb"
)

// Store is the ledger's Store on a sqldb.DB.
type Store struct{ db *sqldb.DB }

var _ ledger.Store = (*Store)(nil)

// New returns the Store on db, whose schema must include Migrations.
func New(db *sqldb.DB) *Store { return &Store{db: db} }

// ReadWrite implements ledger.Store.
func (s *Store) ReadWrite(ctx context.Context, f func(ctx context.Context, tx ledger.StoreTx) error) error {
	return s.db.ReadWrite(ctx, func(ctx context.Context, tx sqldb.Tx) error {
		return f(ctx, txn{tx})
	})
}

// Read implements ledger.Store.
func (s *Store) Read(ctx context.Context, f func(ctx context.Context, tx ledger.StoreReader) error) error {
	return s.db.Read(ctx, func(ctx context.Context, tx sqldb.Tx) error {
		return f(ctx, txn{tx})
	})
}

// Scrub implements ledger.Store: on SQLite, whose connections zero what
// they free (sqldb.SQLiteOptions.KeepDeleted), it truncates the
// write-ahead log; on PostgreSQL and CockroachDB it does nothing.
func (s *Store) Scrub(ctx context.Context) error {
	if lite := s.db.SQLiteFile(); lite != nil {
		return lite.TruncateWAL(ctx)
	}
	return nil
}

type txn struct{ tx sqldb.Tx }

var _ ledger.StoreTx = txn{}

func (t txn) SQL() sqldb.Tx { return t.tx }

func notFound(err error) error {
	if errors.Is(err, sqldb.ErrNoRows) {
		return ledger.ErrNotFound
	}
	return err
}

func (t txn) State(ctx context.Context) (ledger.State, error) {
	var s ledger.State
	var next, sent, cp int64
	// One statement, one snapshot, whatever the isolation level: the three
	// counters are of one moment (sent <= next, checkpoint <= next).
	err := t.tx.QueryRow(ctx, "SELECT s.next_index, t.size, c.size FROM ledger_state s, ledger_sent t, ledger_checkpoint c WHERE s.id = 1 AND t.id = 1 AND c.id = 1").Scan(&next, &sent, &cp)
	if err != nil {
		return s, fmt.Errorf("read ledger state: %w", err)
	}
	return ledger.State{NextIndex: uint64(next), SentSize: uint64(sent), CheckpointSize: uint64(cp)}, nil
}

func (t txn) Meta(ctx context.Context, name string) ([]byte, error) {
	var v []byte
	if err := t.tx.QueryRow(ctx, "SELECT value FROM ledger_meta WHERE name = $1", name).Scan(&v); err != nil {
		return nil, notFound(err)
	}
	return v, nil
}

func (t txn) SetMeta(ctx context.Context, name string, value []byte) error {
	old, err := t.Meta(ctx, name)
	switch {
	case err == nil && bytes.Equal(old, value):
		return nil
	case err == nil:
		return fmt.Errorf("ledger meta %q is already set to another value", name)
	case !errors.Is(err, ledger.ErrNotFound):
		return err
	}
	_, err = t.tx.Exec(ctx, "INSERT INTO ledger_meta (name, value) VALUES ($1, $2)", name, value)
	return err
}

func (t txn) TakeTurn(ctx context.Context) error {
	if t.tx.Dialect() != sqldb.PostgreSQLDialect {
		// SQLite has one writer at a time. CockroachDB has no LOCK
		// TABLE: its conflicts stay whole-transaction retries.
		return nil
	}
	// LOCK TABLE takes no snapshot: run first, it lets this transaction's
	// snapshot see the recording transaction before it, whose update of
	// the next index would otherwise fail this one's. SHARE ROW EXCLUSIVE
	// conflicts with itself and with writes of ledger_state, not with
	// reads (State).
	if _, err := t.tx.Exec(ctx, "LOCK TABLE ledger_state IN SHARE ROW EXCLUSIVE MODE"); err != nil {
		return fmt.Errorf("take turn: %w", err)
	}
	return nil
}

func (t txn) ReserveIndices(ctx context.Context, n uint64) (uint64, error) {
	// Only the index row: reading the duties' counters here would make
	// every send and checkpoint a read/write conflict with every Record.
	// One statement, read and write at once: indices are taken once, and
	// gap-free, whatever the isolation level (two writers of the row at
	// SERIALIZABLE: one fails; at READ COMMITTED the second's UPDATE
	// reads the first's row).
	var end int64
	if err := t.tx.QueryRow(ctx, "UPDATE ledger_state SET next_index = next_index + $1 WHERE id = 1 RETURNING next_index", int64(n)).Scan(&end); err != nil {
		if errors.Is(err, sqldb.ErrNoRows) {
			return 0, fmt.Errorf("reserve indices: %w", ledger.ErrConflict)
		}
		return 0, fmt.Errorf("reserve indices: %w", err)
	}
	return uint64(end) - n, nil
}

const patientColumns = "pseudonym, consent_version, wrapped_key, erased_nanos"

func scanPatient(r interface{ Scan(...any) error }) (ledger.PatientRow, error) {
	var p ledger.PatientRow
	var pseudo []byte
	if err := r.Scan(&pseudo, &p.ConsentVersion, &p.WrappedKey, &p.ErasedNanos); err != nil {
		return p, err
	}
	if len(pseudo) != 32 {
		return p, errors.New("patient row: malformed pseudonym")
	}
	copy(p.Pseudonym[:], pseudo)
	return p, nil
}

func (t txn) Patient(ctx context.Context, pseudonym event.Hash) (ledger.PatientRow, error) {
	p, err := scanPatient(t.tx.QueryRow(ctx, "SELECT "+patientColumns+" FROM patients WHERE pseudonym = $1", pseudonym[:]))
	return p, notFound(err)
}

func (t txn) PatientsAfter(ctx context.Context, after *event.Hash, limit int) ([]ledger.PatientRow, error) {
	q, args := "SELECT "+patientColumns+" FROM patients ORDER BY pseudonym LIMIT $1", []any{int64(limit)}
	if after != nil {
		q, args = "SELECT "+patientColumns+" FROM patients WHERE pseudonym > $2 ORDER BY pseudonym LIMIT $1", append(args, after[:])
	}
	rows, err := t.tx.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("read patients: %w", err)
	}
	defer rows.Close()
	var out []ledger.PatientRow
	for rows.Next() {
		p, err := scanPatient(rows)
		if err != nil {
			return nil, fmt.Errorf("read patients: %w", err)
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

func (t txn) InsertPatient(ctx context.Context, p ledger.PatientRow) error {
	_, err := t.tx.Exec(ctx, "INSERT INTO patients ("+patientColumns+") VALUES ($1, $2, $3, $4)",
		p.Pseudonym[:], p.ConsentVersion, p.WrappedKey, p.ErasedNanos)
	if sqldb.IsUniqueViolation(err) {
		return fmt.Errorf("insert patient: %w", ledger.ErrConflict)
	}
	return err
}

// InsertPatients implements ledger.StoreTx, as InsertEvents does.
func (t txn) InsertPatients(ctx context.Context, ps []ledger.PatientRow) error {
	if t.tx.Dialect() == sqldb.SQLiteDialect || len(ps) == 1 {
		for _, p := range ps {
			if err := t.InsertPatient(ctx, p); err != nil {
				return err
			}
		}
		return nil
	}
	for chunk := range slices.Chunk(ps, insertChunk) {
		var q strings.Builder
		q.WriteString("INSERT INTO patients (" + patientColumns + ") VALUES ")
		args := make([]any, 0, 4*len(chunk))
		for i, p := range chunk {
			if i > 0 {
				q.WriteString(", ")
			}
			q.WriteString("(" + inList(4*i+1, 4) + ")")
			args = append(args, p.Pseudonym[:], p.ConsentVersion, p.WrappedKey, p.ErasedNanos)
		}
		if _, err := t.tx.Exec(ctx, q.String(), args...); err != nil {
			if sqldb.IsUniqueViolation(err) {
				return fmt.Errorf("insert patients: %w", ledger.ErrConflict)
			}
			return fmt.Errorf("insert patients: %w", err)
		}
	}
	return nil
}

func (t txn) UpdatePatient(ctx context.Context, p ledger.PatientRow, oldConsentVersion int64) error {
	// Compare-and-swap on the consent version: of two changes from the
	// same version, one commits.
	n, err := t.tx.Exec(ctx, "UPDATE patients SET consent_version = $1, wrapped_key = $2 WHERE pseudonym = $3 AND consent_version = $4",
		p.ConsentVersion, p.WrappedKey, p.Pseudonym[:], oldConsentVersion)
	if err != nil {
		return fmt.Errorf("update patient: %w", err)
	}
	if n != 1 {
		return fmt.Errorf("update patient: %w", ledger.ErrConflict)
	}
	return nil
}

func (t txn) ChainHead(ctx context.Context, pseudonym event.Hash) (uint64, event.Hash, error) {
	var seq, erasedSeq int64
	var head, erasedHead []byte
	err := t.tx.QueryRow(ctx, "SELECT seq, commitment FROM events WHERE pseudonym = $1 ORDER BY seq DESC LIMIT 1", pseudonym[:]).Scan(&seq, &head)
	if err != nil && !errors.Is(err, sqldb.ErrNoRows) {
		return 0, event.Hash{}, fmt.Errorf("chain head: %w", err)
	}
	err = t.tx.QueryRow(ctx, "SELECT e.seq, ev.commitment FROM erased_events e JOIN events ev ON ev.leaf_index = e.leaf_index WHERE e.pseudonym = $1 ORDER BY e.seq DESC LIMIT 1", pseudonym[:]).Scan(&erasedSeq, &erasedHead)
	if err != nil && !errors.Is(err, sqldb.ErrNoRows) {
		return 0, event.Hash{}, fmt.Errorf("chain head: %w", err)
	}
	if erasedSeq > seq {
		seq, head = erasedSeq, erasedHead
	}
	if seq == 0 {
		return 0, event.Hash{}, nil
	}
	if len(head) != 32 {
		return 0, event.Hash{}, errors.New("chain head: malformed commitment")
	}
	return uint64(seq), event.Hash(head), nil
}

// readChunk is the most patients of one batched read.
const readChunk = 1000

// inList returns "$from, $from+1, ..." for n parameters.
func inList(from, n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "$%d", from+i)
	}
	return b.String()
}

// Patients implements ledger.StoreReader: on SQLite, in process, one
// lookup per patient (its prepared statement); elsewhere, one statement
// per readChunk patients.
func (t txn) Patients(ctx context.Context, pseudonyms []event.Hash) (map[event.Hash]ledger.PatientRow, error) {
	out := make(map[event.Hash]ledger.PatientRow, len(pseudonyms))
	if t.tx.Dialect() == sqldb.SQLiteDialect {
		for _, p := range pseudonyms {
			row, err := t.Patient(ctx, p)
			switch {
			case err == nil:
				out[p] = row
			case !errors.Is(err, ledger.ErrNotFound):
				return nil, err
			}
		}
		return out, nil
	}
	for chunk := range slices.Chunk(pseudonyms, readChunk) {
		args := make([]any, len(chunk))
		for i, p := range chunk {
			args[i] = p[:]
		}
		rows, err := t.tx.Query(ctx, "SELECT "+patientColumns+" FROM patients WHERE pseudonym IN ("+inList(1, len(chunk))+")", args...)
		if err != nil {
			return nil, fmt.Errorf("patients: %w", err)
		}
		for rows.Next() {
			row, err := scanPatient(rows)
			if err != nil {
				rows.Close()
				return nil, fmt.Errorf("patients: %w", err)
			}
			out[row.Pseudonym] = row
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("patients: %w", err)
		}
	}
	return out, nil
}

// ChainHeads implements ledger.StoreReader: on SQLite one ChainHead per
// patient; elsewhere two statements per readChunk patients (the latest
// event kept, and the latest erased), the later of the two winning as in
// ChainHead.
func (t txn) ChainHeads(ctx context.Context, pseudonyms []event.Hash) (map[event.Hash]ledger.ChainHead, error) {
	out := make(map[event.Hash]ledger.ChainHead, len(pseudonyms))
	if t.tx.Dialect() == sqldb.SQLiteDialect {
		for _, p := range pseudonyms {
			seq, head, err := t.ChainHead(ctx, p)
			if err != nil {
				return nil, err
			}
			if seq > 0 {
				out[p] = ledger.ChainHead{Seq: seq, Head: head}
			}
		}
		return out, nil
	}
	for chunk := range slices.Chunk(pseudonyms, readChunk) {
		args := make([]any, len(chunk))
		for i, p := range chunk {
			args[i] = p[:]
		}
		in := inList(1, len(chunk))
		for _, q := range []string{
			"SELECT e.pseudonym, e.seq, e.commitment FROM events e JOIN (SELECT pseudonym, MAX(seq) AS seq FROM events WHERE pseudonym IN (" + in + ") GROUP BY pseudonym) m ON e.pseudonym = m.pseudonym AND e.seq = m.seq",
			"SELECT x.pseudonym, x.seq, ev.commitment FROM erased_events x JOIN events ev ON ev.leaf_index = x.leaf_index JOIN (SELECT pseudonym, MAX(seq) AS seq FROM erased_events WHERE pseudonym IN (" + in + ") GROUP BY pseudonym) m ON x.pseudonym = m.pseudonym AND x.seq = m.seq",
		} {
			rows, err := t.tx.Query(ctx, q, args...)
			if err != nil {
				return nil, fmt.Errorf("chain heads: %w", err)
			}
			for rows.Next() {
				var pseudo, head []byte
				var seq int64
				if err := rows.Scan(&pseudo, &seq, &head); err != nil {
					rows.Close()
					return nil, fmt.Errorf("chain heads: %w", err)
				}
				if len(pseudo) != 32 || len(head) != 32 {
					rows.Close()
					return nil, errors.New("chain heads: malformed pseudonym or commitment")
				}
				p := event.Hash(pseudo)
				if uint64(seq) > out[p].Seq {
					out[p] = ledger.ChainHead{Seq: uint64(seq), Head: event.Hash(head)}
				}
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return nil, fmt.Errorf("chain heads: %w", err)
			}
		}
	}
	return out, nil
}

const eventColumns = "leaf_index, commitment, pseudonym, seq, kind, time_nanos, service, actor, organization, break_glass, sealed, request_key"

func scanEvent(r interface{ Scan(...any) error }) (ledger.EventRow, error) {
	var e ledger.EventRow
	var index int64
	var commitment, pseudo, sealed, requestKey []byte
	var seq, timeNanos, breakGlass sql.NullInt64
	var kind, service, actor, org sql.NullString
	if err := r.Scan(&index, &commitment, &pseudo, &seq, &kind, &timeNanos, &service, &actor, &org, &breakGlass, &sealed, &requestKey); err != nil {
		return e, err
	}
	if len(commitment) != 32 {
		return e, errors.New("event row: malformed commitment")
	}
	if requestKey != nil && len(requestKey) != len(e.Key) {
		return e, errors.New("event row: malformed request key")
	}
	e.Index = uint64(index)
	copy(e.Commitment[:], commitment)
	copy(e.Key[:], requestKey)
	if pseudo == nil {
		e.Erased = true
		return e, nil
	}
	if len(pseudo) != 32 {
		return e, errors.New("event row: malformed pseudonym")
	}
	copy(e.Pseudonym[:], pseudo)
	e.Seq = uint64(seq.Int64)
	e.Kind = event.Kind(kind.String)
	e.TimeNanos = timeNanos.Int64
	e.Service = service.String
	e.Actor = actor.String
	e.Organization = org.String
	e.BreakGlass = breakGlass.Int64 != 0
	e.Sealed = sealed
	return e, nil
}

func (t txn) event(ctx context.Context, where string, args ...any) (ledger.EventRow, error) {
	e, err := scanEvent(t.tx.QueryRow(ctx, "SELECT "+eventColumns+" FROM events WHERE "+where, args...))
	return e, notFound(err)
}

func (t txn) EventByKey(ctx context.Context, key ledger.RequestHash) (ledger.EventRow, error) {
	if key.IsZero() {
		return ledger.EventRow{}, ledger.ErrNotFound
	}
	return t.event(ctx, "request_key = $1", key[:])
}

func (t txn) EventByIndex(ctx context.Context, index uint64) (ledger.EventRow, error) {
	return t.event(ctx, "leaf_index = $1", int64(index))
}

func (t txn) events(ctx context.Context, query string, args ...any) ([]ledger.EventRow, error) {
	rows, err := t.tx.Query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []ledger.EventRow
	for rows.Next() {
		e, err := scanEvent(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

func (t txn) PatientEvents(ctx context.Context, pseudonym event.Hash, fromSeq uint64, limit int) ([]ledger.EventRow, error) {
	live, err := t.events(ctx, "SELECT "+eventColumns+" FROM events WHERE pseudonym = $1 AND seq >= $2 ORDER BY seq LIMIT $3",
		pseudonym[:], int64(fromSeq), int64(limit))
	if err != nil {
		return nil, fmt.Errorf("read patient events: %w", err)
	}
	// Erased events keep their place in the chain as placeholders.
	rows, err := t.tx.Query(ctx, "SELECT e.seq, e.leaf_index, ev.commitment FROM erased_events e JOIN events ev ON ev.leaf_index = e.leaf_index WHERE e.pseudonym = $1 AND e.seq >= $2 ORDER BY e.seq LIMIT $3",
		pseudonym[:], int64(fromSeq), int64(limit))
	if err != nil {
		return nil, fmt.Errorf("read erased events: %w", err)
	}
	defer rows.Close()
	var erased []ledger.EventRow
	for rows.Next() {
		var seq, index int64
		var c []byte
		if err := rows.Scan(&seq, &index, &c); err != nil {
			return nil, err
		}
		e := ledger.EventRow{Index: uint64(index), Erased: true, Seq: uint64(seq), Pseudonym: pseudonym}
		copy(e.Commitment[:], c)
		erased = append(erased, e)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(erased) == 0 {
		return live, nil
	}
	// Merge by sequence number.
	out := make([]ledger.EventRow, 0, len(live)+len(erased))
	i, j := 0, 0
	for len(out) < limit && (i < len(live) || j < len(erased)) {
		if j >= len(erased) || (i < len(live) && live[i].Seq < erased[j].Seq) {
			out = append(out, live[i])
			i++
		} else {
			out = append(out, erased[j])
			j++
		}
	}
	return out, nil
}

func (t txn) Commitments(ctx context.Context, start, end uint64) ([]event.Hash, error) {
	if end <= start {
		return nil, nil
	}
	rows, err := t.tx.Query(ctx, "SELECT leaf_index, commitment FROM events WHERE leaf_index >= $1 AND leaf_index < $2 ORDER BY leaf_index", int64(start), int64(end))
	if err != nil {
		return nil, fmt.Errorf("read commitments: %w", err)
	}
	defer rows.Close()
	out := make([]event.Hash, 0, end-start)
	for rows.Next() {
		var index int64
		var c []byte
		if err := rows.Scan(&index, &c); err != nil {
			return nil, err
		}
		if uint64(index) != start+uint64(len(out)) || len(c) != 32 {
			return nil, fmt.Errorf("read commitments: event %d: %w", start+uint64(len(out)), ledger.ErrMissing)
		}
		out = append(out, event.Hash(c))
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if uint64(len(out)) != end-start {
		return nil, fmt.Errorf("read commitments: event %d: %w", start+uint64(len(out)), ledger.ErrMissing)
	}
	return out, nil
}

// eventArgs are the values of eventColumns for e, in order.
func eventArgs(e ledger.EventRow) []any {
	var requestKey any
	if !e.Key.IsZero() {
		requestKey = e.Key[:]
	}
	bg := int64(0)
	if e.BreakGlass {
		bg = 1
	}
	return []any{int64(e.Index), e.Commitment[:], e.Pseudonym[:], int64(e.Seq), string(e.Kind), e.TimeNanos,
		e.Service, nullString(e.Actor), nullString(e.Organization), bg, e.Sealed, requestKey}
}

const insertEvent = "INSERT INTO events (" + eventColumns + ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"

func (t txn) InsertEvent(ctx context.Context, e ledger.EventRow) error {
	if _, err := t.tx.Exec(ctx, insertEvent, eventArgs(e)...); err != nil {
		if sqldb.IsUniqueViolation(err) {
			return fmt.Errorf("insert event %d: %w", e.Index, ledger.ErrConflict)
		}
		return fmt.Errorf("insert event %d: %w", e.Index, err)
	}
	return nil
}

// insertChunk is the most events of one INSERT statement (12 parameters
// each, PostgreSQL's limit being 65,535): a group commit's, usually.
const insertChunk = 1024

// InsertEvents implements ledger.StoreTx. On PostgreSQL and CockroachDB,
// whose every statement is a round trip to the server, the events go in
// multi-row INSERT statements of up to insertChunk rows; SQLite, in
// process, has no round trip to save and runs the one prepared statement
// per event.
func (t txn) InsertEvents(ctx context.Context, events []ledger.EventRow) error {
	if t.tx.Dialect() == sqldb.SQLiteDialect || len(events) == 1 {
		for _, e := range events {
			if err := t.InsertEvent(ctx, e); err != nil {
				return err
			}
		}
		return nil
	}
	for len(events) > 0 {
		chunk := events[:min(len(events), insertChunk)]
		events = events[len(chunk):]
		var q strings.Builder
		q.WriteString("INSERT INTO events (" + eventColumns + ") VALUES ")
		args := make([]any, 0, 12*len(chunk))
		for i, e := range chunk {
			if i > 0 {
				q.WriteString(", ")
			}
			q.WriteByte('(')
			for c := range 12 {
				if c > 0 {
					q.WriteString(", ")
				}
				fmt.Fprintf(&q, "$%d", 12*i+c+1)
			}
			q.WriteByte(')')
			args = append(args, eventArgs(e)...)
		}
		if _, err := t.tx.Exec(ctx, q.String(), args...); err != nil {
			if sqldb.IsUniqueViolation(err) {
				return fmt.Errorf("insert events %d to %d: %w", chunk[0].Index, chunk[len(chunk)-1].Index, ledger.ErrConflict)
			}
			return fmt.Errorf("insert events %d to %d: %w", chunk[0].Index, chunk[len(chunk)-1].Index, err)
		}
	}
	return nil
}

func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func (t txn) MarkSent(ctx context.Context, from, to uint64) error {
	// Compare-and-swap on the sent size: senders on several nodes may send
	// the same leaves (idempotent by index), but the size moves once.
	n, err := t.tx.Exec(ctx, "UPDATE ledger_sent SET size = $1 WHERE id = 1 AND size = $2", int64(to), int64(from))
	if err != nil {
		return fmt.Errorf("mark sent: %w", err)
	}
	if n != 1 {
		return fmt.Errorf("mark sent: %w", ledger.ErrConflict)
	}
	return nil
}

const checkpointColumns = "size, root, note, range_hashes, signed_nanos"

func scanCheckpoint(r interface{ Scan(...any) error }) (ledger.CheckpointRow, error) {
	var c ledger.CheckpointRow
	var size int64
	var root, rng []byte
	if err := r.Scan(&size, &root, &c.Note, &rng, &c.SignedNanos); err != nil {
		return c, err
	}
	if len(root) != 32 || len(rng)%32 != 0 {
		return c, errors.New("checkpoint row: malformed hashes")
	}
	c.Size = uint64(size)
	copy(c.Root[:], root)
	for i := 0; i < len(rng); i += 32 {
		c.Range = append(c.Range, rng[i:i+32])
	}
	return c, nil
}

func (t txn) LatestCheckpoint(ctx context.Context) (ledger.CheckpointRow, error) {
	c, err := scanCheckpoint(t.tx.QueryRow(ctx, "SELECT "+checkpointColumns+" FROM checkpoints WHERE size = (SELECT size FROM ledger_checkpoint WHERE id = 1)"))
	return c, notFound(err)
}

func (t txn) Checkpoint(ctx context.Context, size uint64) (ledger.CheckpointRow, error) {
	c, err := scanCheckpoint(t.tx.QueryRow(ctx, "SELECT "+checkpointColumns+" FROM checkpoints WHERE size = $1", int64(size)))
	return c, notFound(err)
}

func (t txn) Checkpoints(ctx context.Context, after uint64, limit int) ([]ledger.CheckpointRow, error) {
	rows, err := t.tx.Query(ctx, "SELECT "+checkpointColumns+" FROM checkpoints WHERE size > $1 ORDER BY size LIMIT $2", int64(after), int64(limit))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []ledger.CheckpointRow
	for rows.Next() {
		c, err := scanCheckpoint(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

func (t txn) AddCheckpoint(ctx context.Context, cp ledger.CheckpointRow, prevSize uint64) error {
	// Compare-and-swap on the latest size: the latest checkpoint only moves
	// forward from the one its signer checked consistency against. The
	// first checkpoint may be of size 0 (an empty log); a second one of
	// size 0 fails on the primary key below.
	n, err := t.tx.Exec(ctx, "UPDATE ledger_checkpoint SET size = $1 WHERE id = 1 AND size = $2 AND ($1 > $2 OR $1 = 0)", int64(cp.Size), int64(prevSize))
	if err != nil {
		return fmt.Errorf("add checkpoint: %w", err)
	}
	if n != 1 {
		return fmt.Errorf("add checkpoint: %w", ledger.ErrConflict)
	}
	if _, err := t.tx.Exec(ctx, "INSERT INTO checkpoints ("+checkpointColumns+") VALUES ($1, $2, $3, $4, $5)",
		int64(cp.Size), cp.Root[:], cp.Note, bytes.Join(cp.Range, nil), cp.SignedNanos); err != nil {
		if sqldb.IsUniqueViolation(err) {
			return fmt.Errorf("add checkpoint: %w", ledger.ErrConflict)
		}
		return fmt.Errorf("add checkpoint: %w", err)
	}
	return nil
}

func (t txn) AddSecurityEvent(ctx context.Context, s ledger.SecurityEvent) error {
	_, err := t.tx.Exec(ctx, "INSERT INTO security_events (id, kind, detail, evidence, nanos) SELECT COALESCE(MAX(id), 0) + 1, $1, $2, $3, $4 FROM security_events",
		s.Kind, s.Detail, s.Evidence, s.Nanos)
	return err
}

func (t txn) ErasePatient(ctx context.Context, pseudonym event.Hash, at int64) (int, error) {
	// Keep each erased event's place in the patient's chain, then clear
	// everything that could identify the patient or the event. The
	// request key stays: a keyed hash, linked to no patient any more, by
	// which a retry after the erasure is recognised (ErrRequestErased).
	if _, err := t.tx.Exec(ctx, "INSERT INTO erased_events (pseudonym, seq, leaf_index) SELECT pseudonym, seq, leaf_index FROM events WHERE pseudonym = $1", pseudonym[:]); err != nil {
		return 0, fmt.Errorf("erase: %w", err)
	}
	n, err := t.tx.Exec(ctx, "UPDATE events SET pseudonym = NULL, seq = NULL, kind = NULL, time_nanos = NULL, service = NULL, actor = NULL, organization = NULL, break_glass = NULL, sealed = NULL WHERE pseudonym = $1", pseudonym[:])
	if err != nil {
		return 0, fmt.Errorf("erase: %w", err)
	}
	// The patient's consent goes with the rest (the caller's EraseAlso
	// deletes it): that is a change of consent, hence a new version,
	// whose consent is the default one.
	if _, err := t.tx.Exec(ctx, "UPDATE patients SET wrapped_key = NULL, erased_nanos = $1, consent_version = consent_version + 1 WHERE pseudonym = $2", at, pseudonym[:]); err != nil {
		return 0, fmt.Errorf("erase: %w", err)
	}
	return int(n), nil
}

func (t txn) SearchEvents(ctx context.Context, f ledger.SearchFilter, after int64, limit int) ([]ledger.EventRow, error) {
	var where []string
	var args []any
	add := func(cond string, v any) {
		args = append(args, v)
		where = append(where, strings.ReplaceAll(cond, "?", fmt.Sprintf("$%d", len(args))))
	}
	add("leaf_index > ?", after)
	if f.ErasedOnly {
		where = append(where, "pseudonym IS NULL")
	} else {
		where = append(where, "pseudonym IS NOT NULL")
	}
	if f.Pseudonym != nil {
		add("pseudonym = ?", f.Pseudonym[:])
	}
	if f.Actor != "" {
		add("actor = ?", f.Actor)
	}
	if f.Organization != "" {
		add("organization = ?", f.Organization)
	}
	if f.FromNanos != 0 {
		add("time_nanos >= ?", f.FromNanos)
	}
	if f.ToNanos != 0 {
		add("time_nanos < ?", f.ToNanos)
	}
	if f.Kind != "" {
		add("kind = ?", string(f.Kind))
	}
	if f.BreakGlassOnly {
		where = append(where, "break_glass = 1")
	}
	args = append(args, int64(limit))
	return t.events(ctx, fmt.Sprintf("SELECT %s FROM events WHERE %s ORDER BY leaf_index LIMIT $%d", eventColumns, strings.Join(where, " AND "), len(args)), args...)
}

func (t txn) SecurityEvents(ctx context.Context, limit int) ([]ledger.SecurityEvent, error) {
	rows, err := t.tx.Query(ctx, "SELECT kind, detail, evidence, nanos FROM security_events ORDER BY id LIMIT $1", int64(limit))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []ledger.SecurityEvent
	for rows.Next() {
		var s ledger.SecurityEvent
		if err := rows.Scan(&s.Kind, &s.Detail, &s.Evidence, &s.Nanos); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

func (t txn) ScheduleErasure(ctx context.Context, e ledger.Erasure) (time.Time, error) {
	var existing int64
	err := t.tx.QueryRow(ctx, "SELECT due_nanos FROM erasures WHERE pseudonym = $1", e.Pseudonym[:]).Scan(&existing)
	switch {
	case err == nil && existing <= e.Due.UnixNano():
		return time.Unix(0, existing).UTC(), nil
	case err == nil:
		_, err = t.tx.Exec(ctx, "UPDATE erasures SET due_nanos = $1 WHERE pseudonym = $2", e.Due.UnixNano(), e.Pseudonym[:])
		return e.Due, err
	case !errors.Is(err, sqldb.ErrNoRows):
		return time.Time{}, err
	}
	_, err = t.tx.Exec(ctx, "INSERT INTO erasures (pseudonym, due_nanos, requested_by) VALUES ($1, $2, $3)", e.Pseudonym[:], e.Due.UnixNano(), e.RequestedBy)
	return e.Due, err
}

func (t txn) DeleteErasure(ctx context.Context, pseudonym event.Hash) error {
	n, err := t.tx.Exec(ctx, "DELETE FROM erasures WHERE pseudonym = $1", pseudonym[:])
	if err == nil && n == 0 {
		return ledger.ErrNotFound
	}
	return err
}

func (t txn) DueErasures(ctx context.Context, now time.Time, limit int) ([]ledger.Erasure, error) {
	rows, err := t.tx.Query(ctx, "SELECT pseudonym, due_nanos, requested_by FROM erasures WHERE due_nanos <= $1 ORDER BY due_nanos LIMIT $2", now.UnixNano(), int64(limit))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []ledger.Erasure
	for rows.Next() {
		var p []byte
		var e ledger.Erasure
		var nanos int64
		if err := rows.Scan(&p, &nanos, &e.RequestedBy); err != nil {
			return nil, err
		}
		if len(p) != len(e.Pseudonym) {
			return nil, errors.New("erasures: malformed pseudonym")
		}
		copy(e.Pseudonym[:], p)
		e.Due = time.Unix(0, nanos).UTC()
		out = append(out, e)
	}
	return out, rows.Err()
}

func (t txn) RecentEventByCommitment(ctx context.Context, c event.Hash, from uint64) (ledger.EventRow, error) {
	// The events from a checkpoint's size on are few (those recorded in the
	// last second or so): a range of the primary key, filtered.
	return t.event(ctx, "leaf_index >= $1 AND commitment = $2", int64(from), c[:])
}
