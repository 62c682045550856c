package dataplane_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	neturl "net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/jsonschema-go/jsonschema"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgw/mcpgw/dataplane/internal/mcptest"
	"github.com/mcpgw/mcpgw/internal/proctest"
)

// Era bridging (issue 4, DESIGN §4.1): a client of one era reaches a
// backend of the other through the edge. The stateful everything-server is
// legacy (its server/discover lists no 2026-07-28); the stateless one is
// modern.

const modernMeta = `"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientInfo":{"name":"raw","version":"1"},"io.modelcontextprotocol/clientCapabilities":%s}`

func modernHeaders(method, name string) map[string]string {
	h := map[string]string{"Mcp-Protocol-Version": "2026-07-28", "Mcp-Method": method}
	if name != "" {
		h["Mcp-Name"] = name
	}
	return h
}

// sseResult returns the JSON-RPC response in a reply body (JSON or SSE).
func sseResult(t *testing.T, body string) map[string]any {
	t.Helper()
	for _, line := range strings.Split(body, "\n") {
		line = strings.TrimPrefix(line, "data: ")
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && m["id"] != nil {
			return m
		}
	}
	t.Fatalf("no JSON-RPC response in %q", body)
	return nil
}

// normalizeEra is normalize without what only 2026-07-28 results carry:
// resultType and the serverInfo _meta.
func normalizeEra(t *testing.T, v any, err error) string {
	t.Helper()
	s := normalize(t, v, err)
	var m map[string]any
	if err != nil || json.Unmarshal([]byte(s), &m) != nil {
		return s
	}
	delete(m, "resultType")
	// A modern backend names itself in each result's _meta; passed through
	// to a modern client as is (docs/edge.md), dropped for a legacy one.
	if meta, ok := m["_meta"].(map[string]any); ok {
		delete(meta, "io.modelcontextprotocol/serverInfo")
		if len(meta) == 0 {
			delete(m, "_meta")
		}
	}
	b, _ := json.Marshal(m)
	return string(b)
}

