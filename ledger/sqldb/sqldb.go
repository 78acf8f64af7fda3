// Package sqldb is Vigie's own database: SQLite in the embedded mode,
// PostgreSQL or CockroachDB otherwise. The ledger's and the consent
// store's tables live in it together, so that a consent change and its
// ledger event commit in one transaction.
//
// Queries are written once, with $1, $2... placeholders, in the SQL that
// SQLite, PostgreSQL and CockroachDB all accept; schemas (Migration) are
// written per dialect. Integers are BIGINT, byte strings BLOB/BYTEA, truth
// values 0/1 integers, times Unix nanoseconds.
//
// Every read-write transaction is safe to retry: ReadWrite may call its
// function more than once. On SQLite there is one writer and no conflict.
// On PostgreSQL, transactions run at SERIALIZABLE and the whole transaction
// is retried on a serialization failure or a deadlock (SQLSTATE 40001,
// 40P01); an error from COMMIT that is not one of those leaves the outcome
// unknown and is returned as ErrCommitUnknown, so that the caller checks
// (by idempotency key) whether its write happened. On CockroachDB,
// cockroach-go's crdbpgx helper runs the transaction with CockroachDB's
// savepoint retry protocol (an error from its RELEASE SAVEPOINT, the
// commit, that is not 40001 is ErrCommitUnknown too); it is not used on
// PostgreSQL, where that protocol can acknowledge a transaction that was
// rolled back. CockroachDB is not installed by the tests (its licence): a
// fake server of crdb_test.go checks this path against the protocol.
package sqldb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/cockroach-go/v2/crdb"
	"github.com/cockroachdb/cockroach-go/v2/crdb/crdbpgxv5"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Dialect is the database engine behind a DB.
type Dialect int

// Dialects.
const (
	SQLiteDialect Dialect = iota + 1
	PostgreSQLDialect
	CockroachDBDialect
)

func (d Dialect) String() string {
	switch d {
	case SQLiteDialect:
		return "SQLite"
	case PostgreSQLDialect:
		return "PostgreSQL"
	case CockroachDBDialect:
		return "CockroachDB"
	}
	return fmt.Sprintf("Dialect(%d)", int(d))
}

var (
	// ErrNoRows is returned by Row.Scan when the query selected nothing.
	// Callers test for it with errors.Is.
	ErrNoRows = errors.New("sqldb: no rows")
	// ErrCommitUnknown is returned by ReadWrite when COMMIT failed in a way
	// that leaves the outcome unknown: the transaction may or may not have
	// committed. Callers test for it with errors.Is and check by an
	// idempotency key before doing the work again.
	ErrCommitUnknown = errors.New("sqldb: commit outcome unknown")
)

// Tx is a transaction. Its methods must not be used after the function it
// was given to returns.
type Tx interface {
	// Exec runs a statement and returns the number of rows it affected.
	Exec(ctx context.Context, query string, args ...any) (int64, error)
	// Query runs a query; the caller closes the rows.
	Query(ctx context.Context, query string, args ...any) (Rows, error)
	// QueryRow runs a query expected to return at most one row.
	QueryRow(ctx context.Context, query string, args ...any) Row
	// Dialect is the engine, for the rare statement that differs.
	Dialect() Dialect
}

// Rows are the rows of a query.
type Rows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
	Close()
}

// Row is the result of QueryRow. Scan returns ErrNoRows if there is none.
type Row interface {
	Scan(dest ...any) error
}

// Options configure a DB. The zero value is valid.
type Options struct {
	// MaxRetries bounds the retries of a transaction that failed with a
	// serialization failure (PostgreSQL, CockroachDB). Default 20.
	MaxRetries int
	// SQLite configures the embedded mode's file.
	SQLite SQLiteOptions
}

// DB is Vigie's database. It is safe for concurrent use.
type DB struct {
	dialect    Dialect
	lite       *SQLite
	pool       *pgxpool.Pool
	maxRetries int
	// retries counts the transactions run again
	// (vigie_db_serialization_retries_total).
	retries atomic.Int64
}

