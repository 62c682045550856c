package nodeapi

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcpgw/mcpgw/controlplane/snapshot"
)

// metrics are the node API's Prometheus series. They are registered on the
// Registerer in Config (none: not exported, still counted).
type metrics struct {
	connected     prometheus.GaugeFunc
	pushLatency   prometheus.Histogram
	acks          prometheus.Counter
	nacks         prometheus.Counter
	snapshotsSent prometheus.Counter
	configBytes   prometheus.Counter
	flushErrors   prometheus.Counter
	snapshotBytes *snapshotSizeCollector
}

func newMetrics(reg prometheus.Registerer, connected func() float64, cache *snapshot.Cache) (*metrics, error) {
	m := &metrics{
		connected: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "mcpgw_cp_connected_edges",
			Help: "Edges with a ConfigStream open to this replica.",
		}, connected),
		pushLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "mcpgw_cp_config_push_latency_seconds",
			Help:    "Time from a config revision's commit to an edge's ACK of it.",
			Buckets: []float64{.01, .025, .05, .1, .2, .35, .5, .75, 1, 2, 5, 10, 30},
		}),
		acks: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mcpgw_cp_config_acks_total",
			Help: "Config snapshots acknowledged by edges.",
		}),
		nacks: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mcpgw_cp_config_nacks_total",
			Help: "Config snapshots rejected by edges.",
		}),
		snapshotsSent: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mcpgw_cp_config_snapshots_sent_total",
			Help: "Config snapshots sent to edges (including payload-less revision bumps).",
		}),
		configBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mcpgw_cp_config_payload_bytes_sent_total",
			Help: "Config payload bytes sent to edges, as sent (compressed when gzipped).",
		}),
		flushErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mcpgw_cp_node_registry_flush_errors_total",
			Help: "Failed batched writes of node status to the store (retried).",
		}),
		snapshotBytes: &snapshotSizeCollector{cache: cache, desc: prometheus.NewDesc(
			"mcpgw_cp_snapshot_bytes",
			"Size of the current config snapshot per node group and encoding.",
			[]string{"node_group", "encoding"}, nil)},
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.connected, m.pushLatency, m.acks, m.nacks, m.snapshotsSent, m.configBytes, m.flushErrors, m.snapshotBytes} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// snapshotSizeCollector reads the sizes from the cache at scrape time, so
// the builder needs no metrics hook.
type snapshotSizeCollector struct {
	cache *snapshot.Cache
	desc  *prometheus.Desc
}

func (c *snapshotSizeCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *snapshotSizeCollector) Collect(ch chan<- prometheus.Metric) {
	for _, s := range c.cache.Snapshots() {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(len(s.Payload)), s.Group, "proto")
		if s.Gzip != nil {
			ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(len(s.Gzip)), s.Group, "gzip")
		}
	}
}
