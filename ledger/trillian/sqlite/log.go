package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/trillian"
	"github.com/google/trillian/storage"
	"github.com/google/trillian/storage/cache"
	"github.com/google/trillian/storage/storagepb"
	"github.com/google/trillian/storage/tree"
	"github.com/google/trillian/types"
	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vigie-sante/vigie/ledger/sqldb"
)

const (
	hashSize = 32 // SHA-256, RFC 6962
	// maxRange caps the leaves one GetLeavesByRange returns, as the storage
	// contract allows: callers page.
	maxRange = 10000
)

type logStorage struct{ s *Storage }

var _ storage.LogStorage = (*logStorage)(nil)

func (l *logStorage) CheckDatabaseAccessible(ctx context.Context) error {
	return l.s.checkAccessible(ctx)
}

// GetActiveLogIDs returns the logs the sequencer works on: ACTIVE and
// DRAINING logs that are not deleted.
func (l *logStorage) GetActiveLogIDs(ctx context.Context) ([]int64, error) {
	ids := []int64{}
	err := l.s.db.Read(ctx, func(q sqldb.Querier) error {
		rows, err := q.QueryContext(ctx,
			"SELECT tree_id FROM trees WHERE tree_type IN (?, ?) AND tree_state IN (?, ?) AND deleted = 0 ORDER BY tree_id",
			trillian.TreeType_LOG.String(), trillian.TreeType_PREORDERED_LOG.String(),
			trillian.TreeState_ACTIVE.String(), trillian.TreeState_DRAINING.String())
		if err != nil {
			return fmt.Errorf("list active logs: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var id int64
			if err := rows.Scan(&id); err != nil {
				return err
			}
			ids = append(ids, id)
		}
		return rows.Err()
	})
	return ids, err
}

// SnapshotForTree starts a read-only transaction on a read connection. As
// Trillian's other storages do, it returns the transaction together with
// storage.ErrTreeNeedsInit when the tree has no root yet.
func (l *logStorage) SnapshotForTree(ctx context.Context, t *trillian.Tree) (storage.ReadOnlyLogTreeTX, error) {
	q, commit, rollback, err := l.s.db.Snapshot(ctx)
	if err != nil {
		return nil, fmt.Errorf("begin snapshot: %w", err)
	}
	ltx := newLogTX(q, t)
	ltx.commit = commit
	ltx.rollback = rollback
	if err := ltx.loadRoot(ctx); err != nil {
		if errors.Is(err, storage.ErrTreeNeedsInit) {
			return ltx, err
		}
		rollback()
		return nil, err
	}
	return ltx, nil
}

// ReadWriteTransaction runs f in a transaction on the write connection and
// commits it, with the Merkle tiles f changed, if f returns nil. f is called
// once: with a single writer there is no conflict to retry.
func (l *logStorage) ReadWriteTransaction(ctx context.Context, t *trillian.Tree, f storage.LogTXFunc) error {
	return l.s.db.Exclusive(ctx, func(q sqldb.Querier) error {
		ltx := newLogTX(q, t)
		ltx.managed = true
		if err := ltx.loadRoot(ctx); err != nil && !errors.Is(err, storage.ErrTreeNeedsInit) {
			return err
		}
		if err := f(ctx, ltx); err != nil {
			return err
		}
		ltx.mu.Lock()
		defer ltx.mu.Unlock()
		return ltx.flushTiles(ctx)
	})
}

// QueueLeaves stores leaves for the sequencer to integrate into a LOG tree.
// A leaf whose identity hash is already stored is not queued again: its
// result carries AlreadyExists and the stored leaf. The call returns once the
// leaves are durable; concurrent calls share a commit.
func (l *logStorage) QueueLeaves(ctx context.Context, t *trillian.Tree, leaves []*trillian.LogLeaf, queueTimestamp time.Time) ([]*trillian.QueuedLogLeaf, error) {
	for i, leaf := range leaves {
		if len(leaf.LeafIdentityHash) != hashSize {
			return nil, status.Errorf(codes.InvalidArgument, "leaves[%d]: identity hash has %d bytes, want %d", i, len(leaf.LeafIdentityHash), hashSize)
		}
	}
	qts := timestamppb.New(queueTimestamp)
	if err := qts.CheckValid(); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "queue timestamp: %v", err)
	}
	nanos := queueTimestamp.UnixNano()
	var res []*trillian.QueuedLogLeaf
	err := l.s.db.Group(ctx, func(ctx context.Context, tx sqldb.Querier) error {
		res = make([]*trillian.QueuedLogLeaf, len(leaves))
		for i, leaf := range leaves {
			r, err := tx.ExecContext(ctx,
				"INSERT INTO leaf_data (tree_id, identity_hash, leaf_value, extra_data, queue_timestamp_nanos) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
				t.TreeId, leaf.LeafIdentityHash, leaf.LeafValue, nullable(leaf.ExtraData), nanos)
			if err != nil {
				return fmt.Errorf("queue leaf: %w", err)
			}
			if n, err := r.RowsAffected(); err != nil {
				return err
			} else if n == 0 {
				existing, err := leafByIdentity(ctx, tx, t.TreeId, leaf.LeafIdentityHash)
				if err != nil {
					return err
				}
				res[i] = &trillian.QueuedLogLeaf{Leaf: existing, Status: status.New(codes.AlreadyExists, "leaf already exists").Proto()}
				continue
			}
			if _, err := tx.ExecContext(ctx,
				"INSERT INTO unsequenced (tree_id, queue_timestamp_nanos, identity_hash, merkle_leaf_hash) VALUES (?, ?, ?, ?)",
				t.TreeId, nanos, leaf.LeafIdentityHash, leaf.MerkleLeafHash); err != nil {
				return fmt.Errorf("queue leaf: %w", err)
			}
			leaf.QueueTimestamp = qts
			res[i] = &trillian.QueuedLogLeaf{Leaf: leaf}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}

// AddSequencedLeaves stores leaves of a PREORDERED_LOG tree at the indices
// they carry. Per leaf, the result is OK (stored), AlreadyExists (the same
// leaf is already at that index), or FailedPrecondition (another leaf holds
// the index, or this leaf is stored at another index), with the stored leaf.
// The call returns once the leaves are durable; concurrent calls share a
// commit.
func (l *logStorage) AddSequencedLeaves(ctx context.Context, t *trillian.Tree, leaves []*trillian.LogLeaf, timestamp time.Time) ([]*trillian.QueuedLogLeaf, error) {
	for i, leaf := range leaves {
		if len(leaf.LeafIdentityHash) != hashSize {
			return nil, status.Errorf(codes.FailedPrecondition, "leaves[%d]: identity hash has %d bytes, want %d", i, len(leaf.LeafIdentityHash), hashSize)
		}
		if leaf.LeafIndex < 0 {
			return nil, status.Errorf(codes.InvalidArgument, "leaves[%d]: negative index %d", i, leaf.LeafIndex)
		}
	}
	qts := timestamppb.New(timestamp)
	if err := qts.CheckValid(); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "timestamp: %v", err)
	}
	nanos := timestamp.UnixNano()
	var res []*trillian.QueuedLogLeaf
	err := l.s.db.Group(ctx, func(ctx context.Context, tx sqldb.Querier) error {
		res = make([]*trillian.QueuedLogLeaf, len(leaves))
		return addSequenced(ctx, tx, t.TreeId, leaves, nanos, res)
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}

// addSequenced stores leaves at their indices, filling res. The common
// case, a run of new leaves, takes one statement per table per chunk; a
// leaf that meets a stored one (a retry, or a conflict) is looked at
// alone.
func addSequenced(ctx context.Context, tx sqldb.Querier, treeID int64, leaves []*trillian.LogLeaf, nanos int64, res []*trillian.QueuedLogLeaf) error {
	ok := status.New(codes.OK, "OK").Proto()
	for start := 0; start < len(leaves); start += seqChunk {
		chunk := leaves[start:min(len(leaves), start+seqChunk)]
		out := res[start : start+len(chunk)]

		// Indices already taken, in storage or earlier in this call.
		args := []any{treeID}
		for _, leaf := range chunk {
			args = append(args, leaf.LeafIndex)
		}
		rows, err := tx.QueryContext(ctx, "SELECT sequence_number FROM sequenced_leaves WHERE tree_id = ?1 AND sequence_number IN ("+placeholders(len(chunk))+")", args...)
		if err != nil {
			return fmt.Errorf("add sequenced leaves: %w", err)
		}
		taken := map[int64]bool{}
		for rows.Next() {
			var seq int64
			if err := rows.Scan(&seq); err != nil {
				rows.Close()
				return err
			}
			taken[seq] = true
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		var fresh []int // positions in chunk to insert
		identities := map[string]int{}
		for i, leaf := range chunk {
			if taken[leaf.LeafIndex] {
				existing, err := leafAt(ctx, tx, treeID, leaf.LeafIndex)
				if err != nil {
					return err
				}
				if existing == nil {
					return fmt.Errorf("add sequenced leaves: leaf %d vanished", leaf.LeafIndex)
				}
				if bytes.Equal(existing.LeafIdentityHash, leaf.LeafIdentityHash) {
					out[i] = &trillian.QueuedLogLeaf{Leaf: existing, Status: status.New(codes.AlreadyExists, "leaf already stored at this index").Proto()}
				} else {
					out[i] = &trillian.QueuedLogLeaf{Leaf: existing, Status: status.New(codes.FailedPrecondition, "conflicting LeafIndex").Proto()}
				}
				continue
			}
			if j, dup := identities[string(leaf.LeafIdentityHash)]; dup {
				out[i] = &trillian.QueuedLogLeaf{Leaf: chunk[j], Status: status.New(codes.FailedPrecondition, "conflicting LeafIdentityHash").Proto()}
				continue
			}
			taken[leaf.LeafIndex] = true
			identities[string(leaf.LeafIdentityHash)] = i
			fresh = append(fresh, i)
		}
		if len(fresh) == 0 {
			continue
		}

		// Identities stored already (at other indices: conflicts).
		args = []any{treeID}
		for _, i := range fresh {
			args = append(args, chunk[i].LeafIdentityHash)
		}
		// Numbered parameters: the list appears twice.
		nums := make([]string, len(fresh))
		for k := range fresh {
			nums[k] = "?" + strconv.Itoa(k+2)
		}
		in := "(" + strings.Join(nums, ",") + ")"
		rows, err = tx.QueryContext(ctx, storedIdentitiesQuery(in), args...)
		if err != nil {
			return fmt.Errorf("add sequenced leaves: %w", err)
		}
		stored := map[string]bool{}
		for rows.Next() {
			var id []byte
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return err
			}
			stored[string(id)] = true
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		args = []any{treeID, nanos}
		n := 0
		for _, i := range fresh {
			leaf := chunk[i]
			if stored[string(leaf.LeafIdentityHash)] {
				other, err := leafByIdentity(ctx, tx, treeID, leaf.LeafIdentityHash)
				if err != nil {
					return err
				}
				out[i] = &trillian.QueuedLogLeaf{Leaf: other, Status: status.New(codes.FailedPrecondition, "conflicting LeafIdentityHash").Proto()}
				continue
			}
			args = append(args, leaf.LeafIndex, leaf.MerkleLeafHash, identityColumn(leaf), leaf.LeafValue, nullable(leaf.ExtraData))
			out[i] = &trillian.QueuedLogLeaf{Status: ok}
			n++
		}
		if n > 0 {
			if _, err := tx.ExecContext(ctx,
				"INSERT INTO sequenced_leaves (tree_id, queue_timestamp_nanos, sequence_number, merkle_leaf_hash, identity_hash, leaf_value, extra_data, integrate_timestamp_nanos) VALUES "+
					rowsOf(n, "(?1, ?2, ?, ?, ?, ?, ?, 0)"), args...); err != nil {
				return fmt.Errorf("add sequenced leaves: %w", err)
			}
		}
	}
	return nil
}

// Lookups by hash name their index: without statistics, SQLite's planner
// takes tree_id (the primary key's first column) for selective and would
// scan the whole tree; with INDEXED BY a plan that cannot use the index
// fails instead of scanning.
const (
	leafColumns = "SELECT s.sequence_number, s.merkle_leaf_hash, coalesce(s.identity_hash, s.merkle_leaf_hash), s.leaf_value, s.extra_data, s.queue_timestamp_nanos, s.integrate_timestamp_nanos "
	selectLeaf  = leafColumns + "FROM sequenced_leaves s "
	byMerkle    = leafColumns + "FROM sequenced_leaves s INDEXED BY sequenced_leaves_by_merkle_hash "
	byIdentity  = leafColumns + "FROM sequenced_leaves s INDEXED BY sequenced_leaves_by_identity_hash "
)

// leafByIdentityQuery selects the first sequenced leaf with identity hash
// ?2 in tree ?1: identity_hash is NULL when it equals the Merkle leaf hash.
const leafByIdentityQuery = "SELECT * FROM (" +
	byIdentity + "WHERE s.tree_id = ?1 AND s.identity_hash = ?2 UNION ALL " +
	byMerkle + "WHERE s.tree_id = ?1 AND s.merkle_leaf_hash = ?2 AND s.identity_hash IS NULL" +
	") ORDER BY 1 LIMIT 1"

// storedIdentitiesQuery selects, among the identity hashes of the list in
// (parameters ?2...), those stored in tree ?1. Two SELECTs, not one with
// OR: given a long list, SQLite would scan the tree's leaves for the OR.
func storedIdentitiesQuery(in string) string {
	return "SELECT identity_hash FROM sequenced_leaves INDEXED BY sequenced_leaves_by_identity_hash WHERE tree_id = ?1 AND identity_hash IN " + in +
		" UNION ALL SELECT merkle_leaf_hash FROM sequenced_leaves INDEXED BY sequenced_leaves_by_merkle_hash WHERE tree_id = ?1 AND merkle_leaf_hash IN " + in + " AND identity_hash IS NULL"
}

// identityColumn stores an identity hash: NULL when it is the Merkle leaf
// hash.
func identityColumn(leaf *trillian.LogLeaf) any {
	if bytes.Equal(leaf.LeafIdentityHash, leaf.MerkleLeafHash) {
		return nil
	}
	return leaf.LeafIdentityHash
}

func scanLeaf(r scanner) (*trillian.LogLeaf, error) {
	var leaf trillian.LogLeaf
	var qts, its int64
	if err := r.Scan(&leaf.LeafIndex, &leaf.MerkleLeafHash, &leaf.LeafIdentityHash, &leaf.LeafValue, &leaf.ExtraData, &qts, &its); err != nil {
		return nil, err
	}
	leaf.QueueTimestamp = timestamppb.New(time.Unix(0, qts))
	leaf.IntegrateTimestamp = timestamppb.New(time.Unix(0, its))
	return &leaf, nil
}

// leafAt returns the leaf stored at index, or nil.
func leafAt(ctx context.Context, q sqldb.Querier, treeID, index int64) (*trillian.LogLeaf, error) {
	leaf, err := scanLeaf(q.QueryRowContext(ctx, selectLeaf+"WHERE s.tree_id = ? AND s.sequence_number = ?", treeID, index))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read leaf %d: %w", index, err)
	}
	return leaf, nil
}

// leafByIdentity returns the stored leaf with that identity hash: a
// sequenced one with its index, or else (LOG trees) a queued one with
// index -1.
func leafByIdentity(ctx context.Context, q sqldb.Querier, treeID int64, identity []byte) (*trillian.LogLeaf, error) {
	leaf, err := scanLeaf(q.QueryRowContext(ctx, leafByIdentityQuery, treeID, identity))
	if err == nil {
		return leaf, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("read existing leaf: %w", err)
	}
	var qts int64
	leaf = &trillian.LogLeaf{LeafIndex: -1}
	err = q.QueryRowContext(ctx, "SELECT identity_hash, leaf_value, extra_data, queue_timestamp_nanos FROM leaf_data WHERE tree_id = ? AND identity_hash = ?", treeID, identity).
		Scan(&leaf.LeafIdentityHash, &leaf.LeafValue, &leaf.ExtraData, &qts)
	if err != nil {
		return nil, fmt.Errorf("read existing leaf: %w", err)
	}
	leaf.QueueTimestamp = timestamppb.New(time.Unix(0, qts))
	return leaf, nil
}

func nullable(b []byte) any {
	if b == nil {
		return nil
	}
	return b
}

// logTX is a transaction on one tree. Its methods are safe for concurrent
// use, as Trillian's contract asks, by serialising them.
type logTX struct {
	mu       sync.Mutex
	q        sqldb.Querier
	treeID   int64
	treeType trillian.TreeType
	root     types.LogRootV1
	slr      *trillian.SignedLogRoot // nil until loadRoot finds one
	tiles    *cache.SubtreeCache
	dequeued map[string]dequeuedLeaf // by identity hash, LOG trees
	cursor   *dequeueKey             // last leaf DequeueLeaves returned
	managed  bool                    // inside ReadWriteTransaction, which commits
	closed   bool
	commit   func() error
	rollback func() error
}

// dequeuedLeaf is what UpdateSequencedLeaves needs of a dequeued leaf
// (the sequencer's leaves carry hashes only).
type dequeuedLeaf struct {
	nanos        int64
	value, extra []byte
}

type dequeueKey struct {
	nanos    int64
	identity []byte
}

var _ storage.LogTreeTX = (*logTX)(nil)

func newLogTX(q sqldb.Querier, t *trillian.Tree) *logTX {
	return &logTX{
		q:        q,
		treeID:   t.TreeId,
		treeType: t.TreeType,
		tiles:    cache.NewLogSubtreeCache(rfc6962.DefaultHasher),
		dequeued: make(map[string]dequeuedLeaf),
	}
}

func (t *logTX) loadRoot(ctx context.Context) error {
	var ts, size int64
	var hash []byte
	err := t.q.QueryRowContext(ctx,
		"SELECT timestamp_nanos, tree_size, root_hash FROM tree_heads WHERE tree_id = ? ORDER BY timestamp_nanos DESC LIMIT 1",
		t.treeID).Scan(&ts, &size, &hash)
	if errors.Is(err, sql.ErrNoRows) {
		return storage.ErrTreeNeedsInit
	}
	if err != nil {
		return fmt.Errorf("read latest root: %w", err)
	}
	t.root = types.LogRootV1{TreeSize: uint64(size), RootHash: hash, TimestampNanos: uint64(ts)}
	b, err := t.root.MarshalBinary()
	if err != nil {
		return fmt.Errorf("marshal root: %w", err)
	}
	t.slr = &trillian.SignedLogRoot{LogRoot: b}
	return nil
}

// Commit commits a snapshot. Inside ReadWriteTransaction the transaction is
// committed when f returns, so Commit only writes the changed tiles.
func (t *logTX) Commit(ctx context.Context) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return errors.New("transaction already closed")
	}
	if t.managed {
		return t.flushTiles(ctx)
	}
	t.closed = true
	return t.commit()
}

