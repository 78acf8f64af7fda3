package sqldb_test

import (
	"context"
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
