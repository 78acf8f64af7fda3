package witness

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/vigie-sante/vigie/ledger"
	"github.com/vigie-sante/vigie/ledger/sqldb"
)

// Migrations are the witness tables, for sqldb.DB.Migrate, after the
// ledger's (ledgersql.Migrations: they are named in its sequence).
//
// ledger/7 adds witness_cosignatures, the cosignature line each witness
// returned for the checkpoint of each size (the checkpoint's note is the
// ledger's, in checkpoints), and witness_evidence, the answers that are
// evidence against the log or a witness (422: the witness holds a tree
// the checkpoint is not consistent with), with what was sent.
var Migrations = []sqldb.Migration{{
	Name: "ledger/7",
	SQLite: `
CREATE TABLE witness_cosignatures (
  size        INTEGER NOT NULL,
  witness     TEXT NOT NULL,
  line        BLOB NOT NULL,
  added_nanos INTEGER NOT NULL,
  PRIMARY KEY (size, witness)
) STRICT;
CREATE TABLE witness_evidence (
  witness     TEXT NOT NULL,
  size        INTEGER NOT NULL,
  status      INTEGER NOT NULL,
  old_size    INTEGER NOT NULL,
  request     BLOB NOT NULL,
  answer      BLOB NOT NULL,
  added_nanos INTEGER NOT NULL,
  PRIMARY KEY (witness, size)
) STRICT;
`,
	PostgreSQL: `
CREATE TABLE witness_cosignatures (
  size        BIGINT NOT NULL,
  witness     TEXT NOT NULL,
  line        BYTEA NOT NULL,
  added_nanos BIGINT NOT NULL,
  PRIMARY KEY (size, witness)
);
CREATE TABLE witness_evidence (
  witness     TEXT NOT NULL,
  size        BIGINT NOT NULL,
  status      INT NOT NULL,
  old_size    BIGINT NOT NULL,
  request     BYTEA NOT NULL,
  answer      BYTEA NOT NULL,
  added_nanos BIGINT NOT NULL,
  PRIMARY KEY (witness, size)
);
`,
}}

// A Cosignature is a witness's cosignature line for the checkpoint of a
// size, as stored.
type Cosignature struct {
	Size    uint64
	Witness string
	Line    []byte // "— <name> <base64>\n"
}

// Evidence is an answer of a witness kept as evidence: what was sent and
// what it answered.
type Evidence struct {
	Witness string
	Size    uint64 // the checkpoint's
	Status  int    // the HTTP status
	OldSize uint64
	Request []byte // the add-checkpoint body
	Answer  []byte // at most 4 KiB of it
	Nanos   int64
}

// addCosignature stores c in tx (the caller checked its lease in tx). A
// cosignature already stored for the size and witness is kept: the first
// is as good as any.
func addCosignature(ctx context.Context, tx sqldb.Tx, c Cosignature, now time.Time) error {
	_, err := tx.Exec(ctx, `INSERT INTO witness_cosignatures (size, witness, line, added_nanos) VALUES ($1, $2, $3, $4)
ON CONFLICT (size, witness) DO NOTHING`, int64(c.Size), c.Witness, c.Line, now.UnixNano())
	if err != nil {
		return fmt.Errorf("store cosignature: %w", err)
	}
	return nil
}

// addEvidence stores e in tx, once per witness and size.
func addEvidence(ctx context.Context, tx sqldb.Tx, e Evidence) error {
	_, err := tx.Exec(ctx, `INSERT INTO witness_evidence (witness, size, status, old_size, request, answer, added_nanos) VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (witness, size) DO NOTHING`, e.Witness, int64(e.Size), e.Status, int64(e.OldSize), e.Request, e.Answer, e.Nanos)
	if err != nil {
		return fmt.Errorf("store witness evidence: %w", err)
	}
	return nil
}

// recentCosigned returns the largest size with a cosignature stored and
// how many cosignatures the limit largest sizes that have any hold (0, 0
// if none): the rows cosignatures reads, counted.
func recentCosigned(ctx context.Context, store ledger.Store, limit int) (size uint64, count int, err error) {
	err = store.Read(ctx, func(ctx context.Context, r ledger.StoreReader) error {
		tx, ok := r.(interface{ SQL() sqldb.Tx })
		if !ok {
			return errors.New("witness: the ledger's store is not on Vigie's database")
		}
		var s int64
		err := tx.SQL().QueryRow(ctx, `SELECT COALESCE(MAX(size), 0), COUNT(*) FROM witness_cosignatures
WHERE size IN (SELECT DISTINCT size FROM witness_cosignatures ORDER BY size DESC LIMIT $1)`, limit).Scan(&s, &count)
		size = uint64(s)
		return err
	})
	return size, count, err
}

// cosignatures returns the cosignatures stored for the checkpoints of
// the limit largest sizes that have any, largest size first.
func cosignatures(ctx context.Context, store ledger.Store, limit int) ([]Cosignature, error) {
	var out []Cosignature
	err := store.Read(ctx, func(ctx context.Context, r ledger.StoreReader) error {
		tx, ok := r.(interface{ SQL() sqldb.Tx })
		if !ok {
			return errors.New("witness: the ledger's store is not on Vigie's database")
		}
		out = out[:0]
		rows, err := tx.SQL().Query(ctx, `SELECT size, witness, line FROM witness_cosignatures
WHERE size IN (SELECT DISTINCT size FROM witness_cosignatures ORDER BY size DESC LIMIT $1)
ORDER BY size DESC, witness`, limit)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var c Cosignature
			var size int64
			if err := rows.Scan(&size, &c.Witness, &c.Line); err != nil {
				return err
			}
			c.Size = uint64(size)
			out = append(out, c)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("read cosignatures: %w", err)
	}
	return out, nil
}

// EvidenceKept returns the answers kept as evidence, oldest first, at
// most limit.
func EvidenceKept(ctx context.Context, store ledger.Store, limit int) ([]Evidence, error) {
	var out []Evidence
	err := store.Read(ctx, func(ctx context.Context, r ledger.StoreReader) error {
		tx, ok := r.(interface{ SQL() sqldb.Tx })
		if !ok {
			return errors.New("witness: the ledger's store is not on Vigie's database")
		}
		out = out[:0]
		rows, err := tx.SQL().Query(ctx, `SELECT witness, size, status, old_size, request, answer, added_nanos FROM witness_evidence
ORDER BY added_nanos LIMIT $1`, limit)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var e Evidence
			var size, old int64
			if err := rows.Scan(&e.Witness, &size, &e.Status, &old, &e.Request, &e.Answer, &e.Nanos); err != nil {
				return err
			}
			e.Size, e.OldSize = uint64(size), uint64(old)
			out = append(out, e)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("read witness evidence: %w", err)
	}
	return out, nil
}
