package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mcpgw/mcpgw/dataplane"
)

// The edge's memory is measured in a process of its own, so the load
// generator's and the backend's heaps do not count. That process is this
// test binary re-executed with envEdgeConfig set: TestMain then runs
// dataplane.Run, exactly what `mcpgw edge --config` runs, and nothing else
// (no test has run in it). Setting MCPGW_EDGE_BIN to an mcpgw binary
// measures `<bin> edge --config ... --listen 127.0.0.1:0` instead.
const envEdgeConfig = "MCPGW_LOADGEN_EDGE_CONFIG"

func TestMain(m *testing.M) {
	if path := os.Getenv(envEdgeConfig); path != "" {
		os.Exit(runEdgeChild(path))
	}
	os.Exit(m.Run())
}

// runEdgeChild is the edge process: it serves until SIGTERM or SIGINT and
// logs JSON to stderr, where the parent finds the listen address.
func runEdgeChild(path string) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	err := dataplane.Run(ctx, dataplane.Config{
		ConfigFile: path,
		Listen:     "127.0.0.1:0",
		Logger:     slog.New(slog.NewJSONHandler(os.Stderr, nil)),
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "edge:", err)
		return 1
	}
	return 0
}

// edgeProcess is an edge running as a child process.
type edgeProcess struct {
	cmd  *exec.Cmd
	url  string
	done chan error // Wait's result

	mu     sync.Mutex // guards stderr, written by the reader goroutine
	stderr bytes.Buffer
}

// startEdgeProcess starts an edge process with the echo backend at
// backendURL as its only backend and waits until it lists the echo tool.
// It is stopped (SIGTERM, then SIGKILL after 10s) when the test ends.
func startEdgeProcess(tb testing.TB, backendURL string) *edgeProcess {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "mcpgw.yaml")
	if err := os.WriteFile(path, []byte(edgeConfig(backendURL)), 0o600); err != nil {
		tb.Fatal(err)
	}
	var cmd *exec.Cmd
	if bin := os.Getenv("MCPGW_EDGE_BIN"); bin != "" {
		cmd = exec.Command(bin, "edge", "--config", path, "--listen", "127.0.0.1:0")
	} else {
		self, err := os.Executable()
		if err != nil {
			tb.Fatal(err)
		}
		cmd = exec.Command(self)
		cmd.Env = append(os.Environ(), envEdgeConfig+"="+path)
	}
	pipe, err := cmd.StderrPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	p := &edgeProcess{cmd: cmd, done: make(chan error, 1)}
	addrc := make(chan string, 1)
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		sc := bufio.NewScanner(pipe)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Bytes()
			var rec struct{ Msg, Listener, Addr string }
			if json.Unmarshal(line, &rec) == nil && rec.Msg == "listening" && rec.Listener == "mcp" {
				select {
				case addrc <- rec.Addr:
				default:
				}
			}
			p.mu.Lock()
			if p.stderr.Len() < 64<<10 {
				p.stderr.Write(line)
				p.stderr.WriteByte('\n')
			}
			p.mu.Unlock()
		}
	}()
	go func() {
		<-readerDone // Wait closes the pipe: read it all first
		p.done <- cmd.Wait()
	}()
	tb.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-p.done:
			if err != nil {
				tb.Errorf("edge process: %v\n%s", err, p.log())
			}
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-p.done
			tb.Errorf("edge process ignored SIGTERM for 10s; killed\n%s", p.log())
		}
	})
	select {
	case addr := <-addrc:
		p.url = "http://" + addr + "/mcp"
	case <-p.done:
		tb.Fatalf("edge process exited before listening\n%s", p.log())
	case <-time.After(20 * time.Second):
		tb.Fatalf("edge process did not listen within 20s\n%s", p.log())
	}
	if err := waitForTool(context.Background(), p.url, edgeTool); err != nil {
		tb.Fatalf("%v\n%s", err, p.log())
	}
	return p
}

func (p *edgeProcess) log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stderr.String()
}

func (p *edgeProcess) rss(tb testing.TB) int64 {
	tb.Helper()
	v, err := RSS(p.cmd.Process.Pid)
	if err != nil {
		tb.Fatal(err)
	}
	return v
}

// idleSessions is how many idle sessions the per-session figure opens.
const idleSessions = 1000

// settle gives the edge a moment to finish the work the last requests
// started (and the runtime to return what it freed) before RSS is read.
const settle = 500 * time.Millisecond

// BenchmarkEdgeMemory reports the edge process's RSS idle (started, backend
// catalog fetched, no client session) and the RSS each idle session adds,
// over idleSessions sessions opened through a 16-connection client: the
// figure is the session state, not a TCP connection per session.
func BenchmarkEdgeMemory(b *testing.B) {
	backend := serve(b, NewEcho())
	p := startEdgeProcess(b, backend.URL())
	time.Sleep(settle)
	idle := p.rss(b)

	tr := NewTransport(16)
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	sessions, err := OpenSessions(b.Context(), client, p.url, "", idleSessions)
	if err != nil {
		b.Fatalf("opening %d sessions: %v\n%s", idleSessions, err, p.log())
	}
	time.Sleep(settle)
	loaded := p.rss(b)
	if err := CloseSessions(b.Context(), sessions); err != nil {
		b.Errorf("closing sessions: %v", err)
	}

	b.ReportMetric(0, "ns/op")
	b.ReportMetric(float64(idle)/(1<<20), "idle-MiB")
	b.ReportMetric(float64(loaded)/(1<<20), "1000-sessions-MiB")
	b.ReportMetric(float64(loaded-idle)/idleSessions/(1<<10), "KiB/session")
}

// TestEdgeProcessSessions checks the memory benchmark's machinery quickly:
// the edge process starts, sessions open and close through it, and its RSS
// can be read.
func TestEdgeProcessSessions(t *testing.T) {
	backend := serve(t, NewEcho())
	p := startEdgeProcess(t, backend.URL())
	if rss := p.rss(t); rss < 1<<20 {
		t.Errorf("edge RSS %d bytes is implausible", rss)
	}
	sessions, err := OpenSessions(t.Context(), http.DefaultClient, p.url, "", 20)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range sessions {
		if s.ID() == "" {
			t.Fatal("the edge issued no Mcp-Session-Id")
		}
	}
	if err := CloseSessions(t.Context(), sessions); err != nil {
		t.Error(err)
	}
	if _, err := OpenSessions(t.Context(), http.DefaultClient, "http://127.0.0.1:1/mcp", "", 1); err == nil || errors.Is(err, nil) {
		t.Error("opening a session on a closed port must fail")
	}
}
