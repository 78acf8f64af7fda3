package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestVerifyStateMalformedHashRefused: a state file whose chain head or
// range holds a hash in another form than ledger/event's is refused, not
// read in part. A chain head dropped silently would spare that patient's
// history the rewrite check of the next run.
func TestVerifyStateMalformedHashRefused(t *testing.T) {
	const server = "http://127.0.0.1:8080"
	pseudonym := strings.Repeat("ab", 32)
	commitment := strings.Repeat("cd", 32)
	for _, c := range []struct{ name, body string }{
		{"chain key in uppercase", `"verify": {"checkpoint": "", "seen_at": "2026-01-01T00:00:00Z", "chains": {"` + strings.ToUpper(pseudonym) + `": {"seq": 3, "commitment": "` + commitment + `"}}}`},
		{"chain key too short", `"verify": {"checkpoint": "", "seen_at": "2026-01-01T00:00:00Z", "chains": {"abcd": {"seq": 3, "commitment": "` + commitment + `"}}}`},
		{"range hash not hex", `"audit": {"checkpoint": "", "seen_at": "2026-01-01T00:00:00Z", "range": ["` + strings.Repeat("zz", 32) + `"]}`},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			st, err := loadState(dir, server)
			if err != nil {
				t.Fatal(err)
			}
			body := `{"version": 1, "server": "` + server + `", "origin": "o", "checkpoint_key": "k", "pinned_at": "2026-01-01T00:00:00Z", ` + c.body + `}`
			if err := os.MkdirAll(filepath.Dir(st.path), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(st.path, []byte(body), 0o600); err != nil {
				t.Fatal(err)
			}
			st, err = loadState(dir, server)
			if err == nil {
				t.Fatalf("loadState read a malformed state (chains %v, range %v), want an error", st.savedState().Chains, st.Audit)
			}
			if strings.Contains(err.Error(), strings.ToUpper(pseudonym)) {
				t.Errorf("loadState error %q quotes the value", err)
			}
		})
	}
	// The well-formed state still loads, with its chain head.
	dir := t.TempDir()
	st, _ := loadState(dir, server)
	body := `{"version": 1, "server": "` + server + `", "origin": "o", "checkpoint_key": "k", "pinned_at": "2026-01-01T00:00:00Z", "verify": {"checkpoint": "", "seen_at": "2026-01-01T00:00:00Z", "chains": {"` + pseudonym + `": {"seq": 3, "commitment": "` + commitment + `"}}}}`
	os.MkdirAll(filepath.Dir(st.path), 0o700)
	if err := os.WriteFile(st.path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := loadState(dir, server)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(st.savedState().Chains); n != 1 {
		t.Errorf("well-formed state: %d chain heads, want 1", n)
	}
}
