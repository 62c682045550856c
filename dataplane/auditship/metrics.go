package auditship

import "github.com/prometheus/client_golang/prometheus"

// Metrics returns a collector exporting the shipper's counters; register it
// with the edge's registry. Deliveries and their failures are already
// counted per sink by dataplane/auditlog (sink="controlplane").
func (s *Shipper) Metrics() prometheus.Collector { return collector{s} }

type collector struct{ s *Shipper }

var (
	descSent     = prometheus.NewDesc("mcpgw_audit_ship_batches_sent_total", "Audit batches sent on AuditStream, resends included.", nil, nil)
	descAcked    = prometheus.NewDesc("mcpgw_audit_ship_batches_acked_total", "Audit batches the control plane acknowledged as committed.", nil, nil)
	descSessions = prometheus.NewDesc("mcpgw_audit_ship_streams_opened_total", "AuditStreams opened to the control plane.", nil, nil)
	descPauses   = prometheus.NewDesc("mcpgw_audit_ship_pauses_total", "Pauses (max_inflight 0) the control plane asked for.", nil, nil)
	descNotices  = prometheus.NewDesc("mcpgw_audit_ship_notices_total", "Notices from the control plane about flagged batches.", nil, nil)
)

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descSent, descAcked, descSessions, descPauses, descNotices} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	st := c.s.Stats()
	for _, m := range []struct {
		d *prometheus.Desc
		v int64
	}{{descSent, st.BatchesSent}, {descAcked, st.BatchesAcked}, {descSessions, st.Sessions}, {descPauses, st.Pauses}, {descNotices, st.Notices}} {
		ch <- prometheus.MustNewConstMetric(m.d, prometheus.CounterValue, float64(m.v))
	}
}
