package dataplane_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgw/mcpgw/dataplane"
	"github.com/mcpgw/mcpgw/dataplane/internal/mcptest"
)

var serverBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "dataplane-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	serverBin, err = mcptest.Build(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// edge is a running dataplane.Run.
type edge struct {
	URL     string // the /mcp endpoint
	Base    string // http://host:port
	CfgPath string
	cancel  context.CancelFunc
	done    chan error
}

// Stop shuts the edge down and returns Run's error.
func (e *edge) Stop() error {
	e.cancel()
	err := <-e.done
	e.done <- err // for the cleanup
	return err
}

// openPolicy is how these protocol tests opt out of enforcement, explicitly:
// callers without a key act as "anonymous", bound to a role whose one rule
// allows every method on every item. Enforcement itself (keys, deny by
// default, filtered lists, audit) is tested in enforce_test.go through the
// same Run.
const openPolicy = `auth: {anonymous: {principal: anonymous}}
roles:
  - name: everything
    rules: [{effect: allow}]
bindings:
  - {role: everything, subjects: ["user:anonymous"]}
`

func writeConfig(t *testing.T, path, yaml string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func testLogger() *slog.Logger {
	level := slog.LevelWarn
	if os.Getenv("MCPGW_TEST_DEBUG") != "" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

func startEdge(t *testing.T, yaml string, tweak func(*dataplane.Config)) *edge {
	t.Helper()
	dir := t.TempDir()
	e := &edge{CfgPath: filepath.Join(dir, "mcpgw.yaml"), done: make(chan error, 1)}
	writeConfig(t, e.CfgPath, yaml)
	addrc := make(chan net.Addr, 1)
	cfg := dataplane.Config{
		ConfigFile:     e.CfgPath,
		StateDir:       filepath.Join(dir, "state"),
		Listen:         "127.0.0.1:0",
		ReloadInterval: 50 * time.Millisecond,
		Logger:         testLogger(),
		OnListen: func(name string, a net.Addr) {
			if name == "mcp" {
				addrc <- a
			}
		},
	}
	if tweak != nil {
		tweak(&cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	e.cancel = cancel
	go func() { e.done <- dataplane.Run(ctx, cfg) }()
	select {
	case a := <-addrc:
		e.Base = "http://" + a.String()
		e.URL = e.Base + "/mcp"
	case err := <-e.done:
		t.Fatalf("edge did not start: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("edge did not listen")
	}
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-e.done:
			if err != nil {
				t.Errorf("edge Run: %v", err)
			}
			e.done <- err
		case <-time.After(15 * time.Second):
			t.Error("edge did not stop")
		}
	})
	return e
}

// clientRecorder collects what the edge pushes to an SDK client.
type clientRecorder struct {
	mu       sync.Mutex // guards the fields below
	progress []float64
	logs     []string
	updated  []string
	toolsChg int
}

func (r *clientRecorder) options() *mcp.ClientOptions {
	return &mcp.ClientOptions{
		CreateMessageHandler: func(_ context.Context, req *mcp.CreateMessageRequest) (*mcp.CreateMessageResult, error) {
			return &mcp.CreateMessageResult{Role: "assistant", Model: "test-model", Content: &mcp.TextContent{Text: "sampled through the edge"}}, nil
		},
		ElicitationHandler: func(_ context.Context, req *mcp.ElicitRequest) (*mcp.ElicitResult, error) {
			return &mcp.ElicitResult{Action: "accept", Content: fillSchema(req.Params.RequestedSchema)}, nil
		},
		ProgressNotificationHandler: func(_ context.Context, req *mcp.ProgressNotificationClientRequest) {
			r.mu.Lock()
			r.progress = append(r.progress, req.Params.Progress)
			r.mu.Unlock()
		},
		LoggingMessageHandler: func(_ context.Context, req *mcp.LoggingMessageRequest) {
			r.mu.Lock()
			r.logs = append(r.logs, fmt.Sprint(req.Params.Data))
			r.mu.Unlock()
		},
		ResourceUpdatedHandler: func(_ context.Context, req *mcp.ResourceUpdatedNotificationRequest) {
			r.mu.Lock()
			r.updated = append(r.updated, req.Params.URI)
			r.mu.Unlock()
		},
		ToolListChangedHandler: func(context.Context, *mcp.ToolListChangedRequest) {
			r.mu.Lock()
			r.toolsChg++
			r.mu.Unlock()
		},
	}
}

// connect opens a legacy SDK client session to url.
func connect(t *testing.T, url string, rec *clientRecorder) *mcp.ClientSession {
	t.Helper()
	if rec == nil {
		rec = &clientRecorder{}
	}
	c := mcp.NewClient(&mcp.Implementation{Name: "edge-test", Version: "1"}, rec.options())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cs, err := c.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: url}, &mcp.ClientSessionOptions{ProtocolVersion: "2025-11-25"})
	if err != nil {
		t.Fatalf("connecting to %s: %v", url, err)
	}
	t.Cleanup(func() { cs.Close() })
	return cs
}

