package sqldb

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const testAppID = 0x54455354 // "TEST"

func openTemp(t testing.TB) *SQLite {
	t.Helper()
	s, err := OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "test.db"), SQLiteOptions{ApplicationID: testAppID, Name: "test database"})
	if err != nil {
		t.Fatalf("OpenSQLite: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func open(path string) (*SQLite, error) {
	return OpenSQLite(context.Background(), path, SQLiteOptions{ApplicationID: testAppID, Name: "test database"})
}

func TestOpenCreatesDurableDatabase(t *testing.T) {
	s := openTemp(t)
	ctx := context.Background()
	conn, err := s.r.get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer s.r.put(conn)
	var appID, version int64
	var mode string
	if err := conn.QueryRowContext(ctx, "PRAGMA application_id").Scan(&appID); err != nil {
		t.Fatal(err)
	}
	if err := conn.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		t.Fatal(err)
	}
	if err := conn.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		t.Fatal(err)
	}
	if appID != testAppID || version != 0 || mode != "wal" {
		t.Errorf("new database: application_id %#x, user_version %d, journal_mode %q; want %#x, 0, wal", appID, version, mode, testAppID)
	}
	// The write connection is the one whose synchronous setting matters.
	if err := s.w.acquire(ctx); err != nil {
		t.Fatal(err)
	}
	defer s.w.release()
	var sync int
	if err := s.w.conn.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&sync); err != nil {
		t.Fatal(err)
	}
	if sync != 2 {
		t.Errorf("write connection: synchronous = %d, want 2 (FULL)", sync)
	}
}

// TestCheckDurableRefuses checks the guard itself: a connection without WAL
// or without synchronous=FULL is refused.
func TestCheckDurableRefuses(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name, pragmas string
	}{
		{"rollback journal", "PRAGMA journal_mode=DELETE; PRAGMA synchronous=FULL"},
		{"synchronous normal", "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL"},
		{"synchronous off", "PRAGMA journal_mode=WAL; PRAGMA synchronous=OFF"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db, err := sql.Open("sqlite", filepath.Join(t.TempDir(), "x.db"))
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			conn, err := db.Conn(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if _, err := conn.ExecContext(ctx, tc.pragmas); err != nil {
				t.Fatal(err)
			}
			if err := checkDurable(ctx, conn); !errors.Is(err, ErrNotDurable) {
				t.Errorf("checkDurable = %v, want ErrNotDurable", err)
			}
		})
	}
}

func TestOpenReopens(t *testing.T) {
	path := filepath.Join(t.TempDir(), "test.db")
	for i := range 3 {
		s, err := open(path)
		if err != nil {
			t.Fatalf("Open #%d: %v", i, err)
		}
		if err := s.Close(); err != nil {
			t.Fatalf("Close #%d: %v", i, err)
		}
	}
}

func TestOpenRefusesSecondProcess(t *testing.T) {
	path := filepath.Join(t.TempDir(), "test.db")
	s, err := open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s2, err := open(path); !errors.Is(err, ErrLocked) {
		if s2 != nil {
			s2.Close()
		}
		t.Fatalf("second Open = %v, want ErrLocked", err)
	}
}

