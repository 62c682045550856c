package dataplane_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgw/mcpgw/dataplane"
	"github.com/mcpgw/mcpgw/dataplane/internal/mcptest"
)

// Two backends with prefixes appear in one catalog; pages are the edge's
// own and cross the boundary between backends.
func TestTwoBackendsPagination(t *testing.T) {
	srv := mcptest.StartHTTP(t, serverBin, "", false) // stateless
	e := startEdge(t, openPolicy+"backends:\n"+stdioBackend("one")+httpBackend("two", srv.URL(), "bee"), func(c *dataplane.Config) { c.PageSize = 7 })
	cs := connect(t, e.URL, nil)
	ctx := context.Background()
	names := waitTools(t, cs, 2*everythingTools)
	first, err := cs.ListTools(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(first.Tools) != 7 || first.NextCursor == "" {
		t.Fatalf("first page has %d tools, cursor %q; want 7 and a cursor", len(first.Tools), first.NextCursor)
	}
	seen := map[string]bool{}
	var one, bee int
	for _, n := range names {
		if seen[n] {
			t.Errorf("tool %s listed twice across pages", n)
		}
		seen[n] = true
		switch {
		case strings.HasPrefix(n, "one__"):
			one++
		case strings.HasPrefix(n, "bee__"):
			bee++
		default:
			t.Errorf("tool %s has neither prefix", n)
		}
	}
	if one == 0 || one != bee {
		t.Errorf("%d tools from one, %d from two; want the same non-zero count", one, bee)
	}
	for _, name := range []string{"one__test_simple_text", "bee__test_simple_text"} {
		res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: name})
		if err != nil || text(res) != "This is a simple text response for testing." {
			t.Errorf("%s: %v %v", name, err, res)
		}
	}
	if _, err := cs.ListTools(ctx, &mcp.ListToolsParams{Cursor: "not-a-cursor"}); err == nil {
		t.Error("a forged cursor was accepted")
	}
	if _, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "test_simple_text"}); err == nil {
		t.Error("an unprefixed name was routed")
	}
}

// Two backends that would expose the same names are rejected at load time
// with a message naming both.
func TestCollisionRejected(t *testing.T) {
	cfg := openPolicy + "backends:\n" + stdioBackend("alpha") + "    prefix: shared\n" + stdioBackend("beta") + "    prefix: shared\n"
	path := filepath.Join(t.TempDir(), "mcpgw.yaml")
	writeConfig(t, path, cfg)
	err := dataplane.Run(context.Background(), dataplane.Config{ConfigFile: path, StateDir: t.TempDir(), Listen: "127.0.0.1:0", Logger: testLogger()})
	if err == nil || !strings.Contains(err.Error(), `"alpha"`) || !strings.Contains(err.Error(), `"beta"`) {
		t.Fatalf("Run = %v, want a collision error naming alpha and beta", err)
	}
}

// post makes one raw POST to the edge (see send).
func post(t *testing.T, e *edge, body string, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	return send(t, e, http.MethodPost, body, hdr)
}

const initBody = `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`

