package commands

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mcpgw/mcpgw/dataplane/cpclient"
	mcpgwv1 "github.com/mcpgw/mcpgw/gen/mcpgw/v1"
)

// edgeApplier stands in for the edge's state swap. It refuses configs with
// a backend named "broken" (a NACK, as an edge that cannot start a backend
// would send) and holds configs with a backend named "slow" until its
// context ends (an edge that never answers).
type edgeApplier struct{ refuse bool }

func (a edgeApplier) Apply(ctx context.Context, u *cpclient.Update) error {
	for _, b := range u.Document.Backends {
		switch {
		case b.Name == "broken" && a.refuse:
			return errors.New(`backend "broken": starting stdio command: exec: "no-such-binary": executable file not found in $PATH`)
		case b.Name == "slow" && a.refuse:
			<-ctx.Done()
			return ctx.Err()
		}
	}
	return nil
}

// startEdge enrolls a real edge control-plane client with a join token
// made by mcpctl, and keeps its ConfigStream until the test ends.
func startEdge(t *testing.T, cp *controlPlane, c *cli, name string, refuse bool) {
	t.Helper()
	var tok createdToken
	if err := json.Unmarshal([]byte(c.mustRun("join-token", "create", "--labels", "edge="+name, "-o", "json")), &tok); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	edge, err := cpclient.New(cpclient.Config{
		ControlPlane: cp.nodeAddr, CAFile: cp.caFile, JoinToken: tok.Token, StateDir: t.TempDir(),
		Name: name, Version: "v0.0.0-test", Applier: edgeApplier{refuse: refuse},
		Status: func() *mcpgwv1.EdgeStatus {
			return &mcpgwv1.EdgeStatus{
				ReportTime: timestamppb.Now(),
				AuditSpool: &mcpgwv1.AuditSpoolStatus{DepthBytes: 3 << 20, DepthBatches: 12, LimitBytes: 1 << 30, Epoch: 7, OldestUnackedAge: durationpb.New(2 * time.Second)},
				Counters:   &mcpgwv1.EdgeCounters{StartTime: timestamppb.New(start), Requests: 10, Denied: 2},
				Backends:   []*mcpgwv1.BackendHealth{{Name: "github", State: mcpgwv1.BackendState_BACKEND_STATE_HEALTHY}},
			}
		},
		StatusInterval: 50 * time.Millisecond, MinBackoff: 50 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- edge.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("edge %s: %v", name, err)
		}
	})
}

// waitNodes polls get nodes -o json until ok accepts the listing.
func waitNodes(t *testing.T, c *cli, what string, ok func([]*mcpgwv1.Node, int64) bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var resp mcpgwv1.ListNodesResponse
		out := c.mustRun("get", "nodes", "-o", "json")
		if err := protojsonUnmarshal(out, &resp); err != nil {
			t.Fatal(err)
		}
		if ok(resp.GetNodes(), resp.GetRevision()) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; nodes:\n%s", what, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func allAt(rev int64) func([]*mcpgwv1.Node, int64) bool {
	return func(ns []*mcpgwv1.Node, _ int64) bool {
		return len(ns) == 2 && !slices.ContainsFunc(ns, func(n *mcpgwv1.Node) bool {
			return !n.GetConnected() || n.GetAppliedRevision() != rev || n.GetStatus() == nil
		})
	}
}

