package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	goversion "go/version"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/mod/modfile"

	"github.com/vigie-sante/vigie/ledger/sqldb/pgtest"
)

// vigieBin is the vigie binary built once for the tests that need a real
// process (signals, exit codes, another user), with the version
// testVersion injected as the Makefile injects git's.
var vigieBin string

const testVersion = "v0.0.0-test.1+vigie"

// testBuildTags and testCGO build vigieBin: the static binary, or, when
// the tests run under the pkcs11 tag (hsm_test.go), vigie-hsm.
var testBuildTags, testCGO = "", "0"

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "vigie-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Chmod(dir, 0o755)
	vigieBin = filepath.Join(dir, "vigie")
	build := exec.Command("go", "build", "-tags", testBuildTags, "-ldflags", "-X main.version="+testVersion, "-o", vigieBin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED="+testCGO)
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// TestHelpShowsOnlyVigieFlags checks that Trillian's global flags (it
// registers some at init) do not leak into vigie's help.
func TestHelpShowsOnlyVigieFlags(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"serve", "--help"}, {"version", "--help"}} {
		var out bytes.Buffer
		code := run(context.Background(), args, &out, &out)
		if code != exitOK {
			t.Errorf("vigie %v: exit %d, want 0", args, code)
		}
		for _, leaked := range []string{"postgresql_uri", "populate_subtree_concurrency", "mysql", "log_rpc_server", "v=", "logtostderr"} {
			if strings.Contains(out.String(), leaked) {
				t.Errorf("vigie %v shows %q:\n%s", args, leaked, out.String())
			}
		}
	}
	var out bytes.Buffer
	run(context.Background(), []string{"serve", "--help"}, &out, &out)
	for _, want := range []string{"--data-dir [VIGIE_DATA_DIR]", "--db [VIGIE_DB]", "--trillian [VIGIE_TRILLIAN]"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("vigie serve --help lacks %q:\n%s", want, out.String())
		}
	}
}

func TestUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{args: nil, want: "Usage: vigie <command>"},
		{args: []string{"frobnicate"}, want: `unknown command "frobnicate"`},
		{args: []string{"serve", "--no-such-flag"}, want: "flag provided but not defined: -no-such-flag"},
		{args: []string{"serve", "extra"}, want: `unexpected argument "extra"`},
		{args: []string{"serve"}, env: map[string]string{"VIGIE_SEQUENCER_BATCH": "many"}, want: "VIGIE_SEQUENCER_BATCH"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			var out bytes.Buffer
			if code := run(context.Background(), tc.args, &out, &out); code != exitUsage {
				t.Errorf("exit %d, want %d", code, exitUsage)
			}
			if !strings.Contains(out.String(), tc.want) {
				t.Errorf("output lacks %q:\n%s", tc.want, out.String())
			}
		})
	}
}

func TestVersion(t *testing.T) {
	var out bytes.Buffer
	if code := run(context.Background(), []string{"version"}, &out, &out); code != exitOK {
		t.Fatalf("exit %d", code)
	}
	if !regexp.MustCompile(`^vigie \S+ \(go1\.\S+, \w+/\w+\)\n$`).MatchString(out.String()) {
		t.Errorf("vigie version = %q", out.String())
	}
}

