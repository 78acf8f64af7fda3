package sqldb

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Migration is one step of a schema, written for each dialect (CockroachDB
// runs the PostgreSQL text). Names are unique and never reused; a step,
// once released, never changes.
type Migration struct {
	Name       string
	SQLite     string
	PostgreSQL string
}

// Migrate applies, in order, the migrations the database does not have
// yet, each in its own transaction together with its record in
// schema_migrations. It refuses a database that has a migration this build
// does not know (a newer build made it): nothing is changed then.
func (db *DB) Migrate(ctx context.Context, ms []Migration) error {
	names := make([]string, len(ms))
	for i, m := range ms {
		if m.Name == "" || slices.Contains(names[:i], m.Name) {
			return fmt.Errorf("sqldb: migration %d: empty or duplicate name %q", i, m.Name)
		}
		names[i] = m.Name
	}
	// Two processes starting together (all the nodes of a new version):
	// one migrates, the others wait and then find the work done.
	return db.Exclusively(ctx, func(ctx context.Context) error {
		create := "CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_nanos BIGINT NOT NULL)"
		if db.dialect == SQLiteDialect {
			create = "CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_nanos INTEGER NOT NULL) STRICT"
		}
		if err := db.ReadWrite(ctx, func(ctx context.Context, tx Tx) error {
			_, err := tx.Exec(ctx, create)
			return err
		}); err != nil {
			return fmt.Errorf("sqldb: create schema_migrations: %w", err)
		}
		for _, m := range ms {
			err := db.ReadWrite(ctx, func(ctx context.Context, tx Tx) error {
				applied, err := appliedMigrations(ctx, tx)
				if err != nil {
					return err
				}
				for _, a := range applied {
					if !slices.Contains(names, a) {
						return fmt.Errorf("%w: the database has migration %q, which this build does not know (it was made by a newer version)", ErrSchemaVersion, a)
					}
				}
				if slices.Contains(applied, m.Name) {
					return nil
				}
				script := m.PostgreSQL
				if db.dialect == SQLiteDialect {
					script = m.SQLite
				}
				for _, stmt := range splitStatements(script) {
					if _, err := tx.Exec(ctx, stmt); err != nil {
						return fmt.Errorf("migration %s: %w", m.Name, err)
					}
				}
				_, err = tx.Exec(ctx, "INSERT INTO schema_migrations (name, applied_nanos) VALUES ($1, $2)", m.Name, time.Now().UnixNano())
				return err
			})
			if err != nil {
				if errors.Is(err, ErrSchemaVersion) {
					return err
				}
				return fmt.Errorf("sqldb: migrate: %w", err)
			}
		}
		return nil
	})
}

// schemaLock is the PostgreSQL advisory lock key held by the processes
// that change the schema or convert data in place.
const schemaLock = 7669676965

// Exclusively runs f while no other process runs Exclusively on the same
// database: on PostgreSQL it holds a session advisory lock on a connection
// of its own, taken before f's transactions begin, so that their snapshots
// see what the previous holder committed (a lock taken inside a
// SERIALIZABLE transaction comes after its snapshot). SQLite has one
// writer; CockroachDB has no advisory locks and relies on its retries.
// f must not call Exclusively.
func (db *DB) Exclusively(ctx context.Context, f func(ctx context.Context) error) error {
	if db.dialect != PostgreSQLDialect {
		return f(ctx)
	}
	c, err := db.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("sqldb: schema lock: %w", err)
	}
	defer c.Release()
	if _, err := c.Exec(ctx, "SELECT pg_advisory_lock($1)", int64(schemaLock)); err != nil {
		// The lock may be held or not: a connection in doubt is not reused.
		c.Conn().Close(context.WithoutCancel(ctx))
		return fmt.Errorf("sqldb: schema lock: %w", err)
	}
	defer func() {
		if _, err := c.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", int64(schemaLock)); err != nil {
			c.Conn().Close(context.WithoutCancel(ctx)) // closing the session drops its locks
		}
	}()
	return f(ctx)
}

func appliedMigrations(ctx context.Context, tx Tx) ([]string, error) {
	rows, err := tx.Query(ctx, "SELECT name FROM schema_migrations")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, err
		}
		names = append(names, n)
	}
	return names, rows.Err()
}

// splitStatements splits a schema script on semicolons that end a line.
// Schemas here have no procedural bodies.
func splitStatements(script string) []string {
	var out []string
	var cur strings.Builder
	for _, line := range strings.Split(script, "\n") {
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || strings.HasPrefix(trimmed, "--") {
			continue
		}
		cur.WriteString(line)
		cur.WriteString("\n")
		if strings.HasSuffix(trimmed, ";") {
			out = append(out, strings.TrimSuffix(strings.TrimSpace(cur.String()), ";"))
			cur.Reset()
		}
	}
	if s := strings.TrimSpace(cur.String()); s != "" {
		out = append(out, s)
	}
	return out
}
