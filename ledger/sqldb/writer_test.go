package sqldb

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
)

// TestGroupCommitIsolatesFailures submits many concurrent jobs of which
// some fail: the others commit, exactly once each, and the failing ones
// leave nothing behind.
func TestGroupCommitIsolatesFailures(t *testing.T) {
	ctx := context.Background()
	s := openTemp(t)
	if err := s.Exclusive(ctx, func(q Querier) error {
		_, err := q.ExecContext(ctx, "CREATE TABLE jobs (id INTEGER PRIMARY KEY, runs INTEGER NOT NULL)")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	const n = 200
	boom := errors.New("boom")
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.Group(ctx, func(ctx context.Context, q Querier) error {
				if _, err := q.ExecContext(ctx, "INSERT INTO jobs VALUES (?, 1)", i); err != nil {
					return err
				}
				if i%7 == 3 {
					return fmt.Errorf("job %d: %w", i, boom)
				}
				return nil
			})
		}()
	}
	wg.Wait()
	got := map[int]bool{}
	if err := s.Read(ctx, func(q Querier) error {
		rows, err := q.QueryContext(ctx, "SELECT id, runs FROM jobs")
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var id, runs int
			if err := rows.Scan(&id, &runs); err != nil {
				return err
			}
			got[id] = true
		}
		return rows.Err()
	}); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		failing := i%7 == 3
		if failing != errors.Is(errs[i], boom) {
			t.Errorf("job %d: err = %v, want failure %v", i, errs[i], failing)
		}
		if !failing && errs[i] != nil {
			t.Errorf("job %d: err = %v", i, errs[i])
		}
		if got[i] == failing {
			t.Errorf("job %d: stored = %v, want %v", i, got[i], !failing)
		}
	}
}

// TestGroupCommitCanceledJob checks that a job whose context is done before
// it runs reports that and stores nothing.
func TestGroupCommitCanceledJob(t *testing.T) {
	s := openTemp(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	ran := false
	err := s.Group(ctx, func(ctx context.Context, q Querier) error { ran = true; return nil })
	if !errors.Is(err, context.Canceled) || ran {
		t.Errorf("group with a canceled context = %v (ran %v), want context.Canceled without running", err, ran)
	}
}
