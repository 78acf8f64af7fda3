package witness

import "github.com/prometheus/client_golang/prometheus"

// Collector exports a submitter's counters to Prometheus: the answers of
// each witness by outcome (alert on config and evidence), the largest
// size each witness cosigned, and whether this node holds the lease.
type Collector struct {
	s                           *Submitter
	submissions, cosigned, held *prometheus.Desc
}

var _ prometheus.Collector = (*Collector)(nil)

// NewCollector returns the collector of s.
func NewCollector(s *Submitter) *Collector {
	return &Collector{
		s: s,
		submissions: prometheus.NewDesc("vigie_witness_submissions_total",
			"Checkpoint submissions to a witness by outcome: cosigned; conflict (409, followed); config (403, 404, 400: alert); evidence (422, kept: alert); unavailable (5xx, timeouts after the retries); invalid (no valid cosignature); lease-lost.",
			[]string{"witness", "outcome"}, nil),
		cosigned: prometheus.NewDesc("vigie_witness_cosigned_size",
			"Largest checkpoint size the witness cosigned for this node (compare with vigie_ledger_signed_events_total).", []string{"witness"}, nil),
		held: prometheus.NewDesc("vigie_witness_lease_held", "1 if this node holds the lease of the witness submissions.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.submissions
	ch <- c.cosigned
	ch <- c.held
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	for name, st := range c.s.Stats() {
		for _, o := range []Outcome{OutcomeCosigned, OutcomeConflict, OutcomeConfig, OutcomeEvidence, OutcomeUnavailable, OutcomeInvalid, OutcomeLost} {
			ch <- prometheus.MustNewConstMetric(c.submissions, prometheus.CounterValue, float64(st.Outcomes[o]), name, string(o))
		}
		ch <- prometheus.MustNewConstMetric(c.cosigned, prometheus.GaugeValue, float64(st.Cosigned), name)
	}
	held := 0.0
	if _, ok := c.s.holder.Held(); ok {
		held = 1
	}
	ch <- prometheus.MustNewConstMetric(c.held, prometheus.GaugeValue, held)
}
