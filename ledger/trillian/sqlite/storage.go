// Package sqlite stores Trillian logs in one SQLite file, so that Vigie's
// embedded mode runs Trillian's own log server and sequencer with nothing to
// install.
//
// It implements [storage.LogStorage] and [storage.AdminStorage] of
// github.com/google/trillian for LOG and PREORDERED_LOG trees, and passes
// Trillian's storage conformance suites (see the tests).
//
// # Durability
//
// The database runs in WAL mode with synchronous=FULL: every commit appends
// to the write-ahead log and fsyncs it before the commit returns, so a leaf
// acknowledged by QueueLeaves or AddSequencedLeaves survives a crash of the
// process, of the operating system or a power loss (on hardware that honours
// fsync). [Open] sets these pragmas and reads them back, and refuses to run
// if SQLite did not take them.
//
// # Concurrency
//
// One connection writes, and only this package's writer uses it: writers
// never compete for SQLite's lock, so no caller sees SQLITE_BUSY from
// another writer. Small writes (QueueLeaves, AddSequencedLeaves) submitted
// concurrently share one transaction and one fsync (group commit), each in
// its own savepoint so that one failing call does not fail the others.
// Trillian's read-write transactions (the sequencer's) hold the write
// connection for their duration. Reads (snapshots) use a separate pool of
// read-only connections, which WAL lets run alongside the writer. A lock
// file held with flock(2) keeps a second process from opening the same
// database.
//
// # File format
//
// The file carries SQLite's application_id 0x56474c31 ("VGL1") and a schema
// version in user_version. Open refuses a file that is not SQLite, a SQLite
// file of another application, and a schema version it does not know: it
// never migrates or overwrites a file silently.
package sqlite

import (
	"context"
	"database/sql"
	_ "embed"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/google/trillian/storage"
	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver
)

const (
	// ApplicationID is SQLite's application_id of a Vigie Trillian database.
	ApplicationID = 0x56474c31 // "VGL1"
	// SchemaVersion is the user_version this package reads and writes.
	SchemaVersion = 1
)

var (
	// ErrForeignFile is returned by Open for a file that is not a SQLite
	// database, or a SQLite database of another application. Callers test
	// for it with errors.Is.
	ErrForeignFile = errors.New("not a Vigie Trillian database")
	// ErrSchemaVersion is returned by Open for a database of another schema
	// version. Callers test for it with errors.Is.
	ErrSchemaVersion = errors.New("unsupported schema version")
	// ErrLocked is returned by Open when another process has the database
	// open. Callers test for it with errors.Is.
	ErrLocked = errors.New("database is in use by another process")
	// ErrNotDurable is returned by Open when SQLite did not accept the WAL
	// journal or synchronous=FULL. Callers test for it with errors.Is.
	ErrNotDurable = errors.New("database cannot be made durable")
)

//go:embed schema.sql
var schemaSQL string

// Options configure a Storage. The zero value is valid.
type Options struct {
	// Readers is the number of read-only connections. Default 4.
	Readers int
	// CacheKiB is the page cache of the write connection, in KiB. Default
	// 65536 (64 MiB). Each read connection gets a quarter of it.
	CacheKiB int
	// SkipIntegrityCheck skips PRAGMA quick_check at Open, which reads the
	// whole file. Default false: a corrupt file is refused at start rather
	// than found later.
	SkipIntegrityCheck bool
	// Now is the clock for tree creation and update times. Default time.Now.
	Now func() time.Time
}

// Storage is a Trillian storage provider on one SQLite file. It implements
// storage.Provider; it is safe for concurrent use.
type Storage struct {
	path  string
	lock  *os.File
	wdb   *sql.DB // one connection, owned by w
	rdb   *sql.DB // read-only connections, owned by r
	w     *writer
	r     *readers
	now   func() time.Time
	log   *logStorage
	admin *adminStorage
}

var _ storage.Provider = (*Storage)(nil)

// Open opens the database at path, creating it (and its directory) if it
// does not exist. It fails if the directory is not writable, if another
// process holds the database, if the file is not a Vigie Trillian database
// of this schema version, or if durability settings cannot be applied.
func Open(ctx context.Context, path string, opts Options) (_ *Storage, err error) {
	if strings.ContainsAny(path, "?#") {
		return nil, fmt.Errorf("database path %q: must not contain '?' or '#'", path)
	}
	if opts.Readers <= 0 {
		opts.Readers = 4
	}
	if opts.CacheKiB <= 0 {
		opts.CacheKiB = 64 << 10
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create data directory: %w", err)
	}
	if err := probeWritable(dir); err != nil {
		return nil, fmt.Errorf("data directory %s is not writable: %w", dir, err)
	}
	lock, err := lockFile(path + ".lock")
	if err != nil {
		return nil, err
	}
	// Create the file owner-only before SQLite does (SQLite gives its
	// journal files the mode of the database file).
	if f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600); err != nil {
		lock.Close()
		return nil, fmt.Errorf("create %s: %w", path, err)
	} else {
		f.Close()
	}
	s := &Storage{path: path, lock: lock, now: opts.Now}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()

	s.wdb, err = sql.Open("sqlite", path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	s.wdb.SetMaxOpenConns(1)
	s.wdb.SetMaxIdleConns(1)
	s.wdb.SetConnMaxLifetime(0)
	s.wdb.SetConnMaxIdleTime(0)
	conn, err := s.wdb.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	s.w = newWriter(newConn(conn))
	if err := s.prepare(ctx, conn, opts); err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}

	s.rdb, err = sql.Open("sqlite", fmt.Sprintf("%s?_pragma=busy_timeout(10000)&_pragma=query_only(1)&_pragma=cache_size(-%d)", path, opts.CacheKiB/4))
	if err != nil {
		return nil, fmt.Errorf("open %s for reading: %w", path, err)
	}
	s.rdb.SetMaxOpenConns(opts.Readers)
	s.rdb.SetMaxIdleConns(opts.Readers)
	s.rdb.SetConnMaxLifetime(0)
	s.rdb.SetConnMaxIdleTime(0)
	if s.r, err = newReaders(ctx, s.rdb, opts.Readers); err != nil {
		return nil, fmt.Errorf("open %s for reading: %w", path, err)
	}
	s.log = &logStorage{s: s}
	s.admin = &adminStorage{s: s}
	return s, nil
}

