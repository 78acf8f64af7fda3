package trillian

import (
	"log/slog"
	"strings"
	"sync"

	"github.com/google/trillian/monitoring"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// MetricFactory is a monitoring.MetricFactory over Prometheus that
// registers nothing by itself: it is a prometheus.Collector of every
// metric made through it, to register on the registries that should
// export them (Trillian's own adapter registers on the process-wide
// registry, which a process running several nodes, as the tests do,
// cannot share). Asking twice for a name returns the same metric, so
// several Trillian servers may share a factory. It is safe for concurrent
// use.
//
// Names take the factory's prefix and follow Prometheus conventions where
// Trillian's do not: a counter ends in _total (Trillian's "_count" or
// "_counter" ending dropped), a histogram of NewHistogram (Trillian's
// latencies, in seconds) ends in _seconds.
type MetricFactory struct {
	prefix string
	mu     sync.Mutex
	byName map[string]metric
	order  []prometheus.Collector
}

type metric struct {
	kind   string
	labels int
	m      any
}

var (
	_ monitoring.MetricFactory = (*MetricFactory)(nil)
	_ prometheus.Collector     = (*MetricFactory)(nil)
)

// NewMetricFactory returns a factory whose metric names start with prefix
// (say "trillian_").
func NewMetricFactory(prefix string) *MetricFactory {
	return &MetricFactory{prefix: prefix, byName: make(map[string]metric)}
}

// processMetrics receives the metrics of every in-process Trillian. It is
// one for the process because Trillian makes the sequencer's, the
// interceptor's and the storage's metrics once per process (sync.Once
// over package variables), with the factory of the first server started:
// a factory per node would leave every later node without them.
var processMetrics = NewMetricFactory("trillian_")

// Metrics returns the collector of the in-process Trillian's metrics
// (trillian_*), shared by every in-process Trillian of the process and
// labelled by tree ID. It may be registered on any number of registries.
func Metrics() prometheus.Collector { return processMetrics }

// Describe implements prometheus.Collector. It describes nothing: metrics
// are made while Trillian runs, after registration, so the collector is
// unchecked (its names, prefixed, cannot collide with Vigie's).
func (f *MetricFactory) Describe(chan<- *prometheus.Desc) {}

// Collect implements prometheus.Collector.
func (f *MetricFactory) Collect(ch chan<- prometheus.Metric) {
	f.mu.Lock()
	cs := append([]prometheus.Collector(nil), f.order...)
	f.mu.Unlock()
	for _, c := range cs {
		c.Collect(ch)
	}
}

// get returns the metric called name, made by mk if it is new. A name
// asked again with another kind or number of labels gets a metric of its
// own that is exported nowhere (Trillian does not do this), rather than a
// panic.
func (f *MetricFactory) get(name, kind string, labels int, mk func(name string) (prometheus.Collector, any)) any {
	f.mu.Lock()
	defer f.mu.Unlock()
	if m, ok := f.byName[name]; ok {
		if m.kind == kind && m.labels == labels {
			return m.m
		}
		slog.Warn("trillian metric asked twice with different shapes; not exported", "name", name)
		_, v := mk(name)
		return v
	}
	c, v := mk(name)
	f.byName[name] = metric{kind: kind, labels: labels, m: v}
	f.order = append(f.order, c)
	return v
}

// NewCounter implements monitoring.MetricFactory.
func (f *MetricFactory) NewCounter(name, help string, labelNames ...string) monitoring.Counter {
	for _, s := range []string{"_counter", "_count"} {
		name = strings.TrimSuffix(name, s)
	}
	name = f.prefix + strings.TrimSuffix(name, "_total") + "_total"
	return f.get(name, "counter", len(labelNames), func(name string) (prometheus.Collector, any) {
		v := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labelNames)
		return v, &counter{vec{labelNames, v.MetricVec}}
	}).(monitoring.Counter)
}