// A modern client (Go SDK, 2026-07-28) against a legacy backend (the
// stateful everything-server over HTTP): the backend's server→client
// requests come back to the client as input_required rounds (spec
// 2026-07-28 basic/patterns/mrtr), and every feature gives what a legacy
// client gets direct.
func TestBridgeModernClientLegacyBackend(t *testing.T) {
	srv := mcptest.StartHTTP(t, serverBin, "", true)
	e := startEdge(t, openPolicy+"backends:\n"+httpBackend("ev", srv.URL(), "-"), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rec := &clientRecorder{}
	via := connectModern(t, e.URL, rec)
	if v := via.InitializeResult().ProtocolVersion; v != "2026-07-28" {
		t.Fatalf("the edge negotiated %q with the modern client", v)
	}
	direct := connect(t, srv.URL(), &clientRecorder{})
	n := len(waitTools(t, direct, everythingTools))
	waitTools(t, via, n)

	tools := []struct {
		name string
		args map[string]any
	}{
		{"test_simple_text", nil},
		{"test_sampling", map[string]any{"prompt": "bridged"}},
		{"test_elicitation", map[string]any{"message": "bridged"}},
		{"test_elicitation_sep1034_defaults", nil},
		// go-sdk turns these into server→client requests for a legacy
		// session; the edge turns those back into input_required.
		{"test_input_required_result_elicitation", nil},
		{"test_input_required_result_sampling", nil},
		{"test_input_required_result_list_roots", nil},
		{"test_input_required_result_multiple_inputs", nil},
	}
	for _, tc := range tools {
		// Fresh params per call: the SDK client (v1.8.0) leaves an empty
		// arguments map it sent as null, which the edge refuses.
		params := func(name string) *mcp.CallToolParams {
			p := &mcp.CallToolParams{Name: name, Arguments: map[string]any{}}
			if tc.args != nil {
				p.Arguments = tc.args
			}
			return p
		}
		dr, derr := direct.CallTool(ctx, params(tc.name))
		vr, verr := via.CallTool(ctx, params("ev__"+tc.name))
		if verr != nil || vr.IsError {
			t.Errorf("%s failed across the bridge: %v %s", tc.name, verr, normalizeEra(t, vr, verr))
			continue
		}
		if got, want := normalizeEra(t, vr, verr), normalizeEra(t, dr, derr); got != want {
			t.Errorf("%s across the bridge:\n got %s\nwant %s", tc.name, got, want)
		}
	}

	// Progress reaches the modern client on the call's own stream.
	p := &mcp.CallToolParams{Name: "ev__test_tool_with_progress", Arguments: map[string]any{}}
	p.SetProgressToken("bridge-progress")
	if r, err := via.CallTool(ctx, p); err != nil || r.IsError {
		t.Fatalf("progress tool: %v %+v", err, r)
	}
	waitFor(t, "progress across the bridge", func() bool {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		return len(rec.progress) == 3
	})

	// Prompts (one that asks for input), resources and completion.
	for _, name := range []string{"test_simple_prompt", "test_input_required_result_prompt"} {
		dp, derr := direct.GetPrompt(ctx, &mcp.GetPromptParams{Name: name})
		vp, verr := via.GetPrompt(ctx, &mcp.GetPromptParams{Name: "ev__" + name})
		if verr != nil {
			t.Errorf("prompt %s across the bridge: %v", name, verr)
		} else if got, want := normalizeEra(t, vp, verr), normalizeEra(t, dp, derr); got != want {
			t.Errorf("prompt %s across the bridge:\n got %s\nwant %s", name, got, want)
		}
	}
	dres, derr := direct.ReadResource(ctx, &mcp.ReadResourceParams{URI: "test://static-text"})
	vres, verr := via.ReadResource(ctx, &mcp.ReadResourceParams{URI: "test://static-text"})
	if verr != nil || normalizeEra(t, vres, verr) != normalizeEra(t, dres, derr) {
		t.Errorf("resources/read across the bridge: %v\n got %s\nwant %s", verr, normalizeEra(t, vres, verr), normalizeEra(t, dres, derr))
	}
	cp := &mcp.CompleteParams{Ref: &mcp.CompleteReference{Type: "ref/prompt", Name: "test_prompt_with_arguments"}, Argument: mcp.CompleteParamsArgument{Name: "arg1", Value: "a"}}
	dc, derr := direct.Complete(ctx, cp)
	cp.Ref.Name = "ev__test_prompt_with_arguments"
	vc, verr := via.Complete(ctx, cp)
	if verr != nil || normalizeEra(t, vc, verr) != normalizeEra(t, dc, derr) {
		t.Errorf("completion across the bridge: %v\n got %s\nwant %s", verr, normalizeEra(t, vc, verr), normalizeEra(t, dc, derr))
	}
}

// askTwiceServer is a legacy Go SDK server whose tool elicits twice in one
// call, on its session, one question after the other.
func askTwiceServer(t *testing.T) string {
	t.Helper()
	s := mcp.NewServer(&mcp.Implementation{Name: "ask-twice", Version: "1"}, nil)
	schema := func(prop string) *jsonschema.Schema {
		return &jsonschema.Schema{Type: "object", Properties: map[string]*jsonschema.Schema{prop: {Type: "string"}}, Required: []string{prop}}
	}
	mcp.AddTool(s, &mcp.Tool{Name: "ask_twice", Description: "asks two questions in one call"}, func(ctx context.Context, req *mcp.CallToolRequest, _ any) (*mcp.CallToolResult, any, error) {
		a, err := req.Session.Elicit(ctx, &mcp.ElicitParams{Message: "first?", RequestedSchema: schema("first")})
		if err != nil {
			return nil, nil, err
		}
		b, err := req.Session.Elicit(ctx, &mcp.ElicitParams{Message: "second?", RequestedSchema: schema("second")})
		if err != nil {
			return nil, nil, err
		}
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: fmt.Sprintf("%v then %v", a.Content["first"], b.Content["second"])}}}, nil, nil
	})
	h := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, nil)
	hs := httptest.NewServer(h)
	t.Cleanup(hs.Close)
	return hs.URL
}

