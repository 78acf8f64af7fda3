package main

import (
	"bytes"
	"context"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestHealth: vigie health exits 0 only on a 200 from /readyz (or
// /healthz with --live), verifies the server's certificate against
// --tls-ca under --tls-server-name, and refuses bad flags with 2.
func TestHealth(t *testing.T) {
	var ready bool
	mux := http.NewServeMux()
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if !ready {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok\n")) })
	plain := httptest.NewServer(mux)
	defer plain.Close()
	secure := httptest.NewTLSServer(mux)
	defer secure.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: secure.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	// httptest's certificate names example.com and 127.0.0.1, not
	// localhost.
	secureByName := strings.Replace(secure.URL, "127.0.0.1", "localhost", 1)

	for _, tc := range []struct {
		name   string
		ready  bool
		args   []string
		want   int
		stderr string
	}{
		{"ready", true, []string{"--server", plain.URL}, exitOK, ""},
		{"not ready", false, []string{"--server", plain.URL}, exitFailure, "503"},
		{"live while not ready", false, []string{"--server", plain.URL, "--live"}, exitOK, ""},
		{"tls with its CA", true, []string{"--server", secure.URL, "--tls-ca", ca}, exitOK, ""},
		{"tls without its CA", true, []string{"--server", secure.URL}, exitFailure, "certificate"},
		{"tls, name not in the certificate", true, []string{"--server", secureByName, "--tls-ca", ca}, exitFailure, "certificate"},
		{"tls, --tls-server-name", true, []string{"--server", secureByName, "--tls-ca", ca, "--tls-server-name", "example.com"}, exitOK, ""},
		{"nobody listening", true, []string{"--server", "http://127.0.0.1:1"}, exitFailure, "refused"},
		{"bad URL", true, []string{"--server", "::"}, exitUsage, "--server"},
		{"bad CA file", true, []string{"--server", secure.URL, "--tls-ca", os.DevNull}, exitUsage, "--tls-ca"},
		{"zero timeout", true, []string{"--server", plain.URL, "--timeout", "0s"}, exitUsage, "--timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ready = tc.ready
			var stdout, stderr bytes.Buffer
			got := run(context.Background(), append([]string{"health"}, tc.args...), &stdout, &stderr)
			if got != tc.want {
				t.Fatalf("vigie health %v = %d, want %d (stderr %q)", tc.args, got, tc.want, stderr.String())
			}
			if !strings.Contains(stderr.String(), tc.stderr) {
				t.Errorf("stderr %q, want it to contain %q", stderr.String(), tc.stderr)
			}
		})
	}
}
