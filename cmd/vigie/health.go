package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

// runHealth asks a node's HTTP API whether it is ready (/readyz, or
// /healthz with --live): the probe of a container without a shell (a
// compose healthcheck, Podman's HEALTHCHECK). Exit 0 on 200, 1 otherwise.
func runHealth(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("health", stderr)
	var h healthConfig
	h.flags(fs)
	if code, done := parseFlags(fs, args); done {
		return code
	}
	hc, err := h.client()
	if err != nil {
		fmt.Fprintf(stderr, "vigie health: %v\n", err)
		return exitUsage
	}
	path := "/readyz"
	if h.live {
		path = "/healthz"
	}
	ctx, cancel := context.WithTimeout(ctx, h.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.server+path, nil)
	if err != nil {
		fmt.Fprintln(stderr, "vigie health: --server: want an http:// or https:// URL")
		return exitUsage
	}
	resp, err := hc.Do(req)
	if err != nil {
		fmt.Fprintf(stderr, "vigie health: %v\n", err)
		return exitFailure
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "vigie health: %s: %s\n", path, resp.Status)
		return exitFailure
	}
	fmt.Fprintf(stdout, "%s: ok\n", path)
	return exitOK
}

// healthConfig is what vigie health is configured with.
type healthConfig struct {
	server     string
	tlsCA      string
	serverName string
	live       bool
	timeout    time.Duration
}

func (h *healthConfig) flags(fs *flag.FlagSet) {
	fs.StringVar(&h.server, "server", "http://127.0.0.1:8080", "URL of the node's HTTP API")
	fs.StringVar(&h.tlsCA, "tls-ca", "", "CA certificates (PEM) to trust for an https server, instead of the system's")
	fs.StringVar(&h.serverName, "tls-server-name", "", "name the server's certificate must carry, when the URL's host is another (https://127.0.0.1:8080 inside a container)")
	fs.BoolVar(&h.live, "live", false, "ask /healthz (the process answers) instead of /readyz (the node can serve)")
	fs.DurationVar(&h.timeout, "timeout", 5*time.Second, "give up after this long")
}

// client returns the HTTP client of the probe.
func (h *healthConfig) client() (*http.Client, error) {
	if h.timeout <= 0 {
		return nil, fmt.Errorf("--timeout must be positive")
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: h.serverName}
	if h.tlsCA != "" {
		pem, err := os.ReadFile(h.tlsCA)
		if err != nil {
			return nil, fmt.Errorf("--tls-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--tls-ca: no PEM certificate in %s", h.tlsCA)
		}
		cfg.RootCAs = pool
	}
	// No proxy: the probe asks the node itself.
	return &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}, nil
}
