package sqldb_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/vigie-sante/vigie/ledger/sqldb"
)

// TestListenNotify: a notification is delivered when its transaction
// commits, never when it rolls back; Listen says when it (re)connects; a
// killed connection is replaced. On SQLite, Notify does nothing and
// Listen returns ErrNoListen.
func TestListenNotify(t *testing.T) {
	dialects(t, func(t *testing.T, db *sqldb.DB) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		notify := func(commit bool) {
			t.Helper()
			errRollback := errors.New("roll back")
			err := db.ReadWrite(ctx, func(ctx context.Context, tx sqldb.Tx) error {
				if err := sqldb.Notify(ctx, tx, "test_channel"); err != nil {
					return err
				}
				if !commit {
					return errRollback
				}
				return nil
			})
			if err != nil && (commit || !errors.Is(err, errRollback)) {
				t.Fatal(err)
			}
		}
		if db.Dialect() != sqldb.PostgreSQLDialect {
			notify(true)
			if err := db.Listen(ctx, "test_channel", sqldb.ListenOptions{}, func(bool) {}); !errors.Is(err, sqldb.ErrNoListen) {
				t.Errorf("Listen on %v = %v, want ErrNoListen", db.Dialect(), err)
			}
			return
		}
		type wake struct{ reconnected bool }
		wakes := make(chan wake, 16)
		done := make(chan error, 1)
		go func() {
			done <- db.Listen(ctx, "test_channel", sqldb.ListenOptions{MinBackoff: 10 * time.Millisecond}, func(r bool) { wakes <- wake{r} })
		}()
		next := func(what string) wake {
			t.Helper()
			select {
			case w := <-wakes:
				return w
			case <-time.After(time.Minute):
				t.Fatalf("no wake-up: %s", what)
			}
			panic("unreachable")
		}
		if w := next("the first connection"); !w.reconnected {
			t.Fatalf("first wake-up %+v, want the connection's", w)
		}
		notify(false)
		notify(true)
		if w := next("the committed notification"); w.reconnected {
			t.Fatalf("wake-up %+v, want a notification", w)
		}
		select {
		case w := <-wakes:
			t.Fatalf("a second wake-up %+v: the rolled-back transaction notified", w)
		case <-time.After(200 * time.Millisecond):
		}
		// Kill the listening connection: Listen connects again and says so.
		err := db.Read(ctx, func(ctx context.Context, tx sqldb.Tx) error {
			var n int
			return tx.QueryRow(ctx, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = current_database() AND application_name = $1", sqldb.ListenerName).Scan(&n)
		})
		if err != nil {
			t.Fatal(err)
		}
		if w := next("the reconnection"); !w.reconnected {
			t.Fatalf("wake-up after the kill %+v, want the new connection's", w)
		}
		notify(true)
		if w := next("a notification after the reconnection"); w.reconnected {
			t.Fatalf("wake-up %+v, want a notification", w)
		}
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Listen after cancel = %v, want context.Canceled", err)
		}
	})
}