// Close rolls back a snapshot that was not committed. Inside
// ReadWriteTransaction it does nothing: returning an error from f rolls back.
func (t *logTX) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed || t.managed {
		return nil
	}
	t.closed = true
	return t.rollback()
}

func (t *logTX) LatestSignedLogRoot(ctx context.Context) (*trillian.SignedLogRoot, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.slr == nil {
		return nil, storage.ErrTreeNeedsInit
	}
	return t.slr, nil
}

func (t *logTX) StoreSignedLogRoot(ctx context.Context, root *trillian.SignedLogRoot) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	var lr types.LogRootV1
	if err := lr.UnmarshalBinary(root.GetLogRoot()); err != nil {
		return fmt.Errorf("parse log root: %w", err)
	}
	if len(lr.Metadata) != 0 {
		return errors.New("log root metadata is not supported")
	}
	if _, err := t.q.ExecContext(ctx,
		"INSERT INTO tree_heads (tree_id, timestamp_nanos, tree_size, root_hash) VALUES (?, ?, ?, ?)",
		t.treeID, int64(lr.TimestampNanos), int64(lr.TreeSize), lr.RootHash); err != nil {
		return fmt.Errorf("store log root: %w", err)
	}
	return nil
}

func (t *logTX) GetMerkleNodes(ctx context.Context, ids []compact.NodeID) ([]tree.Node, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.tiles.GetNodes(ids, t.readTiles(ctx))
}

