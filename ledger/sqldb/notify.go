package sqldb

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// ErrNoListen is returned by DB.Listen on an engine without LISTEN/NOTIFY
// (SQLite, CockroachDB): the caller polls instead. Callers test for it
// with errors.Is.
var ErrNoListen = errors.New("sqldb: the engine has no LISTEN/NOTIFY")

// Notify sends a notification on channel when tx commits, on PostgreSQL
// (pg_notify, delivered to every session listening at commit, not at
// all if tx rolls back); elsewhere it does nothing. The notification
// carries no payload: it says only that something changed, and listeners
// read what. channel must be a plain identifier.
func Notify(ctx context.Context, tx Tx, channel string) error {
	if tx.Dialect() != PostgreSQLDialect {
		return nil
	}
	if !plainIdentifier(channel) {
		return fmt.Errorf("sqldb: notify: %q is not a plain identifier", channel)
	}
	_, err := tx.Exec(ctx, "SELECT pg_notify($1, '')", channel)
	return err
}

// ListenOptions configure DB.Listen. The zero value is valid.
type ListenOptions struct {
	// Ping is how long the connection may stay silent before Listen
	// checks it with a round trip, so that a connection that died
	// without a word (a network partition) is found and replaced.
	// Default 5s.
	Ping time.Duration
	// MinBackoff and MaxBackoff bound the wait before a reconnection,
	// doubled after each failure (with jitter) from MinBackoff up to
	// MaxBackoff. Default 100ms and 5s.
	MinBackoff, MaxBackoff time.Duration
}

// ListenerName is the application_name of Listen's connections (in
// pg_stat_activity).
const ListenerName = "vigie-listen"

// Listen listens on channel, on a dedicated connection outside the pool,
// until ctx is done, and then returns ctx's error. It calls wake(false)
// for each notification received and wake(true) after each connection is
// established, the first one included: notifications sent while no
// connection listened are lost, so the caller reads again what it follows.
// A lost connection is replaced, after a backoff. wake is called from one
// goroutine at a time and must not block long. On SQLite and CockroachDB
// it returns ErrNoListen at once. channel must be a plain identifier.
func (db *DB) Listen(ctx context.Context, channel string, opts ListenOptions, wake func(reconnected bool)) error {
	if db.dialect != PostgreSQLDialect {
		return ErrNoListen
	}
	if !plainIdentifier(channel) {
		return fmt.Errorf("sqldb: listen: %q is not a plain identifier", channel)
	}
	if opts.Ping <= 0 {
		opts.Ping = 5 * time.Second
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = 100 * time.Millisecond
	}
	if opts.MaxBackoff < opts.MinBackoff {
		opts.MaxBackoff = max(opts.MinBackoff, 5*time.Second)
	}
	backoff := opts.MinBackoff
	for {
		listened := db.listenOnce(ctx, channel, opts.Ping, wake)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if listened {
			backoff = opts.MinBackoff
		}
		select {
		case <-time.After(backoff/2 + rand.N(backoff/2+1)):
		case <-ctx.Done():
			return ctx.Err()
		}
		backoff = min(2*backoff, opts.MaxBackoff)
	}
}

// listenOnce connects, listens and waits for notifications until the
// connection fails or ctx is done. It reports whether it listened.
func (db *DB) listenOnce(ctx context.Context, channel string, ping time.Duration, wake func(bool)) bool {
	cfg := db.pool.Config().ConnConfig.Copy()
	cfg.RuntimeParams["application_name"] = ListenerName
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return false
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "LISTEN "+channel); err != nil {
		return false
	}
	wake(true)
	for {
		wctx, cancel := context.WithTimeout(ctx, ping)
		_, err := conn.WaitForNotification(wctx)
		cancel()
		switch {
		case err == nil:
			wake(false)
		case ctx.Err() != nil:
			return true
		case pgconn.Timeout(err):
			// Silent for a while: is the connection still there?
			pctx, cancel := context.WithTimeout(ctx, ping)
			err := conn.Ping(pctx)
			cancel()
			if err != nil {
				return true
			}
		default:
			return true // the connection failed: reconnect
		}
	}
}
