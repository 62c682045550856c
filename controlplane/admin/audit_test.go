package admin_test

import (
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/timestamppb"

	mcpgwv1 "github.com/mcpgw/mcpgw/gen/mcpgw/v1"
	"github.com/mcpgw/mcpgw/internal/audit"
	"github.com/mcpgw/mcpgw/internal/auditdb"
)

func TestAuditQueryAndVerify(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	const node = "0190c0de-0000-7000-8000-0000000000aa"
	now := time.Now().UTC().Truncate(time.Millisecond)
	var prev [32]byte
	var batches []auditdb.Batch
	// Seqs start at 1 and the CRC covers the JSON lines (node.proto's AuditBatch contract).
	for seq := int64(1); seq <= 2; seq++ {
		b := auditdb.Batch{Epoch: 1, Seq: seq, PrevHash: prev}
		for i := range 3 {
			ts := now.Add(time.Duration((seq-1)*3+int64(i)) * time.Millisecond)
			ev := audit.Event{ID: audit.NewID(ts), TS: ts, NodeID: node, Principal: []string{"alice", "bob"}[i%2], Transport: audit.TransportHTTP,
				Method: "tools/call", Backend: "github", Name: "github__x", Decision: audit.DecisionAllow, Status: audit.StatusOK, PolicyRevision: 1}
			b.Lines = append(ev.AppendJSON(b.Lines), '\n')
			b.Count++
		}
		b.CRC = auditdb.CRC32C(b.Lines)
		prev = b.Hash()
		batches = append(batches, b)
	}
	if _, err := auditdb.New(e.pool, auditdb.Options{}).Ingest(ctx, node, batches...); err != nil {
		t.Fatal(err)
	}

	var got []*mcpgwv1.AuditEvent
	tok := ""
	for {
		r, err := e.client.QueryAudit(ctx, &mcpgwv1.QueryAuditRequest{PageSize: 4, PageToken: tok,
			Filter: &mcpgwv1.AuditFilter{StartTime: timestamppb.New(now.Add(-time.Minute))}})
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, r.GetEvents()...)
		if tok = r.GetNextPageToken(); tok == "" {
			break
		}
	}
	if len(got) != 6 || !got[0].GetTs().AsTime().After(got[5].GetTs().AsTime()) || got[0].GetNodeId() != node {
		t.Fatalf("query: %d events, first %v", len(got), got[0])
	}
	alice, err := e.client.QueryAudit(ctx, &mcpgwv1.QueryAuditRequest{Filter: &mcpgwv1.AuditFilter{Principal: "alice"}})
	if err != nil || len(alice.GetEvents()) != 4 {
		t.Fatalf("filtered query: %d, %v", len(alice.GetEvents()), err)
	}
	_, err = e.client.QueryAudit(ctx, &mcpgwv1.QueryAuditRequest{PageToken: "garbage"})
	wantCode(t, err, codes.InvalidArgument, "bad audit page token")

	v, err := e.client.VerifyAudit(ctx, &mcpgwv1.VerifyAuditRequest{})
	if err != nil || !v.GetComplete() || len(v.GetReports()) != 1 || v.GetReports()[0].GetNodeId() != node {
		t.Fatalf("verify: %v %v", v, err)
	}
	ep := v.GetReports()[0].GetEpochs()
	if len(ep) != 1 || ep[0].GetBatches() != 2 || ep[0].GetLedgerEvents() != 6 || ep[0].GetStoredEvents() != 6 || !ep[0].GetComplete() {
		t.Fatalf("epoch report %v", ep)
	}
}
