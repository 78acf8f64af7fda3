package ledgersql_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/vigie-sante/vigie/ledger"
	"github.com/vigie-sante/vigie/ledger/ledgersql"
	"github.com/vigie-sante/vigie/ledger/ledgerstoretest"
	"github.com/vigie-sante/vigie/ledger/sqldb"
	"github.com/vigie-sante/vigie/ledger/sqldb/pgtest"
)

func migrated(t *testing.T, db *sqldb.DB, err error) ledger.Store {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.Migrate(context.Background(), ledgersql.Migrations); err != nil {
		t.Fatal(err)
	}
	return ledgersql.New(db)
}

func TestSQLite(t *testing.T) {
	ledgerstoretest.Run(t, func(t *testing.T) ledger.Store {
		db, err := sqldb.OpenSQLiteDB(context.Background(), filepath.Join(t.TempDir(), "vigie.db"), sqldb.Options{SQLite: sqldb.SQLiteOptions{ApplicationID: 0x56474431}})
		return migrated(t, db, err)
	})
}

func TestPostgreSQL(t *testing.T) {
	ledgerstoretest.Run(t, func(t *testing.T) ledger.Store {
		db, err := sqldb.OpenPostgres(context.Background(), pgtest.NewDatabase(t), sqldb.Options{})
		return migrated(t, db, err)
	})
}

// TestHashRequestIDs: request ids stored in clear by the version before
// ledger/2 are found by their keyed hash once converted; the clear columns
// are gone; a second run, or a run after a crash between its steps, does
// nothing more.
func TestHashRequestIDs(t *testing.T) {
	ctx := context.Background()
	for _, backend := range []string{"SQLite", "PostgreSQL"} {
		t.Run(backend, func(t *testing.T) {
			var db *sqldb.DB
			var err error
			if backend == "SQLite" {
				db, err = sqldb.OpenSQLiteDB(ctx, filepath.Join(t.TempDir(), "vigie.db"), sqldb.Options{SQLite: sqldb.SQLiteOptions{ApplicationID: 0x56474431}})
			} else {
				db, err = sqldb.OpenPostgres(ctx, pgtest.NewDatabase(t), sqldb.Options{})
			}
			store := migrated(t, db, err)
			pseudonyms, err := ledger.NewPseudonymizer(make([]byte, ledger.KeySize))
			if err != nil {
				t.Fatal(err)
			}
			old := ledger.Key{Service: "hospital-his", RequestID: "his-279035121518989-1"}
			exec := func(q string, args ...any) {
				t.Helper()
				if err := db.ReadWrite(ctx, func(ctx context.Context, tx sqldb.Tx) error {
					_, err := tx.Exec(ctx, q, args...)
					return err
				}); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}
			// An event as the earlier version stored it.
			exec("INSERT INTO events (leaf_index, commitment, pseudonym, seq, kind, time_nanos, service, break_glass, sealed, idem_service, idem_request) VALUES (0, $1, $2, 1, 'access', 1, $3, 0, $4, $3, $5)",
				make([]byte, 32), make([]byte, 32), old.Service, []byte("sealed"), old.RequestID)
			if ran, err := ledgersql.HashRequestIDs(ctx, db, pseudonyms.RequestHash); err != nil || !ran {
				t.Fatalf("HashRequestIDs = %v, %v; want it to run", ran, err)
			}
			err = store.Read(ctx, func(ctx context.Context, tx ledger.StoreReader) error {
				e, err := tx.EventByKey(ctx, pseudonyms.RequestHash(old))
				if err != nil || e.Index != 0 {
					t.Errorf("EventByKey(converted key) = %+v, %v; want event 0", e, err)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			err = db.Read(ctx, func(ctx context.Context, tx sqldb.Tx) error {
				_, err := tx.Exec(ctx, "SELECT idem_request FROM events")
				return err
			})
			if err == nil {
				t.Error("the column idem_request is still there")
			}
			if ran, err := ledgersql.HashRequestIDs(ctx, db, pseudonyms.RequestHash); err != nil || ran {
				t.Errorf("HashRequestIDs again = %v, %v; want nothing done", ran, err)
			}
			// A crash after the columns were dropped, before the record.
			exec("DELETE FROM ledger_meta WHERE name = 'request-ids-hashed'")
			if ran, err := ledgersql.HashRequestIDs(ctx, db, pseudonyms.RequestHash); err != nil || !ran {
				t.Errorf("HashRequestIDs after a crash = %v, %v; want it to finish", ran, err)
			}
		})
	}
}
