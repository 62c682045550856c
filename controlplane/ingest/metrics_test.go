package ingest_test

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcpgw/mcpgw/controlplane/ingest"
	"github.com/mcpgw/mcpgw/internal/auditdb"
)

func TestMetricsRegister(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	if _, err := ingest.New(ingest.Config{Store: auditdb.New(nil, auditdb.Options{}), Registerer: reg}); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, mf := range mfs {
		got[mf.GetName()] = true
	}
	for _, name := range []string{"mcpgw_cp_audit_streams", "mcpgw_cp_audit_batches_ingested_total", "mcpgw_cp_audit_events_ingested_total",
		"mcpgw_cp_audit_duplicate_batches_total", "mcpgw_cp_audit_chain_breaks_total", "mcpgw_cp_audit_flow_control_pauses_total"} {
		if !got[name] {
			t.Errorf("%s not exported", name)
		}
	}
	// Histograms with no observations are still gathered.
	if !got["mcpgw_cp_audit_commit_seconds"] {
		t.Error("mcpgw_cp_audit_commit_seconds not exported")
	}
	if _, err := ingest.New(ingest.Config{Store: auditdb.New(nil, auditdb.Options{}), Registerer: reg}); err == nil {
		t.Error("registering the metrics twice succeeded")
	}
	if _, err := ingest.New(ingest.Config{}); err == nil {
		t.Error("New without a Store succeeded")
	}
}
