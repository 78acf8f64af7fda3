package sqlstore

import "github.com/vigie-sante/vigie/ledger/sqldb"

// Migrations are the ledger's tables, for sqldb.DB.Migrate.
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
}}
