package ledgersql_test

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
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

// TestHashRequestIDsConcurrently: several nodes starting at once on an
// unconverted PostgreSQL database (one pool each) all succeed, one of
// them converts, and every key is found by its hash.
func TestHashRequestIDsConcurrently(t *testing.T) {
	ctx := context.Background()
	url := pgtest.NewDatabase(t)
	const n = 6
	dbs := make([]*sqldb.DB, n)
	for i := range dbs {
		db, err := sqldb.OpenPostgres(ctx, url, sqldb.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		dbs[i] = db
	}
	if err := dbs[0].Migrate(ctx, ledgersql.Migrations); err != nil {
		t.Fatal(err)
	}
	pseudonyms, err := ledger.NewPseudonymizer(make([]byte, ledger.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	var keys []ledger.Key
	for i := range 20 {
		k := ledger.Key{Service: "hospital-his", RequestID: fmt.Sprintf("his-%d", i)}
		keys = append(keys, k)
		if err := dbs[0].ReadWrite(ctx, func(ctx context.Context, tx sqldb.Tx) error {
			_, err := tx.Exec(ctx, "INSERT INTO events (leaf_index, commitment, pseudonym, seq, kind, time_nanos, service, break_glass, sealed, idem_service, idem_request) VALUES ($1, $2, $3, $7, 'access', 1, $4, 0, $5, $4, $6)",
				int64(i), make([]byte, 32), make([]byte, 32), k.Service, []byte("sealed"), k.RequestID, int64(i+1))
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	ran := make([]bool, n)
	errs := make([]error, n)
	for i, db := range dbs {
		wg.Go(func() { ran[i], errs[i] = ledgersql.HashRequestIDs(ctx, db, pseudonyms.RequestHash) })
	}
	wg.Wait()
	runs := 0
	for i := range dbs {
		if errs[i] != nil {
			t.Errorf("node %d: HashRequestIDs: %v", i, errs[i])
		}
		if ran[i] {
			runs++
		}
	}
	if runs != 1 {
		t.Errorf("HashRequestIDs ran on %d nodes, want 1", runs)
	}
	err = ledgersql.New(dbs[1]).Read(ctx, func(ctx context.Context, tx ledger.StoreReader) error {
		for i, k := range keys {
			e, err := tx.EventByKey(ctx, pseudonyms.RequestHash(k))
			if err != nil || e.Index != uint64(i) {
				t.Errorf("EventByKey(key %d) = %+v, %v; want event %d", i, e, err, i)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestMigrateOrganization: a database at the migration before ledger/3,
// holding events, migrated to the last one has the schema of a fresh
// database, with no identifier spelled "organisation" left, and its events
// are found by organization.
func TestMigrateOrganization(t *testing.T) {
	ctx := context.Background()
	previous := -1
	for i, m := range ledgersql.Migrations {
		if m.Name == "ledger/3" {
			previous = i
		}
	}
	if previous < 0 {
		t.Fatal("no migration ledger/3")
	}
	for _, backend := range []string{"SQLite", "PostgreSQL"} {
		t.Run(backend, func(t *testing.T) {
			open := func() *sqldb.DB {
				t.Helper()
				var db *sqldb.DB
				var err error
				if backend == "SQLite" {
					db, err = sqldb.OpenSQLiteDB(ctx, filepath.Join(t.TempDir(), "vigie.db"), sqldb.Options{SQLite: sqldb.SQLiteOptions{ApplicationID: 0x56474431}})
				} else {
					db, err = sqldb.OpenPostgres(ctx, pgtest.NewDatabase(t), sqldb.Options{})
				}
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { db.Close() })
				return db
			}
			old := open()
			if err := old.Migrate(ctx, ledgersql.Migrations[:previous]); err != nil {
				t.Fatal(err)
			}
			// Events as the version before ledger/3 stored them.
			for i, org := range []string{"750000001", "750000002", "750000002"} {
				pseudonym := make([]byte, 32)
				pseudonym[0] = byte(i)
				err := old.ReadWrite(ctx, func(ctx context.Context, tx sqldb.Tx) error {
					_, err := tx.Exec(ctx, "INSERT INTO events (leaf_index, commitment, pseudonym, seq, kind, time_nanos, service, actor, organisation, break_glass, sealed, request_key) VALUES ($1, $2, $3, 1, 'access', $4, 'hospital-his', '10000000001', $5, 0, $6, $7)",
						i, make([]byte, 32), pseudonym, 1000+i, org, []byte("sealed"), bytes.Repeat([]byte{byte(i)}, 16))
					return err
				})
				if err != nil {
					t.Fatal(err)
				}
			}
			if err := old.Migrate(ctx, ledgersql.Migrations); err != nil {
				t.Fatalf("migrate: %v", err)
			}
			fresh := open()
			if err := fresh.Migrate(ctx, ledgersql.Migrations); err != nil {
				t.Fatal(err)
			}
			migratedSchema, freshSchema := schema(t, old), schema(t, fresh)
			if migratedSchema != freshSchema {
				t.Errorf("schema of a migrated database:\n%s\nof a fresh one:\n%s", migratedSchema, freshSchema)
			}
			if strings.Contains(migratedSchema, "organisation") {
				t.Errorf("an identifier is still spelled organisation:\n%s", migratedSchema)
			}
			if !strings.Contains(migratedSchema, "events_by_organization") {
				t.Errorf("no index events_by_organization:\n%s", migratedSchema)
			}
			err := ledgersql.New(old).Read(ctx, func(ctx context.Context, tx ledger.StoreReader) error {
				got, err := tx.SearchEvents(ctx, ledger.SearchFilter{Organization: "750000002"}, -1, 10)
				if err != nil {
					return err
				}
				var idx []string
				for _, e := range got {
					idx = append(idx, fmt.Sprint(e.Index, " ", e.Organization))
				}
				if want := []string{"1 750000002", "2 750000002"}; !slices.Equal(idx, want) {
					t.Errorf("SearchEvents(organization) after the migration = %q, want %q", idx, want)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}

// schema describes a database's tables, columns and indexes, one per line,
// in a stable order.
func schema(t *testing.T, db *sqldb.DB) string {
	t.Helper()
	q := `SELECT 'column', table_name, column_name || ' ' || data_type || ' ' || is_nullable || ' ' || COALESCE(column_default, '') || ' ' || ordinal_position
FROM information_schema.columns WHERE table_schema = current_schema()
UNION ALL SELECT 'index', tablename, indexname || ': ' || indexdef FROM pg_indexes WHERE schemaname = current_schema()
ORDER BY 1, 2, 3`
	if db.Dialect() == sqldb.SQLiteDialect {
		q = "SELECT type, name, COALESCE(sql, '') FROM sqlite_master ORDER BY 1, 2, 3"
	}
	var lines []string
	err := db.Read(context.Background(), func(ctx context.Context, tx sqldb.Tx) error {
		lines = nil
		rows, err := tx.Query(ctx, q)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var kind, name, def string
			if err := rows.Scan(&kind, &name, &def); err != nil {
				return err
			}
			lines = append(lines, kind+" "+name+" "+def)
		}
		return rows.Err()
	})
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(lines, "\n")
}

// TestMigrateDutyCounters: a database at the migration before ledger/5
// keeps its counters when ledger/5 and ledger/6 move the sent size and the
// checkpoint size off the row of the next index, and ends with the schema
// of a fresh database.
func TestMigrateDutyCounters(t *testing.T) {
	ctx := context.Background()
	previous := slices.IndexFunc(ledgersql.Migrations, func(m sqldb.Migration) bool { return m.Name == "ledger/5" })
	if previous < 0 {
		t.Fatal("no migration ledger/5")
	}
	for _, backend := range []string{"SQLite", "PostgreSQL"} {
		t.Run(backend, func(t *testing.T) {
			open := func() *sqldb.DB {
				t.Helper()
				var db *sqldb.DB
				var err error
				if backend == "SQLite" {
					db, err = sqldb.OpenSQLiteDB(ctx, filepath.Join(t.TempDir(), "vigie.db"), sqldb.Options{SQLite: sqldb.SQLiteOptions{ApplicationID: 0x56474431}})
				} else {
					db, err = sqldb.OpenPostgres(ctx, pgtest.NewDatabase(t), sqldb.Options{})
				}
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { db.Close() })
				return db
			}
			old := open()
			if err := old.Migrate(ctx, ledgersql.Migrations[:previous]); err != nil {
				t.Fatal(err)
			}
			err := old.ReadWrite(ctx, func(ctx context.Context, tx sqldb.Tx) error {
				_, err := tx.Exec(ctx, "UPDATE ledger_state SET next_index = 7, sent_size = 5, checkpoint_size = 3 WHERE id = 1")
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			if err := old.Migrate(ctx, ledgersql.Migrations); err != nil {
				t.Fatalf("migrate: %v", err)
			}
			fresh := open()
			if err := fresh.Migrate(ctx, ledgersql.Migrations); err != nil {
				t.Fatal(err)
			}
			if m, f := schema(t, old), schema(t, fresh); m != f {
				t.Errorf("schema of a migrated database:\n%s\nof a fresh one:\n%s", m, f)
			}
			var st ledger.State
			err = ledgersql.New(old).Read(ctx, func(ctx context.Context, tx ledger.StoreReader) error {
				var err error
				st, err = tx.State(ctx)
				return err
			})
			if want := (ledger.State{NextIndex: 7, SentSize: 5, CheckpointSize: 3}); err != nil || st != want {
				t.Errorf("State after the migration = %+v, %v, want %+v", st, err, want)
			}
		})
	}
}
