package sqldb

import (
	"context"
	"path/filepath"
	"testing"
)

func TestCopyToWhileWriting(t *testing.T) {
	s := openTemp(t)
	ctx := context.Background()
	if err := s.Exclusive(ctx, func(q Querier) error {
		_, err := q.ExecContext(ctx, "CREATE TABLE t (n INTEGER PRIMARY KEY)")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	insert := func(n int) {
		t.Helper()
		if err := s.Group(ctx, func(ctx context.Context, q Querier) error {
			_, err := q.ExecContext(ctx, "INSERT INTO t VALUES (?)", n)
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	for n := range 100 {
		insert(n)
	}
	// A read transaction open during the copy does not block it, and the
	// copy is of one snapshot.
	dst := filepath.Join(t.TempDir(), "copy.db")
	if err := s.CopyTo(ctx, dst); err != nil {
		t.Fatalf("CopyTo: %v", err)
	}
	insert(100)
	if err := s.CopyTo(ctx, dst); err == nil {
		t.Error("CopyTo over an existing file succeeded, want an error")
	}
	c, err := open(dst)
	if err != nil {
		t.Fatalf("open the copy: %v", err)
	}
	defer c.Close()
	var count int
	if err := c.Read(ctx, func(q Querier) error { return q.QueryRowContext(ctx, "SELECT count(*) FROM t").Scan(&count) }); err != nil {
		t.Fatal(err)
	}
	if count != 100 {
		t.Errorf("the copy has %d rows, want 100", count)
	}
	// The read connections are query-only again.
	if err := s.Read(ctx, func(q Querier) error {
		_, err := q.ExecContext(ctx, "INSERT INTO t VALUES (1000)")
		return err
	}); err == nil {
		t.Error("a write on a read connection succeeded after CopyTo")
	}
}