// TestOpenRefusesOtherFiles opens files that are not a database of this
// application: each is refused with a clear error, and left
// byte for byte as it was.
func TestOpenRefusesOtherFiles(t *testing.T) {
	random := make([]byte, 8192)
	rand.Read(random)

	for _, tc := range []struct {
		name    string
		make    func(t *testing.T, path string)
		want    error
		wantMsg string
	}{
		{
			name:    "random bytes",
			make:    func(t *testing.T, path string) { writeFile(t, path, random) },
			want:    ErrForeignFile,
			wantMsg: "not a database of this application",
		},
		{
			name:    "text file",
			make:    func(t *testing.T, path string) { writeFile(t, path, []byte("hello, this is not a database\n")) },
			want:    ErrForeignFile,
			wantMsg: "not a database of this application",
		},
		{
			name: "another application's SQLite file",
			make: func(t *testing.T, path string) {
				execSQL(t, path, "CREATE TABLE notes (body TEXT); INSERT INTO notes VALUES ('keep me')")
			},
			want:    ErrForeignFile,
			wantMsg: "application_id 0x0",
		},
		{
			name: "another application id",
			make: func(t *testing.T, path string) {
				execSQL(t, path, "PRAGMA application_id = 1234; CREATE TABLE t (x)")
			},
			want:    ErrForeignFile,
			wantMsg: "application_id 0x4d2",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "test.db")
			tc.make(t, path)
			before := readFile(t, path)
			s, err := open(path)
			if err == nil {
				s.Close()
				t.Fatal("Open succeeded")
			}
			if !errors.Is(err, tc.want) {
				t.Errorf("Open = %v, want %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.wantMsg) {
				t.Errorf("Open = %q, want it to mention %q", err, tc.wantMsg)
			}
			if after := readFile(t, path); !bytes.Equal(before, after) {
				t.Errorf("Open changed the file it refused")
			}
			if _, err := os.Stat(path + "-wal"); err == nil {
				if b := readFile(t, path+"-wal"); len(b) > 0 {
					t.Errorf("Open left a write-ahead log of %d bytes next to the file it refused", len(b))
				}
			}
		})
	}
}

