package dataplane_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/jsonschema-go/jsonschema"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgw/mcpgw/dataplane"
	"github.com/mcpgw/mcpgw/internal/audit"
	"github.com/mcpgw/mcpgw/internal/policy"
)

// keyedPolicy is openPolicy plus named principals with keys, all allowed
// everything, and an audit file: for tests that read what the edge
// recorded about whom.
func keyedPolicy(t *testing.T, auditFile string, names ...string) (string, map[string]string) {
	t.Helper()
	keys := map[string]string{}
	var b strings.Builder
	b.WriteString("auth: {anonymous: {principal: anonymous}}\nroles:\n  - name: everything\n    rules: [{effect: allow}]\nbindings:\n  - {role: everything, subjects: [\"user:anonymous\"")
	for _, n := range names {
		fmt.Fprintf(&b, ", \"user:%s\"", n)
	}
	b.WriteString("]}\nprincipals:\n")
	for _, n := range names {
		key, err := policy.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		h := policy.HashKey(key)
		keys[n] = key
		fmt.Fprintf(&b, "  - {name: %s, api_key_sha256: %s}\n", n, hex.EncodeToString(h[:]))
	}
	fmt.Fprintf(&b, "audit: {file: %q, durability: sync}\n", auditFile)
	return b.String(), keys
}

