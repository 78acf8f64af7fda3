package apiserver

import (
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/vigie-sante/vigie/ledger"
)

// newRegistry returns the registry of /metrics: Go's and the process's
// collectors, the build's, the ledger's and the node's others
// (Node.Collectors). The gRPC server registers its own on it.
func newRegistry(n Node, version string) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), buildInfo(version))
	reg.MustRegister(ledger.NewCollector(n.Ledger))
	reg.MustRegister(n.Collectors...)
	return reg
}

// buildInfo is the vigie_build_info gauge: always 1, its labels say which
// build runs (for dashboards: count the versions of a fleet).
func buildInfo(version string) prometheus.Collector {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "vigie_build_info",
		Help:        "Always 1; the labels name the build: version (from git at build), go_version, goos, goarch.",
		ConstLabels: prometheus.Labels{"version": version, "go_version": runtime.Version(), "goos": runtime.GOOS, "goarch": runtime.GOARCH},
	})
	g.Set(1)
	return g
}

// startAdmin serves /metrics, and the profiles with cfg.Pprof, on
// cfg.AdminAddr.
func (a *API) startAdmin(cfg Config, reg prometheus.Gatherer) error {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	if cfg.Pprof {
		// Not /debug/pprof/cmdline: the command line may hold a
		// database URL with its password.
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
		mux.HandleFunc("GET /debug/pprof/cmdline", http.NotFound)
	}
	a.admin = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		// A CPU profile or a trace lasts ?seconds= (30 by default).
		WriteTimeout: 5 * time.Minute,
		IdleTimeout:  2 * time.Minute,
		ErrorLog:     slog.NewLogLogger(a.logger.Handler(), slog.LevelWarn),
	}
	l, err := net.Listen("tcp", cfg.AdminAddr)
	if err != nil {
		return &FieldError{Field: "AdminAddr", Err: err}
	}
	a.adminURL = "http://" + l.Addr().String()
	go func() {
		err := a.admin.Serve(l)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		a.done <- err
	}()
	return nil
}
