package ledgersql

import (
	"context"
	"errors"
	"fmt"

	"github.com/vigie-sante/vigie/ledger"
	"github.com/vigie-sante/vigie/ledger/sqldb"
)

// Migrations are the ledger's tables, for sqldb.DB.Migrate.
//
// ledger/2 adds events.request_key, the keyed hash of an idempotency key
// (ledger.RequestHash, 16 bytes), which replaces idem_service and
// idem_request (the request id in clear). Those two columns and their
// index are dropped by HashRequestIDs, which needs the pseudonym key and
// so runs after the migrations, at start, once.
//
// ledger/3 renames events.organisation to organization and its index
// events_by_organisation to events_by_organization, the contract's
// spelling. SQLite has no ALTER INDEX ... RENAME: the index is dropped and
// built again, in the migration's transaction.
//
// ledger/4 adds leases: one row per duty that one node at a time may do
// (ledger.StoreTx.AcquireLease), with its owner, epoch and expiry in
// microseconds since 1970 on the database's clock.
//
// ledger/5 moves the duties' counters off the row of the next leaf index,
// which every recording transaction updates: the sent size to
// ledger_sent, the latest checkpoint's size to ledger_checkpoint, one row
// each, carried over. A sender's or checkpointer's write then no longer
// conflicts with every Record at SERIALIZABLE, nor the two with each other.
// ledger/6 drops the old columns, in a transaction of its own (CockroachDB
// refuses a schema change after a write in one transaction).
var Migrations = []sqldb.Migration{{
	Name: "ledger/1",
	SQLite: `
CREATE TABLE ledger_state (
  id              INTEGER PRIMARY KEY CHECK (id = 1),
  next_index      INTEGER NOT NULL,
  sent_size       INTEGER NOT NULL,
  checkpoint_size INTEGER NOT NULL
) STRICT;
INSERT INTO ledger_state (id, next_index, sent_size, checkpoint_size) VALUES (1, 0, 0, 0);
CREATE TABLE ledger_meta (
  name  TEXT PRIMARY KEY,
  value BLOB NOT NULL
) STRICT;
CREATE TABLE patients (
  pseudonym       BLOB PRIMARY KEY,
  consent_version INTEGER NOT NULL,
  wrapped_key     BLOB,
  erased_nanos    INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
CREATE TABLE events (
  leaf_index    INTEGER PRIMARY KEY,
  commitment    BLOB NOT NULL,
  pseudonym     BLOB,
  seq           INTEGER,
  kind          TEXT,
  time_nanos    INTEGER,
  service       TEXT,
  actor         TEXT,
  organisation  TEXT,
  break_glass   INTEGER,
  sealed        BLOB,
  idem_service  TEXT,
  idem_request  TEXT
) STRICT;
CREATE UNIQUE INDEX events_by_key ON events (idem_service, idem_request);
CREATE UNIQUE INDEX events_by_patient ON events (pseudonym, seq);
CREATE INDEX events_by_actor ON events (actor, leaf_index);
CREATE INDEX events_by_organisation ON events (organisation, leaf_index);
CREATE TABLE erased_events (
  pseudonym  BLOB NOT NULL,
  seq        INTEGER NOT NULL,
  leaf_index INTEGER NOT NULL,
  PRIMARY KEY (pseudonym, seq)
) STRICT, WITHOUT ROWID;
CREATE TABLE checkpoints (
  size         INTEGER PRIMARY KEY,
  root         BLOB NOT NULL,
  note         BLOB NOT NULL,
  range_hashes BLOB NOT NULL,
  signed_nanos INTEGER NOT NULL
) STRICT;
CREATE TABLE erasures (
  pseudonym    BLOB PRIMARY KEY,
  due_nanos    INTEGER NOT NULL,
  requested_by TEXT NOT NULL
) STRICT, WITHOUT ROWID;
CREATE TABLE security_events (
  id       INTEGER PRIMARY KEY,
  kind     TEXT NOT NULL,
  detail   TEXT NOT NULL,
  evidence BLOB NOT NULL,
  nanos    INTEGER NOT NULL
) STRICT;
`,
	PostgreSQL: `
CREATE TABLE ledger_state (
  id              INT PRIMARY KEY CHECK (id = 1),
  next_index      BIGINT NOT NULL,
  sent_size       BIGINT NOT NULL,
  checkpoint_size BIGINT NOT NULL
);
INSERT INTO ledger_state (id, next_index, sent_size, checkpoint_size) VALUES (1, 0, 0, 0);
CREATE TABLE ledger_meta (
  name  TEXT PRIMARY KEY,
  value BYTEA NOT NULL
);
CREATE TABLE patients (
  pseudonym       BYTEA PRIMARY KEY,
  consent_version BIGINT NOT NULL,
  wrapped_key     BYTEA,
  erased_nanos    BIGINT NOT NULL
);
CREATE TABLE events (
  leaf_index    BIGINT PRIMARY KEY,
  commitment    BYTEA NOT NULL,
  pseudonym     BYTEA,
  seq           BIGINT,
  kind          TEXT,
  time_nanos    BIGINT,
  service       TEXT,
  actor         TEXT,
  organisation  TEXT,
  break_glass   SMALLINT,
  sealed        BYTEA,
  idem_service  TEXT,
  idem_request  TEXT
);
CREATE UNIQUE INDEX events_by_key ON events (idem_service, idem_request);
CREATE UNIQUE INDEX events_by_patient ON events (pseudonym, seq);
CREATE INDEX events_by_actor ON events (actor, leaf_index);
CREATE INDEX events_by_organisation ON events (organisation, leaf_index);
CREATE TABLE erased_events (
  pseudonym  BYTEA NOT NULL,
  seq        BIGINT NOT NULL,
  leaf_index BIGINT NOT NULL,
  PRIMARY KEY (pseudonym, seq)
);
CREATE TABLE checkpoints (
  size         BIGINT PRIMARY KEY,
  root         BYTEA NOT NULL,
  note         BYTEA NOT NULL,
  range_hashes BYTEA NOT NULL,
  signed_nanos BIGINT NOT NULL
);
CREATE TABLE erasures (
  pseudonym    BYTEA PRIMARY KEY,
  due_nanos    BIGINT NOT NULL,
  requested_by TEXT NOT NULL
);
CREATE TABLE security_events (
  id       BIGINT PRIMARY KEY,
  kind     TEXT NOT NULL,
  detail   TEXT NOT NULL,
  evidence BYTEA NOT NULL,
  nanos    BIGINT NOT NULL
);
`,
}, {
	Name: "ledger/2",
	SQLite: `
ALTER TABLE events ADD COLUMN request_key BLOB;
CREATE UNIQUE INDEX events_by_request ON events (request_key);
`,
	PostgreSQL: `
ALTER TABLE events ADD COLUMN request_key BYTEA;
CREATE UNIQUE INDEX events_by_request ON events (request_key);
`,
}, {
	Name: "ledger/3",
	SQLite: `
ALTER TABLE events RENAME COLUMN organisation TO organization;
DROP INDEX events_by_organisation;
CREATE INDEX events_by_organization ON events (organization, leaf_index);
`,
	PostgreSQL: `
ALTER TABLE events RENAME COLUMN organisation TO organization;
ALTER INDEX events_by_organisation RENAME TO events_by_organization;
`,
}, {
	Name: "ledger/4",
	SQLite: `
CREATE TABLE leases (
  name           TEXT PRIMARY KEY,
  owner          TEXT NOT NULL,
  epoch          INTEGER NOT NULL,
  expires_micros INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
`,
	PostgreSQL: `
CREATE TABLE leases (
  name           TEXT PRIMARY KEY,
  owner          TEXT NOT NULL,
  epoch          BIGINT NOT NULL,
  expires_micros BIGINT NOT NULL
);
`,
}, {
	Name: "ledger/5",
	SQLite: `
CREATE TABLE ledger_sent (
  id   INTEGER PRIMARY KEY CHECK (id = 1),
  size INTEGER NOT NULL
) STRICT;
INSERT INTO ledger_sent (id, size) SELECT 1, sent_size FROM ledger_state WHERE id = 1;
CREATE TABLE ledger_checkpoint (
  id   INTEGER PRIMARY KEY CHECK (id = 1),
  size INTEGER NOT NULL
) STRICT;
INSERT INTO ledger_checkpoint (id, size) SELECT 1, checkpoint_size FROM ledger_state WHERE id = 1;
`,
	PostgreSQL: `
CREATE TABLE ledger_sent (
  id   INT PRIMARY KEY CHECK (id = 1),
  size BIGINT NOT NULL
);
INSERT INTO ledger_sent (id, size) SELECT 1, sent_size FROM ledger_state WHERE id = 1;
CREATE TABLE ledger_checkpoint (
  id   INT PRIMARY KEY CHECK (id = 1),
  size BIGINT NOT NULL
);
INSERT INTO ledger_checkpoint (id, size) SELECT 1, checkpoint_size FROM ledger_state WHERE id = 1;
`,
}, {
	Name: "ledger/6",
	SQLite: `
ALTER TABLE ledger_state DROP COLUMN sent_size;
ALTER TABLE ledger_state DROP COLUMN checkpoint_size;
`,
	PostgreSQL: `
ALTER TABLE ledger_state DROP COLUMN sent_size;
ALTER TABLE ledger_state DROP COLUMN checkpoint_size;
`,
}}

