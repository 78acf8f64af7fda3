package server

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the server's Prometheus metrics.
type metrics struct {
	requests    *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	inFlight    prometheus.Gauge
	panics      prometheus.Counter
	rateLimited *prometheus.CounterVec
	authFailed  *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vigie_grpc_requests_total",
			Help: "gRPC calls handled, by method and status code (calls through the JSON gateway included).",
		}, []string{"method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "vigie_grpc_request_duration_seconds",
			Help:    "Time to handle a gRPC call, by method, from the first interceptor to the response.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"method"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "vigie_grpc_requests_in_flight",
			Help: "gRPC calls being handled.",
		}),
		panics: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vigie_grpc_panics_total",
			Help: "Handler panics recovered (each answered INTERNAL).",
		}),
		rateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vigie_grpc_rate_limited_total",
			Help: "Calls refused by the per-caller rate limit, by role (empty: anonymous).",
		}, []string{"role"}),
		authFailed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vigie_auth_failures_total",
			Help: "Calls whose credentials were refused, by reason.",
		}, []string{"reason"}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.duration, m.inFlight, m.panics, m.rateLimited, m.authFailed} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
