package loadgen

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
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

// benchKey is the API key every benchmark target is sent (the proxy passes
// it on; the echo backend ignores it), so all targets carry the same
// headers. The edge config names its principal by the key's SHA-256.
const benchKey = "mcpgw_bench_loadgen0123456789abcdef"

// edgeConfig is a standalone edge document whose only backend is the echo
// server over Streamable HTTP, with the policy and audit DESIGN §11 budgets
// the edge with: a principal found by benchKey's hash, a role allowing the
// echo backend's tools, and a sync (default) audit file in dir. The edge
// enforces them, so the figures include authentication, policy and audit.
func edgeConfig(backendURL, dir string) string {
	sum := sha256.Sum256([]byte(benchKey))
	return "backends:\n  - name: echo\n    http: {url: \"" + backendURL + "\"}\n" +
		"principals:\n  - {name: bench, api_key_sha256: \"" + hex.EncodeToString(sum[:]) + "\"}\n" +
		"roles:\n  - name: bench\n    rules:\n      - {effect: allow, backends: [echo], tools: [\"echo__*\"]}\n" +
		"bindings:\n  - {role: bench, subjects: [\"user:bench\"]}\n" +
		"audit:\n  file: \"" + filepath.Join(dir, "audit.jsonl") + "\"\n" + auditDurability()
}

// auditDurability lets a comparison run the same edge with async audit
// (MCPGW_BENCH_AUDIT_DURABILITY=async): what sync durability costs a call
// is the difference. The budget is for the default, sync.
func auditDurability() string {
	if d := os.Getenv("MCPGW_BENCH_AUDIT_DURABILITY"); d != "" {
		return "  durability: " + d + "\n"
	}
	return ""
}

// startEdge runs dataplane.Run in-process, its goroutines labelled
// hop=edge, with the echo backend at backendURL as its only backend, and
// returns its MCP endpoint. The edge is stopped when the test ends.
func startEdge(tb testing.TB, backendURL string) string {
	tb.Helper()
	dir := tb.TempDir()
	path := filepath.Join(dir, "mcpgw.yaml")
	if err := os.WriteFile(path, []byte(edgeConfig(backendURL, dir)), 0o600); err != nil {
		tb.Fatal(err)
	}
	addrc := make(chan net.Addr, 1)
	cfg := dataplane.Config{
		ConfigFile: path,
		StateDir:   dir,
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
	s := NewSession(&http.Client{Timeout: 5 * time.Second}, url, benchKey)
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
	sum, err := Run(t.Context(), Config{URL: url, Sessions: 8, Calls: 400, Tool: edgeTool, Key: benchKey})
	if err != nil {
		t.Fatal(err)
	}
	checkSummary(t, sum, 400)
	if got := e.Calls() - before; got != 400 {
		t.Errorf("backend answered %d calls through the edge, want 400", got)
	}
}
