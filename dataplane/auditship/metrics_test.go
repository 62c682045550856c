package auditship_test

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/mcpgw/mcpgw/dataplane/auditship"
)

func TestMetricsRegisterAndExport(t *testing.T) {
	conn, err := grpc.NewClient("127.0.0.1:1", grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	sh, err := auditship.New(auditship.Config{Conn: conn})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(sh.Metrics()); err != nil {
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
	for _, name := range []string{"mcpgw_audit_ship_batches_sent_total", "mcpgw_audit_ship_batches_acked_total",
		"mcpgw_audit_ship_streams_opened_total", "mcpgw_audit_ship_pauses_total", "mcpgw_audit_ship_notices_total"} {
		if !got[name] {
			t.Errorf("%s not exported", name)
		}
	}
	if _, err := auditship.New(auditship.Config{}); err == nil {
		t.Fatal("New without Conn or Connect succeeded")
	}
}