// A legacy tool that asks twice in one call: two input_required rounds for
// the modern client, one upstream call (the tool runs once).
func TestBridgeModernClientAskTwice(t *testing.T) {
	url := askTwiceServer(t)
	e := startEdge(t, openPolicy+"backends:\n"+httpBackend("two", url, "-"), nil)
	var asked atomic.Int32
	opts := (&clientRecorder{}).options()
	opts.ElicitationHandler = func(_ context.Context, req *mcp.ElicitRequest) (*mcp.ElicitResult, error) {
		asked.Add(1)
		prop := strings.TrimSuffix(req.Params.Message, "?")
		return &mcp.ElicitResult{Action: "accept", Content: map[string]any{prop: "answer-" + prop}}, nil
	}
	c := mcp.NewClient(&mcp.Implementation{Name: "modern-ask-twice", Version: "1"}, opts)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cs, err := c.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: e.URL}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	waitTools(t, cs, 1)
	r, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "two__ask_twice", Arguments: map[string]any{}})
	if err != nil || r.IsError {
		t.Fatalf("ask_twice across the bridge: %v %+v", err, r)
	}
	if got := text(r); got != "answer-first then answer-second" {
		t.Errorf("ask_twice gave %q", got)
	}
	if n := asked.Load(); n != 2 {
		t.Errorf("the client answered %d elicitations, want 2", n)
	}
}

// The sealed requestState: a tampered one, one replayed, and one sent with
// another request are refused with a clear error; a client without the
// capability the backend needs gets an error at once, not a hang
// (2026-07-28 basic/patterns/mrtr: servers must validate requestState).
func TestBridgeRequestState(t *testing.T) {
	url := askTwiceServer(t)
	e := startEdge(t, openPolicy+"backends:\n"+httpBackend("two", url, "-"), nil)
	waitTools(t, connectModern(t, e.URL, &clientRecorder{}), 1)
	call := func(args, extra, caps string) map[string]any {
		body := fmt.Sprintf(`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"two__ask_twice","arguments":%s%s,`+modernMeta+`}}`, args, extra, caps)
		_, b := post(t, e, body, modernHeaders("tools/call", "two__ask_twice"))
		return sseResult(t, b)
	}
	errMsg := func(m map[string]any) string {
		if e, ok := m["error"].(map[string]any); ok {
			return fmt.Sprint(e["code"], " ", e["message"])
		}
		return ""
	}
	first := call(`{"x":1}`, "", `{"elicitation":{}}`)
	res, _ := first["result"].(map[string]any)
	if res["resultType"] != "input_required" {
		t.Fatalf("first round: %v", first)
	}
	state, _ := res["requestState"].(string)
	var key string
	for k := range res["inputRequests"].(map[string]any) {
		key = k
	}
	answer := `,"inputResponses":{"` + key + `":{"action":"accept","content":{"first":"a"}}},"requestState":`

	// Tampered: one character changed.
	bad := []byte(state)
	bad[len(bad)/2] ^= 1
	if m := errMsg(call(`{"x":1}`, answer+`"`+string(bad)+`"`, `{"elicitation":{}}`)); !strings.Contains(m, "-32602") || !strings.Contains(m, "requestState is invalid") {
		t.Errorf("tampered requestState: %q", m)
	}
	// Bound to the request: other arguments, same state.
	if m := errMsg(call(`{"x":2}`, answer+`"`+state+`"`, `{"elicitation":{}}`)); !strings.Contains(m, "requestState is invalid") {
		t.Errorf("requestState with other arguments: %q", m)
	}
	// The genuine retry moves on to the second question (arguments
	// re-encoded with other spacing still match).
	second := call(`{ "x" : 1 }`, answer+`"`+state+`"`, `{"elicitation":{}}`)
	if r, _ := second["result"].(map[string]any); r["resultType"] != "input_required" {
		t.Fatalf("second round: %v", second)
	}
	// Replayed: the first state again.
	if m := errMsg(call(`{"x":1}`, answer+`"`+state+`"`, `{"elicitation":{}}`)); !strings.Contains(m, "already used") {
		t.Errorf("replayed requestState: %q", m)
	}

	// No elicitation capability: a clear error, well within the timeout.
	start := time.Now()
	m := errMsg(call(`{}`, "", `{}`))
	if !strings.Contains(m, "elicitation") || !strings.Contains(m, "clientCapabilities") {
		t.Errorf("client without the capability: %q", m)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the capability error took %s", d)
	}
}

