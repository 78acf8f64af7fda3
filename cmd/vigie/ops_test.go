package main

import (
	"io"
	"net/http"
	"os/exec"
	"runtime"
	"strings"
	"testing"
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
