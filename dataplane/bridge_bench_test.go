package dataplane_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mcpgw/mcpgw/dataplane"
	"github.com/mcpgw/mcpgw/dataplane/upstream"
	"github.com/mcpgw/mcpgw/internal/mcpwire"
)

// eraEcho is a minimal MCP server with one tool, echo, cheap enough not to
// be what a benchmark measures. modern: it serves stateless 2026-07-28
// requests (and legacy ones without a session, like go-sdk's stateless
// mode); otherwise it is a legacy server with sessions whose
// server/discover lists no 2026-07-28.
func eraEcho(tb testing.TB, modern bool) string {
	tb.Helper()
	var sid atomic.Int64
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.WriteHeader(http.StatusMethodNotAllowed)
			return
		}
		body, _ := io.ReadAll(r.Body)
		var env mcpwire.Envelope
		if err := mcpwire.Scan(body, &env); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if env.Kind != mcpwire.KindRequest {
			w.WriteHeader(http.StatusAccepted)
			return
		}
		isModern := r.Header.Get("Mcp-Protocol-Version") == "2026-07-28"
		var result string
		switch env.MethodString() {
		case "initialize":
			if !modern {
				w.Header().Set("Mcp-Session-Id", "s"+strconv.FormatInt(sid.Add(1), 10))
			}
			result = `{"protocolVersion":"2025-11-25","capabilities":{"tools":{}},"serverInfo":{"name":"era-echo","version":"1"}}`
		case "server/discover":
			v := `"2025-11-25"`
			if modern {
				v = `"2026-07-28",` + v
			}
			result = `{"resultType":"complete","supportedVersions":[` + v + `],"capabilities":{"tools":{}}}`
		case "tools/list":
			result = `{"tools":[{"name":"echo","inputSchema":{"type":"object"}}]}`
		case "tools/call":
			if isModern && !modern {
				http.Error(w, `{"jsonrpc":"2.0","id":`+string(env.ID)+`,"error":{"code":-32022,"message":"unsupported"}}`, http.StatusBadRequest)
				return
			}
			var b bytes.Buffer
			b.WriteString(`{"content":[{"type":"text","text":`)
			q, _ := json.Marshal(string(env.Arguments))
			b.Write(q)
			b.WriteString(`}]`)
			if isModern {
				b.WriteString(`,"resultType":"complete"`)
			}
			b.WriteString(`}`)
			result = b.String()
		default:
			result = `{}`
		}
		out := `{"jsonrpc":"2.0","id":` + string(env.ID) + `,"result":` + result + `}`
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(out)))
		_, _ = io.WriteString(w, out)
	})
	s := httptest.NewServer(h)
	tb.Cleanup(s.Close)
	return s.URL + "/mcp"
}

// benchClient sends tools/call to the edge as a legacy client (one
// session) or a modern one.
type benchClient struct {
	hc     *http.Client
	url    string
	modern bool
	sid    string
	id     int
}

func newBenchClient(tb testing.TB, hc *http.Client, url string, modern bool) *benchClient {
	c := &benchClient{hc: hc, url: url, modern: modern}
	if !modern {
		resp := c.post(tb, `{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"bench","version":"1"}}}`, nil)
		c.sid = resp.Header.Get("Mcp-Session-Id")
		c.post(tb, `{"jsonrpc":"2.0","method":"notifications/initialized"}`, nil)
	}
	return c
}

