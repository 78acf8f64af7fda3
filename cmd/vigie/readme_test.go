package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// readmeWalkthrough returns the shell block of the README between the
// walkthrough markers.
func readmeWalkthrough(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)<!-- walkthrough[^>]*-->\\s*```sh\\n(.*?)```\\s*<!-- /walkthrough -->").FindSubmatch(b)
	if m == nil {
		t.Fatal("README.md has no walkthrough block")
	}
	return string(m[1])
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return fmt.Sprint(l.Addr().(*net.TCPAddr).Port)
}

// TestREADMEWalkthrough runs the README's walk-through as written, in a
// fresh directory, with two changes only: `make build` is the binary these
// tests built, and the ports are free ones. Each step must do what the
// README says it does.
func TestREADMEWalkthrough(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("curl is not installed, and CI=true (scripts/test.sh installs it)")
		}
		t.Skip("curl is not installed")
	}
	script := readmeWalkthrough(t)
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(vigieBin, filepath.Join(dir, "bin", "vigie")); err != nil {
		t.Fatal(err)
	}
	httpPort, grpcPort := freePort(t), freePort(t)
	if !strings.Contains(script, "make build\n") || !strings.Contains(script, "bin/vigie serve ") || !strings.Contains(script, "127.0.0.1:8080") {
		t.Fatalf("the walkthrough changed shape; update this test:\n%s", script)
	}
	script = strings.Replace(script, "make build\n", "", 1)
	script = strings.Replace(script, "bin/vigie serve ", "bin/vigie serve --grpc-addr 127.0.0.1:"+grpcPort+" --http-addr 127.0.0.1:"+httpPort+" ", 1)
	script = strings.ReplaceAll(script, "127.0.0.1:8080", "127.0.0.1:"+httpPort)
	cmd := exec.Command("bash", "-euo", "pipefail", "-c", script+"\nwait\n")
	cmd.Dir = dir
	done := make(chan struct{})
	var out []byte
	var err error
	go func() {
		out, err = cmd.CombinedOutput()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		cmd.Process.Kill()
		t.Fatal("the walkthrough did not finish within 2 minutes")
	}
	log, _ := os.ReadFile(filepath.Join(dir, "vigie.log"))
	if err != nil {
		t.Fatalf("the walkthrough failed: %v\n%s\nvigie.log:\n%s", err, out, log)
	}
	text := string(out)
	// In order: ALLOW, the new consent version, DENY, the history, the
	// checkpoint, the keys.
	steps := []string{`"decision":"DECISION_ALLOW"`, `"version":"1"`, `"decision":"DECISION_DENY"`, `"events":[`, "vigie.localhost/vigie/", `"checkpoint_key":"vigie.localhost/vigie/`}
	at := 0
	for _, s := range steps {
		i := strings.Index(text[at:], s)
		if i < 0 {
			t.Fatalf("the walkthrough's output lacks %s after what came before:\n%s", s, text)
		}
		at += i + len(s)
	}
	if !strings.Contains(string(log), "msg=stopped") {
		t.Errorf("Vigie did not stop cleanly at `kill %%1`:\n%s", log)
	}
	// The banner's example names the made-up patient; no log line may.
	for _, line := range strings.Split(string(log), "\n") {
		if strings.HasPrefix(line, "time=") && strings.Contains(line, "279035121518989") {
			t.Errorf("a log line holds the INS: %s", line)
		}
	}
}
