package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"k8s.io/klog/v2"
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