// legacyOnlyTools make a server→client request from inside a tools/call,
// which a 2026-07-28 server may not do (spec 2026-07-28 basic/patterns/mrtr:
// the old pattern is no longer supported): behind a modern backend they
// fail, with the backend's own words, whoever the client is.
var legacyOnlyTools = map[string]bool{
	"test_sampling":                     true,
	"test_elicitation":                  true,
	"test_elicitation_sep1034_defaults": true,
	"test_elicitation_sep1330_enums":    true,
}

// A legacy client (the TypeScript SDK, 2025-11-25) against a modern backend
// (the stateless everything-server): the edge answers initialize, sends
// every request with the per-request _meta (and the Mcp-Param-* headers a
// tool's schema asks for), turns input_required rounds into server→client
// requests on the client's session and feeds list_changed and resource
// updates from a subscriptions/listen stream upstream. Compared op by op
// with the same client direct against the stateful (legacy)
// everything-server, where go-sdk bridges the same tools inside the server.
func TestBridgeTSLegacyClientModernBackend(t *testing.T) {
	dir := proctest.TSClientDir(t)
	var ops []tsOp
	for _, o := range everythingOps(t) {
		if legacyOnlyTools[o.Name] || o.Name == "test_input_required_result_multi_round" || o.Name == "test_reconnection" {
			continue
		}
		ops = append(ops, o)
	}
	direct := mcptest.StartHTTP(t, serverBin, "", true)
	backend := mcptest.StartHTTP(t, serverBin, "", false)
	e := startEdge(t, openPolicy+"backends:\n"+httpBackend("ev", backend.URL(), "-"), nil)
	waitTools(t, connect(t, e.URL, nil), everythingTools)
	compareTS(t, dir, ops, tsComparison{
		direct:          []string{"--url", direct.URL()},
		edges:           [][]string{{"--url", e.URL}},
		withdrawalsLost: true,
	})

	// What differs from direct, on purpose.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	extra := []tsOp{
		// Two rounds, both bridged: go-sdk direct fulfils only the first
		// for a legacy client and returns the second's inputRequests.
		{Op: "callTool", Name: "ev__test_input_required_result_multi_round", Arguments: map[string]any{}},
		// The client gives up while the edge holds its question: the edge
		// withdraws it (notifications/cancelled) and the call ends.
		{Op: "callToolCancelled", Name: "ev__test_input_required_result_elicitation", Arguments: map[string]any{}, TimeoutMs: 5000},
		{Op: "callTool", Name: "ev__test_sampling", Arguments: map[string]any{"prompt": "x"}},
	}
	run, err := runTS(ctx, dir, []string{"--url", e.URL}, extra)
	if err != nil {
		t.Fatal(err)
	}
	mr := run.Results[0]
	if !mr.OK || len(mr.Requests) != 2 || !strings.Contains(string(mr.Result), "Multi-round complete: tsclient likes tsclient") {
		t.Errorf("a tool asking twice, bridged: ok=%v, %d server→client requests, %s", mr.OK, len(mr.Requests), mr.Result)
	}
	var cr map[string]any
	_ = json.Unmarshal(run.Results[1].Result, &cr)
	for _, k := range []string{"serverRequestArrived", "callRejected", "serverRequestCancelled"} {
		if cr[k] != true {
			t.Errorf("cancelling a bridged call while its question is open: %s is %v (%s)", k, cr[k], run.Results[1].Result)
		}
	}
	if s := string(run.Results[2].Result); !strings.Contains(s, `"isError":true`) || !strings.Contains(s, "2026-07-28") {
		t.Errorf("a legacy-only tool behind a modern backend: %s %+v", s, run.Results[2].Error)
	}
}

