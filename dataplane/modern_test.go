package dataplane_test

import (
	"context"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgw/mcpgw/dataplane"
	"github.com/mcpgw/mcpgw/dataplane/internal/mcptest"
)

// connectModern opens a 2026-07-28 (stateless) SDK client session: it
// starts with server/discover, not initialize.
func connectModern(t *testing.T, url string, rec *clientRecorder) *mcp.ClientSession {
	t.Helper()
	c := mcp.NewClient(&mcp.Implementation{Name: "modern-test", Version: "1"}, rec.options())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cs, err := c.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: url}, nil)
	if err != nil {
		t.Fatalf("connecting (2026-07-28) to %s: %v", url, err)
	}
	t.Cleanup(func() { cs.Close() })
	return cs
}

// A modern client against a modern (stateless) backend: discover, plain
// calls, and multi-round-trip input_required results passed through
// (spec 2026-07-28, basic/patterns/mrtr) exactly as direct.
func TestModernClientModernBackend(t *testing.T) {
	srv := mcptest.StartHTTP(t, serverBin, "", false)
	e := startEdge(t, openPolicy+"backends:\n"+httpBackend("ev", srv.URL(), "-"), nil)
	rec := &clientRecorder{}
	via := connectModern(t, e.URL, rec)
	if v := via.InitializeResult().ProtocolVersion; v != "2026-07-28" {
		t.Errorf("negotiated %q, want 2026-07-28", v)
	}
	direct := connectModern(t, srv.URL(), &clientRecorder{})
	// Both clients list first: the SDK client mirrors x-mcp-header
	// arguments only for tools it has seen.
	waitTools(t, direct, everythingTools)
	waitTools(t, via, everythingTools)
	// A list_changed still in flight from the catalog filling up would
	// clear the client's tool cache; let it land, then list again.
	time.Sleep(200 * time.Millisecond)
	waitTools(t, via, everythingTools)
	ctx := context.Background()
	for _, tool := range []string{
		"test_simple_text", "test_tool_with_progress", "test_x_mcp_header",
		"test_input_required_result_elicitation", "test_input_required_result_sampling",
		"test_input_required_result_multi_round", "test_input_required_result_request_state",
		"test_input_required_result_multiple_inputs",
	} {
		p := &mcp.CallToolParams{Name: tool, Arguments: map[string]any{}}
		if tool == "test_x_mcp_header" {
			// The client mirrors region in Mcp-Param-Region (SEP-2243);
			// the backend checks the header the edge passes on.
			p.Arguments = map[string]any{"region": "eu-west"}
		}
		dr, derr := direct.CallTool(ctx, p)
		p.Name = "ev__" + tool
		vr, verr := via.CallTool(ctx, p)
		if got, want := normalize(t, vr, verr), normalize(t, dr, derr); got != want {
			t.Errorf("%s through the edge:\n got %s\nwant %s", tool, got, want)
		}
		if verr != nil || vr.IsError {
			t.Errorf("%s failed through the edge: %v %s", tool, verr, normalize(t, vr, verr))
		}
	}
	vr, err := via.ReadResource(ctx, &mcp.ReadResourceParams{URI: "test://static-text"})
	if err != nil || len(vr.Contents) != 1 || vr.Contents[0].Text == "" {
		t.Fatalf("resources/read: %v %+v", err, vr)
	}
}

