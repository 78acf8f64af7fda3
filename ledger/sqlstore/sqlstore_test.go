package sqlstore_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/vigie-sante/vigie/ledger"
	"github.com/vigie-sante/vigie/ledger/sqldb"
	"github.com/vigie-sante/vigie/ledger/sqldb/pgtest"
	"github.com/vigie-sante/vigie/ledger/sqlstore"
	"github.com/vigie-sante/vigie/ledger/storetest"
)

func migrated(t *testing.T, db *sqldb.DB, err error) ledger.Store {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.Migrate(context.Background(), sqlstore.Migrations); err != nil {
		t.Fatal(err)
	}
	return sqlstore.New(db)
}

func TestSQLite(t *testing.T) {
	storetest.Run(t, func(t *testing.T) ledger.Store {
		db, err := sqldb.OpenSQLiteDB(context.Background(), filepath.Join(t.TempDir(), "vigie.db"), sqldb.Options{SQLite: sqldb.SQLiteOptions{ApplicationID: 0x56474431}})
		return migrated(t, db, err)
	})
}

func TestPostgreSQL(t *testing.T) {
	storetest.Run(t, func(t *testing.T) ledger.Store {
		db, err := sqldb.OpenPostgres(context.Background(), pgtest.NewDatabase(t), sqldb.Options{})
		return migrated(t, db, err)
	})
}
