package ingest

import "github.com/prometheus/client_golang/prometheus"

// metrics are the ingest's Prometheus series, registered on the Registerer
// in Config (none: not exported, still counted).
type metrics struct {
	streams                                       prometheus.GaugeFunc
	batches, duplicates, events                   prometheus.Counter
	chainBreaks, crcFailures, rejected            prometheus.Counter
	commitSeconds                                 prometheus.Histogram
	commitErrors, pauses                          prometheus.Counter
	partitionsCreated, partitionsDropped, notices prometheus.Counter
	ledgerPruned                                  prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, streams func() float64) (*metrics, error) {
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	}
	m := &metrics{
		streams: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "mcpgw_cp_audit_streams",
			Help: "Edges with an AuditStream open to this replica.",
		}, streams),
		batches:     counter("mcpgw_cp_audit_batches_ingested_total", "Audit batches committed new to the ledger."),
		duplicates:  counter("mcpgw_cp_audit_duplicate_batches_total", "Audit batches received again after they were committed (acked, not stored twice)."),
		events:      counter("mcpgw_cp_audit_events_ingested_total", "Audit events stored in audit_events."),
		chainBreaks: counter("mcpgw_cp_audit_chain_breaks_total", "Audit batches recorded with a broken hash chain."),
		crcFailures: counter("mcpgw_cp_audit_crc_failures_total", "Audit batches recorded with a CRC mismatch (events not stored)."),
		rejected:    counter("mcpgw_cp_audit_rejected_events_total", "Audit events refused at ingest with a reason (outside the time window, invalid)."),
		commitSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "mcpgw_cp_audit_commit_seconds",
			Help:    "Latency of one audit ingest transaction (ledger rows and COPY), coalesced across streams.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}),
		commitErrors:      counter("mcpgw_cp_audit_commit_errors_total", "Audit ingest transactions that failed (retried; nothing acked)."),
		pauses:            counter("mcpgw_cp_audit_flow_control_pauses_total", "AuditFlowControl pauses sent to edges (Postgres failing or slow)."),
		notices:           counter("mcpgw_cp_audit_notices_total", "AuditNotices sent to edges (flagged batches, seq gaps)."),
		partitionsCreated: counter("mcpgw_cp_audit_partitions_created_total", "audit_events day partitions created by maintenance."),
		partitionsDropped: counter("mcpgw_cp_audit_partitions_dropped_total", "audit_events day partitions dropped by retention."),
		ledgerPruned:      counter("mcpgw_cp_audit_ledger_rows_pruned_total", "audit_ledger rows pruned by retention (their events had all expired)."),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.streams, m.batches, m.duplicates, m.events, m.chainBreaks, m.crcFailures,
		m.rejected, m.commitSeconds, m.commitErrors, m.pauses, m.notices, m.partitionsCreated, m.partitionsDropped, m.ledgerPruned} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
