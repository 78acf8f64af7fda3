package sqldb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver
)

var (
	// ErrForeignFile is returned when a file is not a SQLite database, or
	// is a SQLite database of another application. Callers test for it
	// with errors.Is.
	ErrForeignFile = errors.New("not a database of this application")
	// ErrSchemaVersion is returned for a database whose schema this build
	// does not know (a newer one, usually). Callers test with errors.Is.
	ErrSchemaVersion = errors.New("unsupported schema version")
	// ErrLocked is returned when another process has the database open.
	// Callers test for it with errors.Is.
	ErrLocked = errors.New("database is in use by another process")
	// ErrNotDurable is returned when SQLite did not accept the WAL journal
	// or synchronous=FULL. Callers test for it with errors.Is.
	ErrNotDurable = errors.New("database cannot be made durable")
)

// Querier is what a transaction on a SQLite connection offers: the
// database/sql methods, through the connection's prepared statements.
type Querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// SQLiteOptions configure OpenSQLite.
type SQLiteOptions struct {
	// ApplicationID is the file's SQLite application_id, which tells a
	// database of this application from any other file. Required.
	ApplicationID int32
	// Name says what the file is in error messages, e.g. "Vigie database".
	Name string
	// Readers is the number of read-only connections. Default 4.
	Readers int
	// CacheKiB is the page cache of the write connection, in KiB. Default
	// 65536 (64 MiB). Each read connection gets a quarter of it.
	CacheKiB int
	// SkipIntegrityCheck skips PRAGMA quick_check at open, which reads the
	// whole file. Default false: a corrupt file is refused at start rather
	// than found later.
	SkipIntegrityCheck bool
	// CheckpointEvery is how often a background connection copies the
	// write-ahead log into the database file (a PASSIVE checkpoint, which
	// never blocks the writer), so that commits do not: a commit that
	// checkpoints holds every writer waiting behind it. Default 250ms;
	// negative: no background checkpoint, commits checkpoint past
	// CheckpointPages (SQLite's way).
	CheckpointEvery time.Duration
	// CheckpointPages is the size of the write-ahead log, in pages, past
	// which a commit copies it into the database file itself (SQLite's
	// wal_autocheckpoint): the safety net behind the background
	// checkpoints, reached only if they fall behind. Default 40000 (about
	// 160 MiB) with background checkpoints, 10000 without: a page changed
	// by many commits (an index's upper levels, the last pages of a table)
	// is copied once per checkpoint, so fewer, larger checkpoints write
	// less than SQLite's default of 1000; measured in docs/performance.md.
	CheckpointPages int
	// KeepDeleted leaves deleted content in the file's free space, where
	// it stays readable until the space is reused (SQLite's default).
	// Default false: deleted and overwritten content is overwritten with
	// zeros as it is freed (PRAGMA secure_delete), so that an erasure
	// leaves nothing behind once TruncateWAL has moved the older page
	// versions out of the write-ahead log. Only a file that never holds
	// personal data (Trillian's: commitments only) may set it.
	KeepDeleted bool
	// WALLimit bounds the write-ahead log file, in bytes. Default 64 MiB;
	// negative: no bound (the log then grows to CheckpointPages while
	// readers keep SQLite from restarting it, and its file never
	// shrinks). The background checkpoints empty the log (a TRUNCATE
	// checkpoint) once it holds half of it; a commit that finds the file
	// past it empties it before returning, waiting up to two seconds for
	// readers of older snapshots. The file stays within WALLimit and one
	// transaction unless a read lasts longer than that.
	WALLimit int64
}

// SQLite is a SQLite database file owned by this process.
//
// Durability: the file runs in WAL mode with synchronous=FULL, so a commit
// returns after its WAL frames are fsynced and survives a crash of the
// process, of the system or a power loss (on hardware that honours fsync).
// OpenSQLite sets both and reads them back, refusing to run otherwise.
//
// Concurrency: one connection writes, and only SQLite's writer uses it, so
// no caller sees SQLITE_BUSY from a competing writer; small writes submitted
// concurrently share a transaction and an fsync (Group). Reads use a pool of
// read-only connections, which WAL lets run beside the writer. A flock(2) on
// a lock file next to the database keeps a second process out.
//
// A SQLite is safe for concurrent use.
type SQLite struct {
	path        string
	lock        *os.File
	wdb, rdb    *sql.DB
	w           *writer
	r           *readers
	ckpt        *checkpointer // nil: commits checkpoint
	ckptMu      sync.Mutex    // held while this process runs a checkpoint
	userVersion int64
}