// prepare checks what the file is, creates the schema in an empty file, and
// applies and checks the durability settings. It reads before it writes: a
// foreign file is refused before anything (even the journal mode) changes.
func (s *Storage) prepare(ctx context.Context, conn *sql.Conn, opts Options) error {
	var appID, version, objects int64
	if err := conn.QueryRowContext(ctx, "PRAGMA application_id").Scan(&appID); err != nil {
		return classifyOpenError(err)
	}
	if err := conn.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return classifyOpenError(err)
	}
	if err := conn.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_schema").Scan(&objects); err != nil {
		return classifyOpenError(err)
	}
	fresh := false
	switch {
	case appID == ApplicationID && version == SchemaVersion:
	case appID == ApplicationID:
		return fmt.Errorf("%w: the file has schema version %d, this build reads version %d; refusing to migrate", ErrSchemaVersion, version, SchemaVersion)
	case appID == 0 && version == 0 && objects == 0:
		fresh = true
	default:
		return fmt.Errorf("%w: application_id %#x, user_version %d, %d schema objects", ErrForeignFile, appID, version, objects)
	}
	if !fresh && !opts.SkipIntegrityCheck {
		var res string
		if err := conn.QueryRowContext(ctx, "PRAGMA quick_check(1)").Scan(&res); err != nil {
			return classifyOpenError(err)
		}
		if res != "ok" {
			return fmt.Errorf("integrity check failed: %s", res)
		}
	}

	var mode string
	if err := conn.QueryRowContext(ctx, "PRAGMA journal_mode=WAL").Scan(&mode); err != nil {
		return fmt.Errorf("set journal_mode: %w", err)
	}
	if _, err := conn.ExecContext(ctx, "PRAGMA synchronous=FULL"); err != nil {
		return fmt.Errorf("set synchronous: %w", err)
	}
	if _, err := conn.ExecContext(ctx, fmt.Sprintf("PRAGMA cache_size=-%d", opts.CacheKiB)); err != nil {
		return fmt.Errorf("set cache_size: %w", err)
	}
	if err := checkDurable(ctx, conn); err != nil {
		return err
	}
	if fresh {
		// One transaction: the file has all of the schema or none of it.
		script := "BEGIN IMMEDIATE;\n" + schemaSQL +
			fmt.Sprintf("\nPRAGMA application_id=%d;\nPRAGMA user_version=%d;\nCOMMIT;", ApplicationID, SchemaVersion)
		if _, err := conn.ExecContext(ctx, script); err != nil {
			conn.ExecContext(context.Background(), "ROLLBACK")
			return fmt.Errorf("create schema: %w", err)
		}
	}
	return nil
}

// checkDurable reads back the settings the durability argument in the
// package documentation rests on.
func checkDurable(ctx context.Context, conn *sql.Conn) error {
	var mode string
	var sync int
	if err := conn.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return fmt.Errorf("read journal_mode: %w", err)
	}
	if err := conn.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&sync); err != nil {
		return fmt.Errorf("read synchronous: %w", err)
	}
	if !strings.EqualFold(mode, "wal") {
		return fmt.Errorf("%w: journal_mode is %q, want wal", ErrNotDurable, mode)
	}
	if sync < 2 { // 2 is FULL, 3 EXTRA
		return fmt.Errorf("%w: synchronous is %d, want 2 (FULL)", ErrNotDurable, sync)
	}
	return nil
}

func classifyOpenError(err error) error {
	msg := err.Error()
	if strings.Contains(msg, "file is not a database") || strings.Contains(msg, "malformed") {
		return fmt.Errorf("%w: %v", ErrForeignFile, err)
	}
	return err
}

// probeWritable creates and removes a file in dir: the only reliable test
// (permission bits do not tell for root, ACLs or read-only mounts).
func probeWritable(dir string) error {
	f, err := os.CreateTemp(dir, ".probe-*")
	if err != nil {
		return err
	}
	name := f.Name()
	f.Close()
	return os.Remove(name)
}

func lockFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock file: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s", ErrLocked, path)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return f, nil
}

// LogStorage returns the log storage. It implements storage.Provider.
func (s *Storage) LogStorage() storage.LogStorage { return s.log }

// AdminStorage returns the admin storage. It implements storage.Provider.
func (s *Storage) AdminStorage() storage.AdminStorage { return s.admin }

// Path returns the database file's path.
func (s *Storage) Path() string { return s.path }

// Close closes the database and releases the lock. Calls in progress may
// fail.
func (s *Storage) Close() error {
	var errs []error
	if s.w != nil {
		errs = append(errs, s.w.conn.close())
	}
	if s.r != nil {
		errs = append(errs, s.r.close())
	}
	if s.rdb != nil {
		errs = append(errs, s.rdb.Close())
	}
	if s.wdb != nil {
		errs = append(errs, s.wdb.Close())
	}
	if s.lock != nil {
		errs = append(errs, s.lock.Close()) // closing releases the flock
		s.lock = nil
	}
	return errors.Join(errs...)
}
