package sqldb

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"time"
)

// checkpointer copies a database's write-ahead log into the database file
// from a connection of its own, every interval, with PASSIVE checkpoints:
// they copy what no reader still needs and never block the writer, so the
// copying and its fsync leave the commit path.
type checkpointer struct {
	db   *sql.DB
	stop context.CancelFunc
	wg   sync.WaitGroup

	// limit is SQLiteOptions.WALLimit (<= 0: none), frame the size of a
	// log frame (a page and its header).
	limit, frame int64
	// running is held while a checkpoint runs (shared with the writer).
	running *sync.Mutex

	mu      sync.Mutex
	runs    int  // checkpoints that copied frames, for tests
	pending bool // a TRUNCATE checkpoint was asked for and has not succeeded
}

const checkpointerBusyTimeout = 10 * time.Second

func startCheckpointer(ctx context.Context, path string, every time.Duration, limit int64, running *sync.Mutex) (*checkpointer, error) {
	db, err := sql.Open("sqlite", fmt.Sprintf("%s?_pragma=busy_timeout(%d)", path, checkpointerBusyTimeout.Milliseconds()))
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxLifetime(0)
	db.SetConnMaxIdleTime(0)
	// The connection must not checkpoint as a side effect of anything
	// else, and fails now rather than at the first tick if it cannot open.
	if _, err := db.ExecContext(ctx, "PRAGMA wal_autocheckpoint=0"); err != nil {
		db.Close()
		return nil, err
	}
	var page int64
	if err := db.QueryRowContext(ctx, "PRAGMA page_size").Scan(&page); err != nil {
		db.Close()
		return nil, err
	}
	runCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	c := &checkpointer{db: db, stop: stop, limit: limit, frame: page + 24, running: running}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-runCtx.Done():
				return
			case <-t.C:
			}
			c.once(runCtx)
		}
	}()
	return c, nil
}

// once runs one PASSIVE checkpoint, or a TRUNCATE one while one is
// pending or when the log holds half of its limit: a PASSIVE checkpoint
// never restarts the log, which SQLite itself restarts only when no
// reader uses it, seldom under load. A failure is left to the next one,
// and behind them to the commits (WALLimit, CheckpointPages).
func (c *checkpointer) once(ctx context.Context) {
	c.running.Lock()
	defer c.running.Unlock()
	c.mu.Lock()
	pending := c.pending
	c.mu.Unlock()
	if pending {
		c.truncateLocked(ctx)
		return
	}
	var busy, logFrames, copied int
	if err := c.db.QueryRowContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &logFrames, &copied); err != nil {
		return
	}
	if copied > 0 {
		c.mu.Lock()
		c.runs++
		c.mu.Unlock()
	}
	if c.limit > 0 && int64(logFrames)*c.frame > c.limit/2 {
		c.truncateLocked(ctx)
	}
}

// truncate runs a TRUNCATE checkpoint; until one succeeds, the next
// rounds run TRUNCATE checkpoints instead of PASSIVE ones.
func (c *checkpointer) truncate(ctx context.Context) error {
	c.running.Lock()
	defer c.running.Unlock()
	return c.truncateLocked(ctx)
}

// truncateLocked is truncate with c.running held.
func (c *checkpointer) truncateLocked(ctx context.Context) error {
	err := func() error {
		conn, err := c.db.Conn(ctx)
		if err != nil {
			return fmt.Errorf("truncate the write-ahead log: %w", err)
		}
		defer conn.Close()
		return truncateWAL(ctx, conn, checkpointerBusyTimeout)
	}()
	c.mu.Lock()
	c.pending = err != nil
	c.mu.Unlock()
	return err
}

func (c *checkpointer) copies() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.runs
}

// close stops the checkpoints; SQLite checkpoints what remains when the
// last connection closes.
func (c *checkpointer) close() error {
	c.stop()
	c.wg.Wait()
	return c.db.Close()
}