// One edge, a modern backend and a legacy one, a legacy client and a
// modern client at the same time: both clients see one catalog, and every
// pairing of client and backend era works, the bridged ones included,
// with the same results.
func TestBridgeMixedFleet(t *testing.T) {
	modern := mcptest.StartHTTP(t, serverBin, "", false)
	legacy := mcptest.StartHTTP(t, serverBin, "", true)
	e := startEdge(t, openPolicy+"backends:\n"+httpBackend("new", modern.URL(), "-")+httpBackend("old", legacy.URL(), "-"), nil)
	lc := connect(t, e.URL, &clientRecorder{})
	mc := connectModern(t, e.URL, &clientRecorder{})
	lt := waitTools(t, lc, 2*everythingTools)
	mt := waitTools(t, mc, 2*everythingTools)
	if strings.Join(lt, ",") != strings.Join(mt, ",") {
		t.Fatalf("the two clients see different catalogs:\nlegacy %v\nmodern %v", lt, mt)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	type outcome struct {
		who, tool, got string
	}
	tools := []string{"test_input_required_result_elicitation", "test_input_required_result_multiple_inputs", "test_tool_with_progress", "test_simple_text"}
	results := make(chan outcome, 2*2*len(tools))
	for _, c := range []struct {
		who string
		cs  *mcp.ClientSession
	}{{"legacy", lc}, {"modern", mc}} {
		for _, backend := range []string{"new", "old"} {
			go func() {
				for _, tool := range tools {
					r, err := c.cs.CallTool(ctx, &mcp.CallToolParams{Name: backend + "__" + tool, Arguments: map[string]any{}})
					if err == nil && r.IsError {
						err = fmt.Errorf("isError: %s", text(r))
					}
					results <- outcome{c.who + "→" + backend, tool, normalizeEra(t, r, err)}
				}
			}()
		}
	}
	byTool := map[string]map[string]string{}
	for range 2 * 2 * len(tools) {
		o := <-results
		if strings.HasPrefix(o.got, "error") {
			t.Errorf("%s %s: %s", o.who, o.tool, o.got)
		}
		if byTool[o.tool] == nil {
			byTool[o.tool] = map[string]string{}
		}
		byTool[o.tool][o.who] = o.got
	}
	for tool, got := range byTool {
		// test_tool_with_progress echoes the progress token it saw: none.
		ref := got["legacy→old"]
		for who, g := range got {
			if g != ref {
				t.Errorf("%s: %s gives\n %s\nlegacy→old gives\n %s", tool, who, g, ref)
			}
		}
	}
}

// Resource updates from a legacy backend reach a modern client on its
// subscriptions/listen stream (spec 2026-07-28: listen replaces the GET
// stream and resources/subscribe).
func TestBridgeListenLegacyUpdates(t *testing.T) {
	legacy := mcptest.StartHTTP(t, serverBin, "", true)
	e := startEdge(t, openPolicy+"backends:\n"+httpBackend("old", legacy.URL(), "-"), nil)
	waitTools(t, connectModern(t, e.URL, &clientRecorder{}), everythingTools)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	body := `{"jsonrpc":"2.0","id":"l1","method":"subscriptions/listen","params":{"notifications":{"resourceSubscriptions":["test://watched-resource"]},` + fmt.Sprintf(modernMeta, "{}") + `}}`
	req, err := http.NewRequestWithContext(ctx, "POST", e.URL, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range modernHeaders("subscriptions/listen", "") {
		req.Header.Set(k, v)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var seen []string
	buf := make([]byte, 64<<10)
	var acc strings.Builder
	for !strings.Contains(acc.String(), "notifications/resources/updated") {
		n, err := resp.Body.Read(buf)
		acc.Write(buf[:n])
		if err != nil {
			t.Fatalf("listen stream ended before a resources/updated (the server sends one every 3s): %v\n%s", err, acc.String())
		}
	}
	for _, line := range strings.Split(acc.String(), "\n") {
		if strings.HasPrefix(line, "data: ") {
			seen = append(seen, line)
		}
	}
	if !strings.Contains(acc.String(), `"acknowledged"`) && !strings.Contains(acc.String(), "subscriptions/acknowledged") {
		t.Errorf("no acknowledgement first: %v", seen)
	}
	if !strings.Contains(acc.String(), `"uri":"test://watched-resource"`) || !strings.Contains(acc.String(), `"io.modelcontextprotocol/subscriptionId":"l1"`) {
		t.Errorf("the update is not for the watched resource on this subscription: %v", seen)
	}
}

// A per_principal legacy backend: a modern client's bridged call, parked
// between rounds, runs on its principal's own upstream session; and a
// requestState is the principal's: another principal presenting it for
// the same request is refused.
func TestBridgePerPrincipal(t *testing.T) {
	srv := mcptest.StartHTTP(t, serverBin, "", true)
	tapURL, tap := startSessionTap(t, srv.URL())
	e := startEdge(t, twoPrincipals()+"backends:\n"+httpBackend("ev", tapURL, "-")+"    sessions: per_principal\n", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, p := range []string{"alice", "bob"} {
		c := mcp.NewClient(&mcp.Implementation{Name: "modern-" + p, Version: "1"}, (&clientRecorder{}).options())
		cs, err := c.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: e.URL, HTTPClient: &http.Client{Transport: bearerTransport{principalKeys[p]}}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer cs.Close()
		waitTools(t, cs, everythingTools)
		r, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "ev__test_input_required_result_elicitation", Arguments: map[string]any{}})
		if err != nil || r.IsError || !strings.HasPrefix(text(r), "Hello, ") {
			t.Fatalf("bridged call as %s: %v %+v", p, err, r)
		}
	}
	listed := tap.sessions("tools/list ")
	called := tap.sessions("tools/call test_input_required_result_elicitation")
	if len(listed) == 0 || len(called) != 2 || called[0] == called[1] || called[0] == listed[0] || called[1] == listed[0] {
		t.Errorf("shared session %v; the bridged calls went on %v: want one per principal, neither the shared one", listed, called)
	}

	// alice's state, presented by bob.
	as := func(p, extra string) map[string]any {
		body := `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"ev__test_elicitation","arguments":{"message":"m"}` + extra + `,` + fmt.Sprintf(modernMeta, `{"elicitation":{}}`) + `}}`
		h := modernHeaders("tools/call", "ev__test_elicitation")
		h["Authorization"] = "Bearer " + principalKeys[p]
		_, b := post(t, e, body, h)
		return sseResult(t, b)
	}
	first, _ := as("alice", "")["result"].(map[string]any)
	state, _ := first["requestState"].(string)
	if state == "" {
		t.Fatalf("no input_required round for alice: %v", first)
	}
	res := as("bob", `,"inputResponses":{},"requestState":"`+state+`"`)
	if e, _ := res["error"].(map[string]any); e == nil || !strings.Contains(fmt.Sprint(e["message"]), "requestState is invalid") {
		t.Errorf("bob presenting alice's requestState: %v", res)
	}
}

// A legacy client that did not declare elicitation, against a modern
// backend that needs it: the backend is told the client's capabilities in
// _meta; the everything-server asks anyway, and the edge refuses to put the
// question to the client, so the call ends in a clear error at once.
func TestBridgeLegacyClientWithoutCapability(t *testing.T) {
	backend := mcptest.StartHTTP(t, serverBin, "", false)
	e := startEdge(t, openPolicy+"backends:\n"+httpBackend("ev", backend.URL(), "-"), nil)
	c := mcp.NewClient(&mcp.Implementation{Name: "no-caps", Version: "1"}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cs, err := c.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: e.URL}, &mcp.ClientSessionOptions{ProtocolVersion: "2025-11-25"})
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	waitTools(t, cs, everythingTools)
	start := time.Now()
	_, err = cs.CallTool(ctx, &mcp.CallToolParams{Name: "ev__test_input_required_result_elicitation", Arguments: map[string]any{}})
	if err == nil || !strings.Contains(err.Error(), "did not declare the capability") {
		t.Errorf("call needing elicitation from a client without it: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the error took %s", d)
	}
	// The capability-aware tool asks only for what the _meta the edge sent
	// declares: roots (the SDK client's default), not elicitation or
	// sampling, which the edge would refuse as above.
	r, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "ev__test_input_required_result_capabilities", Arguments: map[string]any{}})
	if err != nil || r.IsError || text(r) != "Capability-aware input requests fulfilled" {
		t.Errorf("capability-aware tool: %v %q", err, text(r))
	}
}

