package enforce_test

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgw/mcpgw/dataplane/enforce"
	"github.com/mcpgw/mcpgw/dataplane/internal/mcptest"
	"github.com/mcpgw/mcpgw/internal/audit"
)

// On stdio the edge's own configuration names the caller: here the key in
// MCPGW_API_KEY, checked like an HTTP bearer. Policy and audit apply as on
// HTTP.
func TestStdioActsAsTheConfiguredKey(t *testing.T) {
	key, sum := newKey(t)
	cfg := "backends:\n  - name: github\n    stdio: {command: [\"" + serverBin + "\"]}\n    timeout: 20s\n" +
		"roles:\n  - name: developer\n    rules:\n      - {id: dev-github, effect: allow, tools: [\"github__*\"]}\n      - {id: dev-deny, effect: deny, tools: [\"github__test_e*\"]}\n" +
		"bindings:\n  - {role: developer, subjects: [\"user:alice\"]}\n" +
		"principals:\n  - {name: alice, api_key_sha256: " + sum + "}\n" +
		"audit: {file: AUDITFILE}\n"
	e := startEdge(t, cfg, enforce.AuthOptions{StdioKey: key})

	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- e.GW.ServeStdio(ctx, inR, outW)
		outW.Close()
	}()
	c := mcp.NewClient(&mcp.Implementation{Name: "stdio-client", Version: "3"}, nil)
	cs, err := c.Connect(ctx, &mcp.IOTransport{Reader: outR, Writer: inW}, &mcp.ClientSessionOptions{ProtocolVersion: "2025-11-25"})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	deadline := time.Now().Add(20 * time.Second)
	for len(names) == 0 && time.Now().Before(deadline) {
		names = mcptest.ToolNames(t, cs)
		time.Sleep(20 * time.Millisecond)
	}
	if len(names) == 0 {
		t.Fatal("no tools over stdio")
	}
	for _, n := range names {
		if !strings.HasPrefix(n, "github__") || strings.HasPrefix(n, "github__test_e") {
			t.Errorf("alice lists %s over stdio", n)
		}
	}
	if _, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "github__test_error_handling"}); err == nil || !strings.Contains(err.Error(), "is not permitted") {
		t.Errorf("denied call over stdio: %v", err)
	}
	if _, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "github__test_simple_text"}); err != nil {
		t.Fatal(err)
	}
	ev := waitEvent(t, e.AuditFile, "the stdio call", func(ev audit.Event) bool {
		return ev.Name == "github__test_simple_text" && ev.Method == "tools/call"
	})
	if ev.Transport != "stdio" || ev.Principal != "alice" || ev.Status != "ok" || ev.ClientName != "stdio-client" {
		t.Errorf("stdio call audited as %+v", ev)
	}
	cs.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("ServeStdio: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("stdio front door did not end after stdin closed")
	}
}
