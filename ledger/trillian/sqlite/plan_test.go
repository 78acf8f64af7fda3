package sqlite

import (
	"context"
	"strings"
	"testing"

	"github.com/vigie-sante/vigie/ledger/sqldb"
)

// TestQueriesUseIndexes checks the query plans of the lookups on large
// tables: none may scan a table whose size grows with the log.
func TestQueriesUseIndexes(t *testing.T) {
	s := openTemp(t)
	ctx := context.Background()
	id := make([]byte, 32)
	for _, tc := range []struct {
		name, query string
		args        []any
	}{
		{"leaf by identity", selectLeaf + "WHERE " + whereIdentity + " ORDER BY s.sequence_number LIMIT 1", []any{1, id}},
		{"leaf by index", selectLeaf + "WHERE s.tree_id = ? AND s.sequence_number = ?", []any{1, 5}},
		{"leaves by hash", selectLeaf + "WHERE s.tree_id = ? AND s.merkle_leaf_hash IN (?, ?)", []any{1, id, id}},
		{"leaves by range", selectLeaf + "WHERE s.tree_id = ? AND s.sequence_number >= ? AND s.sequence_number < ? ORDER BY s.sequence_number", []any{1, 0, 10}},
		{"stored identities", "SELECT coalesce(identity_hash, merkle_leaf_hash) FROM sequenced_leaves WHERE tree_id = ?1 AND (identity_hash IN (?2, ?3) OR (identity_hash IS NULL AND merkle_leaf_hash IN (?2, ?3)))", []any{1, id, id}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var plan []string
			err := s.db.Read(ctx, func(q sqldb.Querier) error {
				rows, err := q.QueryContext(ctx, "EXPLAIN QUERY PLAN "+tc.query, tc.args...)
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
			for _, step := range plan {
				if strings.HasPrefix(step, "SCAN ") && !strings.Contains(step, "USING") {
					t.Errorf("plan scans a table: %q (whole plan: %q)", step, plan)
				}
			}
		})
	}
}
