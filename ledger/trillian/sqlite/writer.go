package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
)

// maxGroup bounds how many queued writes share one transaction, so that one
// commit never holds the write lock for long.
const maxGroup = 1024

// writer owns the only connection that writes to the database. SQLite
// serialises writers anyway; doing it here means no caller ever sees
// SQLITE_BUSY from a competing writer, and lets concurrent small writes share
// one transaction and one fsync (group commit).
//
// Two kinds of work use the connection:
//   - exclusive: one caller holds the connection for a whole transaction
//     (Trillian's ReadWriteTransaction, the admin transactions);
//   - grouped: short jobs (QueueLeaves, AddSequencedLeaves) are queued; whoever
//     takes the connection next runs every queued job in one transaction, each
//     inside its own savepoint so that one failing job does not undo the
//     others, then commits once and wakes every submitter.
//
// Every job runs on a goroutine that submitted one (the leader of its group),
// never on a background goroutine, so a job that panics or calls
// runtime.Goexit does so on a goroutine that asked for that work.
type writer struct {
	conn  *sql.Conn
	token chan struct{} // holding a value in the channel means owning conn

	mu      sync.Mutex
	pending []*job
}

type job struct {
	ctx  context.Context
	fn   func(ctx context.Context, tx *sql.Tx) error
	err  error
	done chan struct{}
}

func newWriter(conn *sql.Conn) *writer {
	return &writer{conn: conn, token: make(chan struct{}, 1)}
}

// acquire takes the write connection, waiting for it at most as long as ctx.
func (w *writer) acquire(ctx context.Context) error {
	select {
	case w.token <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (w *writer) release() { <-w.token }

// exclusive runs f in a transaction of its own on the write connection and
// commits it if f returns nil. f runs on the caller's goroutine.
func (w *writer) exclusive(ctx context.Context, f func(tx *sql.Tx) error) error {
	if err := w.acquire(ctx); err != nil {
		return err
	}
	defer w.release()
	// The transaction is not bound to ctx: database/sql would roll it back
	// from another goroutine on cancellation while f may still be using it.
	tx, err := w.conn.BeginTx(context.Background(), nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	finished := false
	defer func() {
		// Also reached when f panics or calls runtime.Goexit (t.Fatal in
		// a test): the connection must not stay inside a transaction.
		if !finished {
			_ = tx.Rollback()
		}
	}()
	if err := f(tx); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	finished = true
	if err := tx.Commit(); err != nil {
		w.abandon()
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// abandon makes sure no transaction is left open on the connection after a
// failed COMMIT, which SQLite may leave active (for example on SQLITE_BUSY).
func (w *writer) abandon() {
	_, _ = w.conn.ExecContext(context.Background(), "ROLLBACK")
}

// group runs fn in a transaction shared with other concurrent callers, and
// returns once that transaction has committed (or failed). fn must only use
// tx; it may be rolled back to its own savepoint without affecting the others.
func (w *writer) group(ctx context.Context, fn func(ctx context.Context, tx *sql.Tx) error) error {
	j := &job{ctx: ctx, fn: fn, done: make(chan struct{})}
	w.mu.Lock()
	w.pending = append(w.pending, j)
	w.mu.Unlock()

	select {
	case w.token <- struct{}{}:
		// We own the connection: run whatever is queued, which includes
		// our own job unless a previous leader already ran it.
		w.runPending()
		w.release()
	case <-j.done:
	}
	<-j.done
	return j.err
}

func (w *writer) runPending() {
	for {
		w.mu.Lock()
		n := min(len(w.pending), maxGroup)
		batch := w.pending[:n:n]
		w.pending = w.pending[n:]
		w.mu.Unlock()
		if n == 0 {
			return
		}
		w.runBatch(batch)
		if n < maxGroup {
			return
		}
	}
}

func (w *writer) runBatch(batch []*job) {
	defer func() {
		for _, j := range batch {
			close(j.done)
		}
	}()
	fail := func(err error) {
		for _, j := range batch {
			if j.err == nil {
				j.err = err
			}
		}
	}
	tx, err := w.conn.BeginTx(context.Background(), nil)
	if err != nil {
		fail(fmt.Errorf("begin: %w", err))
		return
	}
	ran := 0
	for _, j := range batch {
		if err := j.ctx.Err(); err != nil {
			j.err = err
			continue
		}
		if _, err := tx.Exec("SAVEPOINT job"); err != nil {
			j.err = fmt.Errorf("savepoint: %w", err)
			continue
		}
		if err := j.fn(j.ctx, tx); err != nil {
			j.err = err
			if _, rerr := tx.Exec("ROLLBACK TO job"); rerr != nil {
				// The transaction is in an unknown state: fail everyone.
				_ = tx.Rollback()
				fail(errors.Join(err, fmt.Errorf("rollback to savepoint: %w", rerr)))
				return
			}
		}
		if _, err := tx.Exec("RELEASE job"); err != nil {
			_ = tx.Rollback()
			fail(fmt.Errorf("release savepoint: %w", err))
			return
		}
		ran++
	}
	if ran == 0 {
		_ = tx.Rollback()
		return
	}
	if err := tx.Commit(); err != nil {
		// Nothing of this batch is durable.
		w.abandon()
		for _, j := range batch {
			j.err = fmt.Errorf("commit: %w", err)
		}
	}
}