func (t *logTX) SetMerkleNodes(ctx context.Context, nodes []tree.Node) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.tiles.SetNodes(nodes, t.readTiles(ctx))
}

func (t *logTX) readTiles(ctx context.Context) cache.GetSubtreesFunc {
	return func(ids [][]byte) ([]*storagepb.SubtreeProto, error) {
		if len(ids) == 0 {
			return nil, nil
		}
		args := make([]any, 0, len(ids)+1)
		args = append(args, t.treeID)
		for _, id := range ids {
			args = append(args, id)
		}
		rows, err := t.q.QueryContext(ctx,
			"SELECT nodes FROM subtrees WHERE tree_id = ? AND subtree_id IN ("+placeholders(len(ids))+")", args...)
		if err != nil {
			return nil, fmt.Errorf("read tiles: %w", err)
		}
		defer rows.Close()
		out := make([]*storagepb.SubtreeProto, 0, len(ids))
		for rows.Next() {
			var b []byte
			if err := rows.Scan(&b); err != nil {
				return nil, err
			}
			var st storagepb.SubtreeProto
			if err := proto.Unmarshal(b, &st); err != nil {
				return nil, fmt.Errorf("decode tile: %w", err)
			}
			if st.Prefix == nil {
				st.Prefix = []byte{}
			}
			out = append(out, &st)
		}
		return out, rows.Err()
	}
}

