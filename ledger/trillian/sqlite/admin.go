package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/google/trillian"
	"github.com/google/trillian/storage"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vigie-sante/vigie/ledger/sqldb"
)

// adminStorage keeps the trees it read in memory: Trillian's log server
// reads the tree on every call, and only this process writes the database
// (Open holds a lock), so the cache is exact once every admin write clears
// it.
type adminStorage struct {
	s *Storage

	mu    sync.Mutex
	gen   uint64 // incremented by every read-write transaction
	trees map[int64]*trillian.Tree
}

// cached returns a copy of the cached tree, and the generation to pass to
// remember after a miss.
func (a *adminStorage) cached(id int64) (*trillian.Tree, uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if t, ok := a.trees[id]; ok {
		return proto.Clone(t).(*trillian.Tree), a.gen
	}
	return nil, a.gen
}

// remember caches a tree read at generation gen, unless a write happened
// since.
func (a *adminStorage) remember(t *trillian.Tree, gen uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if gen != a.gen {
		return
	}
	if a.trees == nil {
		a.trees = make(map[int64]*trillian.Tree)
	}
	a.trees[t.TreeId] = proto.Clone(t).(*trillian.Tree)
}

func (a *adminStorage) invalidate() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.gen++
	a.trees = nil
}

var _ storage.AdminStorage = (*adminStorage)(nil)

func (a *adminStorage) CheckDatabaseAccessible(ctx context.Context) error {
	return a.s.checkAccessible(ctx)
}

func (s *Storage) checkAccessible(ctx context.Context) error {
	return s.db.Read(ctx, func(q sqldb.Querier) error {
		var one int
		if err := q.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil {
			return fmt.Errorf("database not accessible: %w", err)
		}
		return nil
	})
}

// Snapshot starts a read-only transaction. It takes a read connection only
// when a read misses the tree cache.
func (a *adminStorage) Snapshot(ctx context.Context) (storage.ReadOnlyAdminTX, error) {
	return &adminTX{
		a:        a,
		now:      a.s.now,
		commit:   func() error { return nil },
		rollback: func() error { return nil },
		begin: func(ctx context.Context) (sqldb.Querier, func() error, func() error, error) {
			return a.s.db.Snapshot(ctx)
		},
	}, nil
}

// ReadWriteTransaction runs f in a transaction on the write connection. f is
// called once; it is not retried, since no other writer can conflict.
func (a *adminStorage) ReadWriteTransaction(ctx context.Context, f storage.AdminTXFunc) error {
	a.invalidate()
	defer a.invalidate()
	return a.s.db.Exclusive(ctx, func(q sqldb.Querier) error {
		atx := &adminTX{q: q, now: a.s.now}
		// Commit and Close inside f are no-ops: the writer commits after f.
		atx.commit = func() error { return nil }
		atx.rollback = func() error { return nil }
		return f(ctx, atx)
	})
}

type adminTX struct {
	a        *adminStorage // for snapshots: the tree cache
	q        sqldb.Querier // nil until begin runs (snapshots)
	begin    func(context.Context) (sqldb.Querier, func() error, func() error, error)
	now      func() time.Time
	commit   func() error
	rollback func() error

	mu     sync.Mutex
	closed bool
}

var _ storage.AdminTX = (*adminTX)(nil)

func (t *adminTX) Commit() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return errors.New("transaction already closed")
	}
	t.closed = true
	return t.commit()
}

func (t *adminTX) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil
	}
	t.closed = true
	return t.rollback()
}

const selectTrees = "SELECT tree_id, tree_state, tree_type, display_name, description, create_time_millis, update_time_millis, max_root_duration_millis, deleted, delete_time_millis FROM trees"

// query returns the transaction's connection, starting a snapshot's read
// transaction on first use.
func (t *adminTX) query(ctx context.Context) (sqldb.Querier, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil, errors.New("transaction already closed")
	}
	if t.q == nil {
		q, commit, rollback, err := t.begin(ctx)
		if err != nil {
			return nil, fmt.Errorf("begin snapshot: %w", err)
		}
		t.q, t.commit, t.rollback = q, commit, rollback
	}
	return t.q, nil
}

