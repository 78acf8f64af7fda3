package sqldb

import (
	"context"
	"fmt"
	"os"
	"sync"
	"time"
)

// writerBusyTimeout is the write connection's busy timeout (its DSN's
// busy_timeout).
const writerBusyTimeout = 10 * time.Second

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
//     takes the connection next runs every queued job in one transaction,
//     commits once and wakes every submitter. A failing job does not fail
//     the others: they run again without it (see runBatch).
//
// Every job runs on a goroutine that submitted one (the leader of its group),
// never on a background goroutine, so a job that panics or calls
// runtime.Goexit does so on a goroutine that asked for that work.
type writer struct {
	conn  *conn
	token chan struct{} // holding a value in the channel means owning conn

	mu      sync.Mutex
	pending []*job

	// walPath and walLimit bound the write-ahead log (empty: unbounded);
	// see SQLiteOptions.WALLimit.
	walPath  string
	walLimit int64
	// ckptMu is held by whoever runs a checkpoint (shared with the
	// background checkpointer).
	ckptMu *sync.Mutex
}

type job struct {
	ctx  context.Context
	fn   func(ctx context.Context, q Querier) error
	err  error
	done chan struct{}
}

func newWriter(c *conn, ckptMu *sync.Mutex) *writer {
	return &writer{conn: c, token: make(chan struct{}, 1), ckptMu: ckptMu}
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
func (w *writer) exclusive(ctx context.Context, f func(q Querier) error) error {
	if err := w.acquire(ctx); err != nil {
		return err
	}
	defer w.release()
	if err := w.conn.exec("BEGIN IMMEDIATE"); err != nil {
		return err
	}
	finished := false
	defer func() {
		// Also reached when f panics or calls runtime.Goexit (t.Fatal in
		// a test): the connection must not stay inside a transaction.
		if !finished {
			w.conn.exec("ROLLBACK")
		}
	}()
	if err := f(w.conn); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	finished = true
	return w.commit()
}

// commit commits the open transaction. A failed COMMIT may leave it open
// (SQLITE_BUSY, for one): it is rolled back so that the connection is clean,
// and nothing of it is durable.
func (w *writer) commit() error {
	if err := w.conn.exec("COMMIT"); err != nil {
		w.conn.exec("ROLLBACK")
		return err
	}
	w.boundWAL()
	return nil
}

// boundWAL empties the write-ahead log if its file grew past walLimit:
// the background checkpoints fell behind, or readers kept SQLite from
// restarting the log. The commit is durable already; a failure (readers
// of older snapshots for longer than truncateWait) is left to the next
// commit and to the background checkpoints.
func (w *writer) boundWAL() {
	if w.walPath == "" {
		return
	}
	fi, err := os.Stat(w.walPath)
	if err != nil || fi.Size() <= w.walLimit {
		return
	}
	// SQLite runs one checkpoint at a time and refuses, without waiting,
	// a second one: wait for the background checkpoint, if any, then
	// look again.
	w.ckptMu.Lock()
	defer w.ckptMu.Unlock()
	if fi, err = os.Stat(w.walPath); err != nil || fi.Size() <= w.walLimit {
		return
	}
	truncateWAL(context.Background(), w.conn.c, writerBusyTimeout)
}

// group runs fn in a transaction shared with other concurrent callers, and
// returns once that transaction has committed (or failed). fn must only use
// q, and may be called more than once: it must start from scratch each time.
func (w *writer) group(ctx context.Context, fn func(ctx context.Context, q Querier) error) error {
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

// runBatch runs the jobs in one transaction. Savepoints per job would cost
// two statements each on the common path; instead, if a job fails, the
// transaction is rolled back and the other jobs run again without it, so
// jobs must be safe to run more than once (each starts from scratch).
func (w *writer) runBatch(batch []*job) {
	defer func() {
		for _, j := range batch {
			close(j.done)
		}
	}()
	live := make([]*job, 0, len(batch))
	for _, j := range batch {
		if err := j.ctx.Err(); err != nil {
			j.err = err
			continue
		}
		live = append(live, j)
	}
	for len(live) > 0 {
		if err := w.conn.exec("BEGIN IMMEDIATE"); err != nil {
			for _, j := range live {
				j.err = err
			}
			return
		}
		failed := -1
		for i, j := range live {
			if err := j.fn(j.ctx, w.conn); err != nil {
				j.err = err
				failed = i
				break
			}
		}
		if failed >= 0 {
			if err := w.conn.exec("ROLLBACK"); err != nil {
				for _, j := range live {
					if j.err == nil {
						j.err = err
					}
				}
				return
			}
			live = append(live[:failed:failed], live[failed+1:]...)
			continue
		}
		if err := w.commit(); err != nil {
			// Nothing of this batch is durable.
			for _, j := range live {
				j.err = fmt.Errorf("commit: %w", err)
			}
		}
		return
	}
}