// Transport security basics (2025-11-25 basic/transports: security
// warning, session management, protocol version header).
func TestHTTPSecurity(t *testing.T) {
	e := startEdge(t, openPolicy+"backends:\n"+stdioBackend("ev"), func(c *dataplane.Config) { c.MaxBodyBytes = 1 << 10 })
	resp, body := post(t, e, initBody, nil)
	sid := resp.Header.Get("Mcp-Session-Id")
	if resp.StatusCode != 200 || len(sid) < 32 || !strings.Contains(body, `"protocolVersion":"2025-06-18"`) {
		t.Fatalf("initialize: %d %q %s", resp.StatusCode, sid, body)
	}
	withSession := map[string]string{"Mcp-Session-Id": sid}
	tests := []struct {
		name   string
		body   string
		hdr    map[string]string
		status int
		code   string // JSON-RPC error code expected in the body, if any
	}{
		{"bad origin", initBody, map[string]string{"Origin": "https://evil.example"}, 403, ""},
		{"foreign host", initBody, map[string]string{"Host": "evil.example:8080"}, 403, ""},
		{"localhost origin", initBody, map[string]string{"Origin": "http://localhost:3000"}, 200, ""},
		{"oversized body", `{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":"` + strings.Repeat("a", 2<<10) + `"}}`, withSession, 413, ""},
		{"malformed JSON", `{"jsonrpc":"2.0","id":1,"method":`, withSession, 400, "-32700"},
		{"duplicate key", `{"jsonrpc":"2.0","id":1,"method":"ping","method":"tools/list"}`, withSession, 400, "-32600"},
		{"case-variant key", `{"jsonrpc":"2.0","id":1,"method":"ping","Method":"tools/list"}`, withSession, 400, "-32600"},
		{"batch", `[{"jsonrpc":"2.0","id":1,"method":"ping"}]`, withSession, 400, "-32600"},
		{"missing session", `{"jsonrpc":"2.0","id":1,"method":"ping"}`, nil, 400, ""},
		{"unknown session", `{"jsonrpc":"2.0","id":1,"method":"ping"}`, map[string]string{"Mcp-Session-Id": "0123456789abcdef0123456789abcdef"}, 404, ""},
		{"wrong protocol version", `{"jsonrpc":"2.0","id":1,"method":"ping"}`, map[string]string{"Mcp-Session-Id": sid, "Mcp-Protocol-Version": "2025-11-25"}, 400, ""},
		{"ping", `{"jsonrpc":"2.0","id":1,"method":"ping"}`, map[string]string{"Mcp-Session-Id": sid, "Mcp-Protocol-Version": "2025-06-18"}, 200, ""},
		{"notification", `{"jsonrpc":"2.0","method":"notifications/initialized"}`, withSession, 202, ""},
		{"unknown method", `{"jsonrpc":"2.0","id":1,"method":"no/such"}`, withSession, 200, "-32601"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := post(t, e, tt.body, tt.hdr)
			if resp.StatusCode != tt.status {
				t.Errorf("status %d, want %d (%s)", resp.StatusCode, tt.status, body)
			}
			if tt.code != "" && !strings.Contains(body, `"code":`+tt.code) {
				t.Errorf("body %s, want error code %s", body, tt.code)
			}
		})
	}
	// DELETE ends the session; it is then unknown (404).
	req, _ := http.NewRequest("DELETE", e.URL, nil)
	req.Header.Set("Mcp-Session-Id", sid)
	dresp, err := http.DefaultClient.Do(req)
	if err != nil || dresp.StatusCode/100 != 2 {
		t.Fatalf("DELETE: %v %v", err, dresp)
	}
	dresp.Body.Close()
	if resp, _ := post(t, e, `{"jsonrpc":"2.0","id":2,"method":"ping"}`, withSession); resp.StatusCode != 404 {
		t.Errorf("after DELETE: status %d, want 404", resp.StatusCode)
	}
}

// childPIDs returns the pids of live children of this process running bin
// as stdio backends (the edge puts those in their own process group).
func childPIDs(t *testing.T, bin string) []int {
	t.Helper()
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	var pids []int
	self := strconv.Itoa(os.Getpid())
	for _, f := range stats {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		s := string(b)
		fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
		if len(fields) < 3 || fields[1] != self || fields[0] == "Z" {
			continue
		}
		pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(f)))
		if fields[2] != strconv.Itoa(pid) {
			continue // not a process group leader: not a stdio backend
		}
		if exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); exe == bin {
			pids = append(pids, pid)
		}
	}
	return pids
}

// Killing a stdio backend mid-call gives that call an error (never a
// success), the backend restarts, the other backend keeps answering, and
// no child is left after the edge exits.
func TestKillStdioBackendMidCall(t *testing.T) {
	srv := mcptest.StartHTTP(t, serverBin, "", true)
	e := startEdge(t, openPolicy+"backends:\n"+stdioBackend("ev")+httpBackend("other", srv.URL(), "-"), nil)
	rec := &clientRecorder{}
	cs := connect(t, e.URL, rec)
	waitTools(t, cs, 2*everythingTools)
	pids := childPIDs(t, serverBin)
	if len(pids) != 1 {
		t.Fatalf("want exactly one stdio child, got %v", pids)
	}
	ctx := context.Background()
	errc := make(chan error, 1)
	go func() {
		res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "ev__test_tool_with_progress", Meta: mcp.Meta{"progressToken": 1}})
		if err == nil {
			err = fmt.Errorf("call succeeded: %+v", res)
			if res.IsError {
				err = nil
			}
		} else {
			err = nil
		}
		errc <- err
	}()
	waitFor(t, "first progress notification", func() bool {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		return len(rec.progress) > 0
	})
	if err := syscall.Kill(pids[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("killed call: %v", err)
	}
	// The dead backend dropped out of the lists, and clients were told.
	waitFor(t, "tools/list_changed after the backend died", func() bool {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		return rec.toolsChg > 0
	})
	// The other backend is unaffected.
	if res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "other__test_simple_text"}); err != nil || res.IsError {
		t.Fatalf("other backend: %v %+v", err, res)
	}
	// The stdio backend comes back.
	waitFor(t, "the stdio backend to restart", func() bool {
		res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "ev__test_simple_text"})
		return err == nil && !res.IsError
	})
	if now := childPIDs(t, serverBin); len(now) != 1 || now[0] == pids[0] {
		t.Errorf("children after restart: %v (killed %d)", now, pids[0])
	}
	if err := e.Stop(); err != nil {
		t.Fatalf("edge: %v", err)
	}
	if left := childPIDs(t, serverBin); len(left) != 0 {
		t.Errorf("children left after the edge exited: %v", left)
	}
}

