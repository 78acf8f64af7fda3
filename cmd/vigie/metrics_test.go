package main

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vigie-sante/vigie/ledger/sqldb/pgtest"
)

// promtool returns the path of Prometheus's promtool (Debian's prometheus
// package, installed by scripts/test.sh), or skips t without it; under
// CI (CI=true) it fails instead.
func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("promtool is missing and CI=true (Debian's prometheus package; scripts/test.sh installs it)")
		}
		t.Skip("promtool is missing: install Debian's prometheus package (scripts/test.sh does) to check metrics and alerting rules")
	}
	return p
}

// scrape starts vigie serve with args and returns its /metrics once
// Trillian's sequencer has run, a checkpoint has been signed (the first
// start records the national rules) and a call has been refused (so that
// metrics with labels have a series).
func scrape(t *testing.T, args ...string) string {
	t.Helper()
	body, _ := scrapeNode(t, args...)
	return body
}

// scrapeNode is scrape that also returns the node, still running.
func scrapeNode(t *testing.T, args ...string) (string, *serveProc) {
	t.Helper()
	s := startServe(t, append([]string{"--data-dir", t.TempDir(), "--admin-addr", "127.0.0.1:0"}, args...)...)
	s.waitReady(t)
	base := s.httpURL(t)
	m := metricsLine.FindStringSubmatch(s.output())
	if m == nil {
		t.Fatalf("no metrics address in the banner:\n%s", s.output())
	}
	if code, _ := httpGet(t, base+"/v1/audit/alerts"); code != 401 {
		t.Fatalf("GET /v1/audit/alerts without credentials = %d, want 401", code)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		code, body := httpGet(t, m[1])
		if code != 200 {
			t.Fatalf("/metrics = %d", code)
		}
		if strings.Contains(body, "trillian_sequencer_sequenced_total{") && strings.Contains(body, "\nvigie_ledger_checkpoint_age_seconds ") && strings.Contains(body, "\nvigie_auth_failures_total{") {
			return body, s
		}
		if time.Now().After(deadline) {
			t.Fatalf("/metrics lacks Trillian's sequencer, the checkpoint or the refused call after 20s:\n%s", body)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestMetricsConventions runs promtool check metrics (Prometheus's
// linter: counters end in _total, base units in names, help on every
// metric...) over a real scrape of a node on SQLite and on PostgreSQL.
func TestMetricsConventions(t *testing.T) {
	tool := promtool(t)
	for _, tc := range []struct {
		name string
		args func(t *testing.T) []string
		want []string
	}{
		{"SQLite", func(t *testing.T) []string { return nil }, nil},
		{"PostgreSQL", func(t *testing.T) []string { return []string{"--db", pgtest.NewDatabase(t)} },
			[]string{`vigie_db_pool_connections{db="vigie",state="idle"}`, `vigie_db_pool_acquires_total{db="trillian"}`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := scrape(t, tc.args(t)...)
			for _, want := range append(tc.want, "vigie_ledger_recorded_events_total ", "trillian_signing_runs_total{", "trillian_sequencer_latency_seconds_bucket{") {
				if !strings.Contains(body, want) {
					t.Errorf("/metrics lacks %s", want)
				}
			}
			cmd := exec.Command(tool, "check", "metrics")
			cmd.Stdin = strings.NewReader(body)
			if out, err := cmd.CombinedOutput(); err != nil || len(out) > 0 {
				t.Errorf("promtool check metrics: %v\n%s", err, out)
			}
		})
	}
}

// monitoringRules returns the alerting rules of docs/operations.md: the
// ```yaml block of its Monitoring section.
func monitoringRules(t *testing.T) string {
	t.Helper()
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "operations.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(doc), "\n## Monitoring\n")
	if !ok {
		t.Fatal("docs/operations.md has no ## Monitoring section")
	}
	if i := strings.Index(section, "\n## "); i >= 0 {
		section = section[:i]
	}
	_, rules, ok := strings.Cut(section, "\n```yaml\n")
	if !ok {
		t.Fatal("the Monitoring section of docs/operations.md has no ```yaml block")
	}
	rules, _, ok = strings.Cut(rules, "\n```\n")
	if !ok {
		t.Fatal("the ```yaml block of docs/operations.md's Monitoring section is not closed")
	}
	return rules + "\n"
}

// TestMonitoringRules: the example alerting rules of docs/operations.md
// pass promtool check rules.
func TestMonitoringRules(t *testing.T) {
	tool := promtool(t)
	file := filepath.Join(t.TempDir(), "vigie-rules.yaml")
	if err := os.WriteFile(file, []byte(monitoringRules(t)), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(tool, "check", "rules", file).CombinedOutput(); err != nil || !bytes.Contains(out, []byte("SUCCESS")) {
		t.Errorf("promtool check rules over docs/operations.md's rules: %v\n%s", err, out)
	}
}

var ruleMetric = regexp.MustCompile(`\b(?:vigie|trillian)_[a-z0-9_]+`)

// TestMonitoringRulesMetrics: every metric the rules of
// docs/operations.md name is in a real scrape (PostgreSQL mode, which has
// every metric of the embedded mode and the database pools').
func TestMonitoringRulesMetrics(t *testing.T) {
	rules := monitoringRules(t)
	names := ruleMetric.FindAllString(rules, -1)
	if len(names) == 0 {
		t.Fatal("the rules name no metric")
	}
	db, data := pgtest.NewDatabase(t), t.TempDir()
	body, node := scrapeNode(t, "--db", db, "--data-dir", data)
	node.stop(t, syscall.SIGTERM)
	body += scrape(t, "--db", db, "--data-dir", data, "--witness-policy", fakeWitnessPolicy(t, node))
	have := make(map[string]bool)
	for _, line := range strings.Split(body, "\n") {
		if name, ok := strings.CutPrefix(line, "# TYPE "); ok {
			name, kind, _ := strings.Cut(name, " ")
			have[name] = true
			if kind == "histogram" {
				for _, s := range []string{"_bucket", "_count", "_sum"} {
					have[name+s] = true
				}
			}
		}
	}
	for _, name := range names {
		if !have[name] {
			t.Errorf("the rules name %s, which /metrics does not have", name)
		}
	}
}

// fakeWitnessPolicy writes and returns a witness policy file for the log
// of node (its checkpoint key, from its banner) whose one witness, the
// quorum, answers every submission 404.
func fakeWitnessPolicy(t *testing.T, node *serveProc) string {
	t.Helper()
	m := keyLine.FindStringSubmatch(node.output())
	if m == nil {
		t.Fatalf("no checkpoint key in the banner:\n%s", node.output())
	}
	key, err := base64.StdEncoding.DecodeString(strings.SplitN(m[2], "+", 3)[2])
	if err != nil || len(key) != 33 {
		t.Fatalf("the checkpoint key of the banner: %v", err)
	}
	fake := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(fake.Close)
	wpub, _, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "witnesses.txt")
	policy := fmt.Sprintf("log %x\nwitness witness.test/fake %x %s\nquorum witness.test/fake\n", key[1:], wpub, fake.URL)
	if err := os.WriteFile(file, []byte(policy), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}
