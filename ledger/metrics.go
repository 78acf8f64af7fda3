package ledger

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Collector exports a ledger's progress to Prometheus, read at each
// scrape: events recorded, the outbox, what no checkpoint covers yet and
// for how long, the latest checkpoint, readiness, and the duties' leases
// this node holds.
type Collector struct {
	l                                                         *Ledger
	recorded, outbox, unsigned, lag, size, age, ready, errors *prometheus.Desc
	leaseHeld, leaseEpoch, leaseTakeovers, leaseLost          *prometheus.Desc
}

var _ prometheus.Collector = (*Collector)(nil)

// NewCollector returns the collector of l, for a prometheus.Registerer.
func NewCollector(l *Ledger) *Collector {
	d := func(name, help string) *prometheus.Desc { return prometheus.NewDesc(name, help, nil, nil) }
	return &Collector{
		l:        l,
		recorded: d("vigie_ledger_recorded_events_total", "Events recorded (the next leaf index)."),
		outbox:   d("vigie_ledger_outbox_events", "Events recorded and not yet acknowledged by the log."),
		unsigned: d("vigie_ledger_unsigned_events", "Events no signed checkpoint covers yet."),
		lag:      d("vigie_ledger_integration_lag_seconds", "Age of the oldest event no signed checkpoint covers (0 if none): compare with the merge delay."),
		size:     d("vigie_ledger_signed_events_total", "Events the latest signed checkpoint covers (its size)."),
		age:      d("vigie_ledger_checkpoint_age_seconds", "Time since the latest checkpoint was signed (checkpoints are signed only when the log grows)."),
		ready:    d("vigie_ledger_ready", "1 if the ledger's sender and checkpointer are healthy, 0 after a gap, a log conflict or an inconsistent log, or while sends to the log have failed for longer than --send-stall-after."),
		errors:   d("vigie_ledger_stats_errors", "1 if the ledger's counters could not be read at this scrape."),

		leaseHeld:      prometheus.NewDesc("vigie_ledger_lease_held", "1 if this node holds the duty's lease (sender, checkpointer, erasures) and may act on it.", []string{"duty"}, nil),
		leaseEpoch:     prometheus.NewDesc("vigie_ledger_lease_epoch", "Epoch of this node's current or last term of the duty's lease (0: never held).", []string{"duty"}, nil),
		leaseTakeovers: prometheus.NewDesc("vigie_ledger_lease_takeovers_total", "Terms of the duty's lease this node began (it took the lease, free, released or expired).", []string{"duty"}, nil),
		leaseLost:      prometheus.NewDesc("vigie_ledger_lease_lost_total", "Terms of the duty's lease this node lost without releasing them: taken over, or not renewed in time.", []string{"duty"}, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.recorded, c.outbox, c.unsigned, c.lag, c.size, c.age, c.ready, c.errors, c.leaseHeld, c.leaseEpoch, c.leaseTakeovers, c.leaseLost} {
		ch <- d
	}
}

// Collect implements prometheus.Collector. It reads the ledger's counters
// with a deadline of 5s (ages on the ledger's clock); when they cannot be
// read, it reports vigie_ledger_stats_errors 1 and readiness only.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64) { ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v) }
	// Read from the database, and never lower: the leaves are
	// append-only, and so are checkpoints.
	counter := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v)
	}
	ready := 1.0
	if c.l.Ready() != nil {
		ready = 0
	}
	gauge(c.ready, ready)
	for _, name := range []string{LeaseSender, LeaseCheckpointer, LeaseErasures} {
		st := c.l.leases[name].stats()
		held := 0.0
		if st.held {
			held = 1
		}
		ch <- prometheus.MustNewConstMetric(c.leaseHeld, prometheus.GaugeValue, held, name)
		ch <- prometheus.MustNewConstMetric(c.leaseEpoch, prometheus.GaugeValue, float64(st.epoch), name)
		ch <- prometheus.MustNewConstMetric(c.leaseTakeovers, prometheus.CounterValue, float64(st.takeovers), name)
		ch <- prometheus.MustNewConstMetric(c.leaseLost, prometheus.CounterValue, float64(st.lost), name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := c.l.Stats(ctx)
	if err != nil {
		gauge(c.errors, 1)
		return
	}
	gauge(c.errors, 0)
	now := c.l.cfg.Now()
	counter(c.recorded, float64(s.Recorded))
	gauge(c.outbox, float64(s.Outbox()))
	gauge(c.unsigned, float64(s.Unsigned()))
	gauge(c.lag, s.IntegrationLag(now).Seconds())
	counter(c.size, float64(s.CheckpointSize))
	if !s.CheckpointTime.IsZero() {
		gauge(c.age, now.Sub(s.CheckpointTime).Seconds())
	}
}
