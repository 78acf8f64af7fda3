package ledgersql_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vigie-sante/vigie/ledger/ledgersql"
	"github.com/vigie-sante/vigie/ledger/sqldb"
)

// TestQueriesUseIndexes checks, on SQLite, the plans of the ledger's
// lookups: none may scan the events, the patients or the erased events.
func TestQueriesUseIndexes(t *testing.T) {
	ctx := context.Background()
	db, err := sqldb.OpenSQLiteDB(ctx, filepath.Join(t.TempDir(), "vigie.db"), sqldb.Options{SQLite: sqldb.SQLiteOptions{ApplicationID: 0x56474431}})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Migrate(ctx, ledgersql.Migrations); err != nil {
		t.Fatal(err)
	}
	p := make([]byte, 32)
	for _, tc := range []struct {
		name, query string
		args        []any
	}{
		{"patient", "SELECT * FROM patients WHERE pseudonym = $1", []any{p}},
		{"event by key", "SELECT * FROM events WHERE request_key = $1", []any{[]byte("0123456789abcdef")}},
		{"event by index", "SELECT * FROM events WHERE leaf_index = $1", []any{1}},
		{"patient events", "SELECT * FROM events WHERE pseudonym = $1 AND seq >= $2 ORDER BY seq LIMIT $3", []any{p, 1, 10}},
		{"erased events", "SELECT e.seq, e.leaf_index, ev.commitment FROM erased_events e JOIN events ev ON ev.leaf_index = e.leaf_index WHERE e.pseudonym = $1 AND e.seq >= $2 ORDER BY e.seq LIMIT $3", []any{p, 1, 10}},
		{"commitments", "SELECT leaf_index, commitment FROM events WHERE leaf_index >= $1 AND leaf_index < $2 ORDER BY leaf_index", []any{0, 10}},
		{"search by actor", "SELECT * FROM events WHERE leaf_index > $1 AND pseudonym IS NOT NULL AND actor = $2 ORDER BY leaf_index LIMIT $3", []any{0, "a", 10}},
		{"search by organization", "SELECT * FROM events WHERE leaf_index > $1 AND pseudonym IS NOT NULL AND organization = $2 ORDER BY leaf_index LIMIT $3", []any{0, "o", 10}},
		{"search by patient", "SELECT * FROM events WHERE leaf_index > $1 AND pseudonym IS NOT NULL AND pseudonym = $2 ORDER BY leaf_index LIMIT $3", []any{0, p, 10}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var plan []string
			err := db.Read(ctx, func(ctx context.Context, tx sqldb.Tx) error {
				rows, err := tx.Query(ctx, "EXPLAIN QUERY PLAN "+tc.query, tc.args...)
				if err != nil {
					return err
				}
				defer rows.Close()
				for rows.Next() {
					var id, parent, unused int
					var detail string
					if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
						return err
					}
					plan = append(plan, detail)
				}
				return rows.Err()
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%q", plan)
			for _, step := range plan {
				if strings.HasPrefix(step, "SCAN ") && !strings.Contains(step, "USING") {
					t.Errorf("plan scans a table: %q (whole plan: %q)", step, plan)
				}
			}
		})
	}
}