// flushTiles writes the tiles changed in this transaction. Callers hold mu.
func (t *logTX) flushTiles(ctx context.Context) error {
	tiles, err := t.tiles.UpdatedTiles()
	if err != nil {
		return fmt.Errorf("collect tiles: %w", err)
	}
	for _, st := range tiles {
		b, err := proto.Marshal(st)
		if err != nil {
			return fmt.Errorf("encode tile: %w", err)
		}
		if _, err := t.q.ExecContext(ctx,
			"INSERT INTO subtrees (tree_id, subtree_id, nodes) VALUES (?, ?, ?) ON CONFLICT (tree_id, subtree_id) DO UPDATE SET nodes = excluded.nodes",
			t.treeID, st.Prefix, b); err != nil {
			return fmt.Errorf("write tile: %w", err)
		}
	}
	// Written: a second flush (Commit, then the end of the transaction)
	// must not write them again.
	t.tiles = cache.NewLogSubtreeCache(rfc6962.DefaultHasher)
	return nil
}

// DequeueLeaves returns leaves to integrate. For a LOG tree they are queued
// leaves, oldest first, queued no later than cutoff; calls within one
// transaction continue where the previous one stopped. For a PREORDERED_LOG
// tree they are the stored leaves that follow the tree, up to the first gap
// or the first leaf stored after cutoff.
func (t *logTX) DequeueLeaves(ctx context.Context, limit int, cutoff time.Time) ([]*trillian.LogLeaf, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if limit <= 0 {
		return nil, nil
	}
	if t.treeType == trillian.TreeType_PREORDERED_LOG {
		leaves, err := t.leavesByRange(ctx, int64(t.root.TreeSize), int64(limit))
		if err != nil {
			return nil, err
		}
		for i, leaf := range leaves {
			if leaf.QueueTimestamp.AsTime().After(cutoff) {
				return leaves[:i], nil
			}
		}
		return leaves, nil
	}

	query := "SELECT u.queue_timestamp_nanos, u.identity_hash, u.merkle_leaf_hash, l.leaf_value, l.extra_data FROM unsequenced u " +
		"JOIN leaf_data l ON l.tree_id = u.tree_id AND l.identity_hash = u.identity_hash " +
		"WHERE u.tree_id = ? AND u.queue_timestamp_nanos <= ? "
	args := []any{t.treeID, cutoff.UnixNano()}
	if t.cursor != nil {
		query += "AND (u.queue_timestamp_nanos, u.identity_hash) > (?, ?) "
		args = append(args, t.cursor.nanos, t.cursor.identity)
	}
	query += "ORDER BY u.queue_timestamp_nanos, u.identity_hash LIMIT ?"
	args = append(args, limit)
	rows, err := t.q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("dequeue leaves: %w", err)
	}
	defer rows.Close()
	var leaves []*trillian.LogLeaf
	for rows.Next() {
		var nanos int64
		leaf := &trillian.LogLeaf{}
		var value, extra []byte
		if err := rows.Scan(&nanos, &leaf.LeafIdentityHash, &leaf.MerkleLeafHash, &value, &extra); err != nil {
			return nil, err
		}
		leaf.QueueTimestamp = timestamppb.New(time.Unix(0, nanos))
		t.dequeued[string(leaf.LeafIdentityHash)] = dequeuedLeaf{nanos: nanos, value: value, extra: extra}
		t.cursor = &dequeueKey{nanos: nanos, identity: leaf.LeafIdentityHash}
		leaves = append(leaves, leaf)
	}
	return leaves, rows.Err()
}

