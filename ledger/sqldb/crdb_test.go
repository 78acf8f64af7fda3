package sqldb_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/vigie-sante/vigie/ledger/sqldb"
)

// fakeCockroach speaks enough of PostgreSQL's wire protocol (simple
// queries) to stand for CockroachDB in front of cockroach-go's retry
// protocol: it answers SELECT version() as CockroachDB does, and fails
// statements with the SQLSTATE its failures map gives. CockroachDB itself
// cannot be installed here (its licence): this is what tests its path.
type fakeCockroach struct {
	mu sync.Mutex
	// failures maps a statement's prefix (lower case) to the SQLSTATEs
	// its next executions fail with, one each.
	failures map[string][]string
	log      []string // every statement, in order, but version()
}

func (f *fakeCockroach) url(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go f.serve(c)
		}
	}()
	return "postgres://root@" + l.Addr().String() + "/vigie?sslmode=disable&default_query_exec_mode=simple_protocol"
}

func (f *fakeCockroach) serve(c net.Conn) {
	defer c.Close()
	be := pgproto3.NewBackend(c, c)
	if _, err := be.ReceiveStartupMessage(); err != nil {
		return
	}
	be.Send(&pgproto3.AuthenticationOk{})
	for _, p := range [][2]string{{"client_encoding", "UTF8"}, {"standard_conforming_strings", "on"}, {"server_version", "13.0.0"}} {
		be.Send(&pgproto3.ParameterStatus{Name: p[0], Value: p[1]})
	}
	be.Send(&pgproto3.BackendKeyData{ProcessID: 1, SecretKey: []byte{0, 0, 0, 1}})
	be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
	if be.Flush() != nil {
		return
	}
	status := byte('I')
	for {
		msg, err := be.Receive()
		if err != nil {
			return
		}
		q, ok := msg.(*pgproto3.Query)
		if !ok {
			return // Terminate, or a message this fake does not speak
		}
		sql := strings.ToLower(strings.TrimSpace(q.String))
		if sql == "select version()" {
			be.Send(&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{Name: []byte("version"), DataTypeOID: 25, DataTypeSize: -1, TypeModifier: -1}}})
			be.Send(&pgproto3.DataRow{Values: [][]byte{[]byte("CockroachDB CCL v24.1.0 (x86_64-pc-linux-gnu)")}})
			be.Send(&pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")})
		} else if code := f.record(sql); code != "" {
			be.Send(&pgproto3.ErrorResponse{Severity: "ERROR", Code: code, Message: "injected by the test"})
			if status == 'T' {
				status = 'E'
			}
		} else {
			tag := strings.ToUpper(strings.Fields(sql)[0])
			switch {
			case strings.HasPrefix(sql, "begin"):
				status = 'T'
			case strings.HasPrefix(sql, "commit"), sql == "rollback":
				status = 'I'
			case strings.HasPrefix(sql, "rollback to savepoint"):
				status = 'T'
			case tag == "INSERT":
				tag = "INSERT 0 1"
			}
			be.Send(&pgproto3.CommandComplete{CommandTag: []byte(tag)})
		}
		be.Send(&pgproto3.ReadyForQuery{TxStatus: status})
		if be.Flush() != nil {
			return
		}
	}
}

// record logs a statement and returns the SQLSTATE it fails with, if any.
func (f *fakeCockroach) record(sql string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.log = append(f.log, sql)
	for prefix, codes := range f.failures {
		if strings.HasPrefix(sql, prefix) && len(codes) > 0 {
			f.failures[prefix] = codes[1:]
			return codes[0]
		}
	}
	return ""
}

func (f *fakeCockroach) statements() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.log...)
}

// TestCockroachDBRetryContract checks ReadWrite on CockroachDB against
// cockroach-go's retry contract: a serialization failure (40001), at a
// statement or at RELEASE SAVEPOINT (CockroachDB's commit), runs the
// function again after ROLLBACK TO SAVEPOINT and commits; any other error
// at RELEASE leaves the outcome unknown, as on PostgreSQL.
func TestCockroachDBRetryContract(t *testing.T) {
	ctx := context.Background()
	insert := func(calls *int) func(ctx context.Context, tx sqldb.Tx) error {
		return func(ctx context.Context, tx sqldb.Tx) error {
			*calls++
			_, err := tx.Exec(ctx, "INSERT INTO events VALUES (1)")
			return err
		}
	}
	open := func(t *testing.T, f *fakeCockroach) *sqldb.DB {
		t.Helper()
		db, err := sqldb.OpenPostgres(ctx, f.url(t), sqldb.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		if db.Dialect() != sqldb.CockroachDBDialect {
			t.Fatalf("dialect %v, want CockroachDB", db.Dialect())
		}
		return db
	}

	t.Run("40001 at RELEASE", func(t *testing.T) {
		f := &fakeCockroach{failures: map[string][]string{"release savepoint": {"40001"}}}
		db := open(t, f)
		calls := 0
		if err := db.ReadWrite(ctx, insert(&calls)); err != nil {
			t.Fatalf("ReadWrite: %v", err)
		}
		if calls != 2 {
			t.Errorf("the function ran %d times, want 2", calls)
		}
		want := []string{"begin", "savepoint cockroach_restart", "insert", "release savepoint cockroach_restart",
			"rollback to savepoint cockroach_restart", "insert", "release savepoint cockroach_restart", "commit"}
		got := f.statements()
		if len(got) != len(want) {
			t.Fatalf("statements %q, want %q", got, want)
		}
		for i := range want {
			if !strings.HasPrefix(got[i], want[i]) {
				t.Fatalf("statement %d %q, want %q...; all: %q", i, got[i], want[i], got)
			}
		}
		if !strings.Contains(got[0], "serializable") {
			t.Errorf("began %q, want SERIALIZABLE", got[0])
		}
	})

	t.Run("40001 at a statement", func(t *testing.T) {
		f := &fakeCockroach{failures: map[string][]string{"insert": {"40001", "40001"}}}
		db := open(t, f)
		calls := 0
		if err := db.ReadWrite(ctx, insert(&calls)); err != nil {
			t.Fatalf("ReadWrite: %v", err)
		}
		if calls != 3 {
			t.Errorf("the function ran %d times, want 3", calls)
		}
	})

	t.Run("another error at RELEASE", func(t *testing.T) {
		// 08006, a connection failure: the transaction may have committed.
		f := &fakeCockroach{failures: map[string][]string{"release savepoint": {"08006"}}}
		db := open(t, f)
		calls := 0
		err := db.ReadWrite(ctx, insert(&calls))
		if !errors.Is(err, sqldb.ErrCommitUnknown) {
			t.Errorf("ReadWrite: %v, want ErrCommitUnknown", err)
		}
		if calls != 1 {
			t.Errorf("the function ran %d times, want 1", calls)
		}
	})

	t.Run("an error in the function", func(t *testing.T) {
		f := &fakeCockroach{failures: map[string][]string{"insert": {"23505"}}}
		db := open(t, f)
		calls := 0
		err := db.ReadWrite(ctx, insert(&calls))
		if !sqldb.IsUniqueViolation(err) || errors.Is(err, sqldb.ErrCommitUnknown) {
			t.Errorf("ReadWrite: %v, want the unique violation, not ErrCommitUnknown", err)
		}
		if calls != 1 {
			t.Errorf("the function ran %d times, want 1", calls)
		}
	})
}