// TestOpenRefusesCorruptDatabase damages pages of a real database: the
// integrity check at Open refuses it.
func TestOpenRefusesCorruptDatabase(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "test.db")
	s, err := open(path)
	if err != nil {
		t.Fatal(err)
	}
	// Fill a few pages, then checkpoint so they live in the main file.
	if err := s.Exclusive(ctx, func(tx Querier) error {
		if _, err := tx.ExecContext(ctx, "CREATE TABLE t (k BLOB PRIMARY KEY, v BLOB, n INTEGER)"); err != nil {
			return err
		}
		for i := range 2000 {
			if _, err := tx.ExecContext(ctx, "INSERT INTO t VALUES (randomblob(32), randomblob(200), ?)", i); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.w.conn.exec("PRAGMA wal_checkpoint(TRUNCATE)"); err != nil {
		t.Fatal(err)
	}
	s.Close()

	b := readFile(t, path)
	if len(b) < 20*4096 {
		t.Fatalf("database is only %d bytes", len(b))
	}
	for off := 4 * 4096; off < 12*4096; off++ {
		b[off] ^= 0x5a
	}
	writeFile(t, path, b)
	if s, err := open(path); err == nil {
		s.Close()
		t.Fatal("Open of a corrupt database succeeded")
	} else {
		t.Logf("Open = %v", err)
	}
}

// TestOpenRefusesUnwritableDirectory runs Open in a child process as an
// unprivileged user when the test runs as root (root can write anywhere).
func TestOpenRefusesUnwritableDirectory(t *testing.T) {
	if dir := os.Getenv("VIGIE_TEST_UNWRITABLE_DIR"); dir != "" {
		_, err := open(filepath.Join(dir, "sub", "test.db"))
		if err == nil {
			_, err = open(filepath.Join(dir, "test.db"))
		}
		if err == nil {
			t.Fatal("Open succeeded in a directory that is not writable")
		}
		t.Logf("refused: %v", err)
		if !strings.Contains(err.Error(), "not writable") && !strings.Contains(err.Error(), "permission denied") {
			t.Fatalf("Open = %v, want a message saying the directory is not writable", err)
		}
		return
	}

	dir := t.TempDir()
	if err := os.Chmod(dir, 0o555); err != nil {
		t.Fatal(err)
	}
	defer os.Chmod(dir, 0o755)
	if os.Geteuid() != 0 {
		_, err := open(filepath.Join(dir, "test.db"))
		if err == nil || !strings.Contains(err.Error(), "not writable") {
			t.Fatalf("Open = %v, want an error saying the directory is not writable", err)
		}
		return
	}
	// As root: copy the test binary where nobody can run it, and run this
	// test again in a child process as nobody.
	binDir := t.TempDir()
	if err := os.Chmod(binDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Dir(binDir), 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(binDir, "sqldb.test")
	copyFile(t, os.Args[0], bin, 0o755)
	cmd := exec.Command(bin, "-test.run=^TestOpenRefusesUnwritableDirectory$", "-test.v")
	cmd.Env = append(os.Environ(), "VIGIE_TEST_UNWRITABLE_DIR="+dir, "HOME=/")
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	if err := os.Chmod(filepath.Dir(dir), 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child as nobody: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "refused:") {
		t.Fatalf("child did not run the check:\n%s", out)
	}
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

func execSQL(t *testing.T, path, script string) {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(script); err != nil {
		t.Fatal(err)
	}
}

// TestBackgroundCheckpoints: commits leave the write-ahead log to the
// background connection (their own threshold is the safety net, four
// times higher), which copies it into the database file.
func TestBackgroundCheckpoints(t *testing.T) {
	ctx := context.Background()
	s, err := OpenSQLite(ctx, filepath.Join(t.TempDir(), "test.db"), SQLiteOptions{ApplicationID: testAppID, CheckpointEvery: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Exclusive(ctx, func(q Querier) error {
		var pages int
		if err := q.QueryRowContext(ctx, "PRAGMA wal_autocheckpoint").Scan(&pages); err != nil {
			return err
		}
		if pages != 40000 {
			t.Errorf("the writer's wal_autocheckpoint = %d, want 40000", pages)
		}
		_, err := q.ExecContext(ctx, "CREATE TABLE t (x BLOB)")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		if err := s.Exclusive(ctx, func(q Querier) error {
			_, err := q.ExecContext(ctx, "INSERT INTO t (x) VALUES (randomblob(8192))")
			return err
		}); err != nil {
			t.Fatalf("insert %d: %v", i, err)
		}
	}
	deadline := time.Now().Add(time.Minute)
	for s.ckpt.copies() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no background checkpoint copied the log within a minute")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestDeletedContentLeavesTheFiles: deleted and overwritten content is
// zeroed in the database file, and TruncateWAL empties the write-ahead log
// of the page versions that held it; with and without the background
// checkpoints. With KeepDeleted, the content stays (the test can see it).
func TestDeletedContentLeavesTheFiles(t *testing.T) {
	for _, tc := range []struct {
		name      string
		opts      SQLiteOptions
		wantFound bool
	}{
		{"background checkpoints", SQLiteOptions{}, false},
		{"commits checkpoint", SQLiteOptions{CheckpointEvery: -1}, false},
		{"KeepDeleted", SQLiteOptions{KeepDeleted: true}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			path := filepath.Join(t.TempDir(), "test.db")
			tc.opts.ApplicationID = testAppID
			s, err := OpenSQLite(ctx, path, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			secret := make([]byte, 200)
			rand.Read(secret)
			exec := func(query string, args ...any) {
				t.Helper()
				if err := s.Exclusive(ctx, func(q Querier) error {
					_, err := q.ExecContext(ctx, query, args...)
					return err
				}); err != nil {
					t.Fatalf("%s: %v", query, err)
				}
			}
			exec("CREATE TABLE t (id INTEGER PRIMARY KEY, x BLOB, y BLOB)")
			exec("INSERT INTO t (id, x, y) VALUES (1, randomblob(100), $1), (2, $1, NULL), (3, randomblob(100), randomblob(100))", secret)
			// Into the database file, then gone: one row deleted, one
			// cleared.
			if err := s.TruncateWAL(ctx); err != nil {
				t.Fatal(err)
			}
			exec("DELETE FROM t WHERE id = 2")
			exec("UPDATE t SET y = NULL WHERE id = 1")
			if err := s.TruncateWAL(ctx); err != nil {
				t.Fatal(err)
			}
			found := false
			for _, name := range []string{path, path + "-wal"} {
				b, err := os.ReadFile(name)
				if err != nil && !os.IsNotExist(err) {
					t.Fatal(err)
				}
				if bytes.Contains(b, secret[:16]) {
					found = true
				}
			}
			if found != tc.wantFound {
				t.Errorf("deleted content found in the files: %v, want %v", found, tc.wantFound)
			}
			if fi, err := os.Stat(path + "-wal"); err == nil && fi.Size() != 0 {
				t.Errorf("write-ahead log after TruncateWAL: %d bytes, want 0", fi.Size())
			}
		})
	}
}

// TestTruncateWALWaitsForReaders: a reader of an older snapshot keeps the
// log from being emptied; TruncateWAL says so, and the background
// checkpoints empty it once the reader is gone.
func TestTruncateWALWaitsForReaders(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "test.db")
	s, err := OpenSQLite(ctx, path, SQLiteOptions{ApplicationID: testAppID, CheckpointEvery: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	write := func(query string) {
		t.Helper()
		if err := s.Exclusive(ctx, func(q Querier) error {
			_, err := q.ExecContext(ctx, query)
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	write("CREATE TABLE t (x BLOB)")
	write("INSERT INTO t (x) VALUES (randomblob(100))")
	q, _, rollback, err := s.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var n int
	if err := q.QueryRowContext(ctx, "SELECT count(*) FROM t").Scan(&n); err != nil {
		t.Fatal(err)
	}
	write("INSERT INTO t (x) VALUES (randomblob(100))")
	if err := s.TruncateWAL(ctx); !errors.Is(err, ErrWALBusy) {
		t.Errorf("TruncateWAL with a reader of an older snapshot = %v, want ErrWALBusy", err)
	}
	if err := rollback(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		fi, err := os.Stat(path + "-wal")
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the write-ahead log still has %d bytes a minute after the reader left: no background TRUNCATE", fi.Size())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestWALStaysBounded: under sustained writes, with readers running
// beside them (so that SQLite seldom finds the log unused and restarts
// it by itself), the write-ahead log file stays within WALLimit and one
// transaction.
func TestWALStaysBounded(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "test.db")
	const limit = 4 << 20
	s, err := OpenSQLite(ctx, path, SQLiteOptions{ApplicationID: testAppID, WALLimit: limit})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Exclusive(ctx, func(q Querier) error {
		_, err := q.ExecContext(ctx, "CREATE TABLE t (x BLOB)")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	readersDone := make(chan struct{})
	go func() {
		defer close(readersDone)
		for {
			select {
			case <-stop:
				return
			default:
			}
			s.Read(ctx, func(q Querier) error {
				var n int
				return q.QueryRowContext(ctx, "SELECT count(*) FROM t").Scan(&n)
			})
		}
	}()
	// 32 MiB (eight times the limit) in commits of 4 concurrent writers,
	// each a 64 KiB row.
	const row, writers, total = 64 << 10, 4, 32 << 20
	var mu sync.Mutex
	var largest int64
	errs := make(chan error, writers)
	for range writers {
		go func() {
			for range total / row / writers {
				if err := s.Group(ctx, func(ctx context.Context, q Querier) error {
					_, err := q.ExecContext(ctx, "INSERT INTO t (x) VALUES (randomblob(?))", row)
					return err
				}); err != nil {
					errs <- err
					return
				}
				fi, err := os.Stat(path + "-wal")
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				largest = max(largest, fi.Size())
				mu.Unlock()
			}
			errs <- nil
		}()
	}
	for range writers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	<-readersDone
	// One transaction groups at most the writers' rows, with the pages
	// of the table's b-tree they change.
	const bound = limit + writers*row + 1<<20
	if largest > bound {
		t.Errorf("the write-ahead log reached %d bytes under sustained writes, want at most %d (WALLimit %d and one transaction)", largest, bound, limit)
	}
	t.Logf("largest write-ahead log: %d bytes", largest)
}
