package sqldb_test

import (
	"context"
	"sync"
	"testing"

	"github.com/vigie-sante/vigie/ledger/sqldb"
	"github.com/vigie-sante/vigie/ledger/sqldb/pgtest"
)

// raceSchema's steps fail if run twice (CREATE TABLE without IF NOT
// EXISTS) and count their runs in a table.
var raceSchema = []sqldb.Migration{
	{Name: "race/1", PostgreSQL: "CREATE TABLE runs (name TEXT NOT NULL);\nINSERT INTO runs VALUES ('race/1');"},
	{Name: "race/2", PostgreSQL: "CREATE TABLE two (id BIGINT);\nINSERT INTO runs VALUES ('race/2');"},
	{Name: "race/3", PostgreSQL: "CREATE TABLE three (id BIGINT);\nINSERT INTO runs VALUES ('race/3');"},
}

// TestMigrateConcurrently starts several processes (one pool each)
// migrating one database at once, as the nodes of a new version do: all
// succeed and each step runs once, on a fresh database and on one that
// has some of the steps already.
func TestMigrateConcurrently(t *testing.T) {
	for _, tc := range []struct {
		name  string
		first int // steps applied before the race
	}{{"fresh", 0}, {"old", 1}} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			url := pgtest.NewDatabase(t)
			const n = 6
			dbs := make([]*sqldb.DB, n)
			for i := range dbs {
				db, err := sqldb.OpenPostgres(ctx, url, sqldb.Options{})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { db.Close() })
				dbs[i] = db
			}
			if tc.first > 0 {
				if err := dbs[0].Migrate(ctx, raceSchema[:tc.first]); err != nil {
					t.Fatal(err)
				}
			}
			for round := range 3 { // several rounds: the race is timing-dependent
				var wg sync.WaitGroup
				errs := make([]error, n)
				for i, db := range dbs {
					wg.Go(func() { errs[i] = db.Migrate(ctx, raceSchema[:tc.first+min(round+1, len(raceSchema)-tc.first)]) })
				}
				wg.Wait()
				for i, err := range errs {
					if err != nil {
						t.Errorf("round %d, process %d: Migrate: %v", round, i, err)
					}
				}
			}
			err := dbs[0].Read(ctx, func(ctx context.Context, tx sqldb.Tx) error {
				rows, err := tx.Query(ctx, "SELECT name, count(*) FROM runs GROUP BY name ORDER BY name")
				if err != nil {
					return err
				}
				defer rows.Close()
				got := map[string]int64{}
				for rows.Next() {
					var name string
					var c int64
					if err := rows.Scan(&name, &c); err != nil {
						return err
					}
					got[name] = c
				}
				for _, m := range raceSchema {
					if got[m.Name] != 1 {
						t.Errorf("migration %s ran %d times, want 1", m.Name, got[m.Name])
					}
				}
				return rows.Err()
			})
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}
