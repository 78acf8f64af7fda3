package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestVerifyAuditUsage checks that bad flags and an unreachable server end
// vigie verify and vigie audit with exit code 2 and a message naming what
// to fix.
func TestVerifyAuditUsage(t *testing.T) {
	state := t.TempDir()
	notReceipt := filepath.Join(t.TempDir(), "r")
	os.WriteFile(notReceipt, []byte("hello"), 0o600)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"verify"}, "--token"},
		{[]string{"verify", "--token", "x", "--lang", "de"}, "--lang"},
		{[]string{"verify", "--receipt", "/nonexistent/receipt"}, "--receipt"},
		{[]string{"verify", "--receipt", notReceipt}, "--receipt: not a receipt"},
		{[]string{"verify", "--token", "x", "--server", "ftp://vigie.example"}, "--server"},
		{[]string{"verify", "--token", "x", "--token-file", notReceipt}, "--token and --token-file"},
		{[]string{"verify", "--token", "x", "--log-key", "not a key"}, "--log-key"},
		{[]string{"verify", "--token", "x", "--server", "http://127.0.0.1:1"}, "vigie verify: "},
		{[]string{"audit", "--since", "yesterday"}, "--since"},
		{[]string{"audit", "--since", "2026-11-02T00:00:00Z", "--until", "2026-11-01T00:00:00Z"}, "--until must be after --since"},
		{[]string{"audit", "--alert-odd-hours", "25-3"}, "--alert-odd-hours"},
		{[]string{"audit", "--alert-denials", "-1"}, "--alert-denials"},
		{[]string{"audit", "--timezone", "Mars/Olympus"}, "--timezone"},
		{[]string{"audit", "--batch", "0"}, "--batch"},
		{[]string{"audit", "--batch", "1001"}, "--batch: want 1 to 1000"},
		{[]string{"audit", "--tiles", "--batch", "65537"}, "--batch: want 1 to 65536"},
		{[]string{"audit", "--batch", "many"}, "-batch"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var out, errOut bytes.Buffer
			args := append(tc.args, "--state-dir", state)
			if code := run(context.Background(), args, &out, &errOut); code != exitUsage {
				t.Errorf("exit %d, want %d\n%s%s", code, exitUsage, out.String(), errOut.String())
			}
			if !strings.Contains(errOut.String(), tc.want) {
				t.Errorf("stderr lacks %q:\n%s", tc.want, errOut.String())
			}
		})
	}
}