// The legacy backend forgets the edge's session (404, 2025-11-25
// basic/transports "Session Management"): the edge initializes a new one
// and a modern client's bridged call, input round included, goes through
// on it; nothing reaches the client as a failure.
func TestBridgeLegacySessionExpired(t *testing.T) {
	srv := mcptest.StartHTTP(t, serverBin, "", true)
	u, err := neturl.Parse(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex // guards forgotten
	forgotten := map[string]bool{}
	var forgetNext atomic.Bool
	rp := httputil.NewSingleHostReverseProxy(u)
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sid := r.Header.Get("Mcp-Session-Id")
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		mu.Lock()
		// Forget it as a tools/call arrives: the server has not run the
		// call, so the edge may send it again on a new session. (Forgotten
		// mid-call, the call would fail, rightly: it may have run.)
		if sid != "" && forgetNext.Load() && bytes.Contains(body, []byte(`"method":"tools/call"`)) {
			forgotten[sid] = true
			forgetNext.Store(false)
		}
		gone := forgotten[sid]
		mu.Unlock()
		if gone {
			http.Error(w, "session not found", http.StatusNotFound)
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(front.Close)
	e := startEdge(t, openPolicy+"backends:\n"+httpBackend("ev", front.URL+u.Path, "-"), nil)
	cs := connectModern(t, e.URL, &clientRecorder{})
	waitTools(t, cs, everythingTools)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	call := func() {
		t.Helper()
		r, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "ev__test_input_required_result_elicitation", Arguments: map[string]any{}})
		if err != nil || r.IsError || !strings.HasPrefix(text(r), "Hello, ") {
			t.Fatalf("bridged call: %v %+v", err, r)
		}
	}
	call()
	forgetNext.Store(true)
	call()
	mu.Lock()
	n := len(forgotten)
	mu.Unlock()
	if n != 1 {
		t.Errorf("%d upstream sessions forgotten, want 1 (the test did not expire the session)", n)
	}
}

