package tiles

import "github.com/prometheus/client_golang/prometheus"

var (
	hitsDesc   = prometheus.NewDesc("vigie_tiles_cache_hits_total", "Full tiles and entry bundles served from the cache.", nil, nil)
	readsDesc  = prometheus.NewDesc("vigie_tiles_store_reads_total", "Reads of leaves from the store to make tiles and bundles not in the cache (256 leaves at most each).", nil, nil)
	cachedDesc = prometheus.NewDesc("vigie_tiles_cached", "Full tiles and entry bundles in the cache.", nil, nil)
	fileDesc   = prometheus.NewDesc("vigie_tiles_file_reads_total", "Full tiles and entry bundles read back from the tiles directory.", nil, nil)
	fileErrs   = prometheus.NewDesc("vigie_tiles_file_errors_total", "Failures to read or write a tile in the tiles directory.", nil, nil)
)

// NewCollector returns the Prometheus collector of r's work, read at each
// scrape: vigie_tiles_cache_hits_total, vigie_tiles_store_reads_total,
// vigie_tiles_cached, vigie_tiles_file_reads_total and
// vigie_tiles_file_errors_total.
func NewCollector(r *Reader) prometheus.Collector { return collector{r} }

type collector struct{ r *Reader }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- hitsDesc
	ch <- readsDesc
	ch <- cachedDesc
	ch <- fileDesc
	ch <- fileErrs
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	s := c.r.Stats()
	ch <- prometheus.MustNewConstMetric(hitsDesc, prometheus.CounterValue, float64(s.Hits))
	ch <- prometheus.MustNewConstMetric(readsDesc, prometheus.CounterValue, float64(s.SourceReads))
	ch <- prometheus.MustNewConstMetric(cachedDesc, prometheus.GaugeValue, float64(s.Cached))
	ch <- prometheus.MustNewConstMetric(fileDesc, prometheus.CounterValue, float64(s.FileReads))
	ch <- prometheus.MustNewConstMetric(fileErrs, prometheus.CounterValue, float64(s.FileErrors))
}
