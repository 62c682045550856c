package dataplane_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// slowStdioBackend is the everything-server started after a delay, so its
// lists arrive well after the edge listens.
func slowStdioBackend(name string, delay time.Duration) string {
	script := fmt.Sprintf("sleep %.2f; exec %q", delay.Seconds(), serverBin)
	return fmt.Sprintf("  - name: %s\n    stdio:\n      command: [/bin/sh, -c, %q]\n    timeout: 20s\n", name, script)
}

// A tools/call that arrives before its backend's lists are in (the edge has
// just started) waits for the backend, bounded, and is served, instead of
// being refused as an unknown tool. A name no backend could serve is still
// unknown at once.
func TestCallBeforeBackendListed(t *testing.T) {
	e := startEdge(t, "backends:\n"+slowStdioBackend("slow", 1500*time.Millisecond)+stdioBackend("ev"), nil)
	cs := connect(t, e.URL, nil)
	ctx := context.Background()
	if names := toolNames(t, cs); contains(names, "slow__test_simple_text") {
		t.Fatalf("the slow backend is already listed (%d tools); the test would prove nothing", len(names))
	}
	start := time.Now()
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "slow__test_simple_text"})
	if err != nil || res.IsError {
		t.Fatalf("call before the backend was listed: %v %+v", err, res)
	}
	if got := text(res); got != "This is a simple text response for testing." {
		t.Errorf("text = %q", got)
	}
	t.Logf("served after %v", time.Since(start))

	// Everything is listed now: an unknown name does not wait.
	waitTools(t, cs, 2*everythingTools)
	start = time.Now()
	_, err = cs.CallTool(ctx, &mcp.CallToolParams{Name: "slow__no_such_tool"})
	if err == nil || !strings.Contains(err.Error(), "unknown tool") {
		t.Errorf("unknown tool: %v, want an unknown-tool error", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("unknown tool took %v with every backend listed", d)
	}
}

// A backend that never comes up: a call for its tools waits the bounded
// time and then says which backend is not available, not "unknown tool".
func TestCallForBackendThatNeverStarts(t *testing.T) {
	e := startEdge(t, "backends:\n"+
		"  - name: dead\n    stdio:\n      command: [/bin/false]\n    timeout: 5s\n"+
		stdioBackend("ev"), nil)
	cs := connect(t, e.URL, nil)
	waitTools(t, cs, everythingTools)
	start := time.Now()
	_, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "dead__anything"})
	if err == nil || !strings.Contains(err.Error(), `backend dead not available yet`) {
		t.Fatalf("call for a dead backend's tool: %v", err)
	}
	if d := time.Since(start); d < 4*time.Second || d > 10*time.Second {
		t.Errorf("waited %v, want about the 5s bound", d)
	}
	// The other backend's tools are not held up by the dead one.
	start = time.Now()
	if _, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "ev__test_simple_text"}); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("a listed backend's call took %v", d)
	}
}
