-- Trillian log storage on SQLite, schema version 1.
-- Applied in one transaction together with PRAGMA application_id and
-- user_version, so a file either has all of it or none of it.

CREATE TABLE trees (
  tree_id                  INTEGER PRIMARY KEY,
  tree_state               TEXT    NOT NULL,
  tree_type                TEXT    NOT NULL,
  display_name             TEXT    NOT NULL,
  description              TEXT    NOT NULL,
  create_time_millis       INTEGER NOT NULL,
  update_time_millis       INTEGER NOT NULL,
  max_root_duration_millis INTEGER NOT NULL,
  deleted                  INTEGER NOT NULL DEFAULT 0,
  delete_time_millis       INTEGER
) STRICT;

-- Every log root the sequencer stored; the latest is the one with the
-- greatest timestamp.
CREATE TABLE tree_heads (
  tree_id         INTEGER NOT NULL,
  timestamp_nanos INTEGER NOT NULL,
  tree_size       INTEGER NOT NULL CHECK (tree_size >= 0),
  root_hash       BLOB    NOT NULL,
  PRIMARY KEY (tree_id, timestamp_nanos)
) STRICT, WITHOUT ROWID;

-- Merkle tree tiles, as Trillian's subtree cache writes them.
CREATE TABLE subtrees (
  tree_id    INTEGER NOT NULL,
  subtree_id BLOB    NOT NULL,
  nodes      BLOB    NOT NULL,
  PRIMARY KEY (tree_id, subtree_id)
) STRICT, WITHOUT ROWID;

-- LOG trees: every leaf queued, once per identity hash (QueueLeaves
-- deduplicates on it). PREORDERED_LOG trees do not use it.
CREATE TABLE leaf_data (
  tree_id               INTEGER NOT NULL,
  identity_hash         BLOB    NOT NULL,
  leaf_value            BLOB    NOT NULL,
  extra_data            BLOB,
  queue_timestamp_nanos INTEGER NOT NULL,
  PRIMARY KEY (tree_id, identity_hash)
) STRICT, WITHOUT ROWID;

-- The leaves at their positions in the log, with their contents. For
-- PREORDERED_LOG trees rows beyond the current tree size are leaves
-- waiting to be integrated. identity_hash is NULL when it equals the Merkle
-- leaf hash (Trillian's default, and always the case for Vigie), so that a
-- leaf costs one index entry on a random key, not two.
CREATE TABLE sequenced_leaves (
  tree_id                   INTEGER NOT NULL,
  sequence_number           INTEGER NOT NULL CHECK (sequence_number >= 0),
  merkle_leaf_hash          BLOB    NOT NULL,
  identity_hash             BLOB,
  leaf_value                BLOB    NOT NULL,
  extra_data                BLOB,
  queue_timestamp_nanos     INTEGER NOT NULL,
  integrate_timestamp_nanos INTEGER NOT NULL,
  PRIMARY KEY (tree_id, sequence_number)
) STRICT, WITHOUT ROWID;

CREATE INDEX sequenced_leaves_by_merkle_hash
  ON sequenced_leaves (tree_id, merkle_leaf_hash);

CREATE INDEX sequenced_leaves_by_identity_hash
  ON sequenced_leaves (tree_id, identity_hash) WHERE identity_hash IS NOT NULL;

-- LOG trees only: leaves queued and not yet given a position.
CREATE TABLE unsequenced (
  tree_id               INTEGER NOT NULL,
  queue_timestamp_nanos INTEGER NOT NULL,
  identity_hash         BLOB    NOT NULL,
  merkle_leaf_hash      BLOB    NOT NULL,
  PRIMARY KEY (tree_id, queue_timestamp_nanos, identity_hash)
) STRICT, WITHOUT ROWID;
