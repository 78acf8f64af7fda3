package sqldb

import (
	"context"
	"database/sql"
	"fmt"
)

// maxCachedStmts bounds a connection's statement cache; queries beyond it
// (rare IN-list lengths) are prepared each time.
const maxCachedStmts = 256

// conn is a connection this package owns, with its prepared statements.
// SQLite spends more time parsing a short statement than running it, so
// each query is prepared once per connection and reused. Transactions are
// plain BEGIN/COMMIT statements on the connection. A conn is used by one
// goroutine at a time (its holder); it implements Querier.
type conn struct {
	c     *sql.Conn
	stmts map[string]*sql.Stmt
}

func newConn(c *sql.Conn) *conn { return &conn{c: c, stmts: make(map[string]*sql.Stmt)} }

func (c *conn) stmt(ctx context.Context, query string) (*sql.Stmt, error) {
	if st, ok := c.stmts[query]; ok {
		return st, nil
	}
	st, err := c.c.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	if len(c.stmts) < maxCachedStmts {
		c.stmts[query] = st
	}
	return st, nil
}

func (c *conn) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	st, err := c.stmt(ctx, query)
	if err != nil {
		return nil, err
	}
	return st.ExecContext(ctx, args...)
}

func (c *conn) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	st, err := c.stmt(ctx, query)
	if err != nil {
		return nil, err
	}
	return st.QueryContext(ctx, args...)
}

func (c *conn) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	st, err := c.stmt(ctx, query)
	if err != nil {
		// Let the plain call report the preparation error through Row.
		return c.c.QueryRowContext(ctx, query, args...)
	}
	return st.QueryRowContext(ctx, args...)
}

// exec runs a transaction-control statement. It is not bound to a caller's
// context: a transaction must end whatever happens to the caller.
func (c *conn) exec(query string) error {
	if _, err := c.ExecContext(context.Background(), query); err != nil {
		return fmt.Errorf("%s: %w", query, err)
	}
	return nil
}

func (c *conn) close() error {
	for _, st := range c.stmts {
		st.Close()
	}
	c.stmts = nil
	return c.c.Close()
}

// readers is a fixed pool of read-only connections.
type readers struct {
	free chan *conn
	all  []*conn
}

func newReaders(ctx context.Context, db *sql.DB, n int) (*readers, error) {
	r := &readers{free: make(chan *conn, n)}
	for range n {
		c, err := db.Conn(ctx)
		if err != nil {
			r.close()
			return nil, err
		}
		rc := newConn(c)
		r.all = append(r.all, rc)
		r.free <- rc
	}
	return r, nil
}

func (r *readers) get(ctx context.Context) (*conn, error) {
	select {
	case c := <-r.free:
		return c, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (r *readers) put(c *conn) { r.free <- c }

func (r *readers) close() error {
	var first error
	for _, c := range r.all {
		if err := c.close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// read runs f in a read transaction on a pooled connection.
func (r *readers) read(ctx context.Context, f func(q Querier) error) error {
	c, err := r.get(ctx)
	if err != nil {
		return err
	}
	defer r.put(c)
	if err := c.exec("BEGIN"); err != nil {
		return err
	}
	if err := f(c); err != nil {
		c.exec("ROLLBACK")
		return err
	}
	return c.exec("COMMIT")
}

// snapshot starts a read transaction that the caller ends with commit or
// rollback; either returns the connection to the pool.
func (r *readers) snapshot(ctx context.Context) (q Querier, commit, rollback func() error, err error) {
	c, err := r.get(ctx)
	if err != nil {
		return nil, nil, nil, err
	}
	if err := c.exec("BEGIN"); err != nil {
		r.put(c)
		return nil, nil, nil, err
	}
	end := func(stmt string) func() error {
		return func() error {
			err := c.exec(stmt)
			r.put(c)
			return err
		}
	}
	return c, end("COMMIT"), end("ROLLBACK"), nil
}
