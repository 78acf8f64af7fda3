package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/google/go-cmp/cmp"
)

// osvEntry is an OSV entry as x/vulndb publishes it (indented, with the
// fields govulncheck prints), affecting one package of module mod with the
// given ranges' events.
func osvEntry(id, modified, mod, pkg, symbol, events string) string {
	return fmt.Sprintf(`{
  "schema_version": "1.3.1",
  "id": %q,
  "modified": %q,
  "aliases": ["CVE-0000-%s"],
  "summary": "test",
  "affected": [
    {
      "package": {"name": %q, "ecosystem": "Go"},
      "ranges": [{"type": "SEMVER", "events": [%s]}],
      "ecosystem_specific": {"imports": [{"path": %q, "symbols": [%q]}]}
    }
  ],
  "database_specific": {"url": "https://pkg.go.dev/vuln/%s"}
}
`, id, modified, id[len(id)-4:], mod, events, pkg, symbol, id)
}

func TestBuild(t *testing.T) {
	osv := fstest.MapFS{
		"GO-2026-0002.json": {Data: []byte(osvEntry("GO-2026-0002", "2026-02-01T00:00:00Z", "golang.org/x/net", "golang.org/x/net/html", "Parse", `{"introduced": "0"}, {"fixed": "0.62.0"}`))},
		"GO-2026-0001.json": {Data: []byte(osvEntry("GO-2026-0001", "0001-01-01T00:00:00Z", "stdlib", "net/http", "Get", `{"introduced": "0"}, {"fixed": "1.26.9"}, {"introduced": "1.27.0-0"}, {"fixed": "1.27.3"}`))},
		"README.md":         {Data: []byte("not an entry")},
	}
	db, err := Build(osv, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	var names []string
	for name := range db {
		names = append(names, name)
	}
	wantNames := []string{"ID/GO-2026-0001.json", "ID/GO-2026-0002.json", "index/db.json", "index/modules.json", "index/vulns.json"}
	if diff := cmp.Diff(wantNames, names, cmpSorted); diff != "" {
		t.Errorf("files (-want +got):\n%s", diff)
	}

	tests := []struct {
		file string
		want string
	}{
		// The latest of the entries' times and the floor.
		{"index/db.json", `{"modified":"2026-02-01T00:00:00Z"}`},
		{"index/modules.json", `[` +
			`{"path":"golang.org/x/net","vulns":[{"id":"GO-2026-0002","modified":"2026-02-01T00:00:00Z","fixed":"0.62.0"}]},` +
			`{"path":"stdlib","vulns":[{"id":"GO-2026-0001","modified":"0001-01-01T00:00:00Z","fixed":"1.27.3"}]}]`},
		{"index/vulns.json", `[` +
			`{"id":"GO-2026-0001","modified":"0001-01-01T00:00:00Z","aliases":["CVE-0000-0001"]},` +
			`{"id":"GO-2026-0002","modified":"2026-02-01T00:00:00Z","aliases":["CVE-0000-0002"]}]`},
	}
	for _, tt := range tests {
		if got := string(db[tt.file]); got != tt.want {
			t.Errorf("%s = %s, want %s", tt.file, got, tt.want)
		}
	}

	// An entry is published as is, only compacted: no field is lost.
	var want bytes.Buffer
	if err := json.Compact(&want, osv["GO-2026-0001.json"].Data); err != nil {
		t.Fatal(err)
	}
	if got := db["ID/GO-2026-0001.json"]; !bytes.Equal(got, want.Bytes()) {
		t.Errorf("ID/GO-2026-0001.json = %s, want %s", got, want.Bytes())
	}
}

var cmpSorted = cmp.Transformer("sort", func(s []string) []string {
	s = append([]string(nil), s...)
	for i := range s {
		for j := i + 1; j < len(s); j++ {
			if s[j] < s[i] {
				s[i], s[j] = s[j], s[i]
			}
		}
	}
	return s
})

func TestBuildRejects(t *testing.T) {
	good := osvEntry("GO-2026-0001", "2026-02-01T00:00:00Z", "stdlib", "net/http", "Get", `{"introduced": "0"}`)
	tests := []struct {
		name    string
		file    string
		data    string
		wantErr string
	}{
		{"not JSON", "GO-2026-0001.json", `{"id": `, "GO-2026-0001.json: not an OSV entry"},
		{"id is not the file name", "GO-2026-0009.json", good, "GO-2026-0009.json: field id does not match the file name"},
		{"bad id", "GO-26-1.json", strings.Replace(good, "GO-2026-0001", "GO-26-1", 1), "GO-26-1.json: field id does not match the file name"},
		{"nothing affected", "GO-2026-0001.json", `{"id": "GO-2026-0001", "affected": []}`, "GO-2026-0001.json: field affected is empty"},
		{"no module", "GO-2026-0001.json", strings.Replace(good, `"name": "stdlib"`, `"name": ""`, 1), "GO-2026-0001.json: field affected.package.name is empty"},
		{"no entry", "README.md", "hello", "no GO-*.json entry"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Build(fstest.MapFS{tt.file: {Data: []byte(tt.data)}}, time.Time{})
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Build() error = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestLatestFixed(t *testing.T) {
	tests := []struct {
		name   string
		events string
		want   string
	}{
		{"never fixed", `{"introduced": "0"}`, ""},
		{"fixed", `{"introduced": "0"}, {"fixed": "1.2.0"}`, "1.2.0"},
		{"two branches", `{"introduced": "0"}, {"fixed": "1.26.9"}, {"introduced": "1.27.0-0"}, {"fixed": "1.27.3"}`, "1.27.3"},
		{"out of order", `{"introduced": "1.27.0-0"}, {"fixed": "1.27.3"}, {"introduced": "0"}, {"fixed": "1.26.9"}`, "1.27.3"},
		{"introduced again after the fix", `{"introduced": "0"}, {"fixed": "1.2.0"}, {"introduced": "1.3.0"}`, ""},
		{"pseudo-version", `{"introduced": "0"}, {"fixed": "0.0.0-20260225185322-738bad662b20"}`, "0.0.0-20260225185322-738bad662b20"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r osvRange
			if err := json.Unmarshal([]byte(`{"type": "SEMVER", "events": [`+tt.events+`]}`), &r); err != nil {
				t.Fatal(err)
			}
			if got := latestFixed([]osvRange{r}); got != tt.want {
				t.Errorf("latestFixed(%s) = %q, want %q", tt.events, got, tt.want)
			}
		})
	}
	// A range of another type says nothing of semantic versions.
	if got := latestFixed([]osvRange{{Type: "GIT"}}); got != "" {
		t.Errorf("latestFixed(GIT) = %q, want \"\"", got)
	}
}

func TestWriteRefusesAnExistingDatabase(t *testing.T) {
	dir := t.TempDir()
	db := Database{"index/db.json": []byte(`{}`), "ID/GO-2026-0001.json": []byte(`{}`)}
	if err := db.Write(dir); err != nil {
		t.Fatalf("Write: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "ID", "GO-2026-0001.json")); err != nil || string(b) != "{}" {
		t.Errorf("ID/GO-2026-0001.json = %q, %v; want {}", b, err)
	}
	if err := db.Write(dir); err == nil {
		t.Error("Write over a database succeeded, want an error")
	}
}

// TestGovulncheckReadsTheDatabase runs the pinned govulncheck over
// testdata/calls (which calls strings.ToUpper) against databases this
// command writes: a vulnerability in a called symbol fails the run (exit
// code 3) and is named; one in a symbol the program does not call does not.
func TestGovulncheckReadsTheDatabase(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs govulncheck")
	}
	tests := []struct {
		name     string
		symbol   string
		wantCode int
	}{
		{"called", "ToUpper", 3},
		{"not called", "ToLower", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			osv := t.TempDir()
			entry := osvEntry("GO-2026-9999", "2026-02-01T00:00:00Z", "stdlib", "strings", tt.symbol, `{"introduced": "0"}`)
			if err := os.WriteFile(filepath.Join(osv, "GO-2026-9999.json"), []byte(entry), 0o644); err != nil {
				t.Fatal(err)
			}
			db := filepath.Join(t.TempDir(), "db")
			var stderr bytes.Buffer
			if code := run([]string{"-osv", osv, "-out", db}, &stderr); code != 0 {
				t.Fatalf("vulndb exit code %d: %s", code, &stderr)
			}
			calls, err := filepath.Abs("testdata/calls")
			if err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command("go", "tool", "govulncheck", "-C", calls, "-db", "file://"+db, "./...")
			out, err := cmd.CombinedOutput()
			code := 0
			var exit *exec.ExitError
			if errors.As(err, &exit) {
				code = exit.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tt.wantCode {
				t.Fatalf("govulncheck exit code = %d, want %d; output:\n%s", code, tt.wantCode, out)
			}
			if called := strings.Contains(string(out), "Vulnerability #1: GO-2026-9999"); called != (tt.wantCode == 3) {
				t.Errorf("govulncheck output names GO-2026-9999 as reached = %v, want %v; output:\n%s", called, !called, out)
			}
		})
	}
}