// TestVersionIsThePatchedToolchain checks that the vigie binary, built as
// the scripts build it, was built with at least the toolchain go.mod names:
// the Go installation's GOTOOLCHAIN=local would otherwise silently build
// with an older Go and its known vulnerabilities.
func TestVersionIsThePatchedToolchain(t *testing.T) {
	b, err := os.ReadFile("../../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	mod, err := modfile.Parse("go.mod", b, nil)
	if err != nil {
		t.Fatal(err)
	}
	if mod.Toolchain == nil {
		t.Fatal("go.mod has no toolchain line")
	}
	want := mod.Toolchain.Name
	out, err := exec.Command(vigieBin, "version").Output()
	if err != nil {
		t.Fatalf("vigie version: %v", err)
	}
	m := regexp.MustCompile(`\((go1\.[^,]+),`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("vigie version = %q, want a Go version", out)
	}
	if got := string(m[1]); !goversion.IsValid(got) || goversion.Compare(got, want) < 0 {
		t.Errorf("vigie version says it was built with %s, want %s (go.mod's toolchain) or later; run the scripts, or export GOTOOLCHAIN=%s", got, want, want)
	}
}

// serveProc is a vigie serve process.
type serveProc struct {
	cmd    *exec.Cmd
	stdout *bufio.Scanner
	stderr *bytes.Buffer
	lines  []string
}

// startServe starts vigie serve with args, on free ports of loopback.
func startServe(t testing.TB, args ...string) *serveProc {
	t.Helper()
	args = append([]string{"serve", "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"}, args...)
	cmd := exec.Command(vigieBin, args...)
	cmd.Env = os.Environ()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	s := &serveProc{cmd: cmd, stdout: bufio.NewScanner(stdout), stderr: &bytes.Buffer{}}
	cmd.Stderr = s.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return s
}

// waitReady reads stdout until the line saying the service stops with
// Ctrl+C, which comes once everything is up.
func (s *serveProc) waitReady(t testing.TB) {
	t.Helper()
	done := make(chan bool, 1)
	go func() {
		for s.stdout.Scan() {
			s.lines = append(s.lines, s.stdout.Text())
			if strings.HasPrefix(s.stdout.Text(), "Stop it with") {
				done <- true
				return
			}
		}
		done <- false
	}()
	select {
	case ok := <-done:
		if !ok {
			s.cmd.Wait()
			t.Fatalf("vigie serve exited before it was ready:\n%s\n%s", strings.Join(s.lines, "\n"), s.stderr)
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("vigie serve not ready after 60s:\n%s\n%s", strings.Join(s.lines, "\n"), s.stderr)
	}
}

func (s *serveProc) output() string { return strings.Join(s.lines, "\n") }

// stop sends sig and returns the exit code.
func (s *serveProc) stop(t testing.TB, sig syscall.Signal) int {
	t.Helper()
	if err := s.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatalf("vigie serve did not stop within 30s of %v", sig)
	}
	return s.cmd.ProcessState.ExitCode()
}

var treeLine = regexp.MustCompile(`ledger:\s+Trillian tree (\d+) \(PREORDERED_LOG\)`)

// TestServeStopsGracefully starts the embedded service, stops it with each
// signal, and checks that a restart finds the same tree.
func TestServeStopsGracefully(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	var tree string
	for i, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		s := startServe(t, "--data-dir", dataDir)
		s.waitReady(t)
		m := treeLine.FindStringSubmatch(s.output())
		if m == nil {
			t.Fatalf("no tree in the output:\n%s", s.output())
		}
		if i == 0 {
			tree = m[1]
		} else if m[1] != tree {
			t.Errorf("after a restart the tree is %s, want %s", m[1], tree)
		}
		if code := s.stop(t, sig); code != 0 {
			t.Errorf("exit code after %v: %d, want 0\n%s", sig, code, s.stderr)
		}
		if !strings.Contains(s.stderr.String(), "msg=stopped") {
			t.Errorf("no orderly shutdown after %v:\n%s", sig, s.stderr)
		}
	}
	info, err := os.Stat(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o700 {
		t.Errorf("data directory mode %v, want 0700", info.Mode().Perm())
	}
	for _, name := range []string{"trillian.db", "vigie.db", "keys/kek", "keys/pseudonym.key", "keys/checkpoint.key", "keys/receipt.key"} {
		info, err := os.Stat(filepath.Join(dataDir, name))
		if err != nil {
			t.Fatal(err)
		}
		if info.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v, want 0600", name, info.Mode().Perm())
		}
	}
}

// TestServeRefusesAnotherLogName checks that the log's name, saved at
// first start, cannot change: it is in every checkpoint's origin.
func TestServeRefusesAnotherLogName(t *testing.T) {
	dataDir := t.TempDir()
	s := startServe(t, "--data-dir", dataDir, "--log-name", "first.example")
	s.waitReady(t)
	if !regexp.MustCompile(`log origin:\s+first\.example/vigie/`).MatchString(s.output()) {
		t.Errorf("output does not show the origin:\n%s", s.output())
	}
	s.stop(t, syscall.SIGTERM)
	code, out := runVigie(t, nil, "serve", "--data-dir", dataDir, "--log-name", "second.example")
	if code != exitFailure || !strings.Contains(out, `log is named "first.example", which never changes`) {
		t.Errorf("another log name: exit %d, output:\n%s", code, out)
	}
}

