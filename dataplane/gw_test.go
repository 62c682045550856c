package dataplane_test

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgw/mcpgw/dataplane"
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
	e := startEdge(t, openPolicy+"backends:\n"+slowStdioBackend("slow", 1500*time.Millisecond)+stdioBackend("ev"), nil)
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
	e := startEdge(t, openPolicy+"backends:\n"+
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

// A 2026-07-28 client on the stdio front door opens subscriptions/listen
// (the Go SDK does when it has list_changed handlers): the edge
// acknowledges it and sends list_changed on the pipe when a reload adds a
// backend; the client's notifications/cancelled ends it.
func TestStdioListen(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "mcpgw.yaml")
	writeConfig(t, path, openPolicy+"backends:\n"+stdioBackend("one"))
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- dataplane.Run(ctx, dataplane.Config{ConfigFile: path, StateDir: t.TempDir(), Stdio: true, Stdin: inR, Stdout: outW, Logger: testLogger(), ReloadInterval: 50 * time.Millisecond})
		outW.Close()
	}()
	// Record the raw lines the edge writes, to see the acknowledgement.
	tap := &lineTap{r: outR, c: outR}
	rec := &clientRecorder{}
	c := mcp.NewClient(&mcp.Implementation{Name: "stdio-listen", Version: "1"}, rec.options())
	cs, err := c.Connect(ctx, &mcp.IOTransport{Reader: tap, Writer: inW}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if v := cs.InitializeResult().ProtocolVersion; v != "2026-07-28" {
		t.Fatalf("negotiated %q, want 2026-07-28", v)
	}
	n := len(waitTools(t, cs, everythingTools))
	waitFor(t, "notifications/subscriptions/acknowledged on stdio", func() bool {
		return tap.saw(`"method":"notifications/subscriptions/acknowledged"`)
	})
	writeConfig(t, path, openPolicy+"backends:\n"+stdioBackend("one")+stdioBackend("two"))
	waitFor(t, "tools/list_changed on the stdio listen", func() bool {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		return rec.toolsChg > 0
	})
	if !tap.saw(`"io.modelcontextprotocol/subscriptionId"`) {
		t.Error("list_changed on stdio without the subscription id")
	}
	waitTools(t, cs, 2*n)
	if err := cs.Close(); err != nil {
		t.Logf("close: %v", err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("edge did not exit after stdin closed")
	}
}

// lineTap passes a reader through and remembers what went by.
type lineTap struct {
	r   io.Reader
	c   io.Closer
	mu  sync.Mutex // guards buf
	buf []byte
}

func (l *lineTap) Read(p []byte) (int, error) {
	n, err := l.r.Read(p)
	l.mu.Lock()
	l.buf = append(l.buf, p[:n]...)
	l.mu.Unlock()
	return n, err
}

func (l *lineTap) Close() error { return l.c.Close() }

func (l *lineTap) saw(s string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Contains(string(l.buf), s)
}

// JSON replies carry Content-Length, never chunked encoding, small ones
// (net/http counts them) and large ones (the edge sets it) alike
// (DESIGN §4.3).
func TestJSONRepliesHaveContentLength(t *testing.T) {
	e := startEdge(t, openPolicy+"backends:\n"+stdioBackend("ev"), nil)
	cs := connect(t, e.URL, nil)
	waitTools(t, cs, everythingTools)
	resp, _ := post(t, e, initBody, nil)
	sid := resp.Header.Get("Mcp-Session-Id")
	if sid == "" {
		t.Fatal("no session")
	}
	hdr := map[string]string{"Mcp-Session-Id": sid, "Accept": "application/json"}
	for _, tc := range []struct{ name, body string }{
		{"small", `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"ev__test_simple_text","arguments":{}}}`},
		{"large", `{"jsonrpc":"2.0","id":3,"method":"tools/list","params":{}}`},
	} {
		resp, body := post(t, e, tc.body, hdr)
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("%s: %d %s %s", tc.name, resp.StatusCode, resp.Header.Get("Content-Type"), body)
		}
		if resp.ContentLength != int64(len(body)) || len(resp.TransferEncoding) > 0 {
			t.Errorf("%s reply (%d bytes): Content-Length %d, Transfer-Encoding %v", tc.name, len(body), resp.ContentLength, resp.TransferEncoding)
		}
		t.Logf("%s: %d bytes, Content-Length %d", tc.name, len(body), resp.ContentLength)
	}
}
