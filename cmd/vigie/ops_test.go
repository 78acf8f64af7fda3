package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"k8s.io/klog/v2"

	"github.com/vigie-sante/vigie/api/auth"
	vigiev1 "github.com/vigie-sante/vigie/api/vigie/v1"
)

// httpGet returns the status and body of a GET of url.
func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// httpURL returns the HTTP API's base URL that vigie serve printed.
func (s *serveProc) httpURL(t *testing.T) string {
	t.Helper()
	m := httpLine.FindStringSubmatch(s.output())
	if m == nil {
		t.Fatalf("no HTTP address in the output:\n%s", s.output())
	}
	return m[1]
}

// TestBuildVersion checks that the version injected at build (TestMain
// builds vigieBin with -ldflags -X main.version=testVersion, as the
// Makefile does with git's) is what vigie version and vigie --version
// print, what vigie_build_info says and what /healthz shows.
func TestBuildVersion(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"--version"}} {
		out, err := exec.Command(vigieBin, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("vigie %v: %v\n%s", args, err, out)
		}
		if want := "vigie " + testVersion + " (" + runtime.Version() + ", "; !strings.HasPrefix(string(out), want) {
			t.Errorf("vigie %v = %q, want %q...", args, out, want)
		}
	}
	s := startServe(t, "--data-dir", t.TempDir())
	s.waitReady(t)
	base := s.httpURL(t)
	if code, body := httpGet(t, base+"/healthz"); code != 200 || body != "ok\nversion "+testVersion+"\n" {
		t.Errorf("/healthz = %d %q, want the version", code, body)
	}
	code, body := httpGet(t, base+"/metrics")
	want := `vigie_build_info{go_version="` + runtime.Version() + `",goarch="` + runtime.GOARCH + `",goos="` + runtime.GOOS + `",version="` + testVersion + `"} 1`
	if code != 200 || !strings.Contains(body, want) {
		t.Errorf("/metrics = %d, lacks %s", code, want)
	}
}

// TestLogFormats checks --log-format: JSON lines parse; in both formats an
// INS in a message, an attribute or a logged error is redacted; and
// Trillian's klog lines go through the same handler (as JSON with json).
func TestLogFormats(t *testing.T) {
	const ins = examplePatient
	t.Cleanup(klog.ClearLogger)
	for _, format := range []logFormat{logText, logJSON} {
		t.Run(string(format), func(t *testing.T) {
			var buf bytes.Buffer
			logger := newLoggerAs(&buf, slog.LevelInfo, format)
			logger.Info("consent of "+ins+" read", "patient", ins)
			logger.Error("grpc call", "err", fmt.Errorf("decide for patient %s: %w", ins, errors.New("boom")))
			klog.ErrorS(fmt.Errorf("leaf of %s: %w", ins, errors.New("queue full")), "trillian failed", "tree", 7)
			klog.Errorf("sequencer slow for %s", ins)
			// Demoted to debug: not at info. (klog passes its warnings to
			// a logr sink as info too: they are demoted as well.)
			klog.Info("trillian chatter")
			out := buf.String()
			if strings.Contains(out, ins) {
				t.Errorf("the log holds the INS:\n%s", out)
			}
			if strings.Contains(out, "trillian chatter") {
				t.Errorf("klog's info lines are not demoted to debug:\n%s", out)
			}
			lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
			if len(lines) != 4 {
				t.Fatalf("%d lines, want 4:\n%s", len(lines), out)
			}
			for i, line := range lines {
				var m map[string]any
				err := json.Unmarshal([]byte(line), &m)
				if (err == nil) != (format == logJSON) {
					t.Errorf("line %d parses as JSON: %v, want %v: %s", i, err == nil, format == logJSON, line)
				}
				if format == logJSON && i >= 2 && m["component"] != "trillian" {
					t.Errorf("klog line %d = %s, want component trillian", i, line)
				}
			}
			if !strings.Contains(lines[2], "trillian failed") || !strings.Contains(lines[2], "queue full") || !strings.Contains(lines[3], "sequencer slow") {
				t.Errorf("klog's lines are not in the log:\n%s", out)
			}
		})
	}
	var f logFormat
	if err := f.Set("yaml"); err == nil {
		t.Error(`--log-format yaml accepted`)
	}
}