func (c *benchClient) post(tb testing.TB, body string, hdr map[string]string) *http.Response {
	req, _ := http.NewRequest("POST", c.url, bytes.NewReader([]byte(body)))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if c.sid != "" {
		req.Header.Set("Mcp-Session-Id", c.sid)
		req.Header.Set("Mcp-Protocol-Version", "2025-11-25")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode >= 300 && resp.StatusCode != http.StatusAccepted {
		tb.Fatalf("HTTP %d: %s", resp.StatusCode, b)
	}
	if bytes.Contains(b, []byte(`"error"`)) || bytes.Contains(b, []byte(`"isError":true`)) {
		tb.Fatalf("call failed: %s", b)
	}
	return resp
}

func (c *benchClient) call(tb testing.TB, tool string) {
	c.id++
	if c.modern {
		c.post(tb, `{"jsonrpc":"2.0","id":`+strconv.Itoa(c.id)+`,"method":"tools/call","params":{"name":"`+tool+`","arguments":{"text":"hello"},`+fmt.Sprintf(modernMeta, "{}")+`}}`,
			map[string]string{"Mcp-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/call", "Mcp-Name": tool})
		return
	}
	c.post(tb, `{"jsonrpc":"2.0","id":`+strconv.Itoa(c.id)+`,"method":"tools/call","params":{"name":"`+tool+`","arguments":{"text":"hello"}}}`, nil)
}

// BenchmarkBridgeToolsCall compares a bridged tools/call with a same-era
// one through the same edge (docs/benchmarks.md, "Era bridging"). Each
// iteration is one round: every case runs benchCalls calls from 8
// concurrent clients, in an order that rotates per round, so the cases
// share the machine's load; it reports each case's median µs per call and
// the median per-round ratios of the bridged cases to the same-era ones.
// Run with -benchtime Nx (N rounds).
func BenchmarkBridgeToolsCall(b *testing.B) {
	const clients, benchCalls = 8, 2000
	url := startBenchEdge(b, openPolicy+"backends:\n"+httpBackend("leg", eraEcho(b, false), "-")+httpBackend("mod", eraEcho(b, true), "-"))
	hc := &http.Client{Transport: upstream.NewTransport(64)}
	// Both backends listed, and each one's era known, before timing.
	deadline := time.Now().Add(10 * time.Second)
	for {
		body := benchListTools(b, hc, url)
		if bytes.Contains(body, []byte("leg__echo")) && bytes.Contains(body, []byte("mod__echo")) {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("backends not listed: %s", body)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cases := []struct {
		name   string
		modern bool
		tool   string
		cs     []*benchClient
		us     []float64
		cpu    []float64 // process CPU µs per call (client, edge and backend)
	}{
		{name: "legacy→legacy", tool: "leg__echo"},
		{name: "legacy→modern(bridged)", tool: "mod__echo"},
		{name: "modern→modern", modern: true, tool: "mod__echo"},
		{name: "modern→legacy(bridged)", modern: true, tool: "leg__echo"},
	}
	for i := range cases {
		for range clients {
			c := newBenchClient(b, hc, url, cases[i].modern)
			c.call(b, cases[i].tool) // warm
			cases[i].cs = append(cases[i].cs, c)
		}
	}
	b.ResetTimer()
	for round := 0; round < b.N; round++ {
		for k := range cases {
			tc := &cases[(round+k)%len(cases)]
			cpu0 := processCPU()
			start := time.Now()
			var wg sync.WaitGroup
			for _, c := range tc.cs {
				wg.Go(func() {
					for range benchCalls / clients {
						c.call(b, tc.tool)
					}
				})
			}
			wg.Wait()
			tc.us = append(tc.us, float64(time.Since(start).Microseconds())/benchCalls)
			tc.cpu = append(tc.cpu, float64((processCPU()-cpu0).Microseconds())/benchCalls)
		}
	}
	b.StopTimer()
	med := func(xs []float64) float64 {
		ys := append([]float64(nil), xs...)
		sort.Float64s(ys)
		return ys[len(ys)/2]
	}
	ratio := func(a, c int, cpu bool) float64 {
		var rs []float64
		for i := range cases[a].us {
			if cpu {
				rs = append(rs, cases[a].cpu[i]/cases[c].cpu[i])
			} else {
				rs = append(rs, cases[a].us[i]/cases[c].us[i])
			}
		}
		return med(rs)
	}
	for _, tc := range cases {
		b.ReportMetric(med(tc.us), "µs/call:"+tc.name)
		b.ReportMetric(med(tc.cpu), "cpu-µs/call:"+tc.name)
	}
	for _, r := range [][2]int{{1, 0}, {1, 2}, {3, 2}, {3, 0}} {
		name := cases[r[0]].name + "/" + cases[r[1]].name
		b.ReportMetric(ratio(r[0], r[1], false), "wall:"+name)
		b.ReportMetric(ratio(r[0], r[1], true), "cpu:"+name)
	}
}

// processCPU is the user and system CPU time this process used so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func benchListTools(tb testing.TB, hc *http.Client, url string) []byte {
	req, _ := http.NewRequest("POST", url, bytes.NewReader([]byte(`{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{`+fmt.Sprintf(modernMeta, "{}")+`}}`)))
	for k, v := range modernHeaders("tools/list", "") {
		req.Header.Set(k, v)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	resp, err := hc.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return body
}

// startBenchEdge runs an edge from a standalone config for a benchmark and
// returns its MCP URL.
func startBenchEdge(tb testing.TB, yaml string) string {
	tb.Helper()
	dir := tb.TempDir()
	path := filepath.Join(dir, "mcpgw.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		tb.Fatal(err)
	}
	addrc := make(chan net.Addr, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- dataplane.Run(ctx, dataplane.Config{
			ConfigFile: path, StateDir: filepath.Join(dir, "state"), Listen: "127.0.0.1:0", Logger: testLogger(),
			OnListen: func(name string, a net.Addr) {
				if name == "mcp" {
					addrc <- a
				}
			},
		})
	}()
	tb.Cleanup(func() { cancel(); <-done })
	select {
	case a := <-addrc:
		return "http://" + a.String() + "/mcp"
	case err := <-done:
		tb.Fatalf("edge did not start: %v", err)
	case <-time.After(10 * time.Second):
		tb.Fatal("edge did not listen")
	}
	return ""
}
