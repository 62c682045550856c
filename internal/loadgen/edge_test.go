package loadgen

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/pprof"
	"testing"
	"time"

	"github.com/mcpgw/mcpgw/dataplane"
)

// edgeTool is the echo tool as the edge exposes it: backends' tools get the
// default "<backend>__" prefix (DESIGN §4.2).
const edgeTool = "echo__echo"

// edgeConfig is a standalone edge document whose only backend is the echo
// server over Streamable HTTP.
func edgeConfig(backendURL string) string {
	return "backends:\n  - name: echo\n    http: {url: \"" + backendURL + "\"}\n"
}

// startEdge runs dataplane.Run in-process, its goroutines labelled
// hop=edge, with the echo backend at backendURL as its only backend, and
// returns its MCP endpoint. The edge is stopped when the test ends.
func startEdge(tb testing.TB, backendURL string) string {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "mcpgw.yaml")
	if err := os.WriteFile(path, []byte(edgeConfig(backendURL)), 0o600); err != nil {
		tb.Fatal(err)
	}
	addrc := make(chan net.Addr, 1)
	cfg := dataplane.Config{
		ConfigFile: path,
		Listen:     "127.0.0.1:0",
		// Requests are not logged at Warn; anything logged is worth seeing.
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		OnListen: func(name string, a net.Addr) {
			if name == "mcp" {
				addrc <- a
			}
		},
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	stopEdge := cancel
	go func() {
		pprof.Do(ctx, pprof.Labels("hop", "edge"), func(ctx context.Context) {
			done <- dataplane.Run(ctx, cfg)
		})
	}()
	var url string
	select {
	case a := <-addrc:
		url = "http://" + a.String() + "/mcp"
	case err := <-done:
		cancel()
		tb.Fatalf("edge did not start: %v", err)
	case <-time.After(10 * time.Second):
		cancel()
		<-done
		tb.Fatal("edge did not listen within 10s")
	}
	tb.Cleanup(func() {
		stopEdge()
		select {
		case err := <-done:
			if err != nil {
				tb.Errorf("edge Run: %v", err)
			}
		case <-time.After(15 * time.Second):
			tb.Error("edge did not stop within 15s")
		}
	})
	// The edge listens before it has fetched its backends' catalogs; until
	// then the echo tool is unknown. Wait for it so no run measures that.
	if err := waitForTool(ctx, url, edgeTool); err != nil {
		tb.Fatal(err)
	}
	return url
}

// waitForTool polls tools/list on a fresh session until tool is listed,
// for at most ten seconds.
func waitForTool(ctx context.Context, url, tool string) error {
	s := NewSession(&http.Client{Timeout: 5 * time.Second}, url, "")
	if err := s.Initialize(ctx); err != nil {
		return err
	}
	defer s.Close(context.WithoutCancel(ctx))
	want := []byte(`"name":"` + tool + `"`)
	var last []byte
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		res, err := s.Request(ctx, "tools/list", nil)
		if err != nil {
			return fmt.Errorf("tools/list through the edge: %w", err)
		}
		if bytes.Contains(res, want) {
			return nil
		}
		last = append(last[:0], res...)
	}
	return fmt.Errorf("the edge did not list %s within 10s; last tools/list: %s", tool, shorten(last))
}

// TestRunThroughEdge is the harness's check that the edge target works:
// the echo backend answers through the edge and every call is counted.
func TestRunThroughEdge(t *testing.T) {
	e := NewEcho()
	backend := serve(t, e)
	url := startEdge(t, backend.URL())
	before := e.Calls()
	sum, err := Run(t.Context(), Config{URL: url, Sessions: 8, Calls: 400, Tool: edgeTool})
	if err != nil {
		t.Fatal(err)
	}
	checkSummary(t, sum, 400)
	if got := e.Calls() - before; got != 400 {
		t.Errorf("backend answered %d calls through the edge, want 400", got)
	}
}
