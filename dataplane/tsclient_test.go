package dataplane_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/mcpgw/mcpgw/dataplane/internal/mcptest"
)

// tsResult is what testdata/tsclient/client.mjs prints.
type tsResult struct {
	ProtocolVersion string `json:"protocolVersion"`
	Results         []struct {
		Op     string          `json:"op"`
		OK     bool            `json:"ok"`
		Result json.RawMessage `json:"result"`
		Error  json.RawMessage `json:"error"`
	} `json:"results"`
	Notifications []string `json:"notifications"`
}

// tsClientDir is the pinned TypeScript SDK client driver; .ci/run installs
// its node_modules.
func tsClientDir(t *testing.T) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	dir := filepath.Join(filepath.Dir(file), "..", "testdata", "tsclient")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "@modelcontextprotocol", "sdk")); err != nil {
		t.Fatalf("the TypeScript SDK client is not installed (run npm ci in %s): %v", dir, err)
	}
	return dir
}

func runTSClient(t *testing.T, args []string, ops string) tsResult {
	t.Helper()
	dir := tsClientDir(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", append([]string{filepath.Join(dir, "client.mjs")}, args...)...)
	cmd.Stdin = strings.NewReader(ops)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("tsclient: %v\n%s", err, stderr.String())
	}
	var r tsResult
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatalf("tsclient output %q: %v", out.String(), err)
	}
	return r
}

const tsOps = `[
 {"op":"listTools"},
 {"op":"callTool","name":"ev__test_simple_text"},
 {"op":"callTool","name":"ev__test_sampling","arguments":{"prompt":"hi"}},
 {"op":"callTool","name":"ev__test_tool_with_progress"},
 {"op":"listPrompts"},
 {"op":"getPrompt","name":"ev__test_simple_prompt"},
 {"op":"listResources"},
 {"op":"readResource","uri":"test://static-text"},
 {"op":"listResourceTemplates"},
 {"op":"setLoggingLevel","level":"info"},
 {"op":"callTool","name":"ev__test_tool_with_logging"},
 {"op":"ping"}
]`

func checkTSResult(t *testing.T, r tsResult) {
	t.Helper()
	for _, res := range r.Results {
		if !res.OK {
			t.Errorf("%s failed: %s", res.Op, res.Error)
		}
	}
	if len(r.Results) != 12 {
		t.Fatalf("%d results, want 12", len(r.Results))
	}
	if !strings.Contains(string(r.Results[0].Result), `"ev__test_simple_text"`) {
		t.Errorf("listTools: %s", r.Results[0].Result)
	}
	if !strings.Contains(string(r.Results[1].Result), "This is a simple text response for testing.") {
		t.Errorf("simple text: %s", r.Results[1].Result)
	}
	if !strings.Contains(string(r.Results[2].Result), "sampled by tsclient") {
		t.Errorf("sampling: %s", r.Results[2].Result)
	}
	if !strings.Contains(string(r.Results[7].Result), "static text resource") {
		t.Errorf("readResource: %s", r.Results[7].Result)
	}
	var progress, logs int
	for _, n := range r.Notifications {
		switch n {
		case "progress-callback", "notifications/progress":
			progress++
		case "notifications/message":
			logs++
		}
	}
	if progress < 3 || logs < 3 {
		t.Errorf("notifications %v: want ≥3 progress callbacks and ≥3 log messages", r.Notifications)
	}
}

// The official TypeScript SDK client, an independent peer, through the
// edge over HTTP to a stateful HTTP backend and a stdio backend.
func TestTypeScriptClientHTTP(t *testing.T) {
	srv := mcptest.StartHTTP(t, serverBin, "", true)
	for _, backend := range []string{stdioBackend("ev"), httpBackend("ev", srv.URL(), "-")} {
		e := startEdge(t, "backends:\n"+backend, nil)
		waitTools(t, connect(t, e.URL, nil), everythingTools)
		checkTSResult(t, runTSClient(t, []string{"--url", e.URL}, tsOps))
	}
}

// The TypeScript SDK client launching `mcpgw edge --stdio` as its server.
func TestTypeScriptClientStdio(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "mcpgw")
	build := exec.Command("go", "build", "-o", bin, "github.com/mcpgw/mcpgw/cmd/mcpgw")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		t.Fatalf("building mcpgw: %v", err)
	}
	cfg := filepath.Join(t.TempDir(), "mcpgw.yaml")
	writeConfig(t, cfg, "backends:\n"+stdioBackend("ev"))
	// The edge lets its backends start before it answers on stdio, so the
	// client's first tools/list is complete.
	checkTSResult(t, runTSClient(t, []string{"--stdio", bin, "edge", "--stdio", "--config", cfg, "--log-level", "warn", "--"}, tsOps))
}
