package auditlog

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics returns a collector exporting the pipeline's counters; register it
// with the edge's registry. Values are read at scrape time from the same
// atomics Record updates, so the hot path pays nothing extra for metrics.
func (l *Log) Metrics() prometheus.Collector { return &collector{l: l} }

type collector struct{ l *Log }

var (
	descEnqueued  = prometheus.NewDesc("mcpgw_audit_events_enqueued_total", "Audit events accepted into the queue.", nil, nil)
	descWritten   = prometheus.NewDesc("mcpgw_audit_events_written_total", "Audit events written to the spool.", nil, nil)
	descDropped   = prometheus.NewDesc("mcpgw_audit_events_dropped_total", "Audit events dropped under on_full: drop (each recorded in a gap record).", nil, nil)
	descRefused   = prometheus.NewDesc("mcpgw_audit_events_refused_total", "Audit events refused with ErrAuditUnavailable (on_full: refuse, or shut down).", nil, nil)
	descWrites    = prometheus.NewDesc("mcpgw_audit_spool_writes_total", "Spool writes; one per group commit.", nil, nil)
	descFsyncs    = prometheus.NewDesc("mcpgw_audit_spool_fsyncs_total", "Spool fsyncs.", nil, nil)
	descBatches   = prometheus.NewDesc("mcpgw_audit_batches_sealed_total", "Audit batches sealed.", nil, nil)
	descBytes     = prometheus.NewDesc("mcpgw_audit_spool_bytes", "Bytes of spool segments on disk.", nil, nil)
	descUnacked   = prometheus.NewDesc("mcpgw_audit_spool_unacked_batches", "Sealed batches not yet acknowledged by every sink.", nil, nil)
	descOldest    = prometheus.NewDesc("mcpgw_audit_oldest_unacked_age_seconds", "Age of the oldest event not yet delivered to every sink.", nil, nil)
	descSpoolErrs = prometheus.NewDesc("mcpgw_audit_spool_errors_total", "Failed spool writes and fsyncs.", nil, nil)
	descTorn      = prometheus.NewDesc("mcpgw_audit_spool_torn_tails_total", "Torn tail records truncated at recovery.", nil, nil)
	descCorrupt   = prometheus.NewDesc("mcpgw_audit_spool_corrupt_records_total", "Spool records that failed their CRC or hash chain.", nil, nil)
	descAccepting = prometheus.NewDesc("mcpgw_audit_accepting", "1 while audit events are accepted, 0 while the spool is full or unwritable.", nil, nil)
	descDelivered = prometheus.NewDesc("mcpgw_audit_sink_delivered_events_total", "Audit events delivered to a sink.", []string{"sink"}, nil)
	descSinkErrs  = prometheus.NewDesc("mcpgw_audit_sink_errors_total", "Failed deliveries to a sink.", []string{"sink"}, nil)
	descSinkUp    = prometheus.NewDesc("mcpgw_audit_sink_up", "1 while a sink's last delivery succeeded.", []string{"sink"}, nil)
)

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descEnqueued, descWritten, descDropped, descRefused, descWrites, descFsyncs,
		descBatches, descBytes, descUnacked, descOldest, descSpoolErrs, descTorn, descCorrupt, descAccepting,
		descDelivered, descSinkErrs, descSinkUp} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	st := c.l.Stats()
	counter := func(d *prometheus.Desc, v uint64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v))
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter(descEnqueued, st.Enqueued)
	counter(descWritten, st.Written)
	counter(descDropped, st.Dropped)
	counter(descRefused, st.Refused)
	counter(descWrites, st.Writes)
	counter(descFsyncs, st.Fsyncs)
	counter(descBatches, st.Batches)
	counter(descSpoolErrs, st.SpoolErrors)
	counter(descTorn, st.TornTails)
	counter(descCorrupt, st.Corrupt)
	gauge(descBytes, float64(st.SpoolBytes))
	gauge(descUnacked, float64(st.UnackedBatches))
	gauge(descOldest, st.OldestUnacked.Seconds())
	accepting := 1.0
	if st.Full {
		accepting = 0
	}
	gauge(descAccepting, accepting)
	for _, s := range c.l.sinks {
		name := s.sink.Name()
		ch <- prometheus.MustNewConstMetric(descDelivered, prometheus.CounterValue, float64(s.delivered.Load()), name)
		ch <- prometheus.MustNewConstMetric(descSinkErrs, prometheus.CounterValue, float64(s.errors.Load()), name)
		up := 0.0
		if ok, _ := s.health(); ok {
			up = 1
		}
		gauge(descSinkUp, up, name)
	}
}
