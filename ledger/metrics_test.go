package ledger_test

import (
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/vigie-sante/vigie/ledger"
	"github.com/vigie-sante/vigie/ledger/ledgertest"
)

// TestCollector: the metrics follow the ledger's counters, under the
// names operators' dashboards and alerts use.
func TestCollector(t *testing.T) {
	start := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	var clock atomic.Int64 // the background work reads it
	clock.Store(start.UnixNano())
	at := func(d time.Duration) { clock.Store(start.Add(d).UnixNano()) }
	env := ledgertest.New(t, ledgertest.Options{NoStart: true, Now: func() time.Time { return time.Unix(0, clock.Load()) }})
	c := ledger.NewCollector(env.Ledger)
	if err := testutil.CollectAndCompare(c, strings.NewReader(`
# HELP vigie_ledger_integration_lag_seconds Age of the oldest event no signed checkpoint covers (0 if none): compare with the merge delay.
# TYPE vigie_ledger_integration_lag_seconds gauge
vigie_ledger_integration_lag_seconds 0
# HELP vigie_ledger_outbox_events Events recorded and not yet acknowledged by the log.
# TYPE vigie_ledger_outbox_events gauge
vigie_ledger_outbox_events 0
# HELP vigie_ledger_ready 1 if the ledger's sender and checkpointer are healthy, 0 after a gap, a log conflict or an inconsistent log, or while sends to the log have failed for longer than --send-stall-after.
# TYPE vigie_ledger_ready gauge
vigie_ledger_ready 1
# HELP vigie_ledger_recorded_events_total Events recorded (the next leaf index).
# TYPE vigie_ledger_recorded_events_total counter
vigie_ledger_recorded_events_total 0
# HELP vigie_ledger_signed_events_total Events the latest signed checkpoint covers (its size).
# TYPE vigie_ledger_signed_events_total counter
vigie_ledger_signed_events_total 0
# HELP vigie_ledger_stats_errors 1 if the ledger's counters could not be read at this scrape.
# TYPE vigie_ledger_stats_errors gauge
vigie_ledger_stats_errors 0
# HELP vigie_ledger_unsigned_events Events no signed checkpoint covers yet.
# TYPE vigie_ledger_unsigned_events gauge
vigie_ledger_unsigned_events 0
`), "vigie_ledger_integration_lag_seconds", "vigie_ledger_outbox_events", "vigie_ledger_ready", "vigie_ledger_recorded_events_total",
		"vigie_ledger_signed_events_total", "vigie_ledger_stats_errors", "vigie_ledger_unsigned_events"); err != nil {
		t.Errorf("an empty ledger: %v", err)
	}

	for i := range 3 {
		record(t, env.Ledger, access("alice", i))
	}
	at(4 * time.Second)
	want := map[string]float64{
		"vigie_ledger_recorded_events_total":   3,
		"vigie_ledger_outbox_events":           3,
		"vigie_ledger_unsigned_events":         3,
		"vigie_ledger_integration_lag_seconds": 4,
		"vigie_ledger_signed_events_total":     0,
	}
	got := values(t, c)
	for name, v := range want {
		if got[name] != v {
			t.Errorf("%s = %v before sending, want %v", name, got[name], v)
		}
	}

	env.Start()
	if err := env.Ledger.WaitCheckpoint(ctx, 2); err != nil {
		t.Fatal(err)
	}
	at(time.Minute)
	want = map[string]float64{
		"vigie_ledger_outbox_events":          0,
		"vigie_ledger_unsigned_events":        0,
		"vigie_ledger_signed_events_total":    3,
		"vigie_ledger_checkpoint_age_seconds": 56,
	}
	got = values(t, c)
	for name, v := range want {
		if got[name] != v {
			t.Errorf("%s = %v after a checkpoint, want %v", name, got[name], v)
		}
	}
}

// values gathers c's metrics (gauges and counters) by name.
func values(t *testing.T, c prometheus.Collector) map[string]float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string]float64)
	for _, mf := range mfs {
		m := mf.GetMetric()[0]
		out[mf.GetName()] = m.GetGauge().GetValue() + m.GetCounter().GetValue()
	}
	return out
}