// OpenSQLiteDB opens (or creates) Vigie's database in a SQLite file.
func OpenSQLiteDB(ctx context.Context, path string, opts Options) (*DB, error) {
	lite, err := OpenSQLite(ctx, path, opts.SQLite)
	if err != nil {
		return nil, err
	}
	return &DB{dialect: SQLiteDialect, lite: lite}, nil
}

// OpenPostgres connects to Vigie's database on PostgreSQL or CockroachDB
// (told apart by the server's version string). url is a postgres:// URL.
func OpenPostgres(ctx context.Context, url string, opts Options) (*DB, error) {
	if opts.MaxRetries <= 0 {
		opts.MaxRetries = 20
	}
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		return nil, fmt.Errorf("sqldb: open: %w", err)
	}
	var version string
	if err := pool.QueryRow(ctx, "SELECT version()").Scan(&version); err != nil {
		pool.Close()
		return nil, fmt.Errorf("sqldb: connect: %w", err)
	}
	d := PostgreSQLDialect
	if strings.Contains(version, "CockroachDB") {
		d = CockroachDBDialect
	}
	return &DB{dialect: d, pool: pool, maxRetries: opts.MaxRetries}, nil
}

// Dialect returns the engine.
func (db *DB) Dialect() Dialect { return db.dialect }

// SQLiteFile returns the SQLite file of an embedded database, or nil.
func (db *DB) SQLiteFile() *SQLite { return db.lite }

// Close closes the database.
func (db *DB) Close() error {
	if db.lite != nil {
		return db.lite.Close()
	}
	db.pool.Close()
	return nil
}

// ReadWrite runs f in a read-write transaction and commits it if f returns
// nil. f may be called more than once (after a serialization failure): it
// must not keep state across calls, and must return the error of a failed
// statement rather than ignore it.
func (db *DB) ReadWrite(ctx context.Context, f func(ctx context.Context, tx Tx) error) error {
	switch db.dialect {
	case SQLiteDialect:
		return db.lite.Exclusive(ctx, func(q Querier) error { return f(ctx, liteTx{q}) })
	case CockroachDBDialect:
		err := crdbpgx.ExecuteTx(ctx, db.pool, pgx.TxOptions{IsoLevel: pgx.Serializable}, db.countRuns(ctx, f))
		// RELEASE SAVEPOINT, CockroachDB's commit, failed other than by
		// a serialization failure: the outcome is unknown, as when
		// PostgreSQL's COMMIT fails.
		var ambiguous *crdb.AmbiguousCommitError
		if errors.As(err, &ambiguous) {
			return fmt.Errorf("%w: %v", ErrCommitUnknown, err)
		}
		return err
	}
	return db.retry(ctx, pgx.TxOptions{IsoLevel: pgx.Serializable}, f)
}

// Read runs f in a read-only transaction that sees one consistent state.
// f may be called more than once.
func (db *DB) Read(ctx context.Context, f func(ctx context.Context, tx Tx) error) error {
	switch db.dialect {
	case SQLiteDialect:
		return db.lite.Read(ctx, func(q Querier) error { return f(ctx, liteTx{q}) })
	case CockroachDBDialect:
		return crdbpgx.ExecuteTx(ctx, db.pool, pgx.TxOptions{IsoLevel: pgx.Serializable, AccessMode: pgx.ReadOnly}, db.countRuns(ctx, f))
	}
	return db.retry(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, f)
}

// countRuns adapts f to cockroach-go's helper, which retries by itself:
// every run after the first is a retry.
func (db *DB) countRuns(ctx context.Context, f func(ctx context.Context, tx Tx) error) func(pgx.Tx) error {
	first := true
	return func(tx pgx.Tx) error {
		if !first {
			db.retries.Add(1)
		}
		first = false
		return f(ctx, pgTx{tx: tx, dialect: db.dialect})
	}
}

