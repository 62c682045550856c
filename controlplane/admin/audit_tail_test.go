package admin_test

import (
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/mcpgw/mcpgw/controlplane/admin"
	mcpgwv1 "github.com/mcpgw/mcpgw/gen/mcpgw/v1"
	"github.com/mcpgw/mcpgw/internal/audit"
	"github.com/mcpgw/mcpgw/internal/auditdb"
)

// tailBatch seals one batch of events of node at ts, one per principal.
func tailBatch(node string, seq int64, prev [32]byte, ts time.Time, principals ...string) auditdb.Batch {
	b := auditdb.Batch{Epoch: 9, Seq: seq, PrevHash: prev}
	for i, p := range principals {
		t := ts.Add(time.Duration(i) * time.Microsecond)
		ev := audit.Event{ID: audit.NewID(t), TS: t, NodeID: node, Principal: p, Transport: audit.TransportHTTP,
			Method: "tools/call", Backend: "github", Name: "github__x", Decision: audit.DecisionAllow, Status: audit.StatusOK}
		b.Lines = append(ev.AppendJSON(b.Lines), '\n')
		b.Count++
	}
	b.CRC = auditdb.CRC32C(b.Lines)
	return b
}

// TailAudit streams, in commit order, exactly the events committed after it
// went live that match its filter, including a late batch whose events are
// an hour old (an edge catching up after an outage).
func TestTailAuditStreamsNewMatchingEvents(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	store := auditdb.New(e.pool, auditdb.Options{})
	const node = "0190c0de-0000-7000-8000-0000000000bb"
	now := time.Now().UTC()

	before := tailBatch(node, 1, [32]byte{}, now, "alice", "bob")
	if _, err := store.Ingest(ctx, node, before); err != nil {
		t.Fatal(err)
	}

	stream, err := e.client.TailAudit(ctx, &mcpgwv1.TailAuditRequest{Filter: &mcpgwv1.AuditFilter{Principal: "alice"}})
	if err != nil {
		t.Fatal(err)
	}
	hdr, err := stream.Header()
	if err != nil || len(hdr.Get(admin.TailLiveHeader)) == 0 {
		t.Fatalf("tail never went live: header %v, %v", hdr, err)
	}

	b2 := tailBatch(node, 2, before.Hash(), now.Add(time.Millisecond), "alice", "bob", "alice")
	b3 := tailBatch(node, 3, b2.Hash(), now.Add(-time.Hour), "bob", "alice")
	if _, err := store.Ingest(ctx, node, b2); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Ingest(ctx, node, b3); err != nil {
		t.Fatal(err)
	}

	var got []*mcpgwv1.AuditEvent
	deadline := time.Now().Add(10 * time.Second)
	for len(got) < 3 && time.Now().Before(deadline) {
		m, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, m.GetEvents()...)
	}
	if len(got) != 3 {
		t.Fatalf("tail streamed %d events, want 3", len(got))
	}
	for _, ev := range got {
		if ev.GetPrincipal() != "alice" {
			t.Errorf("tail streamed an event of %q", ev.GetPrincipal())
		}
	}
	if !got[2].GetTs().AsTime().Before(got[0].GetTs().AsTime()) {
		t.Errorf("the late batch's event (ts %v) should come last, in commit order", got[2].GetTs().AsTime())
	}

	// Nothing more: the events from before the tail and bob's never come.
	b4 := tailBatch(node, 4, b3.Hash(), now.Add(2*time.Millisecond), "alice")
	if _, err := store.Ingest(ctx, node, b4); err != nil {
		t.Fatal(err)
	}
	m, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if len(m.GetEvents()) != 1 || m.GetEvents()[0].GetTs().AsTime().UnixMicro() != now.Add(2*time.Millisecond).UnixMicro() {
		t.Fatalf("next tail message %v, want just the event of batch 4", m.GetEvents())
	}

	bad, err := e.client.TailAudit(ctx, &mcpgwv1.TailAuditRequest{Filter: &mcpgwv1.AuditFilter{Status: "weird"}})
	if err == nil {
		_, err = bad.Recv()
	}
	wantCode(t, err, codes.InvalidArgument, "tail with a bad status filter")
}
