package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// serve runs h on a loopback port for the duration of the test.
func serve(t testing.TB, h http.Handler) *Server {
	t.Helper()
	s, err := Listen("127.0.0.1:0", h)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := s.Run(ctx); err != nil {
			t.Errorf("server %s: %v", s.Addr(), err)
		}
	})
	t.Cleanup(func() { cancel(); wg.Wait() })
	return s
}

// proxyTo serves the reference reverse proxy in front of backend.
func proxyTo(t testing.TB, backend *Server, conns int) *Server {
	t.Helper()
	u, err := url.Parse(backend.URL())
	if err != nil {
		t.Fatal(err)
	}
	p := NewReverseProxy(u, conns)
	t.Cleanup(p.Transport.(*http.Transport).CloseIdleConnections)
	return serve(t, p)
}

func post(t *testing.T, url, sid, body string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if sid != "" {
		req.Header.Set("Mcp-Session-Id", sid)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

// TestEchoProtocol checks the echo backend's legacy Streamable HTTP
// behaviour (2025-11-25 basic/transports and basic/lifecycle) with a plain
// HTTP client, so the harness's own client is not checking itself.
func TestEchoProtocol(t *testing.T) {
	e := NewEcho()
	s := serve(t, e)

	resp, body := post(t, s.URL(), "", `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"0"}}}`)
	sid := resp.Header.Get("Mcp-Session-Id")
	if resp.StatusCode != 200 || sid == "" {
		t.Fatalf("initialize: %d, session %q, %s", resp.StatusCode, sid, body)
	}
	if !strings.Contains(body, `"protocolVersion":"2025-06-18"`) {
		t.Errorf("initialize did not agree on the client's known version: %s", body)
	}
	if resp.ContentLength <= 0 {
		t.Errorf("initialize reply without Content-Length")
	}
	if resp, _ := post(t, s.URL(), sid, `{"jsonrpc":"2.0","method":"notifications/initialized"}`); resp.StatusCode != http.StatusAccepted {
		t.Errorf("notification: %d, want 202", resp.StatusCode)
	}

	resp, body = post(t, s.URL(), sid, `{"jsonrpc":"2.0","id":"a\"b","method":"tools/call","params":{"name":"echo","arguments":{"text":"hé \"quoted\"\n","n":[1,2]}}}`)
	var call struct {
		ID     string `json:"id"`
		Result struct {
			Content []struct{ Type, Text string }
			IsError bool
		}
	}
	if err := json.Unmarshal([]byte(body), &call); err != nil || resp.StatusCode != 200 {
		t.Fatalf("tools/call: %d %s: %v", resp.StatusCode, body, err)
	}
	if call.ID != `a"b` || len(call.Result.Content) != 1 || call.Result.Content[0].Type != "text" {
		t.Fatalf("tools/call reply: %s", body)
	}
	var echoed map[string]any
	if err := json.Unmarshal([]byte(call.Result.Content[0].Text), &echoed); err != nil {
		t.Fatalf("echoed text is not the arguments: %q: %v", call.Result.Content[0].Text, err)
	}
	if echoed["text"] != "hé \"quoted\"\n" || fmt.Sprint(echoed["n"]) != "[1 2]" {
		t.Errorf("echoed %v", echoed)
	}
	if e.Calls() != 1 {
		t.Errorf("Calls = %d, want 1", e.Calls())
	}

	for _, tc := range []struct {
		name, sid, body string
		status          int
		contains        string
	}{
		{"tools/list", sid, `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`, 200, `"name":"echo"`},
		{"ping", sid, `{"jsonrpc":"2.0","id":3,"method":"ping"}`, 200, `"result":{}`},
		{"unknown tool", sid, `{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"nope"}}`, 200, `"code":-32602`},
		{"unknown method", sid, `{"jsonrpc":"2.0","id":5,"method":"nope"}`, 200, `"code":-32601`},
		{"missing session", "", `{"jsonrpc":"2.0","id":6,"method":"ping"}`, 400, ""},
		{"unknown session", "nope", `{"jsonrpc":"2.0","id":7,"method":"ping"}`, 404, ""},
		{"malformed", sid, `{"jsonrpc":"2.0","id":8,`, 400, `"code":-32700`},
		{"duplicate key", sid, `{"jsonrpc":"2.0","id":9,"method":"ping","method":"x"}`, 400, `"error"`},
		{"response from client", sid, `{"jsonrpc":"2.0","id":10,"result":{}}`, 202, ""},
	} {
		resp, body := post(t, s.URL(), tc.sid, tc.body)
		if resp.StatusCode != tc.status || !strings.Contains(body, tc.contains) {
			t.Errorf("%s: %d %s, want %d containing %q", tc.name, resp.StatusCode, body, tc.status, tc.contains)
		}
	}

	resp, err := http.Get(s.URL())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET: %d, want 405", resp.StatusCode)
	}
	del := func() int {
		req, _ := http.NewRequest(http.MethodDelete, s.URL(), nil)
		req.Header.Set("Mcp-Session-Id", sid)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := del(); got != http.StatusNoContent {
		t.Errorf("DELETE: %d, want 204", got)
	}
	if got := del(); got != http.StatusNotFound {
		t.Errorf("second DELETE: %d, want 404", got)
	}
	if e.Sessions() != 0 {
		t.Errorf("Sessions = %d after DELETE", e.Sessions())
	}
}

// checkSummary asserts that a clean run's counts add up.
func checkSummary(t *testing.T, sum Summary, calls int64) {
	t.Helper()
	if sum.Errors != 0 || sum.SessionErrors != 0 {
		t.Errorf("errors %d, session errors %d: %s", sum.Errors, sum.SessionErrors, sum.FirstError)
	}
	if sum.Calls != calls || sum.OK+sum.Errors != sum.Calls || uint64(sum.OK) != sum.Hist.Count() {
		t.Errorf("calls %d ok %d errors %d histogram %d, want %d calls", sum.Calls, sum.OK, sum.Errors, sum.Hist.Count(), calls)
	}
	if sum.CallsPerS <= 0 || sum.P50us <= 0 || sum.P50us > sum.P90us || sum.P90us > sum.P99us || sum.P99us > sum.MaxUs {
		t.Errorf("implausible figures: %+v", sum)
	}
}

// TestRunDirectAndThroughProxy runs the load generator against the echo
// backend directly and through the reference proxy and checks that every
// call reached the backend and the counts add up.
func TestRunDirectAndThroughProxy(t *testing.T) {
	e := NewEcho()
	backend := serve(t, e)
	proxy := proxyTo(t, backend, 8)
	for _, target := range []struct{ name, url string }{{"direct", backend.URL()}, {"proxy", proxy.URL()}} {
		t.Run(target.name, func(t *testing.T) {
			before := e.Calls()
			sum, err := Run(t.Context(), Config{URL: target.url, Sessions: 8, Calls: 400})
			if err != nil {
				t.Fatal(err)
			}
			checkSummary(t, sum, 400)
			if got := e.Calls() - before; got != 400 {
				t.Errorf("backend answered %d calls, want 400", got)
			}
			if e.Sessions() != 0 {
				t.Errorf("%d sessions left open on the backend", e.Sessions())
			}
			var out map[string]any
			b, _ := json.Marshal(sum)
			if err := json.Unmarshal(b, &out); err != nil {
				t.Fatal(err)
			}
			for _, k := range []string{"target", "sessions", "calls", "errors", "duration_s", "calls_per_s", "p50_us", "p90_us", "p99_us", "max_us"} {
				if _, ok := out[k]; !ok {
					t.Errorf("summary JSON lacks %q: %s", k, b)
				}
			}
		})
	}
}

// TestRunDuration checks that a duration-bounded run stops on time.
func TestRunDuration(t *testing.T) {
	backend := serve(t, NewEcho())
	sum, err := Run(t.Context(), Config{URL: backend.URL(), Sessions: 2, Duration: 150 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if sum.DurationS < 0.15 || sum.DurationS > 2 || sum.OK == 0 || sum.Errors != 0 {
		t.Errorf("duration run: %+v", sum)
	}
}

// TestRunCountsErrors checks that failures are counted, not hidden: a
// JSON-RPC error, an isError result and a dead session each count.
func TestRunCountsErrors(t *testing.T) {
	e := NewEcho()
	backend := serve(t, e)
	sum, err := Run(t.Context(), Config{URL: backend.URL(), Sessions: 3, Calls: 30, Tool: "nope"})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Calls != 30 || sum.Errors != 30 || sum.OK != 0 || sum.CallsPerS != 0 || !strings.Contains(sum.FirstError, "-32602") {
		t.Errorf("unknown tool: %+v", sum)
	}

	isError := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.Header.Get("Content-Type"), "json") && r.Header.Get("Mcp-Session-Id") != "" {
			b, _ := io.ReadAll(r.Body)
			if bytes.Contains(b, []byte("tools/call")) {
				w.Header().Set("Content-Type", "application/json")
				// The id of the first call of a session is 1.
				io.WriteString(w, `{"jsonrpc":"2.0","id":1,"result":{"content":[],"isError":true}}`)
				return
			}
			r.Body = io.NopCloser(bytes.NewReader(b))
		}
		e.ServeHTTP(w, r)
	})
	s2 := serve(t, isError)
	sum, err = Run(t.Context(), Config{URL: s2.URL(), Sessions: 1, Calls: 1})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Errors != 1 || !strings.Contains(sum.FirstError, "isError") {
		t.Errorf("isError result: %+v", sum)
	}

	if _, err := Run(t.Context(), Config{URL: "http://127.0.0.1:1/mcp", Sessions: 1, Calls: 1}); err == nil {
		t.Error("a run where no session opens must fail")
	}
	for _, bad := range []Config{
		{URL: backend.URL(), Sessions: 0, Calls: 1},
		{URL: backend.URL(), Sessions: 1},
		{URL: "ftp://x", Sessions: 1, Calls: 1},
		{URL: backend.URL(), Sessions: 1, Duration: 2 * MaxDuration},
	} {
		if _, err := Run(t.Context(), bad); err == nil {
			t.Errorf("config %+v accepted", bad)
		}
	}
}

// TestSessionSSE checks that replies sent as an SSE stream, with a
// notification before the response, are read as MCP servers send them
// (2025-11-25 basic/transports "Sending Messages to the Server").
func TestSessionSSE(t *testing.T) {
	e := NewEcho()
	sse := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &recorder{h: http.Header{}}
		e.ServeHTTP(rec, r)
		if rec.status != 200 || r.Method != http.MethodPost {
			for k, v := range rec.h {
				w.Header()[k] = v
			}
			w.WriteHeader(rec.status)
			w.Write(rec.body.Bytes())
			return
		}
		if sid := rec.h.Get("Mcp-Session-Id"); sid != "" {
			w.Header().Set("Mcp-Session-Id", sid)
		}
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprintf(w, ": keep-alive\n\nevent: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progressToken\":1,\"progress\":1}}\n\n")
		fmt.Fprintf(w, "id: 7\ndata: %s\r\n\r\n", rec.body.Bytes())
	})
	s := serve(t, sse)
	sum, err := Run(t.Context(), Config{URL: s.URL(), Sessions: 2, Calls: 20})
	if err != nil {
		t.Fatal(err)
	}
	checkSummary(t, sum, 20)
}