// Editing the file hot-reloads it: a new backend appears (clients get
// list_changed), an unchanged one keeps its process, a broken file is
// rejected and the previous config keeps serving.
func TestReload(t *testing.T) {
	e := startEdge(t, openPolicy+"backends:\n"+stdioBackend("one"), nil)
	rec := &clientRecorder{}
	cs := connect(t, e.URL, rec)
	n := len(waitTools(t, cs, everythingTools))
	before := childPIDs(t, serverBin)

	writeConfig(t, e.CfgPath, openPolicy+"backends:\n"+stdioBackend("one")+stdioBackend("two"))
	waitTools(t, cs, 2*n)
	waitFor(t, "tools/list_changed", func() bool {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		return rec.toolsChg > 0
	})
	after := childPIDs(t, serverBin)
	if len(after) != 2 || !containsInt(after, before[0]) {
		t.Errorf("children %v after adding a backend; want the old %d kept plus one", after, before[0])
	}

	writeConfig(t, e.CfgPath, "backends:\n  - name: BAD NAME\n")
	time.Sleep(300 * time.Millisecond)
	if res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "two__test_simple_text"}); err != nil || res.IsError {
		t.Fatalf("after a rejected reload: %v %+v", err, res)
	}

	writeConfig(t, e.CfgPath, openPolicy+"backends:\n"+stdioBackend("two"))
	waitFor(t, "backend one to leave", func() bool {
		return !contains(toolNames(t, cs), "one__test_simple_text")
	})
	waitFor(t, "backend one's process to stop", func() bool {
		return !containsInt(childPIDs(t, serverBin), before[0])
	})
}

func containsInt(xs []int, x int) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

// The stdio front door: an SDK client talks to the edge over pipes, and
// logs never reach stdout.
func TestStdioFrontDoor(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "mcpgw.yaml")
	writeConfig(t, path, openPolicy+"backends:\n"+stdioBackend("ev"))
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- dataplane.Run(ctx, dataplane.Config{ConfigFile: path, StateDir: t.TempDir(), Stdio: true, Stdin: inR, Stdout: outW, Logger: testLogger()})
		outW.Close()
	}()
	rec := &clientRecorder{}
	c := mcp.NewClient(&mcp.Implementation{Name: "stdio-test", Version: "1"}, rec.options())
	cs, err := c.Connect(ctx, &mcp.IOTransport{Reader: outR, Writer: inW}, &mcp.ClientSessionOptions{ProtocolVersion: "2025-11-25"})
	if err != nil {
		t.Fatal(err)
	}
	waitTools(t, cs, everythingTools)
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "ev__test_sampling", Arguments: map[string]any{"prompt": "hi"}})
	if err != nil || !strings.Contains(text(res), "sampled through the edge") {
		t.Fatalf("sampling over stdio: %v %+v", err, res)
	}
	res, err = cs.CallTool(ctx, &mcp.CallToolParams{Name: "ev__test_tool_with_progress", Meta: mcp.Meta{"progressToken": "p"}})
	if err != nil || res.IsError {
		t.Fatal(err, res)
	}
	rec.mu.Lock()
	if len(rec.progress) != 3 {
		t.Errorf("%d progress notifications over stdio, want 3", len(rec.progress))
	}
	rec.mu.Unlock()
	// Closing stdin ends the edge cleanly.
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

// Metrics and health on the MCP listener.
func TestOpsEndpoints(t *testing.T) {
	e := startEdge(t, openPolicy+"backends:\n"+stdioBackend("ev"), nil)
	cs := connect(t, e.URL, nil)
	waitTools(t, cs, everythingTools)
	if _, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "ev__test_simple_text"}); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(e.Base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`mcpgw_edge_requests_total{backend="ev",method="tools/call",outcome="ok"} 1`,
		`mcpgw_edge_backend_up{backend="ev"} 1`,
		`mcpgw_edge_sessions 1`,
		`mcpgw_edge_request_duration_seconds_bucket{backend="ev",method="tools/call",outcome="ok"`,
		// The process's own, from client_golang's default registry.
		"\ngo_goroutines ",
		"\nprocess_resident_memory_bytes ",
	} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	resp, err = http.Get(e.Base + "/healthz")
	if err != nil || resp.StatusCode != 200 {
		t.Errorf("healthz: %v %v", err, resp)
	}
}

