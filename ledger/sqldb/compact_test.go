package sqldb_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/vigie-sante/vigie/ledger/sqldb"
	"github.com/vigie-sante/vigie/ledger/sqldb/pgtest"
)

// TestCompactWaitsForOlderSnapshots: on PostgreSQL, VACUUM FULL copies the
// rows an open snapshot may still see into the rewritten files, so Compact
// must wait until every transaction opened before it has ended; else the
// plain text a conversion replaced survives the rewrite (it did, once, in
// cmd/vigie's TestNothingInClearAtRest, while Trillian's sequencer ran in
// the same database).
func TestCompactWaitsForOlderSnapshots(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.NewDatabase(t)
	db, err := sqldb.OpenPostgres(ctx, dsn, sqldb.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.Migrate(ctx, testSchema); err != nil {
		t.Fatal(err)
	}

	// Another session holds a snapshot taken before the rewrite.
	other, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close(ctx)
	tx, err := other.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead})
	if err != nil {
		t.Fatal(err)
	}
	var one int
	if err := tx.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil {
		t.Fatal(err)
	}

	done := make(chan error, 1)
	go func() { done <- db.Compact(ctx, "counters") }()
	select {
	case err := <-done:
		t.Fatalf("Compact returned (%v) while a transaction older than it was open", err)
	case <-time.After(500 * time.Millisecond):
		// Still waiting, as it must: nothing can make it return early
		// but the bug, so a busy machine cannot fail this.
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Compact = %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("Compact still waiting a minute after the older transaction ended")
	}
}

// TestCompactWaitsForWritersInOtherDatabases: VACUUM FULL's own snapshot
// holds back its horizon to the oldest transaction still running in any
// database of the cluster, so a write transaction in another database,
// begun before a row was replaced, keeps the replaced row in the rewritten
// file as recently dead. Compact must wait for it; the row's old value
// must then be in none of the table's files. (It happened in cmd/vigie's
// TestNothingInClearAtRest whenever another package's test wrote in its
// own database of the shared test cluster at that moment.)
func TestCompactWaitsForWritersInOtherDatabases(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.NewDatabase(t)
	db, err := sqldb.OpenPostgres(ctx, dsn, sqldb.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.Migrate(ctx, testSchema); err != nil {
		t.Fatal(err)
	}
	const plain = "plain-text-to-compact-away"
	exec := func(q string, args ...any) {
		t.Helper()
		if err := db.ReadWrite(ctx, func(ctx context.Context, tx sqldb.Tx) error {
			_, err := tx.Exec(ctx, q, args...)
			return err
		}); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	exec("INSERT INTO counters (name, n, data) VALUES ('a', 1, $1)", []byte(plain))

	// A transaction of another database, with a transaction id, begun
	// before the row is replaced.
	other, err := pgx.Connect(ctx, pgtest.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close(ctx)
	tx, err := other.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var xid int64
	if err := tx.QueryRow(ctx, "SELECT txid_current()").Scan(&xid); err != nil {
		t.Fatal(err)
	}
	exec("UPDATE counters SET data = $1 WHERE name = 'a'", []byte("sealed"))

	done := make(chan error, 1)
	go func() { done <- db.Compact(ctx, "counters") }()
	select {
	case err := <-done:
		t.Errorf("Compact returned (%v) while a write transaction of another database, older than the replacement, was open", err)
		done <- err
	case <-time.After(500 * time.Millisecond):
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Compact = %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("Compact still waiting a minute after the other transaction ended")
	}

	pgdata := os.Getenv("VIGIE_TEST_PGDATA")
	if pgdata == "" {
		return // the wait is checked; the files cannot be read
	}
	var file string
	if err := db.Read(ctx, func(ctx context.Context, tx sqldb.Tx) error {
		return tx.QueryRow(ctx, "SELECT pg_relation_filepath('counters')").Scan(&file)
	}); err != nil {
		t.Fatal(err)
	}
	exec("CHECKPOINT") // the rewritten pages reach the file
	b, err := os.ReadFile(filepath.Join(pgdata, file))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(b, []byte(plain)) {
		t.Errorf("the replaced value is still in the rewritten file %s", file)
	}
}
