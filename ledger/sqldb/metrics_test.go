package sqldb_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigie-sante/vigie/ledger/sqldb"
	"github.com/vigie-sante/vigie/ledger/sqldb/pgtest"
)

// TestSerializationRetriesMetric: transactions of several writers on one
// row conflict at SERIALIZABLE and run again; the database's collector
// counts each run again (vigie_db_serialization_retries_total{db}).
func TestSerializationRetriesMetric(t *testing.T) {
	ctx := context.Background()
	db, err := sqldb.OpenPostgres(ctx, pgtest.NewDatabase(t), sqldb.Options{MaxRetries: 1000})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.Migrate(ctx, testSchema); err != nil {
		t.Fatal(err)
	}
	if err := db.ReadWrite(ctx, func(ctx context.Context, tx sqldb.Tx) error {
		_, err := tx.Exec(ctx, "INSERT INTO counters (name, n) VALUES ('c', 0)")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(db.Collector()); err != nil {
		t.Fatal(err)
	}
	var runs atomic.Int64
	var wg sync.WaitGroup
	const writers, each = 8, 10
	for range writers {
		wg.Go(func() {
			for range each {
				err := db.ReadWrite(ctx, func(ctx context.Context, tx sqldb.Tx) error {
					runs.Add(1)
					var n int64
					if err := tx.QueryRow(ctx, "SELECT n FROM counters WHERE name = 'c'").Scan(&n); err != nil {
						return err
					}
					_, err := tx.Exec(ctx, "UPDATE counters SET n = $1 WHERE name = 'c'", n+1)
					return err
				})
				if err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	want := runs.Load() - writers*each // every run but the one that committed
	if want == 0 {
		t.Log("no transaction conflicted: the counter must say 0")
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var got float64 = -1
	for _, mf := range mfs {
		if mf.GetName() != "vigie_db_serialization_retries_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "db" && l.GetValue() == "vigie" {
					got = m.GetCounter().GetValue()
				}
			}
		}
	}
	if got != float64(want) {
		t.Errorf("vigie_db_serialization_retries_total{db=\"vigie\"} = %v, want %d (runs %d, commits %d)", got, want, runs.Load(), writers*each)
	}
}
