package sqlite

import (
	"context"
	"strconv"
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
	// A long list, as AddSequencedLeaves sends: SQLite's planner changes its
	// mind with the length of an IN list.
	longArgs := []any{1}
	nums := make([]string, seqChunk)
	for k := range nums {
		nums[k] = "?" + strconv.Itoa(k+2)
		longArgs = append(longArgs, id)
	}
	longIn := "(" + strings.Join(nums, ",") + ")"
	for _, tc := range []struct {
		name, query string
		args        []any
	}{
		{"leaf by identity", leafByIdentityQuery, []any{1, id}},
		{"leaf by index", selectLeaf + "WHERE s.tree_id = ? AND s.sequence_number = ?", []any{1, 5}},
		{"leaves by hash", byMerkle + "WHERE s.tree_id = ? AND s.merkle_leaf_hash IN (?, ?)", []any{1, id, id}},
		{"leaves by hash, long list", byMerkle + "WHERE s.tree_id = ?1 AND s.merkle_leaf_hash IN " + longIn, longArgs},
		{"leaves by range", selectLeaf + "WHERE s.tree_id = ? AND s.sequence_number >= ? AND s.sequence_number < ? ORDER BY s.sequence_number", []any{1, 0, 10}},
		{"stored identities", storedIdentitiesQuery("(?2, ?3)"), []any{1, id, id}},
		{"stored identities, long list", storedIdentitiesQuery(longIn), longArgs},
		{"tiles, long list", "SELECT nodes FROM subtrees WHERE tree_id = ?1 AND subtree_id IN " + longIn, longArgs},
		{"queued leaf", "SELECT identity_hash, leaf_value, extra_data, queue_timestamp_nanos FROM leaf_data WHERE tree_id = ? AND identity_hash = ?", []any{1, id}},
		{"dequeue", "SELECT u.queue_timestamp_nanos, u.identity_hash, u.merkle_leaf_hash, l.leaf_value, l.extra_data FROM unsequenced u " +
			"JOIN leaf_data l ON l.tree_id = u.tree_id AND l.identity_hash = u.identity_hash " +
			"WHERE u.tree_id = ? AND u.queue_timestamp_nanos <= ? AND (u.queue_timestamp_nanos, u.identity_hash) > (?, ?) ORDER BY u.queue_timestamp_nanos, u.identity_hash LIMIT ?", []any{1, 5, 1, id, 100}},
		{"taken indices, long list", "SELECT sequence_number FROM sequenced_leaves WHERE tree_id = ?1 AND sequence_number IN " + longIn, longArgs},
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
				scan := strings.HasPrefix(step, "SCAN ") && !strings.Contains(step, "USING")
				// The primary key's first column alone is a scan of the
				// whole tree.
				wholeTree := strings.HasSuffix(step, "(tree_id=?)")
				if scan || wholeTree {
					t.Errorf("plan scans a table: %q (whole plan: %q)", step, plan)
				}
			}
		})
	}
}
