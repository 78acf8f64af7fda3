// Package systemd_test checks vigie.service with systemd-analyze and
// against vigie's own flags.
package systemd_test

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vigie-sante/vigie/deploy/internal/need"
	"github.com/vigie-sante/vigie/deploy/internal/vigie"
)

// unit parses a unit file's [Service] section: key to its values, in
// order (continuation lines joined).
func unit(t *testing.T, b []byte) map[string][]string {
	t.Helper()
	keys := map[string][]string{}
	section := ""
	var line string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		text := sc.Text()
		if strings.HasSuffix(text, "\\") {
			line += strings.TrimSuffix(text, "\\") + " "
			continue
		}
		line += text
		l := strings.TrimSpace(line)
		line = ""
		switch {
		case l == "" || strings.HasPrefix(l, "#"):
		case strings.HasPrefix(l, "["):
			section = l
		case section == "[Service]":
			k, v, _ := strings.Cut(l, "=")
			keys[k] = append(keys[k], strings.Join(strings.Fields(v), " "))
		}
	}
	return keys
}

// buildVigie builds cmd/vigie into dir, as make build does.
func buildVigie(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "vigie")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/vigie")
	cmd.Dir = vigie.Root()
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/vigie: %v\n%s", err, out)
	}
	return bin
}

func TestUnit(t *testing.T) {
	analyze := need.Command(t, "systemd-analyze", "systemd")
	b, err := os.ReadFile("vigie.service")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bin := buildVigie(t, dir)

	// systemd-analyze verify checks that ExecStart's program exists:
	// the copy runs the binary just built, and is otherwise the same.
	const installed = "/usr/local/bin/vigie"
	unitCopy := filepath.Join(dir, "vigie.service")
	if err := os.WriteFile(unitCopy, bytes.ReplaceAll(b, []byte(installed), []byte(bin)), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Run("systemd-analyze verify", func(t *testing.T) {
		out, err := exec.Command(analyze, "verify", "--man=no", unitCopy).CombinedOutput()
		if err != nil || len(bytes.TrimSpace(out)) > 0 {
			// A warning (an unknown key, ignored) fails too.
			t.Errorf("systemd-analyze verify: %v\n%s", err, out)
		}
	})
	t.Run("systemd-analyze security", func(t *testing.T) {
		out, err := exec.Command(analyze, "security", "--offline=true", "--no-pager", unitCopy).CombinedOutput()
		m := regexp.MustCompile(`Overall exposure level for vigie.service: ([0-9.]+) (\S+)`).FindSubmatch(out)
		if err != nil || m == nil {
			t.Skipf("systemd-analyze security does not work here: %v\n%s", err, out)
		}
		t.Logf("systemd-analyze security: exposure %s %s (0 is best, 10 worst)", m[1], m[2])
		if score, _ := strconv.ParseFloat(string(m[1]), 64); score > 2 {
			t.Errorf("exposure %s, want 2 or less: a sandboxing setting was lost", m[1])
		}
	})

	keys := unit(t, b)
	t.Run("sandboxing", func(t *testing.T) {
		for k, want := range map[string]string{
			"StateDirectory":          "vigie",
			"StateDirectoryMode":      "0700",
			"DynamicUser":             "yes",
			"NoNewPrivileges":         "yes",
			"ProtectSystem":           "strict",
			"ProtectHome":             "yes",
			"PrivateTmp":              "yes",
			"PrivateDevices":          "yes",
			"CapabilityBoundingSet":   "",
			"AmbientCapabilities":     "",
			"RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
			"SystemCallFilter":        "@system-service",
			"MemoryDenyWriteExecute":  "yes",
			"UMask":                   "0077",
		} {
			if v, ok := keys[k]; !ok || v[0] != want {
				t.Errorf("%s=%q, want %q", k, v, want)
			}
		}
	})
	t.Run("credentials", func(t *testing.T) {
		creds := map[string]bool{}
		for _, v := range keys["LoadCredential"] {
			id, _, _ := strings.Cut(v, ":")
			creds[id] = true
		}
		execStart := keys["ExecStart"][0]
		for flag, cred := range map[string]string{"--kek-file": "kek", "--tls-cert": "tls.crt", "--tls-key": "tls.key"} {
			if !creds[cred] || !strings.Contains(execStart, flag+"=%d/"+cred) {
				t.Errorf("%s is not the credential %s (LoadCredential, %%d): %s", flag, cred, execStart)
			}
		}
		if !strings.Contains(execStart, "--data-dir=%S/vigie") {
			t.Errorf("--data-dir is not the StateDirectory: %s", execStart)
		}
	})
	t.Run("flags exist", func(t *testing.T) {
		args := strings.Fields(keys["ExecStart"][0])
		if args[0] != installed || args[1] != "serve" {
			t.Fatalf("ExecStart=%q, want %s serve ...", args, installed)
		}
		help, _ := exec.Command(bin, "serve", "--help").CombinedOutput()
		for _, a := range args[2:] {
			name, _, _ := strings.Cut(a, "=")
			if !bytes.Contains(help, []byte("  "+name+" [")) {
				t.Errorf("ExecStart passes %s, which vigie serve does not have", name)
			}
		}
	})
	t.Run("stop", func(t *testing.T) {
		stop, err := time.ParseDuration(keys["TimeoutStopSec"][0] + "s")
		if drain := vigie.DrainTimeout(t); err != nil || stop <= drain {
			t.Errorf("TimeoutStopSec=%v, want more than --drain-timeout (%v)", keys["TimeoutStopSec"], drain)
		}
	})
}