func TestGoldenNodesAndRollout(t *testing.T) {
	cp := startControlPlane(t)
	c := cp.cliFor(t)
	tr := newTranscript(c)
	dir := t.TempDir()
	base := "backends:\n  - {name: github, stdio: {command: [github-mcp-server, stdio]}}\n"
	c.mustRun("apply", "-f", writeFile(t, dir, "base.yaml", base))

	// No edges yet: rollout has nothing to wait for.
	tr.ok("rollout", "status")
	tr.ok("nodes")

	startEdge(t, cp, c, "edge-a", false)
	startEdge(t, cp, c, "edge-b", true)
	waitNodes(t, c, "both edges to apply revision 1", allAt(1))
	tr.ok("rollout", "status", "--watch", "--timeout", "10s")

	// Two edges ACK a change: apply --wait reports both and succeeds.
	out := c.mustRun("apply", "-f", writeFile(t, dir, "v2.yaml", base+"  - {name: search, http: {url: \"http://search.internal/mcp\"}}\n"), "--wait", "--timeout", "20s")
	if !strings.HasPrefix(out, "+ backend search\napplied revision 2\n") || !strings.HasSuffix(out, "revision 2: 2/2 nodes acked\n") {
		t.Fatalf("apply --wait with two healthy edges:\n%s", out)
	}
	waitNodes(t, c, "both edges to report revision 2", allAt(2))

	// One edge NACKs: apply --wait exits 1 and names the node and error.
	code, out, errOut := c.run("apply", "-f", writeFile(t, dir, "v3.yaml", base+"  - {name: broken, stdio: {command: [no-such-binary]}}\n"), "--wait", "--timeout", "20s")
	if code != exitFailure || !strings.Contains(out, "revision 3: 1/2 nodes acked, 1 nacked") ||
		!regexpMatch(`(?m)^  NACK from node edge-b \([0-9a-f-]{36}\) for revision 3: .*executable file not found`, out) ||
		errOut != "mcpctl: rollout of revision 3 failed: 1 node rejected it\n" {
		t.Fatalf("apply --wait with a NACKing edge: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	waitNodes(t, c, "edge-b's NACK to show", func(ns []*mcpgwv1.Node, _ int64) bool {
		return slices.ContainsFunc(ns, func(n *mcpgwv1.Node) bool { return n.GetLastNack().GetRevision() == 3 })
	})
	var nodes mcpgwv1.ListNodesResponse
	if err := protojsonUnmarshal(c.mustRun("get", "nodes", "-o", "json"), &nodes); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes.GetNodes() {
		tr.learn(n.GetId(), "<"+n.GetName()+"-id>")
		tr.learn(n.GetAppliedHash()[:12], "<h-"+n.GetName()+">")
		tr.learn(n.GetAppliedHash(), "<hash-"+n.GetName()+">") // learned last, masked first
	}
	edgeB := nodes.GetNodes()[slices.IndexFunc(nodes.GetNodes(), func(n *mcpgwv1.Node) bool { return n.GetName() == "edge-b" })]
	tr.ok("nodes")
	tr.ok("get", "nodes", "-o", "wide")
	tr.ok("describe", "node", edgeB.GetId())
	tr.ok("describe", "node", "edge-b") // by name
	tr.run("describe", "node", "edge-z")
	tr.ok("get", "node", edgeB.GetId(), "-o", "yaml")
	tr.ok("get", "node", "edge-b", "-o", "json")
	tr.ok("rollout", "status")
	tr.ok("rollout", "status", "-o", "json")
	tr.run("rollout", "status", "--revision", "3", "--watch")
	tr.run("rollout", "status", "--revision", "3", "--watch", "-o", "json")

	// An edge that never answers: watching gives up after --timeout and
	// says how far the rollout got.
	out = c.mustRun("apply", "-f", writeFile(t, dir, "v3.yaml", base+"  - {name: slow, stdio: {command: [sleep, inf]}}\n"), "--prune")
	if !strings.HasSuffix(out, "applied revision 4\n") {
		t.Fatalf("apply of revision 4:\n%s", out)
	}
	waitNodes(t, c, "edge-a to apply revision 4", func(ns []*mcpgwv1.Node, _ int64) bool {
		return slices.ContainsFunc(ns, func(n *mcpgwv1.Node) bool { return n.GetName() == "edge-a" && n.GetAppliedRevision() == 4 })
	})
	tr.run("rollout", "status", "--watch", "--timeout", "1s")
	code, _, errOut = c.run("apply", "-f", dir+"/v3.yaml", "--prune", "--wait", "--timeout", "1s")
	if code != exitFailure || !strings.Contains(errOut, "timed out after 1s waiting for revision 4: ") {
		t.Fatalf("apply --wait with a silent edge: exit %d, stderr %q", code, errOut)
	}

	// Revoking a node: it drops out of the list, and --all shows it.
	tr.ok("delete", "node", "edge-a")
	tr.ok("nodes")
	tr.ok("nodes", "--all")
	tr.check("nodes")
}

// The oldest unacknowledged batch's age is as of the edge's report, so the
// tables age it from report_time, not from now minus the reported age.
func TestOldestUnackedIsAgedFromTheReport(t *testing.T) {
	reported := time.Date(2026, 11, 27, 4, 0, 0, 0, time.UTC)
	st := &mcpgwv1.EdgeStatus{ReportTime: timestamppb.New(reported),
		AuditSpool: &mcpgwv1.AuditSpoolStatus{DepthBatches: 3, OldestUnackedAge: durationpb.New(90 * time.Second)}}
	if at, ok := oldestUnacked(st); !ok || !at.Equal(reported.Add(-90*time.Second)) {
		t.Fatalf("oldestUnacked = %v, %v; want %v", at, ok, reported.Add(-90*time.Second))
	}
	g := &globals{env: env{age: func(at time.Time) string { return humanAge(reported.Add(time.Minute).Sub(at)) }}}
	if got := g.spoolText(st); got != "0B/3 batches, oldest 2m30s" {
		t.Fatalf("spool column %q", got)
	}
	st.AuditSpool.OldestUnackedAge = nil
	if got := g.spoolText(st); got != "0B/3 batches" {
		t.Fatalf("spool column without an unacked batch: %q", got)
	}
}