// seqChunk is how many rows one statement of UpdateSequencedLeaves writes.
const seqChunk = 128

// UpdateSequencedLeaves gives dequeued leaves of a LOG tree their positions
// and removes them from the queue, a chunk of rows per statement.
func (t *logTX) UpdateSequencedLeaves(ctx context.Context, leaves []*trillian.LogLeaf) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, leaf := range leaves {
		if _, ok := t.dequeued[string(leaf.LeafIdentityHash)]; !ok {
			return fmt.Errorf("leaf %x was not dequeued in this transaction", leaf.LeafIdentityHash)
		}
		if err := leaf.IntegrateTimestamp.CheckValid(); err != nil {
			return fmt.Errorf("integrate timestamp: %w", err)
		}
	}
	for len(leaves) > 0 {
		chunk := leaves[:min(len(leaves), seqChunk)]
		leaves = leaves[len(chunk):]
		ins := make([]any, 0, 1+7*len(chunk))
		del := make([]any, 0, 1+2*len(chunk))
		ins = append(ins, t.treeID)
		del = append(del, t.treeID)
		for _, leaf := range chunk {
			d := t.dequeued[string(leaf.LeafIdentityHash)]
			ins = append(ins, leaf.LeafIndex, leaf.MerkleLeafHash, identityColumn(leaf), d.value, nullable(d.extra), d.nanos, leaf.IntegrateTimestamp.AsTime().UnixNano())
			del = append(del, d.nanos, leaf.LeafIdentityHash)
		}
		if _, err := t.q.ExecContext(ctx,
			"INSERT INTO sequenced_leaves (tree_id, sequence_number, merkle_leaf_hash, identity_hash, leaf_value, extra_data, queue_timestamp_nanos, integrate_timestamp_nanos) VALUES "+
				rowsOf(len(chunk), "(?1, ?, ?, ?, ?, ?, ?, ?)"), ins...); err != nil {
			return fmt.Errorf("sequence leaves: %w", err)
		}
		r, err := t.q.ExecContext(ctx,
			"DELETE FROM unsequenced WHERE tree_id = ?1 AND (queue_timestamp_nanos, identity_hash) IN (VALUES "+rowsOf(len(chunk), "(?, ?)")+")", del...)
		if err != nil {
			return fmt.Errorf("unqueue leaves: %w", err)
		}
		if n, err := r.RowsAffected(); err != nil || n != int64(len(chunk)) {
			return fmt.Errorf("unqueue leaves: %d of %d rows removed (%v)", n, len(chunk), err)
		}
		for _, leaf := range chunk {
			delete(t.dequeued, string(leaf.LeafIdentityHash))
		}
	}
	return nil
}

