package sqlitestore_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/mcpgw/mcpgw/controlplane/store"
	"github.com/mcpgw/mcpgw/internal/audit"
	"github.com/mcpgw/mcpgw/internal/auditdb"
	"github.com/mcpgw/mcpgw/internal/document"
)

// BenchmarkIngest measures exactly-once audit ingest into the embedded
// store: batches of 500 events, one transaction each (what one edge's
// shipper sends), reported as events/s.
func BenchmarkIngest(b *testing.B) {
	s := open(b)
	b.Cleanup(func() { s.Close() })
	node := uuid.NewString()
	const perBatch = 500
	var prev [32]byte
	start := time.Now().Add(-time.Minute)
	b.ResetTimer()
	for i := range b.N {
		bt := auditdb.Batch{Epoch: 1, Seq: int64(i + 1), PrevHash: prev, Count: perBatch}
		for j := range perBatch {
			ts := start.Add(time.Duration(i*perBatch+j) * time.Microsecond)
			e := audit.Event{ID: audit.NewID(ts), TS: ts, NodeID: node, Principal: "alice", Transport: audit.TransportHTTP,
				Method: "tools/call", Backend: "github", Name: "create_issue", Decision: audit.DecisionAllow, Status: audit.StatusOK,
				LatencyUS: 120, ArgsSHA256: "ab"}
			bt.Lines = append(e.AppendJSON(bt.Lines), '\n')
		}
		bt.CRC = auditdb.CRC32C(bt.Lines)
		prev = bt.Hash()
		if _, err := s.IngestAll(b.Context(), auditdb.NodeBatches{Node: node, Batches: []auditdb.Batch{bt}}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*perBatch)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkConfigWrite measures one config write (validate, diff, commit
// a revision) on a config of 50 backends.
func BenchmarkConfigWrite(b *testing.B) {
	s := open(b)
	b.Cleanup(func() { s.Close() })
	meta := store.Meta{Actor: "bench"}
	for i := range 50 {
		if _, err := s.CreateBackend(b.Context(), meta, document.Backend{Name: fmt.Sprintf("b%02d", i), HTTP: &document.HTTPTransport{URL: "http://127.0.0.1:9000/mcp"}}, store.WriteOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for i := range b.N {
		if _, err := s.UpdateBackend(b.Context(), meta, document.Backend{Name: "b00", HTTP: &document.HTTPTransport{URL: fmt.Sprintf("http://127.0.0.1:%d/mcp", 10000+i%1000)}}, store.WriteOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}
