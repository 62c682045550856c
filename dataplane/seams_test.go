package dataplane_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgw/mcpgw/dataplane"
	"github.com/mcpgw/mcpgw/dataplane/gateway"
	"github.com/mcpgw/mcpgw/dataplane/state"
)

// denyTool hides and refuses one tool, as a policy would.
type denyTool struct{ name string }

func (d denyTool) Decide(_ context.Context, st *state.State, _ gateway.Principal, a gateway.Action) gateway.Decision {
	if st == nil {
		return gateway.Decision{}
	}
	if a.Name == d.name {
		return gateway.Decision{Allow: false, Rule: "test/deny", Reason: "not for you"}
	}
	return gateway.Decision{Allow: true, Rule: "test/allow"}
}

// countRecorder remembers every request it is told about.
type countRecorder struct {
	mu   sync.Mutex // guards reqs
	reqs []gateway.Request
}

func (c *countRecorder) Begin(r *gateway.Request) { r.AuditID = "audit-test" }
func (c *countRecorder) Record(_ context.Context, r *gateway.Request) error {
	c.mu.Lock()
	c.reqs = append(c.reqs, *r)
	c.mu.Unlock()
	return nil
}

// The decide and record seams: a denied tool is neither listed nor
// callable, and every request is recorded exactly once with its outcome.
func TestDecideAndRecordSeams(t *testing.T) {
	rec := &countRecorder{}
	e := startEdge(t, openPolicy+"backends:\n"+stdioBackend("ev"), func(c *dataplane.Config) {
		c.Decider = denyTool{name: "ev__test_error_handling"}
		c.Record = rec
	})
	cs := connect(t, e.URL, nil)
	names := waitTools(t, cs, everythingTools-1)
	if contains(names, "ev__test_error_handling") {
		t.Error("a denied tool is listed")
	}
	ctx := context.Background()
	_, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "ev__test_error_handling"})
	if err == nil || !strings.Contains(err.Error(), "denied by policy: not for you") {
		t.Errorf("denied call: %v", err)
	}
	if _, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "ev__test_simple_text"}); err != nil {
		t.Fatal(err)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	var denied, ok *gateway.Request
	ids := map[string]int{}
	for i := range rec.reqs {
		r := &rec.reqs[i]
		ids[r.SessionID+"/"+string(r.ID)]++
		if r.Method == "tools/call" && r.Name == "ev__test_error_handling" {
			denied = r
		}
		if r.Method == "tools/call" && r.Name == "ev__test_simple_text" {
			ok = r
		}
	}
	for id, n := range ids {
		if n != 1 {
			t.Errorf("request %s recorded %d times", id, n)
		}
	}
	if denied == nil || denied.Status != gateway.StatusDenied || denied.Decision.Rule != "test/deny" || denied.Backend != "ev" {
		t.Errorf("denied call recorded as %+v", denied)
	}
	if ok == nil || ok.Status != gateway.StatusOK || ok.Backend != "ev" || ok.UpstreamLatency <= 0 || ok.ResponseBytes == 0 || ok.ClientName != "edge-test" || ok.Principal.Name != "anonymous" {
		t.Errorf("allowed call recorded as %+v", ok)
	}
}

// failingRecorder cannot record: either it says so up front (Available)
// or only when asked to Record.
type failingRecorder struct{ upFront bool }

func (failingRecorder) Begin(*gateway.Request) {}
func (failingRecorder) Record(context.Context, *gateway.Request) error {
	return errors.New("spool full")
}
func (f failingRecorder) Available() error {
	if f.upFront {
		return errors.New("spool full")
	}
	return nil
}

// A request whose outcome cannot be recorded is not answered with its
// result: HTTP 503 and a JSON-RPC error saying audit is unavailable
// (DESIGN §6), before it reaches a backend when the recorder can tell.
func TestAuditUnavailableRefuses(t *testing.T) {
	for _, upFront := range []bool{true, false} {
		e := startEdge(t, openPolicy+"backends:\n"+stdioBackend("ev"), func(c *dataplane.Config) {
			c.Record = failingRecorder{upFront: upFront}
		})
		resp, body := post(t, e, initBody, nil)
		if resp.StatusCode != 503 || !strings.Contains(body, "audit unavailable") || resp.Header.Get("Mcp-Session-Id") != "" {
			t.Errorf("upFront=%v: initialize got %d %q %s", upFront, resp.StatusCode, resp.Header.Get("Mcp-Session-Id"), body)
		}
	}
}