// NewGauge implements monitoring.MetricFactory.
func (f *MetricFactory) NewGauge(name, help string, labelNames ...string) monitoring.Gauge {
	return f.get(f.prefix+name, "gauge", len(labelNames), func(name string) (prometheus.Collector, any) {
		v := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, labelNames)
		return v, &gauge{vec{labelNames, v.MetricVec}}
	}).(monitoring.Gauge)
}

// NewHistogram implements monitoring.MetricFactory, for latencies in
// seconds (Trillian's use).
func (f *MetricFactory) NewHistogram(name, help string, labelNames ...string) monitoring.Histogram {
	return f.newHistogram(strings.TrimSuffix(name, "_seconds")+"_seconds", help, monitoring.LatencyBuckets(), labelNames)
}

// NewHistogramWithBuckets implements monitoring.MetricFactory.
func (f *MetricFactory) NewHistogramWithBuckets(name, help string, buckets []float64, labelNames ...string) monitoring.Histogram {
	return f.newHistogram(name, help, buckets, labelNames)
}

func (f *MetricFactory) newHistogram(name, help string, buckets []float64, labelNames []string) monitoring.Histogram {
	return f.get(f.prefix+name, "histogram", len(labelNames), func(name string) (prometheus.Collector, any) {
		v := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets}, labelNames)
		return v, &histogram{vec{labelNames, v.MetricVec}}
	}).(monitoring.Histogram)
}

// vec finds a metric of a vector by Trillian's label values; a wrong
// number of values is Trillian's bug, logged and ignored as Trillian's own
// adapter does.
type vec struct {
	names []string
	v     *prometheus.MetricVec
}

func (v vec) metric(values []string) (prometheus.Metric, bool) {
	if len(values) != len(v.names) {
		slog.Error("trillian metric: wrong number of label values", "want", len(v.names), "got", len(values))
		return nil, false
	}
	m, err := v.v.GetMetricWithLabelValues(values...)
	if err != nil {
		slog.Error("trillian metric", "err", err)
		return nil, false
	}
	return m, true
}

func value(m prometheus.Metric, read func(*dto.Metric) float64) float64 {
	var pb dto.Metric
	if err := m.Write(&pb); err != nil {
		return 0
	}
	return read(&pb)
}

type counter struct{ vec }

func (c *counter) Inc(values ...string) { c.Add(1, values...) }

func (c *counter) Add(v float64, values ...string) {
	if m, ok := c.metric(values); ok {
		m.(prometheus.Counter).Add(v)
	}
}

func (c *counter) Value(values ...string) float64 {
	m, ok := c.metric(values)
	if !ok {
		return 0
	}
	return value(m, func(pb *dto.Metric) float64 { return pb.GetCounter().GetValue() })
}

type gauge struct{ vec }

func (g *gauge) Inc(values ...string)            { g.Add(1, values...) }
func (g *gauge) Dec(values ...string)            { g.Add(-1, values...) }
func (g *gauge) Add(v float64, values ...string) { g.do(values, func(m prometheus.Gauge) { m.Add(v) }) }
func (g *gauge) Set(v float64, values ...string) { g.do(values, func(m prometheus.Gauge) { m.Set(v) }) }

func (g *gauge) do(values []string, f func(prometheus.Gauge)) {
	if m, ok := g.metric(values); ok {
		f(m.(prometheus.Gauge))
	}
}

func (g *gauge) Value(values ...string) float64 {
	m, ok := g.metric(values)
	if !ok {
		return 0
	}
	return value(m, func(pb *dto.Metric) float64 { return pb.GetGauge().GetValue() })
}

type histogram struct{ vec }

func (h *histogram) Observe(v float64, values ...string) {
	if m, ok := h.metric(values); ok {
		m.(prometheus.Histogram).Observe(v)
	}
}

func (h *histogram) Info(values ...string) (uint64, float64) {
	m, ok := h.metric(values)
	if !ok {
		return 0, 0
	}
	var pb dto.Metric
	if err := m.Write(&pb); err != nil {
		return 0, 0
	}
	return pb.GetHistogram().GetSampleCount(), pb.GetHistogram().GetSampleSum()
}
