package ledgersql

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/vigie-sante/vigie/ledger/sqldb"
)

// ApplicationID is the SQLite application_id of Vigie's database ("VGD1"):
// Open refuses a SQLite file of another application.
const ApplicationID = 0x56474431

// DBConfig says where Vigie's database is. Exactly one of PostgreSQL and
// SQLite is set.
type DBConfig struct {
	// PostgreSQL is the URL (postgres://...) of a database on PostgreSQL
	// or CockroachDB.
	PostgreSQL string
	// SQLite is the file of the embedded mode's database.
	SQLite string
	// Also are the other tables of the database (the consent store's
	// Migrations), migrated with the ledger's.
	Also []sqldb.Migration
}

// Open opens Vigie's database, brings its schema to Migrations and
// cfg.Also, and returns it with the ledger's Store on it. The migrations
// are applied as one list: sqldb.DB.Migrate refuses a database with
// migrations it does not know. On error, the database is closed.
func Open(ctx context.Context, cfg DBConfig) (*sqldb.DB, *Store, error) {
	var db *sqldb.DB
	var err error
	switch {
	case (cfg.PostgreSQL == "") == (cfg.SQLite == ""):
		return nil, nil, errors.New("ledgersql: want exactly one of PostgreSQL and SQLite")
	case cfg.SQLite != "":
		db, err = sqldb.OpenSQLiteDB(ctx, cfg.SQLite, sqldb.Options{SQLite: sqldb.SQLiteOptions{ApplicationID: ApplicationID, Name: "Vigie database"}})
	default:
		db, err = sqldb.OpenPostgres(ctx, cfg.PostgreSQL, sqldb.Options{})
	}
	if err != nil {
		return nil, nil, fmt.Errorf("open database: %w", err)
	}
	if err := db.Migrate(ctx, append(slices.Clone(Migrations), cfg.Also...)); err != nil {
		db.Close()
		return nil, nil, fmt.Errorf("database schema: %w", err)
	}
	return db, New(db), nil
}