// A modern client that asks for logs in its request's _meta gets a legacy
// backend's log messages of that call, at its level and above.
func TestBridgeModernClientLogs(t *testing.T) {
	srv := mcptest.StartHTTP(t, serverBin, "", true)
	e := startEdge(t, openPolicy+"backends:\n"+httpBackend("old", srv.URL(), "-"), nil)
	rec := &clientRecorder{}
	cs := connectModern(t, e.URL, rec)
	waitTools(t, cs, everythingTools)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	p := &mcp.CallToolParams{Name: "old__test_tool_with_logging", Arguments: map[string]any{}}
	p.Meta = mcp.Meta{"io.modelcontextprotocol/logLevel": "info"}
	if r, err := cs.CallTool(ctx, p); err != nil || r.IsError {
		t.Fatalf("logging tool: %v %+v", err, r)
	}
	waitFor(t, "the call's 3 log messages", func() bool {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		return len(rec.logs) == 3
	})
}

// Parked calls end: a modern client that closes its stream mid-call
// cancels the legacy backend's call (2026-07-28: closing the response
// stream is cancellation), and one that never comes back for an input
// round leaves the call to expire with the backend's timeout, after which
// its requestState is refused.
func TestBridgeParkedCallEnds(t *testing.T) {
	s := mcp.NewServer(&mcp.Implementation{Name: "enders", Version: "1"}, nil)
	ended := make(chan string, 4)
	mcp.AddTool(s, &mcp.Tool{Name: "wait"}, func(ctx context.Context, _ *mcp.CallToolRequest, _ any) (*mcp.CallToolResult, any, error) {
		<-ctx.Done()
		ended <- "wait"
		return nil, nil, ctx.Err()
	})
	mcp.AddTool(s, &mcp.Tool{Name: "ask"}, func(ctx context.Context, req *mcp.CallToolRequest, _ any) (*mcp.CallToolResult, any, error) {
		_, err := req.Session.Elicit(ctx, &mcp.ElicitParams{Message: "never answered", RequestedSchema: &jsonschema.Schema{Type: "object", Properties: map[string]*jsonschema.Schema{"x": {Type: "string"}}}})
		ended <- "ask"
		return nil, nil, err
	})
	hs := httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, nil))
	t.Cleanup(hs.Close)
	e := startEdge(t, openPolicy+"backends:\n  - name: b\n    http:\n      url: \""+hs.URL+"\"\n    timeout: 2s\n", nil)
	waitTools(t, connectModern(t, e.URL, &clientRecorder{}), 2)
	body := func(tool, extra string) string {
		return `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"b__` + tool + `","arguments":{}` + extra + `,` + fmt.Sprintf(modernMeta, `{"elicitation":{}}`) + `}}`
	}

	// The client gives up on a call in flight.
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	req, _ := http.NewRequestWithContext(ctx, "POST", e.URL, strings.NewReader(body("wait", "")))
	for k, v := range modernHeaders("tools/call", "b__wait") {
		req.Header.Set(k, v)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
	}
	cancel()
	select {
	case <-ended:
	case <-time.After(1500 * time.Millisecond):
		t.Error("the backend's call was not cancelled when the client closed its stream (before the 2s timeout)")
	}

	// The client never answers the question.
	_, b := post(t, e, body("ask", ""), modernHeaders("tools/call", "b__ask"))
	res, _ := sseResult(t, b)["result"].(map[string]any)
	state, _ := res["requestState"].(string)
	if res["resultType"] != "input_required" || state == "" {
		t.Fatalf("no input round: %s", b)
	}
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
		t.Fatal("the parked call did not end with the backend's 2s timeout")
	}
	_, b = post(t, e, body("ask", `,"inputResponses":{"mcpgw-1":{"action":"accept","content":{"x":"late"}}},"requestState":"`+state+`"`), modernHeaders("tools/call", "b__ask"))
	if m := fmt.Sprint(sseResult(t, b)["error"]); !strings.Contains(m, "expired") && !strings.Contains(m, "ended") {
		t.Errorf("a retry after the call expired: %s", b)
	}
}
