// Package sqlite stores Trillian logs in one SQLite file, so that Vigie's
// embedded mode runs Trillian's own log server and sequencer with nothing to
// install.
//
// It implements [storage.LogStorage] and [storage.AdminStorage] of
// github.com/google/trillian for LOG and PREORDERED_LOG trees, and passes
// Trillian's storage conformance suites (see the tests).
//
// Durability and concurrency come from [sqldb.SQLite]: WAL with
// synchronous=FULL, checked at open; one writer connection, so no caller
// sees SQLITE_BUSY; concurrent QueueLeaves and AddSequencedLeaves calls
// share one transaction and one fsync (group commit); Trillian's read-write
// transactions (the sequencer's) hold the write connection for their
// duration; snapshots use read-only connections beside the writer.
//
// # File format
//
// The file carries SQLite's application_id 0x56474c31 ("VGL1") and its
// schema version in user_version. Open refuses a file that is not SQLite, a
// SQLite file of another application, and a schema version it does not
// know: it never migrates or overwrites a file silently.
package sqlite

import (
	"context"
	_ "embed"
	"fmt"
	"time"

	"github.com/google/trillian/storage"

	"github.com/vigie-sante/vigie/ledger/sqldb"
)

const (
	// ApplicationID is SQLite's application_id of a Vigie Trillian database.
	ApplicationID = 0x56474c31 // "VGL1"
	// SchemaVersion is the user_version this package reads and writes.
	SchemaVersion = 1
)

// Errors of Open, for errors.Is; they are sqldb's.
var (
	ErrForeignFile   = sqldb.ErrForeignFile
	ErrSchemaVersion = sqldb.ErrSchemaVersion
	ErrLocked        = sqldb.ErrLocked
	ErrNotDurable    = sqldb.ErrNotDurable
)

//go:embed schema.sql
var schemaSQL string

// Options configure a Storage. The zero value is valid.
type Options struct {
	// Readers is the number of read-only connections. Default 4.
	Readers int
	// CacheKiB is the page cache of the write connection, in KiB. Default
	// 65536 (64 MiB).
	CacheKiB int
	// SkipIntegrityCheck skips PRAGMA quick_check at Open, which reads the
	// whole file. Default false.
	SkipIntegrityCheck bool
	// Now is the clock for tree creation and update times. Default time.Now.
	Now func() time.Time
}

// Storage is a Trillian storage provider on one SQLite file. It implements
// storage.Provider; it is safe for concurrent use.
type Storage struct {
	db    *sqldb.SQLite
	now   func() time.Time
	log   *logStorage
	admin *adminStorage
}

var _ storage.Provider = (*Storage)(nil)

// Open opens the database at path, creating it (and its directory) if it
// does not exist. It fails if the directory is not writable, if another
// process holds the database, if the file is not a Vigie Trillian database
// of this schema version, or if durability settings cannot be applied.
func Open(ctx context.Context, path string, opts Options) (*Storage, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	db, err := sqldb.OpenSQLite(ctx, path, sqldb.SQLiteOptions{
		ApplicationID:      ApplicationID,
		Name:               "Vigie Trillian database",
		Readers:            opts.Readers,
		CacheKiB:           opts.CacheKiB,
		SkipIntegrityCheck: opts.SkipIntegrityCheck,
	})
	if err != nil {
		return nil, err
	}
	switch v := db.UserVersion(); v {
	case SchemaVersion:
	case 0:
		// One transaction: the file has all of the schema or none of it.
		if err := db.Exclusive(ctx, func(q sqldb.Querier) error {
			if _, err := q.ExecContext(ctx, schemaSQL); err != nil {
				return err
			}
			_, err := q.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version=%d", SchemaVersion))
			return err
		}); err != nil {
			db.Close()
			return nil, fmt.Errorf("open %s: create schema: %w", path, err)
		}
	default:
		db.Close()
		return nil, fmt.Errorf("open %s: %w: the file has schema version %d, this build reads version %d; refusing to migrate", path, ErrSchemaVersion, v, SchemaVersion)
	}
	s := &Storage{db: db, now: opts.Now}
	s.log = &logStorage{s: s}
	s.admin = &adminStorage{s: s}
	return s, nil
}

// LogStorage returns the log storage. It implements storage.Provider.
func (s *Storage) LogStorage() storage.LogStorage { return s.log }

// AdminStorage returns the admin storage. It implements storage.Provider.
func (s *Storage) AdminStorage() storage.AdminStorage { return s.admin }

// Path returns the database file's path.
func (s *Storage) Path() string { return s.db.Path() }

// Close closes the database and releases the lock.
func (s *Storage) Close() error { return s.db.Close() }

// CopyTo writes a consistent copy of the database, as of one snapshot, to
// the new file path (sqldb.SQLite.CopyTo). Trillian goes on meanwhile.
func (s *Storage) CopyTo(ctx context.Context, path string) error { return s.db.CopyTo(ctx, path) }