// everythingTools is how many tools the everything-server (go-sdk v1.8.0)
// offers.
const everythingTools = 28

// The GET stream carries server-initiated messages with event ids and
// replays them after Last-Event-ID (2025-11-25 basic/transports,
// resumability and redelivery).
func TestGetStreamResumes(t *testing.T) {
	e := startEdge(t, openPolicy+"backends:\n"+stdioBackend("one"), nil)
	resp, _ := post(t, e, initBody, nil)
	sid := resp.Header.Get("Mcp-Session-Id")
	post(t, e, `{"jsonrpc":"2.0","method":"notifications/initialized"}`, map[string]string{"Mcp-Session-Id": sid})
	// Adding a backend changes the lists: a list_changed goes to the outbox.
	writeConfig(t, e.CfgPath, openPolicy+"backends:\n"+stdioBackend("one")+stdioBackend("two"))
	read := func(lastID string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "GET", e.URL, nil)
		req.Header.Set("Accept", "text/event-stream")
		req.Header.Set("Mcp-Session-Id", sid)
		if lastID != "" {
			req.Header.Set("Last-Event-ID", lastID)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
			t.Fatalf("GET: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		var got strings.Builder
		buf := make([]byte, 4096)
		for !strings.Contains(got.String(), "list_changed") {
			n, err := resp.Body.Read(buf)
			got.Write(buf[:n])
			if err != nil {
				t.Fatalf("reading GET stream: %v (got %q)", err, got.String())
			}
		}
		return got.String()
	}
	first := read("")
	if !strings.Contains(first, "id: 1\n") {
		t.Fatalf("first event has no id 1: %q", first)
	}
	// Reconnecting from before event 1 redelivers it.
	again := read("0")
	if !strings.Contains(again, "id: 1\n") || !strings.Contains(again, "notifications/tools/list_changed") {
		t.Errorf("replay after Last-Event-ID 0: %q", again)
	}
}

func newRequest(method, url string) (*http.Request, error) { return http.NewRequest(method, url, nil) }

func httpDo(req *http.Request) (*http.Response, error) {
	resp, err := http.DefaultClient.Do(req)
	if err == nil {
		resp.Body.Close()
	}
	return resp, err
}

// Cancellation crosses the edge both ways: the client cancels a call that
// is waiting on its own elicitation answer; the edge cancels the upstream
// call, the backend withdraws its elicitation request, and the edge
// withdraws it at the client (2025-11-25 utilities/cancellation).
func TestCancellationBothWays(t *testing.T) {
	e := startEdge(t, openPolicy+"backends:\n"+stdioBackend("ev"), nil)
	asked := make(chan struct{}, 1)
	withdrawn := make(chan struct{}, 1)
	stop := make(chan struct{})
	c := mcp.NewClient(&mcp.Implementation{Name: "cancel-test", Version: "1"}, &mcp.ClientOptions{
		ElicitationHandler: func(ctx context.Context, _ *mcp.ElicitRequest) (*mcp.ElicitResult, error) {
			asked <- struct{}{}
			select { // never answer; wait to be withdrawn
			case <-ctx.Done():
				withdrawn <- struct{}{}
				return nil, ctx.Err()
			case <-stop:
				return nil, context.Canceled
			}
		},
	})
	cctx, ccancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer ccancel()
	cs, err := c.Connect(cctx, &mcp.StreamableClientTransport{Endpoint: e.URL}, &mcp.ClientSessionOptions{ProtocolVersion: "2025-11-25"})
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	defer close(stop) // before Close, which waits for handlers
	waitTools(t, cs, everythingTools)
	callCtx, cancel := context.WithCancel(cctx)
	errc := make(chan error, 1)
	go func() {
		_, err := cs.CallTool(callCtx, &mcp.CallToolParams{Name: "ev__test_elicitation", Arguments: map[string]any{"message": "hold on"}})
		errc <- err
	}()
	select {
	case <-asked:
	case <-time.After(10 * time.Second):
		t.Fatal("the elicitation never reached the client")
	}
	cancel()
	if err := <-errc; err == nil {
		t.Fatal("a cancelled call succeeded")
	}
	select {
	case <-withdrawn:
	case <-time.After(10 * time.Second):
		t.Fatal("the edge never withdrew the elicitation after the call was cancelled")
	}
	// The backend is free again.
	if res, err := cs.CallTool(cctx, &mcp.CallToolParams{Name: "ev__test_simple_text"}); err != nil || res.IsError {
		t.Fatalf("after cancellation: %v %+v", err, res)
	}
}

// A POST reply stream carries event ids; a client whose connection drops
// mid-call resumes it with GET and Last-Event-ID and gets the rest,
// response included (2025-11-25 basic/transports, resumability). The call
// is not cancelled by the drop.
func TestPostStreamResumes(t *testing.T) {
	e := startEdge(t, openPolicy+"backends:\n"+stdioBackend("ev"), nil)
	waitTools(t, connect(t, e.URL, nil), everythingTools)
	resp, _ := post(t, e, initBody, nil)
	sid := resp.Header.Get("Mcp-Session-Id")
	post(t, e, `{"jsonrpc":"2.0","method":"notifications/initialized"}`, map[string]string{"Mcp-Session-Id": sid})

	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "POST", e.URL, strings.NewReader(`{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"ev__test_tool_with_progress","_meta":{"progressToken":"t"}}}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Mcp-Session-Id", sid)
	r1, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	// Read up to the first progress event, note its id, then drop.
	var seen strings.Builder
	buf := make([]byte, 1)
	for !strings.Contains(seen.String(), "notifications/progress") || !strings.HasSuffix(seen.String(), "\n\n") {
		if _, err := r1.Body.Read(buf); err != nil {
			t.Fatalf("reading the reply stream: %v (%q)", err, seen.String())
		}
		seen.Write(buf)
	}
	cancel()
	r1.Body.Close()
	ids := regexp.MustCompile(`id: (p\d+-\d+)\n`).FindAllStringSubmatch(seen.String(), -1)
	if len(ids) < 2 {
		t.Fatalf("reply stream has no event ids: %q", seen.String())
	}
	last := ids[len(ids)-1][1]

	greq, _ := http.NewRequest("GET", e.URL, nil)
	greq.Header.Set("Accept", "text/event-stream")
	greq.Header.Set("Mcp-Session-Id", sid)
	greq.Header.Set("Last-Event-ID", last)
	r2, err := http.DefaultClient.Do(greq)
	if err != nil {
		t.Fatal(err)
	}
	rest, _ := io.ReadAll(r2.Body)
	r2.Body.Close()
	if r2.StatusCode != 200 || strings.Count(string(rest), "notifications/progress") != 2 || !strings.Contains(string(rest), `"id":9,"result"`) {
		t.Fatalf("resumed after %s: %d %q", last, r2.StatusCode, rest)
	}
	if strings.Contains(string(rest), "id: "+last+"\n") {
		t.Error("the resume replayed the event the client already had")
	}
}

// A backend removed by a reload is drained: a call in flight on it
// finishes with its real result, then the process stops.
func TestReloadDrainsRemovedBackend(t *testing.T) {
	e := startEdge(t, openPolicy+"backends:\n"+stdioBackend("one")+stdioBackend("two"), nil)
	asked := make(chan struct{}, 1)
	release := make(chan struct{})
	c := mcp.NewClient(&mcp.Implementation{Name: "drain-test", Version: "1"}, &mcp.ClientOptions{
		ElicitationHandler: func(ctx context.Context, req *mcp.ElicitRequest) (*mcp.ElicitResult, error) {
			asked <- struct{}{}
			select {
			case <-release:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			return &mcp.ElicitResult{Action: "accept", Content: fillSchema(req.Params.RequestedSchema)}, nil
		},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cs, err := c.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: e.URL}, &mcp.ClientSessionOptions{ProtocolVersion: "2025-11-25"})
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	waitTools(t, cs, 2*everythingTools)
	pids := childPIDs(t, serverBin)

	type result struct {
		res *mcp.CallToolResult
		err error
	}
	done := make(chan result, 1)
	go func() {
		res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "one__test_elicitation", Arguments: map[string]any{"message": "still there?"}})
		done <- result{res, err}
	}()
	<-asked
	writeConfig(t, e.CfgPath, openPolicy+"backends:\n"+stdioBackend("two"))
	waitFor(t, "backend one to leave the lists", func() bool {
		return !contains(toolNames(t, cs), "one__test_simple_text")
	})
	if len(childPIDs(t, serverBin)) != len(pids) {
		t.Fatal("the removed backend stopped while a call was in flight on it")
	}
	close(release)
	r := <-done
	if r.err != nil || r.res.IsError {
		t.Fatalf("the in-flight call on a removed backend: %v %+v", r.err, r.res)
	}
	waitFor(t, "the removed backend's process to stop", func() bool {
		return len(childPIDs(t, serverBin)) == len(pids)-1
	})
}
