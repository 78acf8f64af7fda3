package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestRequireLogName: an API beyond loopback needs --log-name, unless
// the data directory already has a name; loopback keeps the default.
func TestRequireLogName(t *testing.T) {
	named := t.TempDir()
	if err := os.Mkdir(filepath.Join(named, "keys"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(named, "keys", "log-name"), []byte("vigie.chu.example\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, dataDir, logName string
		listen                 []string
		want                   string // "" when accepted
	}{
		{"loopback", "", "", []string{"127.0.0.1:8081", "127.0.0.1:8080"}, ""},
		{"localhost and IPv6 loopback", "", "", []string{"localhost:8081", "[::1]:8080"}, ""},
		{"HTTP API beyond loopback", "", "", []string{"127.0.0.1:8081", "0.0.0.0:8080"}, "0.0.0.0:8080"},
		{"gRPC API on every address", "", "", []string{":8081", ""}, ":8081"},
		{"IPv6 unspecified", "", "", []string{"127.0.0.1:8081", "[::]:8080"}, "[::]:8080"},
		{"another loopback address counts as loopback", "", "", []string{"127.0.0.2:8081"}, ""},
		{"a public address", "", "", []string{"192.0.2.10:8081"}, "192.0.2.10:8081"},
		{"named by the flag", "", "vigie.chu.example", []string{"0.0.0.0:8081"}, ""},
		{"named at an earlier start", named, "", []string{"0.0.0.0:8081"}, ""},
		{"not host:port: left to the listener", "", "", []string{"nonsense"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := nodeConfig{dataDir: tc.dataDir, logName: tc.logName}
			if c.dataDir == "" {
				c.dataDir = t.TempDir()
			}
			err := c.requireLogName(tc.listen...)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("requireLogName(%q) = %v, want nil", tc.listen, err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), "--log-name is required") || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("requireLogName(%q) = %v, want a refusal naming --log-name and %s", tc.listen, err, tc.want)
			}
		})
	}
}

// TestServeLogName: vigie serve beyond loopback (behind a trusted proxy)
// without --log-name stops before it writes anything; with it, the log
// takes that name; started again without the flag, it keeps it.
func TestServeLogName(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	beyond := []string{"--data-dir", dataDir, "--http-addr", "0.0.0.0:0", "--trusted-proxies", "127.0.0.0/8"}

	// A start that is not refused would serve until killed.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, vigieBin, append([]string{"serve", "--grpc-addr", "127.0.0.1:0"}, beyond...)...)
	b, _ := cmd.CombinedOutput()
	code, out := cmd.ProcessState.ExitCode(), string(b)
	if code != exitFailure || !strings.Contains(out, "--log-name is required to listen beyond loopback") {
		t.Fatalf("serve beyond loopback without --log-name: exit %d, output:\n%s", code, out)
	}
	if _, err := os.Stat(dataDir); !os.IsNotExist(err) {
		t.Errorf("the refused start left a data directory (%v)", err)
	}

	origin := regexp.MustCompile(`log origin:\s+vigie\.chu\.example/vigie/\d+`)
	for _, args := range [][]string{append(beyond, "--log-name", "vigie.chu.example"), beyond} {
		s := startServe(t, args...)
		s.waitReady(t)
		if !origin.MatchString(s.output()) {
			t.Errorf("serve %q: the origin is not vigie.chu.example's:\n%s", args, s.output())
		}
		if code := s.stop(t, syscall.SIGTERM); code != 0 {
			t.Errorf("serve %q: exit %d:\n%s", args, code, s.stderr)
		}
	}
}