// TestServeRefusesAnotherKey: a key file gone (an unmounted volume) and
// made anew would make every patient's data unreadable or split every
// chain: serve refuses to start, naming the key.
func TestServeRefusesAnotherKey(t *testing.T) {
	for _, key := range []struct{ file, says string }{
		{"keys/kek", "the key-encryption key"},
		{"keys/pseudonym.key", "the pseudonym key"},
		{"keys/checkpoint.key", "the checkpoint key"},
		{"keys/receipt.key", "the receipt key"},
	} {
		t.Run(key.file, func(t *testing.T) {
			dataDir := t.TempDir()
			s := startServe(t, "--data-dir", dataDir)
			s.waitReady(t)
			s.stop(t, syscall.SIGTERM)
			if err := os.Remove(filepath.Join(dataDir, key.file)); err != nil {
				t.Fatal(err)
			}
			// A signing key goes with its verifier key.
			if pub := strings.TrimSuffix(key.file, ".key") + ".pub"; pub != key.file+".pub" {
				os.Remove(filepath.Join(dataDir, pub))
			}
			code, out := runVigie(t, nil, "serve", "--data-dir", dataDir)
			if code != exitFailure || !strings.Contains(out, key.says+" (") || !strings.Contains(out, "is not the one this database was written with") {
				t.Errorf("serve with a new %s: exit %d, output:\n%s", key.file, code, out)
			}
		})
	}
}

// TestServeRefusesBadDataDir checks that a second instance on the same
// data directory, a foreign database file and an unwritable directory each
// fail with a clear message and exit code 1, leaving the files alone.
func TestServeRefusesBadDataDir(t *testing.T) {
	t.Run("second instance", func(t *testing.T) {
		dataDir := t.TempDir()
		first := startServe(t, "--data-dir", dataDir)
		first.waitReady(t)
		code, out := runVigie(t, nil, "serve", "--data-dir", dataDir)
		if code != exitFailure || !strings.Contains(out, "in use by another process") {
			t.Errorf("second instance: exit %d, output:\n%s", code, out)
		}
	})
	t.Run("foreign file", func(t *testing.T) {
		dataDir := t.TempDir()
		garbage := bytes.Repeat([]byte("not a database "), 1000)
		if err := os.WriteFile(filepath.Join(dataDir, "trillian.db"), garbage, 0o600); err != nil {
			t.Fatal(err)
		}
		code, out := runVigie(t, nil, "serve", "--data-dir", dataDir)
		if code != exitFailure || !strings.Contains(out, "want a Vigie Trillian database") {
			t.Errorf("foreign file: exit %d, output:\n%s", code, out)
		}
		if b, _ := os.ReadFile(filepath.Join(dataDir, "trillian.db")); !bytes.Equal(b, garbage) {
			t.Errorf("the foreign file was changed")
		}
	})
	t.Run("unwritable directory", func(t *testing.T) {
		parent := t.TempDir()
		os.Chmod(parent, 0o755)
		os.Chmod(filepath.Dir(parent), 0o755) // t.TempDir's own parent is 0700
		dataDir := filepath.Join(parent, "data")
		if err := os.Mkdir(dataDir, 0o555); err != nil {
			t.Fatal(err)
		}
		var attr *syscall.SysProcAttr
		if os.Geteuid() == 0 {
			// Root writes anywhere: run as nobody.
			attr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		}
		code, out := runVigie(t, attr, "serve", "--data-dir", dataDir)
		if code != exitFailure || !strings.Contains(out, "is not writable") {
			t.Errorf("unwritable directory: exit %d, output:\n%s", code, out)
		}
	})
}

// TestServePostgreSQL runs the service with Trillian on PostgreSQL.
func TestServePostgreSQL(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	s := startServe(t, "--db", dsn, "--data-dir", t.TempDir())
	s.waitReady(t)
	if !strings.Contains(s.output(), "on PostgreSQL") {
		t.Errorf("output does not name PostgreSQL:\n%s", s.output())
	}
	if code := s.stop(t, syscall.SIGTERM); code != 0 {
		t.Errorf("exit code %d\n%s", code, s.stderr)
	}
}

func runVigie(t *testing.T, attr *syscall.SysProcAttr, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(vigieBin, args...)
	cmd.Dir = "/"
	cmd.SysProcAttr = attr
	out, _ := cmd.CombinedOutput()
	return cmd.ProcessState.ExitCode(), string(out)
}

// TestNodeFlagsValidated: a node setting out of range stops serve before
// anything starts, naming the flag.
func TestNodeFlagsValidated(t *testing.T) {
	for _, flag := range []string{"--merge-delay", "--checkpoint-interval", "--send-stall-after", "--request-id-retention"} {
		var out bytes.Buffer
		code := run(context.Background(), []string{"serve", "--data-dir", t.TempDir(), flag, "0s"}, &out, &out)
		if code == exitOK || !strings.Contains(out.String(), flag+" must be positive") {
			t.Errorf("serve %s 0s: exit %d:\n%s", flag, code, out.String())
		}
	}
}