// TestTrustedProxiesConfig: plain HTTP beyond loopback is refused without
// --trusted-proxies, accepted with it; the gRPC API keeps its rule.
func TestTrustedProxiesConfig(t *testing.T) {
	var proxies prefixes
	if err := proxies.Set("10.0.0.0/8, 192.0.2.7,2001:db8::/32"); err != nil {
		t.Fatal(err)
	}
	if got := proxies.String(); got != "10.0.0.0/8,192.0.2.7/32,2001:db8::/32" {
		t.Errorf("--trusted-proxies = %s", got)
	}
	for _, bad := range []string{"0.0.0.0/0", "::/0", "10.0.0.0/33", "proxy.example", "fe80::1%eth0"} {
		var p prefixes
		if err := p.Set(bad); err == nil {
			t.Errorf("--trusted-proxies %s accepted", bad)
		}
	}
	for _, tc := range []struct {
		name      string
		http, rpc string
		proxies   prefixes
		want      string // "" for valid
	}{
		{"plain HTTP beyond loopback", "0.0.0.0:8080", "127.0.0.1:8081", nil, "--trusted-proxies"},
		{"behind trusted proxies", "0.0.0.0:8080", "127.0.0.1:8081", proxies, ""},
		{"gRPC keeps its rule", "0.0.0.0:8080", "0.0.0.0:8081", proxies, "--grpc-addr"},
	} {
		c := apiConfig{grpcAddr: tc.rpc, httpAddr: tc.http, oidcAudience: "vigie", drainTimeout: 1, trustedProxies: tc.proxies}
		err := c.validate()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v, want valid", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: %v, want an error naming %s", tc.name, err, tc.want)
		}
	}
}

// TestServeBehindProxy checks, on a running service, that X-Forwarded-For
// sets the client address of the rate limiter and of the log line when the
// peer is a trusted proxy, and is ignored otherwise; and that a request
// the proxy received over plain HTTP is refused.
func TestServeBehindProxy(t *testing.T) {
	for _, tc := range []struct {
		name, trusted string
		// The clients of the calls' log lines, in order: calls refused by
		// the rate limiter are logged, the one refused by the proxy rule
		// never reaches the API.
		wantClients []string
	}{
		{"trusted", "127.0.0.0/8", []string{"198.51.100.7", "198.51.100.7", "198.51.100.8"}},
		{"untrusted", "192.0.2.0/24", []string{"127.0.0.1", "127.0.0.1", "127.0.0.1", "127.0.0.1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startServe(t, "--data-dir", t.TempDir(), "--trusted-proxies", tc.trusted, "--rate-limit", "anonymous=0.001:1", "--log-format", "json")
			s.waitReady(t)
			base := s.httpURL(t)
			get := func(xff, proto string) int {
				req, err := http.NewRequest("GET", base+"/v1/log/key", nil)
				if err != nil {
					t.Fatal(err)
				}
				req.Header.Set("X-Forwarded-For", xff)
				req.Header.Set("X-Forwarded-Proto", proto)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				return resp.StatusCode
			}
			trusted := tc.name == "trusted"
			if c := get("198.51.100.7", "https"); c != 200 {
				t.Fatalf("first call = %d, want 200", c)
			}
			if c := get("198.51.100.7", "https"); c != 429 {
				t.Errorf("the same client again = %d, want 429", c)
			}
			if c, want := get("198.51.100.8", "https"), map[bool]int{true: 200, false: 429}[trusted]; c != want {
				t.Errorf("another X-Forwarded-For = %d, want %d", c, want)
			}
			if c, want := get("198.51.100.9", "http"), map[bool]int{true: 403, false: 429}[trusted]; c != want {
				t.Errorf("X-Forwarded-Proto http = %d, want %d", c, want)
			}
			if code := s.stop(t, syscall.SIGTERM); code != 0 {
				t.Fatalf("exit %d:\n%s", code, s.stderr)
			}
			var clients []string
			for _, line := range strings.Split(strings.TrimSpace(s.stderr.String()), "\n") {
				var m struct{ Msg, Method, Client string }
				if err := json.Unmarshal([]byte(line), &m); err != nil {
					t.Fatalf("a log line is not JSON: %v: %s", err, line)
				}
				if m.Msg == "grpc call" && m.Method == "/vigie.v1.LogService/GetPublicKey" {
					clients = append(clients, m.Client)
				}
			}
			if strings.Join(clients, " ") != strings.Join(tc.wantClients, " ") {
				t.Errorf("clients in the log = %v, want %v", clients, tc.wantClients)
			}
		})
	}
}

var metricsLine = regexp.MustCompile(`metrics:\s+(\S+)`)