// rowsOf repeats a row of placeholders n times, comma-separated.
func rowsOf(n int, row string) string {
	return strings.TrimSuffix(strings.Repeat(row+",", n), ",")
}

func (t *logTX) GetLeavesByRange(ctx context.Context, start, count int64) ([]*trillian.LogLeaf, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.leavesByRange(ctx, start, count)
}

// leavesByRange returns the contiguous leaves from start. Within the tree a
// missing leaf is an error; beyond it (PREORDERED_LOG trees) the result
// stops at the first gap. Callers hold mu.
func (t *logTX) leavesByRange(ctx context.Context, start, count int64) ([]*trillian.LogLeaf, error) {
	if count <= 0 {
		return nil, status.Errorf(codes.InvalidArgument, "invalid count %d, want > 0", count)
	}
	if start < 0 {
		return nil, status.Errorf(codes.InvalidArgument, "invalid start %d, want >= 0", start)
	}
	size := int64(t.root.TreeSize)
	if t.treeType == trillian.TreeType_LOG {
		if size == 0 {
			return nil, status.Errorf(codes.OutOfRange, "empty tree")
		}
		if start >= size {
			return nil, status.Errorf(codes.OutOfRange, "invalid start %d, want < tree size %d", start, size)
		}
		count = min(count, size-start)
	}
	count = min(count, maxRange)
	rows, err := t.q.QueryContext(ctx,
		selectLeaf+"WHERE s.tree_id = ? AND s.sequence_number >= ? AND s.sequence_number < ? ORDER BY s.sequence_number",
		t.treeID, start, start+count)
	if err != nil {
		return nil, fmt.Errorf("read leaves: %w", err)
	}
	defer rows.Close()
	leaves := make([]*trillian.LogLeaf, 0, count)
	for want := start; rows.Next(); want++ {
		leaf, err := scanLeaf(rows)
		if err != nil {
			return nil, fmt.Errorf("read leaves: %w", err)
		}
		if leaf.LeafIndex != want {
			if want < size {
				return nil, status.Errorf(codes.Internal, "leaf %d is missing", want)
			}
			break
		}
		leaves = append(leaves, leaf)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read leaves: %w", err)
	}
	if next := start + int64(len(leaves)); next < size && int64(len(leaves)) < count {
		return nil, status.Errorf(codes.Internal, "leaf %d is missing", next)
	}
	return leaves, nil
}

func (t *logTX) GetLeavesByHash(ctx context.Context, hashes [][]byte, orderBySequence bool) ([]*trillian.LogLeaf, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(hashes) == 0 {
		return nil, nil
	}
	args := make([]any, 0, len(hashes)+1)
	args = append(args, t.treeID)
	for _, h := range hashes {
		args = append(args, h)
	}
	query := byMerkle + "WHERE s.tree_id = ? AND s.merkle_leaf_hash IN (" + placeholders(len(hashes)) + ")"
	if orderBySequence {
		query += " ORDER BY s.sequence_number"
	}
	rows, err := t.q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("read leaves by hash: %w", err)
	}
	defer rows.Close()
	var leaves []*trillian.LogLeaf
	for rows.Next() {
		leaf, err := scanLeaf(rows)
		if err != nil {
			return nil, err
		}
		leaves = append(leaves, leaf)
	}
	return leaves, rows.Err()
}

func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?,", n), ",")
}
