package sqldb

import (
	"sync/atomic"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

// PoolCollector exports a PostgreSQL connection pool's statistics to
// Prometheus (vigie_db_pool_*, labelled db), read at each scrape.
type PoolCollector struct {
	pool                                                        *pgxpool.Pool
	max, conns, acquires, acquireWait, emptyAcquires, emptyWait *prometheus.Desc
	canceled, created, destroyed                                *prometheus.Desc
	// retries counts the transactions run again (DB.Collector only).
	retries     *atomic.Int64
	retriesDesc *prometheus.Desc
}

var _ prometheus.Collector = (*PoolCollector)(nil)

// NewPoolCollector returns the collector of pool, whose metrics carry the
// label db="<db>" (Vigie's database is "vigie").
func NewPoolCollector(db string, pool *pgxpool.Pool) *PoolCollector {
	l := prometheus.Labels{"db": db}
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("vigie_db_pool_"+name, help, labels, l)
	}
	return &PoolCollector{
		pool:          pool,
		max:           d("max_connections", "The most connections the pool opens."),
		conns:         d("connections", "Connections of the pool, by state: acquired (in use), idle, or constructing.", "state"),
		acquires:      d("acquires_total", "Connections acquired from the pool."),
		acquireWait:   d("acquire_duration_seconds_total", "Time spent acquiring connections, waits for a free one included."),
		emptyAcquires: d("empty_acquires_total", "Acquires that waited because no connection was free: a pool too small for the load."),
		emptyWait:     d("empty_acquire_wait_seconds_total", "Time acquires spent waiting because no connection was free."),
		canceled:      d("canceled_acquires_total", "Acquires abandoned because their context ended first."),
		created:       d("connections_created_total", "Connections opened by the pool."),
		destroyed:     d("connections_closed_total", "Connections the pool closed, by reason: max_lifetime or max_idle.", "reason"),
	}
}

// Collector returns the collector of the PostgreSQL connection pool
// (db="vigie") and of vigie_db_serialization_retries_total, or nil on
// SQLite, whose one writer and fixed set of readers are held for the
// file's lifetime and never conflict.
func (db *DB) Collector() prometheus.Collector {
	if db.pool == nil {
		return nil
	}
	c := NewPoolCollector("vigie", db.pool)
	c.retries = &db.retries
	c.retriesDesc = prometheus.NewDesc("vigie_db_serialization_retries_total",
		"Transactions run again after a serialization failure or a deadlock: writers conflicting on the same rows.", nil, prometheus.Labels{"db": "vigie"})
	return c
}

// Describe implements prometheus.Collector.
func (c *PoolCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.max, c.conns, c.acquires, c.acquireWait, c.emptyAcquires, c.emptyWait, c.canceled, c.created, c.destroyed} {
		ch <- d
	}
	if c.retries != nil {
		ch <- c.retriesDesc
	}
}

// Collect implements prometheus.Collector.
func (c *PoolCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.pool.Stat()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	gauge(c.max, float64(s.MaxConns()))
	gauge(c.conns, float64(s.AcquiredConns()), "acquired")
	gauge(c.conns, float64(s.IdleConns()), "idle")
	gauge(c.conns, float64(s.ConstructingConns()), "constructing")
	counter(c.acquires, float64(s.AcquireCount()))
	counter(c.acquireWait, s.AcquireDuration().Seconds())
	counter(c.emptyAcquires, float64(s.EmptyAcquireCount()))
	counter(c.emptyWait, s.EmptyAcquireWaitTime().Seconds())
	counter(c.canceled, float64(s.CanceledAcquireCount()))
	counter(c.created, float64(s.NewConnsCount()))
	counter(c.destroyed, float64(s.MaxLifetimeDestroyCount()), "max_lifetime")
	counter(c.destroyed, float64(s.MaxIdleDestroyCount()), "max_idle")
	if c.retries != nil {
		counter(c.retriesDesc, float64(c.retries.Load()))
	}
}
