package sqldb_test

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/vigie-sante/vigie/ledger/sqldb"
	"github.com/vigie-sante/vigie/ledger/sqldb/pgtest"
)

func dialects(t *testing.T, f func(t *testing.T, db *sqldb.DB)) {
	t.Run("SQLite", func(t *testing.T) {
		db, err := sqldb.OpenSQLiteDB(context.Background(), filepath.Join(t.TempDir(), "vigie.db"), sqldb.Options{SQLite: sqldb.SQLiteOptions{ApplicationID: 0x54455354}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		f(t, db)
	})
	t.Run("PostgreSQL", func(t *testing.T) {
		db, err := sqldb.OpenPostgres(context.Background(), pgtest.NewDatabase(t), sqldb.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		f(t, db)
	})
}

var testSchema = []sqldb.Migration{{
	Name:       "test/1",
	SQLite:     "CREATE TABLE counters (name TEXT PRIMARY KEY, n INTEGER NOT NULL, data BLOB) STRICT;\nCREATE TABLE log (id INTEGER PRIMARY KEY, note TEXT);",
	PostgreSQL: "CREATE TABLE counters (name TEXT PRIMARY KEY, n BIGINT NOT NULL, data BYTEA);\nCREATE TABLE log (id BIGINT PRIMARY KEY, note TEXT);",
}}

func TestMigrateAndQuery(t *testing.T) {
	dialects(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		for range 2 { // the second run finds the work done
			if err := db.Migrate(ctx, testSchema); err != nil {
				t.Fatalf("Migrate: %v", err)
			}
		}
		err := db.ReadWrite(ctx, func(ctx context.Context, tx sqldb.Tx) error {
			// $2 before $1: placeholders bind by number on every dialect.
			n, err := tx.Exec(ctx, "INSERT INTO counters (n, name, data) VALUES ($2, $1, $3)", "a", int64(41), []byte{1, 2})
			if err != nil || n != 1 {
				t.Errorf("insert: %d rows, %v", n, err)
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		err = db.Read(ctx, func(ctx context.Context, tx sqldb.Tx) error {
			var n int64
			var data []byte
			if err := tx.QueryRow(ctx, "SELECT n, data FROM counters WHERE name = $1", "a").Scan(&n, &data); err != nil {
				return err
			}
			if n != 41 || len(data) != 2 {
				t.Errorf("read back n=%d data=%x", n, data)
			}
			if err := tx.QueryRow(ctx, "SELECT n FROM counters WHERE name = $1", "nobody").Scan(&n); !errors.Is(err, sqldb.ErrNoRows) {
				t.Errorf("Scan of no row = %v, want ErrNoRows", err)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		err = db.ReadWrite(ctx, func(ctx context.Context, tx sqldb.Tx) error {
			_, err := tx.Exec(ctx, "INSERT INTO counters (name, n) VALUES ($1, $2)", "a", int64(1))
			return err
		})
		if !sqldb.IsUniqueViolation(err) {
			t.Errorf("duplicate key: IsUniqueViolation(%v) = false", err)
		}
	})
}

func TestMigrateRefusesNewerDatabase(t *testing.T) {
	dialects(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		newer := append(testSchema, sqldb.Migration{Name: "test/2", SQLite: "CREATE TABLE extra (x INTEGER);", PostgreSQL: "CREATE TABLE extra (x BIGINT);"})
		if err := db.Migrate(ctx, newer); err != nil {
			t.Fatal(err)
		}
		if err := db.Migrate(ctx, testSchema); !errors.Is(err, sqldb.ErrSchemaVersion) {
			t.Fatalf("Migrate with an older build = %v, want ErrSchemaVersion", err)
		}
	})
}

// TestReadWriteRetriesConflicts runs conflicting read-modify-write
// transactions from many goroutines: on PostgreSQL at SERIALIZABLE they
// fail with serialization errors and are retried whole; the counter ends
// exactly right on every dialect.
func TestReadWriteRetriesConflicts(t *testing.T) {
	dialects(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		if err := db.Migrate(ctx, testSchema); err != nil {
			t.Fatal(err)
		}
		if err := db.ReadWrite(ctx, func(ctx context.Context, tx sqldb.Tx) error {
			_, err := tx.Exec(ctx, "INSERT INTO counters (name, n) VALUES ('c', 0)")
			return err
		}); err != nil {
			t.Fatal(err)
		}
		const workers, each = 8, 25
		var calls atomic.Int64
		var wg sync.WaitGroup
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range each {
					err := db.ReadWrite(ctx, func(ctx context.Context, tx sqldb.Tx) error {
						calls.Add(1)
						var n int64
						if err := tx.QueryRow(ctx, "SELECT n FROM counters WHERE name = 'c'").Scan(&n); err != nil {
							return err
						}
						_, err := tx.Exec(ctx, "UPDATE counters SET n = $1 WHERE name = 'c'", n+1)
						return err
					})
					if err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		var n int64
		if err := db.Read(ctx, func(ctx context.Context, tx sqldb.Tx) error {
			return tx.QueryRow(ctx, "SELECT n FROM counters WHERE name = 'c'").Scan(&n)
		}); err != nil {
			t.Fatal(err)
		}
		if n != workers*each {
			t.Errorf("counter = %d, want %d", n, workers*each)
		}
		t.Logf("%s: %d calls of the function for %d transactions", db.Dialect(), calls.Load(), workers*each)
	})
}