type recorder struct {
	h      http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header         { return r.h }
func (r *recorder) WriteHeader(s int)           { r.status = s }
func (r *recorder) Write(b []byte) (int, error) { return r.body.Write(b) }

func TestHistogram(t *testing.T) {
	for i := range histBuckets {
		if got := bucket(bucketHigh(i)); got != i {
			t.Fatalf("bucket(bucketHigh(%d)) = %d", i, got)
		}
	}
	for _, v := range []uint64{0, 1, 127, 128, 129, 1000, 123456, 1 << 30, 1<<40 - 1} {
		hi := bucketHigh(bucket(v))
		if hi < v || float64(hi-v) > float64(v)/histSub {
			t.Errorf("value %d reported as %d: more than 1/%d off", v, hi, histSub)
		}
	}
	var h Histogram
	for v := 1; v <= 10000; v++ {
		h.Record(time.Duration(v) * time.Microsecond)
	}
	for _, q := range []float64{0.5, 0.9, 0.99} {
		want := q * 10000 * float64(time.Microsecond)
		got := float64(h.Quantile(q))
		if got < want || got > want*(1+1.0/histSub) {
			t.Errorf("q%.2f = %v, want %v within 1/%d", q, time.Duration(got), time.Duration(want), histSub)
		}
	}
	if h.Max() != 10*time.Millisecond || h.Quantile(1) != h.Max() || h.Count() != 10000 {
		t.Errorf("max %v q1 %v count %d", h.Max(), h.Quantile(1), h.Count())
	}
	var m Histogram
	m.Record(time.Hour)
	m.Merge(&h)
	if m.Count() != 10001 || m.Max() != time.Hour {
		t.Errorf("merge: count %d max %v", m.Count(), m.Max())
	}
}

func TestMember(t *testing.T) {
	obj := []byte(` { "a" : {"isError":true, "s":"}\"{"}, "b":[1,{"c":2}] ,"isError": false , "n":-1.5e3}`)
	for key, want := range map[string]string{"a": `{"isError":true, "s":"}\"{"}`, "b": `[1,{"c":2}]`, "isError": "false", "n": "-1.5e3", "c": ""} {
		if got := string(member(obj, key)); got != want {
			t.Errorf("member %q = %q, want %q", key, got, want)
		}
	}
}

func TestRSSAndCPUTime(t *testing.T) {
	rss, err := RSS(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if rss < 1<<20 || rss > 1<<40 {
		t.Errorf("RSS %d bytes is implausible for a Go test binary", rss)
	}
	if _, err := RSS(-1); err == nil {
		t.Error("RSS of a nonexistent process must fail")
	}
	// Burn a little CPU so at least one clock tick is on the books.
	for start := time.Now(); time.Since(start) < 30*time.Millisecond; {
	}
	if cpu, err := CPUTime(os.Getpid()); err != nil || cpu <= 0 || cpu > time.Hour {
		t.Errorf("CPUTime of this process = %v, %v", cpu, err)
	}
	if _, err := CPUTime(-1); err == nil {
		t.Error("CPUTime of a nonexistent process must fail")
	}
}

// TestReverseProxyConfig pins the reference hop to DESIGN §11's careful
// operator: default FlushInterval, a BufferPool, an idle pool covering the
// concurrency, no compression, no proxy from the environment.
func TestReverseProxyConfig(t *testing.T) {
	u, _ := url.Parse("http://127.0.0.1:9/mcp")
	p := NewReverseProxy(u, 64)
	tr, ok := p.Transport.(*http.Transport)
	if !ok {
		t.Fatalf("transport is %T", p.Transport)
	}
	if p.FlushInterval != 0 || p.BufferPool == nil || tr.MaxIdleConnsPerHost < 64 || tr.MaxIdleConns < 64 ||
		!tr.DisableCompression || tr.Proxy != nil {
		t.Errorf("proxy %+v, transport %+v", p, tr)
	}
	b := p.BufferPool.Get()
	if len(b) != 32<<10 {
		t.Errorf("buffer of %d bytes", len(b))
	}
	p.BufferPool.Put(b)
	if again := p.BufferPool.Get(); &again[0] != &b[0] {
		t.Error("a returned buffer is not reused")
	}
}