// retry runs f in whole transactions on PostgreSQL until one commits, the
// error is not a serialization failure, or the retries are spent.
func (db *DB) retry(ctx context.Context, opts pgx.TxOptions, f func(ctx context.Context, tx Tx) error) error {
	for attempt := 0; ; attempt++ {
		err, atCommit := db.once(ctx, opts, f)
		if err == nil {
			return nil
		}
		if !Retryable(err) || attempt >= db.maxRetries {
			if atCommit && !Retryable(err) {
				return fmt.Errorf("%w: %v", ErrCommitUnknown, err)
			}
			return err
		}
		db.retries.Add(1)
		// Back off with jitter: 1 ms, 2 ms, 4 ms... up to 100 ms.
		d := min(time.Millisecond<<min(attempt, 7), 100*time.Millisecond)
		select {
		case <-time.After(d/2 + rand.N(d/2+1)):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (db *DB) once(ctx context.Context, opts pgx.TxOptions, f func(ctx context.Context, tx Tx) error) (err error, atCommit bool) {
	tx, err := db.pool.BeginTx(ctx, opts)
	if err != nil {
		return err, false
	}
	if err := f(ctx, pgTx{tx: tx, dialect: db.dialect}); err != nil {
		tx.Rollback(context.WithoutCancel(ctx))
		return err, false
	}
	if err := tx.Commit(ctx); err != nil {
		return err, true
	}
	return nil, false
}

// Retryable reports whether err is a serialization failure or a deadlock:
// the transaction was rolled back and may run again.
func Retryable(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code == "40001" || pe.Code == "40P01"
	}
	return false
}

// IsUniqueViolation reports whether err is a unique constraint violation,
// on any dialect.
func IsUniqueViolation(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code == "23505"
	}
	return err != nil && strings.Contains(err.Error(), "UNIQUE constraint failed")
}

// liteTx is a transaction on SQLite's write or read connection.
type liteTx struct{ q Querier }

func (t liteTx) Dialect() Dialect { return SQLiteDialect }

func (t liteTx) Exec(ctx context.Context, query string, args ...any) (int64, error) {
	res, err := t.q.ExecContext(ctx, query, args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

func (t liteTx) Query(ctx context.Context, query string, args ...any) (Rows, error) {
	rows, err := t.q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	return liteRows{rows}, nil
}

func (t liteTx) QueryRow(ctx context.Context, query string, args ...any) Row {
	return liteRow{t.q.QueryRowContext(ctx, query, args...)}
}

type liteRows struct{ *sql.Rows }

func (r liteRows) Close() { r.Rows.Close() }

type liteRow struct{ r *sql.Row }

func (r liteRow) Scan(dest ...any) error {
	err := r.r.Scan(dest...)
	if errors.Is(err, sql.ErrNoRows) {
		return ErrNoRows
	}
	return err
}

// pgTx is a transaction on PostgreSQL or CockroachDB.
type pgTx struct {
	tx      pgx.Tx
	dialect Dialect
}

func (t pgTx) Dialect() Dialect { return t.dialect }

func (t pgTx) Exec(ctx context.Context, query string, args ...any) (int64, error) {
	tag, err := t.tx.Exec(ctx, query, args...)
	if err != nil {
		return 0, err
	}
	return tag.RowsAffected(), nil
}

func (t pgTx) Query(ctx context.Context, query string, args ...any) (Rows, error) {
	rows, err := t.tx.Query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	return rows, nil
}

func (t pgTx) QueryRow(ctx context.Context, query string, args ...any) Row {
	return pgRow{t.tx.QueryRow(ctx, query, args...)}
}

type pgRow struct{ r pgx.Row }

func (r pgRow) Scan(dest ...any) error {
	err := r.r.Scan(dest...)
	if errors.Is(err, pgx.ErrNoRows) {
		return ErrNoRows
	}
	return err
}

// Compact rewrites tables so that content deleted or overwritten in them
// leaves the database's own files, as far as the engine allows. On
// SQLite it rewrites the whole file (VACUUM), whose freed content
// secure_delete zeroed already, then truncates the write-ahead log
// (TruncateWAL); tables is ignored. On PostgreSQL it runs VACUUM FULL on
// each table, which writes its live rows into new files and drops the old
// ones (a plain VACUUM leaves dead tuples in place until reused), then
// ANALYZE, and VACUUM FULL on pg_statistic, whose samples of the old
// values are dead tuples once replaced. Before each VACUUM FULL it waits
// until no transaction, of this database or writing in any other of the
// cluster, can make it keep the replaced rows (waitHorizon). The old
// files are emptied when each rewrite commits; the write-ahead log keeps
// older row images until its segments are removed after a checkpoint
// (docs/operations.md). On CockroachDB it does nothing:
// old versions go when the garbage-collection TTL expires. It takes an
// exclusive lock on each table while it runs: call it at start, not under
// load. tables must be plain identifiers.
func (db *DB) Compact(ctx context.Context, tables ...string) error {
	switch db.dialect {
	case SQLiteDialect:
		return db.lite.Vacuum(ctx)
	case CockroachDBDialect:
		return nil
	}
	var stmts []string
	for _, t := range tables {
		if !plainIdentifier(t) {
			return fmt.Errorf("sqldb: compact: %q is not a plain identifier", t)
		}
		stmts = append(stmts, "VACUUM FULL "+t, "ANALYZE "+t)
	}
	// The planner's statistics sample column values (most common values,
	// histograms): ANALYZE replaced them, and the rows they were in are
	// dead tuples of pg_statistic until it is rewritten too. Only the
	// database's owner or a superuser may (others get a warning, not an
	// error: docs/operations.md says to run it then).
	stmts = append(stmts, "VACUUM FULL pg_catalog.pg_statistic")
	for _, q := range stmts {
		if strings.HasPrefix(q, "VACUUM FULL ") {
			if err := db.waitHorizon(ctx, time.Minute); err != nil {
				return err
			}
		}
		if _, err := db.pool.Exec(ctx, q); err != nil {
			return fmt.Errorf("sqldb: compact: %s: %w", q, err)
		}
	}
	return nil
}

// waitHorizon waits, at most limit, until nothing can make VACUUM FULL
// keep a row replaced before it was called: VACUUM FULL copies the rows
// that a snapshot may still see ("recently dead") into the new files, and
// the plain text Compact must remove would survive the rewrite. Two things
// hold that horizon back:
//   - a snapshot or transaction id, older than a transaction id taken
//     when waitHorizon was called, of another session of this database
//     (pg_stat_activity; the test is on the snapshots' xmin, not on when
//     their transactions started: a transaction started later may hold a
//     snapshot taken while an older one still ran);
//   - VACUUM FULL's own snapshot, whose xmin is the oldest transaction
//     still running in any database of the cluster: a write transaction
//     of another application, or of another test on a shared test
//     cluster, begun before the rows were replaced, keeps them (the
//     snapshot test below, on 64-bit ids).
//
// Trillian's transactions (in the same database in the single-server
// mode) and autovacuum's are short; a session left idle in a transaction
// holds the conversion back, and is named by the error.
func (db *DB) waitHorizon(ctx context.Context, limit time.Duration) error {
	var next int64
	if err := db.pool.QueryRow(ctx, "SELECT txid_current()").Scan(&next); err != nil {
		return fmt.Errorf("sqldb: compact: %w", err)
	}
	// pg_stat_activity shows 32-bit transaction ids; age() compares them
	// across wraparound.
	xid := strconv.FormatInt(next%(1<<32), 10)
	deadline := time.Now().Add(limit)
	for {
		var n int
		var pid *int32
		var running bool
		err := db.pool.QueryRow(ctx, `SELECT count(*), min(pid), txid_snapshot_xmin(txid_current_snapshot()) < $2 FROM pg_stat_activity
			WHERE pid <> pg_backend_pid()
			AND (((datname = current_database() OR datname IS NULL) AND backend_xmin IS NOT NULL AND age(backend_xmin) > age($1::text::xid))
			  OR (backend_xid IS NOT NULL AND age(backend_xid) > age($1::text::xid)))`, xid, next).Scan(&n, &pid, &running)
		if err != nil {
			return fmt.Errorf("sqldb: compact: %w", err)
		}
		if n == 0 && !running {
			return nil
		}
		if time.Now().After(deadline) {
			who := "one pg_stat_activity does not show: prepared, or of another role"
			if pid != nil {
				who = fmt.Sprintf("backend pid %d", *pid)
			}
			return fmt.Errorf("sqldb: compact: transactions older than the rewrite are still open after %v (%s; in this database, or writing in any database of the cluster): they would keep old rows in the rewritten tables", limit, who)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func plainIdentifier(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if (r < 'a' || r > 'z') && r != '_' && (r < '0' || r > '9') {
			return false
		}
	}
	return true
}