func (t *adminTX) GetTree(ctx context.Context, treeID int64) (*trillian.Tree, error) {
	var gen uint64
	if t.a != nil {
		var tree *trillian.Tree
		if tree, gen = t.a.cached(treeID); tree != nil {
			return tree, nil
		}
	}
	q, err := t.query(ctx)
	if err != nil {
		return nil, err
	}
	tree, err := scanTree(q.QueryRowContext(ctx, selectTrees+" WHERE tree_id = ?", treeID))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, status.Errorf(codes.NotFound, "tree %d not found", treeID)
	}
	if err != nil {
		return nil, fmt.Errorf("read tree %d: %w", treeID, err)
	}
	if t.a != nil {
		t.a.remember(tree, gen)
	}
	return tree, nil
}

func (t *adminTX) ListTrees(ctx context.Context, includeDeleted bool) ([]*trillian.Tree, error) {
	q := selectTrees
	if !includeDeleted {
		q += " WHERE deleted = 0"
	}
	qr, err := t.query(ctx)
	if err != nil {
		return nil, err
	}
	rows, err := qr.QueryContext(ctx, q+" ORDER BY tree_id")
	if err != nil {
		return nil, fmt.Errorf("list trees: %w", err)
	}
	defer rows.Close()
	trees := []*trillian.Tree{}
	for rows.Next() {
		tree, err := scanTree(rows)
		if err != nil {
			return nil, fmt.Errorf("list trees: %w", err)
		}
		trees = append(trees, tree)
	}
	return trees, rows.Err()
}

func (t *adminTX) CreateTree(ctx context.Context, tree *trillian.Tree) (*trillian.Tree, error) {
	if err := storage.ValidateTreeForCreation(ctx, tree); err != nil {
		return nil, err
	}
	id, err := storage.NewTreeID()
	if err != nil {
		return nil, err
	}
	if err := tree.MaxRootDuration.CheckValid(); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "max_root_duration: %v", err)
	}
	// Times are stored in milliseconds; return what a later read returns.
	now := time.UnixMilli(t.now().UnixMilli())
	created := proto.Clone(tree).(*trillian.Tree)
	created.TreeId = id
	created.CreateTime = timestamppb.New(now)
	created.UpdateTime = timestamppb.New(now)
	_, err = t.q.ExecContext(ctx,
		"INSERT INTO trees (tree_id, tree_state, tree_type, display_name, description, create_time_millis, update_time_millis, max_root_duration_millis) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
		id, created.TreeState.String(), created.TreeType.String(), created.DisplayName, created.Description,
		now.UnixMilli(), now.UnixMilli(), created.MaxRootDuration.AsDuration().Milliseconds())
	if err != nil {
		return nil, fmt.Errorf("create tree: %w", err)
	}
	return created, nil
}

func (t *adminTX) UpdateTree(ctx context.Context, treeID int64, updateFunc func(*trillian.Tree)) (*trillian.Tree, error) {
	tree, err := t.GetTree(ctx, treeID)
	if err != nil {
		return nil, err
	}
	before := proto.Clone(tree).(*trillian.Tree)
	updateFunc(tree)
	if err := storage.ValidateTreeForUpdate(ctx, before, tree); err != nil {
		return nil, err
	}
	if err := tree.MaxRootDuration.CheckValid(); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "max_root_duration: %v", err)
	}
	now := time.UnixMilli(t.now().UnixMilli())
	tree.UpdateTime = timestamppb.New(now)
	_, err = t.q.ExecContext(ctx,
		"UPDATE trees SET tree_state = ?, tree_type = ?, display_name = ?, description = ?, update_time_millis = ?, max_root_duration_millis = ? WHERE tree_id = ?",
		tree.TreeState.String(), tree.TreeType.String(), tree.DisplayName, tree.Description,
		now.UnixMilli(), tree.MaxRootDuration.AsDuration().Milliseconds(), treeID)
	if err != nil {
		return nil, fmt.Errorf("update tree %d: %w", treeID, err)
	}
	return tree, nil
}

