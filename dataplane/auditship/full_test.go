package auditship_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/mcpgw/mcpgw/dataplane/auditlog"
	"github.com/mcpgw/mcpgw/internal/audit"
)

// freeAddr returns a loopback address nothing listens on yet.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// recordUntil records events until Record fails; it returns the ids
// accepted and the error that stopped it.
func recordUntil(t *testing.T, ed *edge, max int) ([]uuid.UUID, error) {
	t.Helper()
	var ids []uuid.UUID
	for i := range max {
		now := time.Now()
		ev := &audit.Event{ID: audit.NewID(now), TS: now, NodeID: ed.node, SessionID: "s1", Principal: "alice",
			Transport: audit.TransportHTTP, Method: "tools/call", Backend: "github", Name: "github__create_issue",
			Decision: audit.DecisionAllow, PolicyRevision: int64(i), Status: audit.StatusOK, LatencyUS: 1}
		if err := ed.log.Record(context.Background(), ev); err != nil {
			return ids, err
		}
		ids = append(ids, ev.ID)
	}
	return ids, nil
}

// With the control plane unreachable, a spool at its limit under on_full:
// refuse turns new events away with ErrAuditUnavailable (what the edge
// answers 503 / a JSON-RPC error with); when the control plane comes up
// the spool drains by itself, events are accepted again, and every
// accepted event is stored once.
func TestFullSpoolRefusesUntilTheControlPlaneReturns(t *testing.T) {
	e := newEnv(t)
	addr := freeAddr(t)
	node := uuid.NewString()
	ed := startEdgeWith(t, node, t.TempDir(), e.nodeConn(node, addr), func(c *auditlog.Config) {
		c.MaxBytes, c.OnFull = 64<<10, auditlog.OnFullRefuse
	})
	ids, err := recordUntil(t, ed, 20000)
	if !errors.Is(err, auditlog.ErrAuditUnavailable) || !strings.Contains(err.Error(), "full") {
		t.Fatalf("after %d events with no control plane: %v, want a refusal saying the spool is full", len(ids), err)
	}
	if st := ed.log.Stats(); !st.Full || st.Refused == 0 {
		t.Fatalf("stats while refusing: %+v", st)
	}
	t.Logf("spool full after %d events (64 KiB limit): %v", len(ids), err)

	cp := e.startCP(addr, nil)
	waitFor(t, 20*time.Second, "the edge to accept events again", func() bool { return ed.log.Available() == nil })
	more, err := recordUntil(t, ed, 10)
	if err != nil {
		t.Fatalf("Record after the control plane returned: %v", err)
	}
	ids = append(ids, more...)
	waitFor(t, 20*time.Second, "every accepted event to be committed", func() bool { r, _ := e.counts(node); return r >= len(ids) })
	rows, distinct := e.counts(node)
	if rows != len(ids) || distinct != len(ids) {
		t.Fatalf("audit_events holds %d rows (%d distinct) for %d accepted events", rows, distinct, len(ids))
	}
	rep, err := e.store.Verify(t.Context(), node)
	if err != nil || !rep.ChainComplete || rep.Dropped != 0 {
		t.Fatalf("verify: %+v %v", rep, err)
	}
	if cp.ing.Stats().Events != int64(len(ids)) {
		t.Errorf("ingest counted %d events, want %d", cp.ing.Stats().Events, len(ids))
	}
}

// Under on_full: drop the edge keeps accepting, and the loss travels to the
// control plane as a gap record with the time span of the lost events, which
// Verify reports.
func TestDropGapShipsWithItsTimeSpan(t *testing.T) {
	e := newEnv(t)
	addr := freeAddr(t)
	node := uuid.NewString()
	ed := startEdgeWith(t, node, t.TempDir(), e.nodeConn(node, addr), func(c *auditlog.Config) {
		c.MaxBytes, c.OnFull = 64<<10, auditlog.OnFullDrop
	})
	before := time.Now()
	const n = 2000
	ids, err := recordUntil(t, ed, n)
	if err != nil {
		t.Fatalf("on_full: drop refused an event after %d: %v", len(ids), err)
	}
	after := time.Now()
	dropped := ed.log.Stats().Dropped
	if dropped == 0 {
		t.Fatal("nothing was dropped with a 64 KiB spool and no control plane")
	}
	e.startCP(addr, nil)
	var stored int
	waitFor(t, 20*time.Second, "the spool and the gap to be committed", func() bool {
		rep, err := e.store.Verify(t.Context(), node)
		stored = int(rep.StoredEvents)
		return err == nil && rep.Dropped == int64(dropped) && stored+int(dropped) == n
	})
	rep, err := e.store.Verify(t.Context(), node)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("dropped %d of %d; verify: complete=%v stored=%d problems=%q", dropped, n, rep.ChainComplete, rep.StoredEvents, rep.Problems)
	if !rep.ChainComplete {
		t.Fatalf("the chain around the gap does not verify: %v", rep.Problems)
	}
	var gapEvents int64
	for _, ep := range rep.Epochs {
		for _, g := range ep.Gaps {
			gapEvents += g.Events
			if g.First.IsZero() || g.First.Before(before.Truncate(time.Microsecond)) || g.Last.After(after) || g.Last.Before(g.First) {
				t.Errorf("gap before seq %d: %d events %v..%v, want a span within %v..%v", g.Seq, g.Events, g.First, g.Last, before, after)
			}
		}
	}
	if gapEvents != int64(dropped) {
		t.Fatalf("gaps account for %d events, the edge dropped %d", gapEvents, dropped)
	}
}
