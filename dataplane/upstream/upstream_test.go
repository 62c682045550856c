package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mcpgw/mcpgw/dataplane/internal/mcptest"
)

var serverBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "upstream-test")
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

// recorder is an Observer and a Sink that remembers what it was told.
type recorder struct {
	mu       sync.Mutex // guards the fields below
	ups      int
	downs    int
	notes    []string
	progress []json.RawMessage
	requests []string
}

func (r *recorder) BackendUp(*Backend) { r.mu.Lock(); r.ups++; r.mu.Unlock() }
func (r *recorder) BackendDown(*Backend, error) {
	r.mu.Lock()
	r.downs++
	r.mu.Unlock()
}
func (r *recorder) BackendNotify(_ *Backend, method string, _ json.RawMessage) {
	r.mu.Lock()
	r.notes = append(r.notes, method)
	r.mu.Unlock()
}
func (r *recorder) Notify(method string, params json.RawMessage) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if method == "notifications/progress" {
		r.progress = append(r.progress, params)
	}
}
func (r *recorder) Request(_ context.Context, method string, _ json.RawMessage) (Response, error) {
	r.mu.Lock()
	r.requests = append(r.requests, method)
	r.mu.Unlock()
	if method == "sampling/createMessage" {
		return Response{Result: json.RawMessage(`{"role":"assistant","content":{"type":"text","text":"sampled-by-test"},"model":"test-model"}`)}, nil
	}
	return Response{}, errors.New("unsupported in test")
}

func (r *recorder) nProgress() int { r.mu.Lock(); defer r.mu.Unlock(); return len(r.progress) }

