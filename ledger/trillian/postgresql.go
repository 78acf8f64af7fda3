package trillian

import (
	"context"
	_ "embed"
	"fmt"

	"github.com/google/trillian/monitoring"
	"github.com/google/trillian/storage"
	"github.com/google/trillian/storage/postgresql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

//go:embed postgresql_schema.sql
var postgresqlSchema string

// schemaLockKey serialises schema creation between processes starting at
// the same time (pg_advisory_xact_lock).
const schemaLockKey = 0x76696769 // "vigi"

// PostgreSQL is Trillian's own PostgreSQL storage, opened on a database.
// It implements storage.Provider.
type PostgreSQL struct {
	pool  *pgxpool.Pool
	log   storage.LogStorage
	admin storage.AdminStorage
}

var _ storage.Provider = (*PostgreSQL)(nil)

// OpenPostgreSQL opens Trillian's PostgreSQL storage on the database at dsn
// (a postgres:// URL), creating Trillian's tables first if the database has
// none. mf may be nil.
func OpenPostgreSQL(ctx context.Context, dsn string, mf monitoring.MetricFactory) (*PostgreSQL, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("trillian: parse postgresql url: %w", err)
	}
	// Trillian's PostgreSQL storage is written for PostgreSQL's default
	// isolation and does not retry serialization failures, so its sessions
	// use READ COMMITTED whatever the database's default is. (Vigie's own
	// tables run at SERIALIZABLE, with retries.)
	cfg.ConnConfig.RuntimeParams["default_transaction_isolation"] = "read committed"
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("trillian: open postgresql: %w", err)
	}
	if err := ensurePostgreSQLSchema(ctx, pool); err != nil {
		pool.Close()
		return nil, err
	}
	return &PostgreSQL{
		pool:  pool,
		log:   postgresql.NewLogStorage(pool, mf),
		admin: postgresql.NewAdminStorage(pool),
	}, nil
}

func ensurePostgreSQLSchema(ctx context.Context, pool *pgxpool.Pool) error {
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", schemaLockKey); err != nil {
			return fmt.Errorf("trillian: lock schema: %w", err)
		}
		var exists bool
		if err := tx.QueryRow(ctx, "SELECT to_regclass('trees') IS NOT NULL").Scan(&exists); err != nil {
			return fmt.Errorf("trillian: inspect schema: %w", err)
		}
		if exists {
			return nil
		}
		// Without arguments pgx uses the simple query protocol, which runs
		// a script of several statements (and PL/pgSQL bodies) as one.
		if _, err := tx.Exec(ctx, postgresqlSchema); err != nil {
			return fmt.Errorf("trillian: create schema: %w", err)
		}
		return nil
	})
}

// LogStorage returns Trillian's PostgreSQL log storage.
func (p *PostgreSQL) LogStorage() storage.LogStorage { return p.log }

// AdminStorage returns Trillian's PostgreSQL admin storage.
func (p *PostgreSQL) AdminStorage() storage.AdminStorage { return p.admin }

// Close closes the connection pool.
func (p *PostgreSQL) Close() error {
	p.pool.Close()
	return nil
}