// requestIDsHashed is the ledger_meta row saying that HashRequestIDs ran.
const requestIDsHashed = "request-ids-hashed"

// HashRequestIDs moves the idempotency keys stored in clear by a version
// before ledger/2 (idem_service, idem_request) into request_key, as hash
// computes it (ledger.Pseudonymizer.RequestHash), then drops those columns
// and their index, and records in ledger_meta that it ran, so that it runs
// once per database. It reports whether it ran. The cleared text stays in
// the files until sqldb.DB.Compact.
//
// Each step is a transaction of its own (CockroachDB refuses a schema
// change after a write in one transaction), and may be run again: a crash
// between two steps is finished at the next start.
//
// Nodes starting together take turns (sqldb.DB.Exclusively, the lock of
// the migrations): one converts, the others find the record.
//
// It must run after the migrations and after the pseudonym key was checked
// against the database (ledger.New), before the ledger records anything.
func HashRequestIDs(ctx context.Context, db *sqldb.DB, hash func(ledger.Key) ledger.RequestHash) (bool, error) {
	ran := false
	err := db.Exclusively(ctx, func(ctx context.Context) error {
		var err error
		ran, err = hashRequestIDs(ctx, db, hash)
		return err
	})
	return ran, err
}

// hashRequestIDs is HashRequestIDs under the schema lock.
func hashRequestIDs(ctx context.Context, db *sqldb.DB, hash func(ledger.Key) ledger.RequestHash) (bool, error) {
	done := false
	err := db.Read(ctx, func(ctx context.Context, tx sqldb.Tx) error {
		var v []byte
		err := tx.QueryRow(ctx, "SELECT value FROM ledger_meta WHERE name = $1", requestIDsHashed).Scan(&v)
		done = err == nil
		if errors.Is(err, sqldb.ErrNoRows) {
			return nil
		}
		return err
	})
	if err != nil || done {
		return false, wrapHash(err)
	}
	n := 0
	err = db.ReadWrite(ctx, func(ctx context.Context, tx sqldb.Tx) error {
		n = 0
		if ok, err := hasColumn(ctx, tx, "events", "idem_service"); err != nil || !ok {
			return err
		}
		type keyed struct {
			index int64
			key   ledger.Key
		}
		var todo []keyed
		rows, err := tx.Query(ctx, "SELECT leaf_index, idem_service, idem_request FROM events WHERE idem_service IS NOT NULL")
		if err != nil {
			return err
		}
		for rows.Next() {
			var k keyed
			if err := rows.Scan(&k.index, &k.key.Service, &k.key.RequestID); err != nil {
				rows.Close()
				return err
			}
			todo = append(todo, k)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for _, k := range todo {
			h := hash(k.key)
			if _, err := tx.Exec(ctx, "UPDATE events SET request_key = $1, idem_service = NULL, idem_request = NULL WHERE leaf_index = $2", h[:], k.index); err != nil {
				return err
			}
		}
		n = len(todo)
		return nil
	})
	if err != nil {
		return false, wrapHash(err)
	}
	err = db.ReadWrite(ctx, func(ctx context.Context, tx sqldb.Tx) error {
		if _, err := tx.Exec(ctx, "DROP INDEX IF EXISTS events_by_key"); err != nil {
			return err
		}
		for _, col := range []string{"idem_service", "idem_request"} {
			ok, err := hasColumn(ctx, tx, "events", col)
			if err != nil {
				return err
			}
			if ok {
				if _, err := tx.Exec(ctx, "ALTER TABLE events DROP COLUMN "+col); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return false, wrapHash(err)
	}
	err = db.ReadWrite(ctx, func(ctx context.Context, tx sqldb.Tx) error {
		var v []byte
		err := tx.QueryRow(ctx, "SELECT value FROM ledger_meta WHERE name = $1", requestIDsHashed).Scan(&v)
		if !errors.Is(err, sqldb.ErrNoRows) {
			return err // nil: another node finished first
		}
		_, err = tx.Exec(ctx, "INSERT INTO ledger_meta (name, value) VALUES ($1, $2)", requestIDsHashed, []byte(fmt.Sprint(n)))
		return err
	})
	if err != nil {
		return false, wrapHash(err)
	}
	return true, nil
}

func wrapHash(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("hash request ids: %w", err)
}

// hasColumn reports whether table has column.
func hasColumn(ctx context.Context, tx sqldb.Tx, table, column string) (bool, error) {
	q := "SELECT COUNT(*) FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = $1 AND column_name = $2"
	if tx.Dialect() == sqldb.SQLiteDialect {
		q = "SELECT COUNT(*) FROM pragma_table_info($1) WHERE name = $2"
	}
	var n int64
	if err := tx.QueryRow(ctx, q, table, column).Scan(&n); err != nil {
		return false, err
	}
	return n > 0, nil
}