func (t *adminTX) SoftDeleteTree(ctx context.Context, treeID int64) (*trillian.Tree, error) {
	if err := t.checkDeleted(ctx, treeID, false); err != nil {
		return nil, err
	}
	if _, err := t.q.ExecContext(ctx, "UPDATE trees SET deleted = 1, delete_time_millis = ? WHERE tree_id = ?", t.now().UnixMilli(), treeID); err != nil {
		return nil, fmt.Errorf("soft delete tree %d: %w", treeID, err)
	}
	return t.GetTree(ctx, treeID)
}

func (t *adminTX) UndeleteTree(ctx context.Context, treeID int64) (*trillian.Tree, error) {
	if err := t.checkDeleted(ctx, treeID, true); err != nil {
		return nil, err
	}
	if _, err := t.q.ExecContext(ctx, "UPDATE trees SET deleted = 0, delete_time_millis = NULL WHERE tree_id = ?", treeID); err != nil {
		return nil, fmt.Errorf("undelete tree %d: %w", treeID, err)
	}
	return t.GetTree(ctx, treeID)
}

func (t *adminTX) HardDeleteTree(ctx context.Context, treeID int64) error {
	if err := t.checkDeleted(ctx, treeID, true); err != nil {
		return err
	}
	for _, table := range []string{"unsequenced", "sequenced_leaves", "leaf_data", "subtrees", "tree_heads", "trees"} {
		if _, err := t.q.ExecContext(ctx, "DELETE FROM "+table+" WHERE tree_id = ?", treeID); err != nil {
			return fmt.Errorf("hard delete tree %d from %s: %w", treeID, table, err)
		}
	}
	return nil
}

// checkDeleted fails unless the tree exists and its deleted flag is want.
func (t *adminTX) checkDeleted(ctx context.Context, treeID int64, want bool) error {
	var deleted bool
	err := t.q.QueryRowContext(ctx, "SELECT deleted FROM trees WHERE tree_id = ?", treeID).Scan(&deleted)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return status.Errorf(codes.NotFound, "tree %d not found", treeID)
	case err != nil:
		return fmt.Errorf("read tree %d: %w", treeID, err)
	case want && !deleted:
		return status.Errorf(codes.FailedPrecondition, "tree %d is not soft deleted", treeID)
	case !want && deleted:
		return status.Errorf(codes.FailedPrecondition, "tree %d already soft deleted", treeID)
	}
	return nil
}

type scanner interface{ Scan(dest ...any) error }

func scanTree(r scanner) (*trillian.Tree, error) {
	var (
		tree                                  trillian.Tree
		state, typ                            string
		createMillis, updateMillis, maxMillis int64
		deleted                               bool
		deleteMillis                          sql.NullInt64
	)
	if err := r.Scan(&tree.TreeId, &state, &typ, &tree.DisplayName, &tree.Description,
		&createMillis, &updateMillis, &maxMillis, &deleted, &deleteMillis); err != nil {
		return nil, err
	}
	st, ok := trillian.TreeState_value[state]
	if !ok {
		return nil, fmt.Errorf("tree %d: unknown state %q", tree.TreeId, state)
	}
	tt, ok := trillian.TreeType_value[typ]
	if !ok {
		return nil, fmt.Errorf("tree %d: unknown type %q", tree.TreeId, typ)
	}
	tree.TreeState = trillian.TreeState(st)
	tree.TreeType = trillian.TreeType(tt)
	tree.CreateTime = timestamppb.New(time.UnixMilli(createMillis))
	tree.UpdateTime = timestamppb.New(time.UnixMilli(updateMillis))
	tree.MaxRootDuration = durationpb.New(time.Duration(maxMillis) * time.Millisecond)
	tree.Deleted = deleted
	if deleted && deleteMillis.Valid {
		tree.DeleteTime = timestamppb.New(time.UnixMilli(deleteMillis.Int64))
	}
	return &tree, nil
}