// The modern era's transport rules on the edge's own endpoint.
func TestModernTransportRules(t *testing.T) {
	e := startEdge(t, openPolicy+"backends:\n"+stdioBackend("ev"), nil)
	meta := `"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}`
	modern := func(method, name string) map[string]string {
		h := map[string]string{"Mcp-Protocol-Version": "2026-07-28", "Mcp-Method": method}
		if name != "" {
			h["Mcp-Name"] = name
		}
		return h
	}
	tests := []struct {
		name   string
		body   string
		hdr    map[string]string
		status int
		want   string
	}{
		{"discover", `{"jsonrpc":"2.0","id":1,"method":"server/discover","params":{` + meta + `}}`, modern("server/discover", ""), 200, `"supportedVersions":["2026-07-28"`},
		{"ping", `{"jsonrpc":"2.0","id":1,"method":"ping","params":{` + meta + `}}`, modern("ping", ""), 200, `"resultType":"complete"`},
		{"method mismatch", `{"jsonrpc":"2.0","id":1,"method":"ping","params":{` + meta + `}}`, modern("tools/list", ""), 400, `"code":-32020`},
		{"missing method header", `{"jsonrpc":"2.0","id":1,"method":"ping","params":{` + meta + `}}`, map[string]string{"Mcp-Protocol-Version": "2026-07-28"}, 400, `"code":-32020`},
		{"name mismatch", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"ev__test_simple_text",` + meta + `}}`, modern("tools/call", "ev__other"), 400, `"code":-32020`},
		{"unsupported version", `{"jsonrpc":"2.0","id":1,"method":"ping","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2099-01-01","io.modelcontextprotocol/clientCapabilities":{}}}}`, map[string]string{"Mcp-Method": "ping"}, 400, `"code":-32022`},
		{"list is private", `{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{` + meta + `}}`, modern("tools/list", ""), 200, `"cacheScope":"private"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := post(t, e, tt.body, tt.hdr)
			if resp.StatusCode != tt.status || !strings.Contains(body, tt.want) {
				t.Errorf("got %d %s; want %d and %s", resp.StatusCode, body, tt.status, tt.want)
			}
		})
	}
	for _, verb := range []string{"GET", "DELETE"} {
		req, _ := newRequest(verb, e.URL)
		resp, err := httpDo(req)
		if err != nil || resp.StatusCode != 405 {
			t.Errorf("%s without a session: %v %v, want 405", verb, err, resp)
		}
	}
}

// subscriptions/listen streams list_changed to a modern client.
func TestModernListen(t *testing.T) {
	e := startEdge(t, openPolicy+"backends:\n"+stdioBackend("one"), nil)
	rec := &clientRecorder{}
	cs := connectModern(t, e.URL, rec)
	n := len(waitTools(t, cs, everythingTools))
	writeConfig(t, e.CfgPath, openPolicy+"backends:\n"+stdioBackend("one")+stdioBackend("two"))
	waitTools(t, cs, 2*n)
	waitFor(t, "tools/list_changed on the listen stream", func() bool {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		return rec.toolsChg > 0
	})
}

// A 2026-07-28 client on the stdio front door probes with server/discover
// and then sends stateless requests. A modern (stateless HTTP) backend's
// input_required results pass through; a stdio backend the edge opened
// with a legacy session turns them into a server→client request, which the
// edge bridges back into an input_required round.
func TestModernStdioFrontDoor(t *testing.T) {
	srv := mcptest.StartHTTP(t, serverBin, "", false)
	dir := t.TempDir()
	path := filepath.Join(dir, "mcpgw.yaml")
	writeConfig(t, path, openPolicy+"backends:\n"+stdioBackend("ev")+httpBackend("web", srv.URL(), "-"))
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- dataplane.Run(ctx, dataplane.Config{ConfigFile: path, StateDir: t.TempDir(), Stdio: true, Stdin: inR, Stdout: outW, Logger: testLogger()})
		outW.Close()
	}()
	c := mcp.NewClient(&mcp.Implementation{Name: "stdio-modern", Version: "1"}, (&clientRecorder{}).options())
	cs, err := c.Connect(ctx, &mcp.IOTransport{Reader: outR, Writer: inW}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if v := cs.InitializeResult().ProtocolVersion; v != "2026-07-28" {
		t.Errorf("negotiated %q over stdio, want 2026-07-28", v)
	}
	waitTools(t, cs, 2*everythingTools)
	if res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "ev__test_simple_text"}); err != nil || res.IsError {
		t.Fatalf("simple call over stdio: %v %+v", err, res)
	}
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "web__test_input_required_result_elicitation", Arguments: map[string]any{}})
	if err != nil || res.IsError {
		t.Fatalf("input_required from a modern backend: %v %+v", err, res)
	}
	// The stdio backend's session is legacy: its elicitation/create is
	// bridged into an input_required round (issue 4).
	res, err = cs.CallTool(ctx, &mcp.CallToolParams{Name: "ev__test_input_required_result_elicitation", Arguments: map[string]any{}})
	if err != nil || res.IsError || len(res.Content) != 1 || !strings.HasPrefix(res.Content[0].(*mcp.TextContent).Text, "Hello, ") {
		t.Errorf("input_required from a legacy-session backend, bridged: %v %+v", err, res)
	}
	cs.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("edge did not exit after stdin closed")
	}
}