// OpenSQLite opens the database at path, creating it and its directory if
// they do not exist. It reads before it writes: it refuses, without
// changing the file, a directory it cannot write to, a file held by another
// process, a file that is not SQLite or belongs to another application, and
// a database that fails SQLite's quick_check. It does not create any
// schema: callers check UserVersion and create or refuse theirs.
func OpenSQLite(ctx context.Context, path string, opts SQLiteOptions) (_ *SQLite, err error) {
	if opts.ApplicationID == 0 {
		return nil, errors.New("sqldb: SQLiteOptions.ApplicationID is required")
	}
	if strings.ContainsAny(path, "?#") {
		return nil, fmt.Errorf("database path %q: must not contain '?' or '#'", path)
	}
	if opts.Readers <= 0 {
		opts.Readers = 4
	}
	if opts.CacheKiB <= 0 {
		opts.CacheKiB = 64 << 10
	}
	if opts.Name == "" {
		opts.Name = "database"
	}
	if opts.CheckpointEvery == 0 {
		opts.CheckpointEvery = 250 * time.Millisecond
	}
	if opts.WALLimit == 0 {
		opts.WALLimit = DefaultWALLimit
	}
	if opts.CheckpointPages <= 0 {
		opts.CheckpointPages = 10000
		if opts.CheckpointEvery > 0 {
			opts.CheckpointPages = 40000
		}
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
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("create %s: %w", path, err)
	}
	f.Close()
	s := &SQLite{path: path, lock: lock}
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
	c, err := s.wdb.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	s.w = newWriter(newConn(c), &s.ckptMu)
	if opts.WALLimit > 0 {
		s.w.walPath, s.w.walLimit = path+"-wal", opts.WALLimit
	}
	if err := s.prepare(ctx, c, opts); err != nil {
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
	if opts.CheckpointEvery > 0 {
		if s.ckpt, err = startCheckpointer(ctx, path, opts.CheckpointEvery, opts.WALLimit, &s.ckptMu); err != nil {
			return nil, fmt.Errorf("open %s for checkpoints: %w", path, err)
		}
	}
	return s, nil
}

// prepare checks what the file is and applies and checks the durability
// settings. A foreign file is refused before anything (even the journal
// mode) changes.
func (s *SQLite) prepare(ctx context.Context, c *sql.Conn, opts SQLiteOptions) error {
	var appID, objects int64
	if err := c.QueryRowContext(ctx, "PRAGMA application_id").Scan(&appID); err != nil {
		return classifyOpenError(err, opts.Name)
	}
	if err := c.QueryRowContext(ctx, "PRAGMA user_version").Scan(&s.userVersion); err != nil {
		return classifyOpenError(err, opts.Name)
	}
	if err := c.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_schema").Scan(&objects); err != nil {
		return classifyOpenError(err, opts.Name)
	}
	fresh := false
	switch {
	case appID == int64(opts.ApplicationID):
	case appID == 0 && s.userVersion == 0 && objects == 0:
		fresh = true
	default:
		return fmt.Errorf("%w: want a %s, found a SQLite file with application_id %#x, user_version %d, %d schema objects", ErrForeignFile, opts.Name, appID, s.userVersion, objects)
	}
	if !fresh && !opts.SkipIntegrityCheck {
		var res string
		if err := c.QueryRowContext(ctx, "PRAGMA quick_check(1)").Scan(&res); err != nil {
			return classifyOpenError(err, opts.Name)
		}
		if res != "ok" {
			return fmt.Errorf("integrity check failed: %s", res)
		}
	}

	var mode string
	if err := c.QueryRowContext(ctx, "PRAGMA journal_mode=WAL").Scan(&mode); err != nil {
		return fmt.Errorf("set journal_mode: %w", err)
	}
	if _, err := c.ExecContext(ctx, "PRAGMA synchronous=FULL"); err != nil {
		return fmt.Errorf("set synchronous: %w", err)
	}
	if _, err := c.ExecContext(ctx, fmt.Sprintf("PRAGMA cache_size=-%d", opts.CacheKiB)); err != nil {
		return fmt.Errorf("set cache_size: %w", err)
	}
	if _, err := c.ExecContext(ctx, fmt.Sprintf("PRAGMA wal_autocheckpoint=%d", opts.CheckpointPages)); err != nil {
		return fmt.Errorf("set wal_autocheckpoint: %w", err)
	}
	if opts.WALLimit > 0 {
		// When SQLite restarts the log from its start, it truncates the
		// file to this size: the file shrinks back after a burst.
		if _, err := c.ExecContext(ctx, fmt.Sprintf("PRAGMA journal_size_limit=%d", opts.WALLimit)); err != nil {
			return fmt.Errorf("set journal_size_limit: %w", err)
		}
	}
	if err := checkDurable(ctx, c); err != nil {
		return err
	}
	if !opts.KeepDeleted {
		if err := setSecureDelete(ctx, c); err != nil {
			return err
		}
	}
	if fresh {
		// With no schema objects yet, the file is fresh again if we crash
		// before the caller creates its schema.
		if _, err := c.ExecContext(ctx, fmt.Sprintf("PRAGMA application_id=%d", opts.ApplicationID)); err != nil {
			return fmt.Errorf("set application_id: %w", err)
		}
	}
	return nil
}

