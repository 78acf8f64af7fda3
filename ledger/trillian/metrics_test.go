package trillian_test

import (
	"context"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	tpb "github.com/google/trillian"
	"github.com/google/trillian/types"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/vigie-sante/vigie/ledger/event"
	"github.com/vigie-sante/vigie/ledger/sqldb/pgtest"
	vtrillian "github.com/vigie-sante/vigie/ledger/trillian"
	"github.com/vigie-sante/vigie/ledger/verify"
)

// TestOpenMetrics: several in-process Trillians in one process, each
// with a registry of its own, as the tests' nodes are: no registration
// panics, and each registry exports Trillian's metrics for its tree,
// including the sequencer's, which Trillian makes once per process (a
// factory per node would leave the second without them).
func TestOpenMetrics(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  func(t *testing.T) vtrillian.OpenConfig
		pool bool
	}{
		{"SQLite", func(t *testing.T) vtrillian.OpenConfig {
			return vtrillian.OpenConfig{SQLite: filepath.Join(t.TempDir(), "trillian.db")}
		}, false},
		{"PostgreSQL", func(t *testing.T) vtrillian.OpenConfig {
			return vtrillian.OpenConfig{PostgreSQL: pgtest.NewDatabase(t)}
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for i := range 2 {
				ctx := context.Background()
				cfg := tc.cfg(t)
				cfg.Tree, cfg.SequencerInterval = vigieTree, 10*time.Millisecond
				n, err := vtrillian.Open(ctx, cfg)
				if err != nil {
					t.Fatalf("node %d: Open: %v", i, err)
				}
				defer n.Close()
				reg := prometheus.NewPedanticRegistry()
				for _, c := range n.Collectors {
					if err := reg.Register(c); err != nil {
						t.Fatalf("node %d: %v", i, err)
					}
				}
				if _, err := n.Log.AddSequenced(ctx, 0, [][]byte{verify.LeafValue(event.Hash{1})}); err != nil {
					t.Fatal(err)
				}
				waitSize(t, n, 1)

				tree := strconv.FormatInt(n.Tree.TreeId, 10)
				got := gather(t, reg)
				for _, name := range []string{
					"trillian_sequencer_sequenced_total",
					"trillian_sequencer_batches_total",
					"trillian_signing_runs_total",
					"trillian_sequencer_tree_size",
					"trillian_sequencer_latency_seconds",
					"trillian_added_leaves_total",
				} {
					if _, ok := got[name+"{"+tree+"}"]; !ok {
						t.Errorf("node %d: no %s for tree %s", i, name, tree)
					}
				}
				if v := got["trillian_sequencer_sequenced_total{"+tree+"}"]; v != 1 {
					t.Errorf("node %d: trillian_sequencer_sequenced_total = %v, want 1", i, v)
				}
				if _, ok := got["vigie_db_pool_connections{trillian}"]; ok != tc.pool {
					t.Errorf("node %d: Trillian's pool exported: %v, want %v", i, ok, tc.pool)
				}
			}
		})
	}
}

// waitSize waits until Trillian's sequencer has integrated size leaves.
func waitSize(t *testing.T, n *vtrillian.Node, size uint64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := n.Clients.Log.GetLatestSignedLogRoot(context.Background(), &tpb.GetLatestSignedLogRootRequest{LogId: n.Tree.TreeId})
		if err != nil {
			t.Fatal(err)
		}
		var root types.LogRootV1
		if err := root.UnmarshalBinary(resp.SignedLogRoot.LogRoot); err != nil {
			t.Fatal(err)
		}
		if root.TreeSize >= size {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("tree size %d after 10s, want %d", root.TreeSize, size)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// gather returns reg's series as name{first label value}, with their
// value (a histogram's: its count).
func gather(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	out := make(map[string]float64)
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			key := mf.GetName() + "{"
			if l := m.GetLabel(); len(l) > 0 {
				key += l[0].GetValue()
			}
			out[key+"}"] = value(m)
		}
	}
	return out
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Histogram != nil:
		return float64(m.Histogram.GetSampleCount())
	}
	return 0
}

// TestMetricFactory: names follow Prometheus conventions, a name asked
// twice is the same metric (several servers share the factory), and
// Trillian's mistakes (wrong label counts, a name reused with another
// shape) neither panic nor break the scrape.
func TestMetricFactory(t *testing.T) {
	f := vtrillian.NewMetricFactory("t_")
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(f); err != nil {
		t.Fatal(err)
	}
	c := f.NewCounter("interceptor_request_count", "Requests.", "tree_id")
	f.NewCounter("interceptor_request_count", "Requests.", "tree_id").Add(2, "7")
	c.Inc("7")
	c.Inc() // wrong number of label values: ignored
	if got := c.Value("7"); got != 3 {
		t.Errorf("counter = %v, want 3 (one metric for the name)", got)
	}
	f.NewCounter("context_err_counter", "Errors.").Inc()
	g := f.NewGauge("tree_size", "Size.", "logid")
	g.Set(5, "1")
	g.Dec("1")
	if got := g.Value("1"); got != 4 {
		t.Errorf("gauge = %v, want 4", got)
	}
	f.NewGauge("tree_size", "Size.").Set(9) // another shape: not exported
	h := f.NewHistogram("sequencer_latency", "Latency in seconds.", "logid")
	h.Observe(0.5, "1")
	if n, sum := h.Info("1"); n != 1 || sum != 0.5 {
		t.Errorf("histogram Info = %d, %v, want 1, 0.5", n, sum)
	}
	f.NewHistogramWithBuckets("proof_index_percentiles", "Percentiles.", []float64{1, 50}).Observe(3)

	got := gather(t, reg)
	want := map[string]float64{
		"t_interceptor_request_total{7}": 3,
		"t_context_err_total{}":          1,
		"t_tree_size{1}":                 4,
		"t_sequencer_latency_seconds{1}": 1,
		"t_proof_index_percentiles{}":    1,
	}
	if len(got) != len(want) {
		t.Errorf("gathered %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v (gathered %v)", k, got[k], v, got)
		}
	}
}