func startBackend(t *testing.T, cfg Config) (*Backend, *recorder) {
	t.Helper()
	rec := &recorder{}
	b, err := New(cfg, Options{
		Logger:     slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Observer:   rec,
		MinBackoff: 20 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	waitHealthy(t, b, nil)
	return b, rec
}

func waitHealthy(t *testing.T, b *Backend, not *conn) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if c := b.cur.Load(); c != nil && c != not {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("backend %s never became healthy", b.Name())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func stdioConfig() Config {
	return Config{Name: "everything", Stdio: &StdioConfig{Command: []string{serverBin}, StopGrace: 500 * time.Millisecond}, Timeout: 10 * time.Second}
}

func callText(t *testing.T, b *Backend, tool string, sink Sink, meta string) string {
	t.Helper()
	params := `{"name":"` + tool + `","arguments":{}` + meta + `}`
	resp, err := b.Call(context.Background(), "tools/call", json.RawMessage(params), sink)
	if err != nil {
		t.Fatalf("calling %s: %v", tool, err)
	}
	if len(resp.Error) > 0 {
		t.Fatalf("calling %s: error %s", tool, resp.Error)
	}
	var r struct {
		Content []struct{ Text string } `json:"content"`
		IsError bool                    `json:"isError"`
	}
	if err := json.Unmarshal(resp.Result, &r); err != nil || len(r.Content) == 0 {
		t.Fatalf("calling %s: bad result %s (%v)", tool, resp.Result, err)
	}
	return r.Content[0].Text
}

func exercise(t *testing.T, b *Backend) {
	t.Helper()
	resp, err := b.Call(context.Background(), "tools/list", nil, nil)
	if err != nil || !strings.Contains(string(resp.Result), `"test_simple_text"`) {
		t.Fatalf("tools/list: %v %s %s", err, resp.Result, resp.Error)
	}
	if got := callText(t, b, "test_simple_text", nil, ""); got != "This is a simple text response for testing." {
		t.Errorf("test_simple_text = %q", got)
	}
	// Progress: the backend sees the edge's token, the sink gets ours back.
	rec := &recorder{}
	got := callText(t, b, "test_tool_with_progress", rec, `,"_meta":{"progressToken":"client-tok"}`)
	if !strings.HasPrefix(got, "mcpgw-") {
		t.Errorf("backend saw progress token %q, want the edge's own", got)
	}
	if rec.nProgress() != 3 {
		t.Fatalf("got %d progress notifications, want 3", rec.nProgress())
	}
	for _, p := range rec.progress {
		if !strings.Contains(string(p), `"progressToken":"client-tok"`) {
			t.Errorf("progress token not restored: %s", p)
		}
	}
	// A server→client request during the call reaches the call's sink.
	resp0, err := b.Call(context.Background(), "tools/call", json.RawMessage(`{"name":"test_sampling","arguments":{"prompt":"hi"}}`), rec)
	if err != nil {
		t.Fatal(err)
	}
	got = string(resp0.Result)
	if !strings.Contains(got, "sampled-by-test") {
		t.Errorf("test_sampling = %q, want the sampled text", got)
	}
	// A JSON-RPC error from the backend is a Response, not a transport error.
	resp, err = b.Call(context.Background(), "no/such/method", nil, nil)
	// (The SDK's HTTP server answers it with a plain 400, which is an error.)
	if err == nil && len(resp.Error) == 0 {
		t.Errorf("unknown method: err=%v resp=%+v, want a JSON-RPC error", err, resp)
	}
}

func TestStdioBackend(t *testing.T) {
	b, _ := startBackend(t, stdioConfig())
	exercise(t, b)
}

func TestHTTPBackendStateful(t *testing.T) {
	srv := mcptest.StartHTTP(t, serverBin, "", true)
	b, _ := startBackend(t, Config{Name: "everything", HTTP: &HTTPConfig{URL: srv.URL()}, Timeout: 10 * time.Second})
	if b.cur.Load().t.(*httpTransport).session() == "" {
		t.Fatal("stateful server gave no session id")
	}
	exercise(t, b)
}

func TestHTTPBackendStateless(t *testing.T) {
	srv := mcptest.StartHTTP(t, serverBin, "", false)
	b, _ := startBackend(t, Config{Name: "everything", HTTP: &HTTPConfig{URL: srv.URL()}, Timeout: 10 * time.Second})
	resp, err := b.Call(context.Background(), "tools/list", nil, nil)
	if err != nil || !strings.Contains(string(resp.Result), `"test_simple_text"`) {
		t.Fatalf("tools/list: %v %s %s", err, resp.Result, resp.Error)
	}
	if got := callText(t, b, "test_simple_text", nil, ""); got != "This is a simple text response for testing." {
		t.Errorf("test_simple_text = %q", got)
	}
}

// A restarted server has forgotten our session: the next call gets 404, and
// the edge re-initializes and retries instead of failing or faking success.
func TestHTTPSessionExpiryReinitializes(t *testing.T) {
	srv := mcptest.StartHTTP(t, serverBin, "", true)
	b, _ := startBackend(t, Config{Name: "everything", HTTP: &HTTPConfig{URL: srv.URL()}, Timeout: 10 * time.Second})
	old := b.cur.Load()
	oldSession := old.t.(*httpTransport).session()
	srv.Stop()
	mcptest.StartHTTP(t, serverBin, srv.Addr, true)
	// The GET stream may notice first and reconnect; either way the call
	// must succeed on a new session.
	if got := callText(t, b, "test_simple_text", nil, ""); got != "This is a simple text response for testing." {
		t.Errorf("test_simple_text = %q", got)
	}
	if s := b.cur.Load().t.(*httpTransport).session(); s == oldSession {
		t.Errorf("still on session %s after the server restarted", s)
	}
}

func TestStdioKillMidCall(t *testing.T) {
	b, obs := startBackend(t, stdioConfig())
	c := b.cur.Load()
	rec := &recorder{}
	errc := make(chan error, 1)
	go func() {
		resp, err := b.Call(context.Background(), "tools/call", json.RawMessage(`{"name":"test_tool_with_progress","_meta":{"progressToken":1}}`), rec)
		if err == nil {
			err = fmt.Errorf("call succeeded with %s %s", resp.Result, resp.Error)
		}
		errc <- err
	}()
	for rec.nProgress() == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	if err := syscall.Kill(c.pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	err := <-errc
	if !errors.Is(err, ErrConnectionLost) {
		t.Fatalf("call on killed backend: %v, want ErrConnectionLost", err)
	}
	waitHealthy(t, b, c)
	if got := callText(t, b, "test_simple_text", nil, ""); got == "" {
		t.Error("no answer after restart")
	}
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if obs.ups < 2 || obs.downs < 1 {
		t.Errorf("observer saw %d ups and %d downs, want ≥2 and ≥1", obs.ups, obs.downs)
	}
	if c.pid == b.cur.Load().pid {
		t.Error("same pid after restart")
	}
}

func TestStdioShutdownLeavesNoProcess(t *testing.T) {
	rec := &recorder{}
	b, err := New(stdioConfig(), Options{Observer: rec, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	waitHealthy(t, b, nil)
	pid := b.cur.Load().pid
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	// Wait was called, so the pid is gone entirely (not even a zombie).
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("process %d still exists after Run returned: %v", pid, err)
	}
	if _, err := b.Call(context.Background(), "ping", nil, nil); !errors.Is(err, ErrUnavailable) {
		t.Errorf("call after shutdown: %v, want ErrUnavailable", err)
	}
}

// A stdio child that ignores stdin EOF and SIGTERM is killed anyway.
func TestStdioStubbornChildIsKilled(t *testing.T) {
	script := `trap '' TERM; read line; echo '{"jsonrpc":"2.0","id":1,"result":{"protocolVersion":"2025-11-25","capabilities":{},"serverInfo":{"name":"sh","version":"0"}}}'; while :; do sleep 0.05; done`
	cfg := Config{Name: "stubborn", Stdio: &StdioConfig{Command: []string{"sh", "-c", script}, StopGrace: 200 * time.Millisecond}, Timeout: 5 * time.Second}
	b, err := New(cfg, Options{Observer: &recorder{}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	waitHealthy(t, b, nil)
	pid := b.cur.Load().pid
	start := time.Now()
	cancel()
	<-done
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("shutdown took %s", d)
	}
	if live := liveInGroup(t, pid); len(live) > 0 {
		t.Errorf("process group %d survives: %v", pid, live)
	}
}

// liveInGroup lists processes of group pgid that are not zombies. (Orphans
// reparented to a container's PID 1 may stay zombies if it never reaps;
// they hold no resources but the pid.)
func liveInGroup(t *testing.T, pgid int) []string {
	t.Helper()
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	var live []string
	for _, f := range stats {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		// pid (comm) state ppid pgrp ...
		s := string(b)
		rest := s[strings.LastIndexByte(s, ')')+2:]
		fields := strings.Fields(rest)
		if len(fields) > 2 && fields[2] == fmt.Sprint(pgid) && fields[0] != "Z" {
			live = append(live, s[:strings.LastIndexByte(s, ')')+1])
		}
	}
	return live
}