// send makes one raw HTTP request to the edge.
func send(t *testing.T, e *edge, method, body string, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.URL, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json, text/event-stream")
	for k, v := range hdr {
		switch {
		case k == "Host":
			req.Host = v
		case v == "":
			req.Header.Del(k)
		default:
			req.Header.Set(k, v)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

// onlyEvent waits for the event with id and checks it is the only one
// with that id (a refusal recorded twice would repeat it).
func onlyEvent(t *testing.T, path, id string) audit.Event {
	t.Helper()
	ev := findEvent(t, path, id, func(ev audit.Event) bool { return ev.ID.String() == id })
	time.Sleep(30 * time.Millisecond)
	n := 0
	for _, ev := range auditEvents(t, path) {
		if ev.ID.String() == id {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d events with id %s, want 1", n, id)
	}
	return ev
}

// Issue 5: one audit event per request, rejected attempts included
// (DESIGN §6). Every way the edge turns an HTTP request away before
// serving it yields exactly one event with the refusal's status, and the
// client gets its id in Mcpgw-Audit-Id.
func TestEveryRefusalIsAudited(t *testing.T) {
	auditFile := filepath.Join(t.TempDir(), "audit.jsonl")
	cfg, keys := keyedPolicy(t, auditFile, "alice")
	e := startEdge(t, cfg+"backends:\n"+stdioBackend("ev"), func(c *dataplane.Config) { c.MaxBodyBytes = 1 << 10 })

	// A session of anonymous's, and one of alice's.
	resp, body := post(t, e, initBody, nil)
	anonSID := resp.Header.Get("Mcp-Session-Id")
	resp, body2 := post(t, e, initBody, map[string]string{"Authorization": "Bearer " + keys["alice"]})
	aliceSID := resp.Header.Get("Mcp-Session-Id")
	if anonSID == "" || aliceSID == "" {
		t.Fatalf("initialize: %s / %s", body, body2)
	}
	wrong, err := policy.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	const traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	alice := "Bearer " + keys["alice"]
	ping := `{"jsonrpc":"2.0","id":1,"method":"ping"}`
	modernList := fmt.Sprintf(`{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{`+modernMeta+`}}`, `{}`)
	tests := []struct {
		name, verb, body string
		hdr              map[string]string
		status           int
		outcome          string
		method           string
		principal        string
		session          string
		trace            string
	}{
		{"bad origin", "POST", initBody, map[string]string{"Origin": "https://evil.example"}, 403, audit.StatusDenied, "POST", "", "", ""},
		{"foreign host", "POST", initBody, map[string]string{"Host": "evil.example:8080"}, 403, audit.StatusDenied, "POST", "", "", ""},
		{"verb not allowed", "PUT", ping, nil, 405, audit.StatusError, "PUT", "", "", ""},
		{"content type", "POST", ping, map[string]string{"Content-Type": "text/plain"}, 415, audit.StatusError, "POST", "", "", ""},
		{"oversized body", "POST", `{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":"` + strings.Repeat("a", 2<<10) + `"}}`, map[string]string{"Mcp-Session-Id": anonSID}, 413, audit.StatusError, "POST", "", "", ""},
		{"malformed JSON", "POST", `{"jsonrpc":"2.0","id":1,"method":`, map[string]string{"Mcp-Session-Id": anonSID, "Traceparent": traceparent}, 400, audit.StatusError, "POST", "", "", "0af7651916cd43dd8448eb211c80319c"},
		{"duplicate key", "POST", `{"jsonrpc":"2.0","id":1,"method":"ping","method":"tools/list"}`, map[string]string{"Mcp-Session-Id": anonSID}, 400, audit.StatusError, "POST", "", "", ""},
		{"wrong key", "POST", ping, map[string]string{"Authorization": "Bearer " + wrong}, 401, audit.StatusDenied, "ping", "", "", ""},
		{"wrong key, notification", "POST", `{"jsonrpc":"2.0","method":"notifications/initialized"}`, map[string]string{"Authorization": "Bearer " + wrong, "Mcp-Session-Id": anonSID}, 401, audit.StatusDenied, "notifications/initialized", "", "", ""},
		{"missing session", "POST", ping, map[string]string{"Authorization": alice}, 400, audit.StatusError, "ping", "alice", "", ""},
		{"unknown session", "POST", ping, map[string]string{"Authorization": alice, "Mcp-Session-Id": "0123456789abcdef0123456789abcdef", "Traceparent": traceparent}, 404, audit.StatusError, "ping", "alice", "0123456789abcdef0123456789abcdef", "0af7651916cd43dd8448eb211c80319c"},
		{"another principal's session", "POST", ping, map[string]string{"Authorization": alice, "Mcp-Session-Id": anonSID}, 404, audit.StatusDenied, "ping", "alice", anonSID, ""},
		{"wrong protocol version", "POST", ping, map[string]string{"Authorization": alice, "Mcp-Session-Id": aliceSID, "Mcp-Protocol-Version": "2025-11-25"}, 400, audit.StatusError, "ping", "alice", aliceSID, ""},
		{"missing Mcp-Method", "POST", modernList, map[string]string{"Mcp-Protocol-Version": "2026-07-28"}, 400, audit.StatusError, "tools/list", "anonymous", "", ""},
		{"Mcp-Method mismatch", "POST", modernList, modernHeaders("tools/call", ""), 400, audit.StatusError, "tools/list", "anonymous", "", ""},
		{"unsupported version", "POST", strings.Replace(modernList, "2026-07-28", "2099-01-01", 1), modernHeaders("tools/list", ""), 400, audit.StatusError, "tools/list", "anonymous", "", ""},
		{"GET wrong key", "GET", "", map[string]string{"Authorization": "Bearer " + wrong, "Mcp-Session-Id": anonSID}, 401, audit.StatusDenied, "GET", "", "", ""},
		{"DELETE wrong key", "DELETE", "", map[string]string{"Authorization": "Bearer " + wrong, "Mcp-Session-Id": anonSID}, 401, audit.StatusDenied, "DELETE", "", "", ""},
		{"GET without session", "GET", "", nil, 405, audit.StatusError, "GET", "", "", ""},
		{"DELETE without session", "DELETE", "", nil, 405, audit.StatusError, "DELETE", "", "", ""},
		{"GET without SSE", "GET", "", map[string]string{"Mcp-Session-Id": anonSID, "Accept": "application/json"}, 406, audit.StatusError, "GET", "", "", ""},
		{"GET unknown session", "GET", "", map[string]string{"Mcp-Session-Id": "0123456789abcdef0123456789abcdef"}, 404, audit.StatusError, "GET", "anonymous", "0123456789abcdef0123456789abcdef", ""},
		{"GET bad Last-Event-ID", "GET", "", map[string]string{"Mcp-Session-Id": anonSID, "Last-Event-ID": "x"}, 400, audit.StatusError, "GET", "anonymous", anonSID, ""},
		{"GET unknown stream", "GET", "", map[string]string{"Mcp-Session-Id": anonSID, "Last-Event-ID": "nosuch-3"}, 400, audit.StatusError, "GET", "anonymous", anonSID, ""},
		{"DELETE another principal's session", "DELETE", "", map[string]string{"Authorization": alice, "Mcp-Session-Id": anonSID}, 404, audit.StatusDenied, "DELETE", "alice", anonSID, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := send(t, e, tt.verb, tt.body, tt.hdr)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d (%s)", resp.StatusCode, tt.status, body)
			}
			id := resp.Header.Get("Mcpgw-Audit-Id")
			if id == "" {
				t.Fatalf("%d without Mcpgw-Audit-Id", resp.StatusCode)
			}
			ev := onlyEvent(t, auditFile, id)
			if ev.Status != tt.outcome || ev.Decision != audit.DecisionDeny || ev.Method != tt.method || ev.Principal != tt.principal ||
				ev.SessionID != tt.session || ev.TraceID != tt.trace || ev.Transport != "http" {
				t.Errorf("audited as %+v\nwant status %s, method %q, principal %q, session %q, trace %q", ev, tt.outcome, tt.method, tt.principal, tt.session, tt.trace)
			}
			if want := fmt.Sprintf("HTTP %d: mcpgw: ", tt.status); !strings.HasPrefix(ev.Error, want) {
				t.Errorf("error %q, want it to start with %q", ev.Error, want)
			}
		})
	}
	raw, err := os.ReadFile(auditFile)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(raw), wrong) || strings.Contains(string(raw), keys["alice"]) {
		t.Error("an API key is in the audit log")
	}
	// The sessions the refusals named are untouched.
	if resp, body := post(t, e, ping, map[string]string{"Mcp-Session-Id": anonSID}); resp.StatusCode != 200 {
		t.Errorf("anonymous's session after the refusals: %d %s", resp.StatusCode, body)
	}

	// A GET stream and a DELETE that are served are requests too.
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", e.URL, nil)
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Mcp-Session-Id", aliceSID)
	req.Header.Set("Authorization", alice)
	req.Header.Set("Traceparent", traceparent)
	gresp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	gid := gresp.Header.Get("Mcpgw-Audit-Id")
	cancel()
	gresp.Body.Close()
	dresp, _ := send(t, e, "DELETE", "", map[string]string{"Authorization": alice, "Mcp-Session-Id": aliceSID})
	if gresp.StatusCode != 200 || dresp.StatusCode != 204 || gid == "" || dresp.Header.Get("Mcpgw-Audit-Id") == "" {
		t.Fatalf("GET %d %q, DELETE %d %q", gresp.StatusCode, gid, dresp.StatusCode, dresp.Header.Get("Mcpgw-Audit-Id"))
	}
	for method, id := range map[string]string{"GET": gid, "DELETE": dresp.Header.Get("Mcpgw-Audit-Id")} {
		ev := onlyEvent(t, auditFile, id)
		if ev.Method != method || ev.Status != audit.StatusOK || ev.Decision != audit.DecisionAllow || ev.Principal != "alice" || ev.SessionID != aliceSID {
			t.Errorf("%s audited as %+v", method, ev)
		}
		if method == "GET" && ev.TraceID != "0af7651916cd43dd8448eb211c80319c" {
			t.Errorf("GET trace_id %q", ev.TraceID)
		}
	}
}

// traceServer is a legacy Go SDK server over HTTP whose tool "echo"
// answers; it records the traceparent header of every tools/call POST.
type traceServer struct {
	URL string
	mu  sync.Mutex // guards seen
	// seen holds the traceparent (or "-" for none) of each tools/call.
	seen []string
}

func newTraceServer(t *testing.T) *traceServer {
	s := mcp.NewServer(&mcp.Implementation{Name: "traced", Version: "1"}, nil)
	mcp.AddTool(s, &mcp.Tool{Name: "echo"}, func(context.Context, *mcp.CallToolRequest, any) (*mcp.CallToolResult, any, error) {
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "echo"}}}, nil, nil
	})
	ts := &traceServer{}
	h := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, nil)
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == "POST" {
			b, _ := io.ReadAll(r.Body)
			r.Body = io.NopCloser(strings.NewReader(string(b)))
			if strings.Contains(string(b), `"tools/call"`) {
				tp := r.Header.Get("Traceparent")
				if tp == "" {
					tp = "-"
				}
				ts.mu.Lock()
				ts.seen = append(ts.seen, tp)
				ts.mu.Unlock()
			}
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(hs.Close)
	ts.URL = hs.URL
	return ts
}