// TestAdminAddr checks that with --admin-addr /metrics is served there and
// leaves the HTTP API, and that the profiles are served only with --pprof
// (never the command line, which may hold a database password).
func TestAdminAddr(t *testing.T) {
	for _, pprof := range []bool{false, true} {
		t.Run(fmt.Sprint("pprof=", pprof), func(t *testing.T) {
			args := []string{"--data-dir", t.TempDir(), "--admin-addr", "127.0.0.1:0"}
			if pprof {
				args = append(args, "--pprof")
			}
			s := startServe(t, args...)
			s.waitReady(t)
			base := s.httpURL(t)
			m := metricsLine.FindStringSubmatch(s.output())
			if m == nil || strings.HasPrefix(m[1], base) {
				t.Fatalf("the banner does not show the admin address for metrics:\n%s", s.output())
			}
			admin := strings.TrimSuffix(m[1], "/metrics")
			if code, body := httpGet(t, admin+"/metrics"); code != 200 || !strings.Contains(body, "vigie_build_info{") || !strings.Contains(body, "vigie_ledger_ready 1") {
				t.Errorf("admin /metrics = %d, want Vigie's metrics:\n%.500s", code, body)
			}
			if code, _ := httpGet(t, base+"/metrics"); code != 404 {
				t.Errorf("the HTTP API's /metrics = %d, want 404 with --admin-addr", code)
			}
			want := map[bool]int{false: 404, true: 200}[pprof]
			for _, path := range []string{"/debug/pprof/", "/debug/pprof/heap", "/debug/pprof/goroutine?debug=1"} {
				if code, _ := httpGet(t, admin+path); code != want {
					t.Errorf("admin %s = %d, want %d", path, code, want)
				}
				if code, _ := httpGet(t, base+path); code == 200 {
					t.Errorf("the HTTP API serves %s", path)
				}
			}
			if code, _ := httpGet(t, admin+"/debug/pprof/cmdline"); code != 404 {
				t.Errorf("admin /debug/pprof/cmdline = %d, want 404", code)
			}
		})
	}
	// Without --admin-addr, /metrics stays on the HTTP API (TestBuildVersion).
	for _, tc := range []struct {
		c    apiConfig
		want string
	}{
		{apiConfig{pprof: true}, "--pprof needs --admin-addr"},
		{apiConfig{adminAddr: "0.0.0.0:9090", pprof: true}, "--admin-addr with --pprof"},
		{apiConfig{adminAddr: "9090"}, "--admin-addr"},
		{apiConfig{adminAddr: "0.0.0.0:9090"}, ""},
	} {
		c := tc.c
		c.grpcAddr, c.httpAddr, c.oidcAudience, c.drainTimeout = "127.0.0.1:8081", "127.0.0.1:8080", "vigie", 1
		err := c.validate()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%+v: %v, want valid", tc.c, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%+v: %v, want an error naming %s", tc.c, err, tc.want)
		}
	}
}

// TestTracesHoldNoHealthData runs calls with --trace-file, then checks
// the exported spans: one per call, the ledger's work a child of it, and
// nothing in them of the INS, the document, the actor or the request.
func TestTracesHoldNoHealthData(t *testing.T) {
	file := filepath.Join(t.TempDir(), "spans.json")
	e := startE2E(t, "--trace-file", file)
	const docID, docType, requestID = "CR-psychiatrie-2026-0042", "11506-3", "trace-check-7731"
	req := checkRequest(requestID)
	req.Resource = &vigiev1.Resource{Kind: &vigiev1.Resource_Document{Document: &vigiev1.Document{Id: docID, Type: docType, AuthorRpps: "10000000002"}}}
	if _, err := vigiev1.NewAccessServiceClient(e.conn).Check(e.as(auth.RoleService, "hospital-his", e2eHospital), req); err != nil {
		t.Fatal(err)
	}
	if _, err := vigiev1.NewHistoryServiceClient(e.conn).ListAccesses(e.as(auth.RolePatient, e2ePatient), &vigiev1.ListAccessesRequest{}); err != nil {
		t.Fatal(err)
	}
	if code := e.proc.stop(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("exit %d:\n%s", code, e.proc.stderr)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{e2ePatient, e2ePatient[:13], docID, docType, requestID, e2eDoctor, "10000000002", e2eHospital, "hospital-his"} {
		if bytes.Contains(b, []byte(secret)) {
			t.Errorf("the spans hold %q", secret)
		}
	}
	type spanContext struct{ TraceID, SpanID string }
	type span struct {
		Name        string
		SpanContext spanContext
		Parent      spanContext
	}
	var spans []span
	for dec := json.NewDecoder(bytes.NewReader(b)); dec.More(); {
		var s span
		if err := dec.Decode(&s); err != nil {
			t.Fatalf("the trace file: %v", err)
		}
		spans = append(spans, s)
	}
	childOf := func(call string) bool {
		for _, c := range spans {
			if c.Name != call {
				continue
			}
			for _, l := range spans {
				if strings.HasPrefix(l.Name, "ledger.Record") && l.Parent.SpanID == c.SpanContext.SpanID && l.SpanContext.TraceID == c.SpanContext.TraceID {
					return true
				}
			}
		}
		return false
	}
	for _, call := range []string{"vigie.v1.AccessService/Check", "vigie.v1.HistoryService/ListAccesses"} {
		if !childOf(call) {
			t.Errorf("no span %s with its ledger recording as a child, in %d spans:\n%.2000s", call, len(spans), b)
		}
	}
}