// toolNames lists every tool, following cursors.
func toolNames(t *testing.T, cs *mcp.ClientSession) []string {
	t.Helper()
	var names []string
	for tool, err := range cs.Tools(context.Background(), nil) {
		if err != nil {
			t.Fatalf("listing tools: %v", err)
		}
		names = append(names, tool.Name)
	}
	return names
}

// waitTools waits until the edge lists at least n tools.
func waitTools(t *testing.T, cs *mcp.ClientSession, n int) []string {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		names := toolNames(t, cs)
		if len(names) >= n {
			return names
		}
		if time.Now().After(deadline) {
			t.Fatalf("edge lists %d tools, want ≥ %d: %v", len(names), n, names)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func stdioBackend(name string) string {
	return fmt.Sprintf("  - name: %s\n    stdio:\n      command: [%q]\n    timeout: 20s\n", name, serverBin)
}

func httpBackend(name, url, prefix string) string {
	s := fmt.Sprintf("  - name: %s\n    http:\n      url: %q\n    timeout: 20s\n", name, url)
	if prefix != "-" {
		s += fmt.Sprintf("    prefix: %q\n", prefix)
	}
	return s
}

func text(r *mcp.CallToolResult) string {
	var parts []string
	for _, c := range r.Content {
		if tc, ok := c.(*mcp.TextContent); ok {
			parts = append(parts, tc.Text)
		}
	}
	return strings.Join(parts, "|")
}

func TestEdgeSmoke(t *testing.T) {
	e := startEdge(t, openPolicy+"backends:\n"+stdioBackend("ev"), nil)
	cs := connect(t, e.URL, nil)
	names := waitTools(t, cs, everythingTools)
	if !contains(names, "ev__test_simple_text") {
		t.Fatalf("tools = %v", names)
	}
	res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "ev__test_simple_text"})
	if err != nil {
		t.Fatal(err)
	}
	if got := text(res); got != "This is a simple text response for testing." {
		t.Errorf("text = %q", got)
	}
	resp, err := http.Get(e.Base + "/readyz")
	if err != nil || resp.StatusCode != 200 {
		t.Errorf("readyz: %v %v", err, resp)
	}
}

func contains(xs []string, x string) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

// fillSchema answers an elicitation with a plausible value for every
// property of the requested (flat) schema.
func fillSchema(schema any) map[string]any {
	b, _ := json.Marshal(schema)
	var s struct {
		Properties map[string]struct {
			Type string   `json:"type"`
			Enum []string `json:"enum"`
		} `json:"properties"`
	}
	_ = json.Unmarshal(b, &s)
	out := map[string]any{}
	for name, p := range s.Properties {
		switch {
		case len(p.Enum) > 0:
			out[name] = p.Enum[0]
		case p.Type == "boolean":
			out[name] = true
		case p.Type == "number" || p.Type == "integer":
			out[name] = 1
		case name == "email":
			out[name] = "alice@example.com"
		default:
			out[name] = "alice"
		}
	}
	return out
}