func (ts *traceServer) last() string {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if len(ts.seen) == 0 {
		return ""
	}
	return ts.seen[len(ts.seen)-1]
}

// trace_id comes from the W3C traceparent a request carries: params._meta
// (MCP's convention, SEP-414) before the HTTP header; a malformed one is
// ignored and the request served. The edge sends the traceparent on to an
// HTTP backend, so the client's trace continues there.
func TestTraceparent(t *testing.T) {
	auditFile := filepath.Join(t.TempDir(), "audit.jsonl")
	cfg, _ := keyedPolicy(t, auditFile)
	backend := newTraceServer(t)
	e := startEdge(t, cfg+"backends:\n"+httpBackend("b", backend.URL, "-"), nil)
	waitTools(t, connect(t, e.URL, nil), 1)

	resp, _ := post(t, e, initBody, nil)
	sid := resp.Header.Get("Mcp-Session-Id")
	post(t, e, `{"jsonrpc":"2.0","method":"notifications/initialized"}`, map[string]string{"Mcp-Session-Id": sid})
	const (
		headerTP = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
		metaTP   = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	)
	legacyCall := func(meta string) string {
		return `{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"b__echo","arguments":{}` + meta + `}}`
	}
	modernCall := func(tp string) string {
		return `{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"b__echo","arguments":{},"_meta":{"traceparent":"` + tp + `","io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientInfo":{"name":"raw","version":"1"},"io.modelcontextprotocol/clientCapabilities":{}}}}`
	}
	withSession := func(tp string) map[string]string {
		return map[string]string{"Mcp-Session-Id": sid, "Traceparent": tp}
	}
	modernHdr := func(tp string) map[string]string {
		h := modernHeaders("tools/call", "b__echo")
		h["Traceparent"] = tp
		return h
	}
	tests := []struct {
		name     string
		body     string
		hdr      map[string]string
		trace    string // want in the event
		upstream string // traceparent the backend saw ("-": none)
	}{
		{"legacy, header", legacyCall(""), withSession(headerTP), "4bf92f3577b34da6a3ce929d0e0e4736", headerTP},
		{"legacy, _meta before header", legacyCall(`,"_meta":{"traceparent":"` + metaTP + `"}`), withSession(headerTP), "0af7651916cd43dd8448eb211c80319c", metaTP},
		{"legacy, malformed header", legacyCall(""), withSession(strings.ToUpper(headerTP)), "", "-"},
		{"legacy, all-zero trace id", legacyCall(""), withSession("00-00000000000000000000000000000000-00f067aa0ba902b7-01"), "", "-"},
		{"legacy, version ff", legacyCall(""), withSession("ff" + headerTP[2:]), "", "-"},
		{"legacy, none", legacyCall(""), map[string]string{"Mcp-Session-Id": sid}, "", "-"},
		{"modern, _meta", modernCall(metaTP), modernHdr(""), "0af7651916cd43dd8448eb211c80319c", metaTP},
		{"modern, malformed _meta, valid header", modernCall("00-xyz"), modernHdr(headerTP), "4bf92f3577b34da6a3ce929d0e0e4736", headerTP},
		{"modern, later version with more fields", modernCall("01" + metaTP[2:] + "-extra"), modernHdr(""), "0af7651916cd43dd8448eb211c80319c", "01" + metaTP[2:] + "-extra"},
		{"modern, version 00 with more fields", modernCall(metaTP + "-extra"), modernHdr(""), "", "-"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := post(t, e, tt.body, tt.hdr)
			if resp.StatusCode != 200 || !strings.Contains(body, `"text":"echo"`) {
				t.Fatalf("call: %d %s", resp.StatusCode, body)
			}
			ev := onlyEvent(t, auditFile, resp.Header.Get("Mcpgw-Audit-Id"))
			if ev.TraceID != tt.trace || ev.Status != audit.StatusOK {
				t.Errorf("event trace_id %q status %s, want %q ok", ev.TraceID, ev.Status, tt.trace)
			}
			if got := backend.last(); got != tt.upstream {
				t.Errorf("backend saw traceparent %q, want %q", got, tt.upstream)
			}
		})
	}
}