// checkDurable reads back the settings the durability argument rests on.
func checkDurable(ctx context.Context, c *sql.Conn) error {
	var mode string
	var sync int
	if err := c.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return fmt.Errorf("read journal_mode: %w", err)
	}
	if err := c.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&sync); err != nil {
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

// setSecureDelete makes the connection overwrite what it deletes, and
// reads the setting back: an erasure's promise rests on it.
func setSecureDelete(ctx context.Context, c *sql.Conn) error {
	var on int
	if _, err := c.ExecContext(ctx, "PRAGMA secure_delete=ON"); err != nil {
		return fmt.Errorf("set secure_delete: %w", err)
	}
	if err := c.QueryRowContext(ctx, "PRAGMA secure_delete").Scan(&on); err != nil {
		return fmt.Errorf("read secure_delete: %w", err)
	}
	if on != 1 {
		return fmt.Errorf("secure_delete is %d, want 1 (on)", on)
	}
	return nil
}

func classifyOpenError(err error, name string) error {
	msg := err.Error()
	if strings.Contains(msg, "file is not a database") || strings.Contains(msg, "malformed") {
		return fmt.Errorf("%w: want a %s, SQLite says: %v", ErrForeignFile, name, err)
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

// Path returns the database file's path.
func (s *SQLite) Path() string { return s.path }

// UserVersion returns the file's user_version as it was when opened: 0 for
// a file without schema.
func (s *SQLite) UserVersion() int64 { return s.userVersion }

// Exclusive runs f in a transaction of its own on the write connection and
// commits it if f returns nil. f runs on the caller's goroutine, once.
func (s *SQLite) Exclusive(ctx context.Context, f func(q Querier) error) error {
	return s.w.exclusive(ctx, f)
}

// Group runs f in a transaction shared with other concurrent callers and
// returns once that transaction has committed or failed. f may be called
// more than once (it must start from scratch each time); see writer.
func (s *SQLite) Group(ctx context.Context, f func(ctx context.Context, q Querier) error) error {
	return s.w.group(ctx, f)
}

// Read runs f in a read transaction on a pooled read-only connection.
func (s *SQLite) Read(ctx context.Context, f func(q Querier) error) error {
	return s.r.read(ctx, f)
}

// Snapshot starts a read transaction that the caller ends with commit or
// rollback (exactly one of them, exactly once).
func (s *SQLite) Snapshot(ctx context.Context) (q Querier, commit, rollback func() error, err error) {
	return s.r.snapshot(ctx)
}

// DefaultWALLimit is SQLiteOptions.WALLimit's default: 64 MiB.
const DefaultWALLimit = 64 << 20

// ErrWALBusy is returned by TruncateWAL when readers of older snapshots
// kept the write-ahead log from being emptied in time. Callers test with
// errors.Is; the background checkpoints keep trying.
var ErrWALBusy = errors.New("write-ahead log in use: not truncated yet")

// truncateWait bounds how long TruncateWAL waits for the writer and for
// readers of older snapshots; new writes wait behind it meanwhile.
const truncateWait = 2 * time.Second

// TruncateWAL copies the whole write-ahead log into the database file and
// truncates the log to zero bytes (a TRUNCATE checkpoint), so that page
// versions older than the latest commit, which may hold content deleted
// since, leave the disk. It blocks writers while it runs and waits at most
// a couple of seconds for readers of older snapshots; if they remain it
// returns an error wrapping ErrWALBusy, and the background checkpoints (if
// any: CheckpointEvery) run TRUNCATE checkpoints until one succeeds. It
// may be retried.
func (s *SQLite) TruncateWAL(ctx context.Context) error {
	if s.ckpt != nil {
		return s.ckpt.truncate(ctx)
	}
	if err := s.w.acquire(ctx); err != nil {
		return err
	}
	defer s.w.release()
	return truncateWAL(ctx, s.w.conn.c, 10*time.Second)
}

// Vacuum rewrites the database file (VACUUM), leaving none of its free
// pages, then truncates the write-ahead log (TruncateWAL). It blocks
// writers while it runs.
func (s *SQLite) Vacuum(ctx context.Context) error {
	if err := s.w.acquire(ctx); err != nil {
		return err
	}
	_, err := s.w.conn.c.ExecContext(ctx, "VACUUM")
	s.w.release()
	if err != nil {
		return fmt.Errorf("vacuum: %w", err)
	}
	return s.TruncateWAL(ctx)
}

// truncateWAL runs a TRUNCATE checkpoint on c, with a busy timeout of
// truncateWait, then restores c's busy timeout to restore.
func truncateWAL(ctx context.Context, c *sql.Conn, restore time.Duration) (err error) {
	if _, err := c.ExecContext(ctx, fmt.Sprintf("PRAGMA busy_timeout=%d", truncateWait.Milliseconds())); err != nil {
		return fmt.Errorf("truncate the write-ahead log: %w", err)
	}
	defer func() {
		if _, rerr := c.ExecContext(context.WithoutCancel(ctx), fmt.Sprintf("PRAGMA busy_timeout=%d", restore.Milliseconds())); rerr != nil && err == nil {
			err = fmt.Errorf("truncate the write-ahead log: %w", rerr)
		}
	}()
	var busy, logFrames, copied int
	if err := c.QueryRowContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)").Scan(&busy, &logFrames, &copied); err != nil {
		return fmt.Errorf("truncate the write-ahead log: %w", err)
	}
	if busy != 0 {
		return fmt.Errorf("truncate the write-ahead log: %w (%d of %d frames copied)", ErrWALBusy, copied, logFrames)
	}
	return nil
}

// Close closes the connections and releases the lock. Calls in progress
// may fail.
func (s *SQLite) Close() error {
	var errs []error
	if s.ckpt != nil {
		errs = append(errs, s.ckpt.close())
		s.ckpt = nil
	}
	if s.w != nil {
		errs = append(errs, s.w.conn.close())
		s.w = nil
	}
	if s.r != nil {
		errs = append(errs, s.r.close())
		s.r = nil
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

// CopyTo writes a consistent copy of the database, as of one snapshot, to
// the new file path (VACUUM INTO: the copy has no write-ahead log and no
// free pages). It runs on a read connection: writers go on meanwhile. It
// fails if path exists.
func (s *SQLite) CopyTo(ctx context.Context, path string) error {
	c, err := s.r.get(ctx)
	if err != nil {
		return err
	}
	defer s.r.put(c)
	// The read connections are query_only, which refuses VACUUM INTO's
	// writes to the new file; the original stays untouched either way.
	if err := c.exec("PRAGMA query_only=0"); err != nil {
		return fmt.Errorf("copy %s: %w", s.path, err)
	}
	_, err = c.c.ExecContext(ctx, "VACUUM INTO ?", path)
	if rerr := c.exec("PRAGMA query_only=1"); rerr != nil && err == nil {
		err = rerr
	}
	if err != nil {
		return fmt.Errorf("copy %s: %w", s.path, err)
	}
	return nil
}
