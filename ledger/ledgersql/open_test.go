package ledgersql_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vigie-sante/vigie/ledger/ledgersql"
	"github.com/vigie-sante/vigie/ledger/sqldb"
)

// TestOpen: Open migrates the ledger's tables and the others in one list,
// so that a build that does not know the others' tables refuses the
// database, and closes it when it refuses (the next Open gets the file's
// lock); a SQLite file of another application is refused.
func TestOpen(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "vigie.db")
	other := sqldb.Migration{Name: "other/1", SQLite: "CREATE TABLE other (x INTEGER) STRICT", PostgreSQL: "CREATE TABLE other (x BIGINT)"}
	open := func(also ...sqldb.Migration) error {
		db, _, err := ledgersql.Open(ctx, ledgersql.DBConfig{SQLite: path, Also: also})
		if err == nil {
			db.Close()
		}
		return err
	}
	if err := open(other); err != nil {
		t.Fatal(err)
	}
	if err := open(); err == nil || !strings.Contains(err.Error(), "database schema") {
		t.Errorf("Open without the other tables = %v, want a schema error", err)
	}
	if err := open(other); err != nil {
		t.Errorf("Open after a refusal = %v (the refused database stayed open?)", err)
	}

	foreign := filepath.Join(dir, "foreign.db")
	s, err := sqldb.OpenSQLite(ctx, foreign, sqldb.SQLiteOptions{ApplicationID: 0x54455354})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if db, _, err := ledgersql.Open(ctx, ledgersql.DBConfig{SQLite: foreign}); err == nil {
		db.Close()
		t.Error("Open of another application's SQLite file succeeded")
	}
	if _, _, err := ledgersql.Open(ctx, ledgersql.DBConfig{}); err == nil {
		t.Error("Open without a database succeeded")
	}
}