// askServer is a legacy Go SDK server over HTTP whose tool "ask" elicits
// once and answers with what it got; a call whose question is withdrawn
// (the call cancelled) is reported on the channel.
func askServer(t *testing.T) (string, chan struct{}) {
	s := mcp.NewServer(&mcp.Implementation{Name: "asker", Version: "1"}, nil)
	withdrawn := make(chan struct{}, 8)
	mcp.AddTool(s, &mcp.Tool{Name: "ask"}, func(ctx context.Context, req *mcp.CallToolRequest, _ any) (*mcp.CallToolResult, any, error) {
		r, err := req.Session.Elicit(ctx, &mcp.ElicitParams{Message: "x?", RequestedSchema: &jsonschema.Schema{Type: "object", Properties: map[string]*jsonschema.Schema{"x": {Type: "string"}}}})
		if err != nil {
			// The edge refuses the question as it cancels the call; the
			// cancellation follows.
			select {
			case <-ctx.Done():
				withdrawn <- struct{}{}
			case <-time.After(5 * time.Second):
			}
			return nil, nil, err
		}
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "got " + fmt.Sprint(r.Content["x"])}}}, nil, nil
	})
	hs := httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, nil))
	t.Cleanup(hs.Close)
	return hs.URL, withdrawn
}

