package tiles

import "github.com/prometheus/client_golang/prometheus"

var (
	hitsDesc   = prometheus.NewDesc("vigie_tiles_cache_hits_total", "Full tiles and entry bundles served from the cache.", nil, nil)
	readsDesc  = prometheus.NewDesc("vigie_tiles_store_reads_total", "Reads of leaves from the store to make tiles and bundles not in the cache (256 leaves at most each).", nil, nil)
	cachedDesc = prometheus.NewDesc("vigie_tiles_cached", "Full tiles and entry bundles in the cache.", nil, nil)
)

// NewCollector returns the Prometheus collector of r's work, read at each
// scrape: vigie_tiles_cache_hits_total, vigie_tiles_store_reads_total and
// vigie_tiles_cached.
func NewCollector(r *Reader) prometheus.Collector { return collector{r} }

type collector struct{ r *Reader }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- hitsDesc
	ch <- readsDesc
	ch <- cachedDesc
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	s := c.r.Stats()
	ch <- prometheus.MustNewConstMetric(hitsDesc, prometheus.CounterValue, float64(s.Hits))
	ch <- prometheus.MustNewConstMetric(readsDesc, prometheus.CounterValue, float64(s.SourceReads))
	ch <- prometheus.MustNewConstMetric(cachedDesc, prometheus.GaugeValue, float64(s.Cached))
}