// Issue 4: a 2026-07-28 client of a legacy backend that never retries
// cannot hold an unbounded number of upstream calls parked: beyond the
// per-principal limit a call that would park gets a clear error (and the
// backend's call is withdrawn), other principals are unaffected, and
// answering one frees a place.
func TestBridgeParkedLimit(t *testing.T) {
	auditFile := filepath.Join(t.TempDir(), "audit.jsonl")
	cfg, keys := keyedPolicy(t, auditFile, "alice", "bob")
	url, withdrawn := askServer(t)
	e := startEdge(t, cfg+"backends:\n  - name: b\n    http:\n      url: \""+url+"\"\n    timeout: 20s\n",
		func(c *dataplane.Config) { c.MaxParkedPerPrincipal = 2 })
	waitTools(t, connect(t, e.URL, nil), 1)
	call := func(who, extra string) map[string]any {
		h := modernHeaders("tools/call", "b__ask")
		h["Authorization"] = "Bearer " + keys[who]
		body := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"b__ask","arguments":{}` + extra + `,` + fmt.Sprintf(modernMeta, `{"elicitation":{}}`) + `}}`
		_, b := post(t, e, body, h)
		return sseResult(t, b)
	}
	parked := func(m map[string]any) string {
		res, _ := m["result"].(map[string]any)
		if res["resultType"] != "input_required" {
			return ""
		}
		s, _ := res["requestState"].(string)
		return s
	}
	first := parked(call("alice", ""))
	if first == "" || parked(call("alice", "")) == "" {
		t.Fatal("alice's first two calls did not park")
	}
	refused := call("alice", "")
	msg := fmt.Sprint(refused["error"])
	if !strings.Contains(msg, "-32600") || !strings.Contains(msg, `principal "alice" already has 2 bridged calls waiting for input`) {
		t.Fatalf("alice's third call: %v", refused)
	}
	select {
	case <-withdrawn:
	case <-time.After(5 * time.Second):
		t.Error("the refused call was not cancelled at the backend")
	}
	if parked(call("bob", "")) == "" {
		t.Error("bob's call did not park while alice is at her limit")
	}
	resp, err := http.Get(e.Base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"mcpgw_edge_bridge_parked_calls 3\n", "mcpgw_edge_bridge_parked_refused_total 1\n"} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	findEvent(t, auditFile, "the refused park", func(ev audit.Event) bool {
		return ev.Principal == "alice" && ev.Status == audit.StatusError && strings.Contains(ev.Error, "waiting for input")
	})
	// Answering one of alice's calls ends it and frees a place.
	done := call("alice", `,"inputResponses":{"mcpgw-1":{"action":"accept","content":{"x":"y"}}},"requestState":"`+first+`"`)
	if !strings.Contains(fmt.Sprint(done["result"]), "got y") {
		t.Fatalf("answering the first call: %v", done)
	}
	if parked(call("alice", "")) == "" {
		t.Error("alice's call did not park after one of hers ended")
	}
}

// Over stdio the trace context can only come in params._meta; it reaches
// the audit event and an HTTP backend the same way.
func TestTraceparentStdio(t *testing.T) {
	auditFile := filepath.Join(t.TempDir(), "audit.jsonl")
	cfg, _ := keyedPolicy(t, auditFile)
	backend := newTraceServer(t)
	path := filepath.Join(t.TempDir(), "mcpgw.yaml")
	writeConfig(t, path, cfg+"backends:\n"+httpBackend("b", backend.URL, "-"))
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- dataplane.Run(ctx, dataplane.Config{ConfigFile: path, StateDir: t.TempDir(), Stdio: true, Stdin: inR, Stdout: outW, Logger: testLogger()})
		outW.Close()
	}()
	t.Cleanup(func() {
		cancel()
		inW.Close()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			t.Error("edge did not stop")
		}
	})
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(outR)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	reply := func(id string) string {
		t.Helper()
		deadline := time.After(10 * time.Second)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatal("stdout closed")
				}
				if strings.Contains(l, `"id":`+id+`,`) || strings.HasSuffix(l, `"id":`+id+`}`) {
					return l
				}
			case <-deadline:
				t.Fatalf("no reply to %s", id)
			}
		}
	}
	write := func(s string) {
		if _, err := io.WriteString(inW, s+"\n"); err != nil {
			t.Fatal(err)
		}
	}
	write(initBody)
	reply("1")
	write(`{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	const tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	deadline := time.Now().Add(10 * time.Second)
	for id := 2; ; id++ {
		// The backend may not be listed yet right after start.
		write(fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"b__echo","arguments":{},"_meta":{"traceparent":%q}}}`, id, tp))
		if l := reply(fmt.Sprint(id)); strings.Contains(l, `"text":"echo"`) {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("stdio call: %s", l)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := backend.last(); got != tp {
		t.Errorf("backend saw traceparent %q, want %q", got, tp)
	}
	// A malformed line is a refused request, audited too.
	write(`{"jsonrpc":"2.0","id":99,"method":"ping","method":"tools/list"}`)
	if l := reply("99"); !strings.Contains(l, "-32600") {
		t.Errorf("duplicate key over stdio: %s", l)
	}
	findEvent(t, auditFile, "the malformed stdio line", func(ev audit.Event) bool {
		return ev.Transport == "stdio" && ev.Status == audit.StatusError && strings.Contains(ev.Error, "duplicate")
	})
	findEvent(t, auditFile, "the traced stdio call", func(ev audit.Event) bool {
		return ev.Transport == "stdio" && ev.Method == "tools/call" && ev.Status == audit.StatusOK && ev.TraceID == "0af7651916cd43dd8448eb211c80319c"
	})
}
