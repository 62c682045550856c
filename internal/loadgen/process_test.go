package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mcpgw/mcpgw/dataplane"
)

// Hops are measured in processes of their own when their memory or CPU
// time is the figure, so the load generator's and the backend's do not
// count. Such a process is this test binary re-executed with envChild set:
// TestMain then runs only the hop: dataplane.Run, exactly what `mcpgw edge
// --config` runs, or the reference proxy. No test runs in it. Setting
// MCPGW_EDGE_BIN to an mcpgw binary runs `<bin> edge --config ... --listen
// 127.0.0.1:0` as the edge instead; to an mcpgw-edge binary (a file name
// starting with mcpgw-edge), `<bin> --config ...`.
const (
	envChild    = "MCPGW_LOADGEN_CHILD"     // "edge" or "proxy"
	envChildArg = "MCPGW_LOADGEN_CHILD_ARG" // the edge's config file, the proxy's backend URL
)

// envChildProfile, when set to a path prefix, makes each hop process write
// a CPU profile of its whole life to PREFIX.edge-PID or PREFIX.proxy-PID:
// the hop as deployed, without the load generator and backend sharing its
// runtime, as the in-process profile of BenchmarkToolsCall has them.
const envChildProfile = "MCPGW_BENCH_CHILD_CPUPROFILE"

func TestMain(m *testing.M) {
	switch kind := os.Getenv(envChild); kind {
	case "edge", "proxy":
		stop := profileChild(kind)
		code := 0
		if kind == "edge" {
			code = runEdgeChild(os.Getenv(envChildArg))
		} else {
			code = runProxyChild(os.Getenv(envChildArg))
		}
		stop()
		os.Exit(code)
	}
	os.Exit(m.Run())
}

func profileChild(kind string) func() {
	prefix := os.Getenv(envChildProfile)
	if prefix == "" {
		return func() {}
	}
	f, err := os.Create(fmt.Sprintf("%s.%s-%d", prefix, kind, os.Getpid()))
	if err != nil {
		fmt.Fprintln(os.Stderr, "profile:", err)
		return func() {}
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		fmt.Fprintln(os.Stderr, "profile:", err)
		f.Close()
		return func() {}
	}
	return func() { pprof.StopCPUProfile(); f.Close() }
}

// runEdgeChild is the edge process: it serves until SIGTERM or SIGINT and
// logs JSON to stderr, where the parent finds the listen address. Like the
// edge command it runs at the edge's GC target (dataplane.GCPercent); the
// proxy process runs at Go's default.
func runEdgeChild(path string) int {
	dataplane.ApplyGCDefault() // as the edge command does
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	err := dataplane.Run(ctx, dataplane.Config{
		ConfigFile: path,
		StateDir:   filepath.Dir(path),
		Listen:     "127.0.0.1:0",
		Logger:     slog.New(slog.NewJSONHandler(os.Stderr, nil)),
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "edge:", err)
		return 1
	}
	return 0
}

// runProxyChild is the reference proxy process; it logs its address the
// way the edge does.
func runProxyChild(backend string) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	u, err := url.Parse(backend)
	if err != nil {
		fmt.Fprintln(os.Stderr, "proxy:", err)
		return 1
	}
	s, err := Listen("127.0.0.1:0", NewReverseProxy(u, slices.Max(sessionCounts)))
	if err != nil {
		fmt.Fprintln(os.Stderr, "proxy:", err)
		return 1
	}
	slog.New(slog.NewJSONHandler(os.Stderr, nil)).Info("listening", "listener", "mcp", "addr", s.Addr())
	if err := s.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "proxy:", err)
		return 1
	}
	return 0
}

// hopProcess is a hop (edge or proxy) running as a child process.
type hopProcess struct {
	cmd  *exec.Cmd
	url  string
	done chan error // Wait's result

	mu     sync.Mutex // guards stderr, written by the reader goroutine
	stderr bytes.Buffer
}

// startEdgeProcess starts an edge process with the echo backend at
// backendURL as its only backend and waits until it lists the echo tool.
func startEdgeProcess(tb testing.TB, backendURL string) *hopProcess {
	tb.Helper()
	dir := tb.TempDir()
	path := filepath.Join(dir, "mcpgw.yaml")
	if err := os.WriteFile(path, []byte(edgeConfig(backendURL, dir)), 0o600); err != nil {
		tb.Fatal(err)
	}
	var cmd *exec.Cmd
	if bin := os.Getenv("MCPGW_EDGE_BIN"); bin != "" {
		args := []string{"edge", "--config", path, "--state-dir", dir, "--listen", "127.0.0.1:0"}
		if strings.HasPrefix(filepath.Base(bin), "mcpgw-edge") {
			args = args[1:] // the edge binary's root is the edge command
		}
		cmd = exec.Command(bin, args...)
	} else {
		cmd = selfCommand(tb, "edge", path)
	}
	p := startProcess(tb, cmd)
	if err := waitForTool(context.Background(), p.url, edgeTool); err != nil {
		tb.Fatalf("%v\n%s", err, p.log())
	}
	return p
}

// startProxyProcess starts the reference proxy to backendURL as a process.
func startProxyProcess(tb testing.TB, backendURL string) *hopProcess {
	tb.Helper()
	return startProcess(tb, selfCommand(tb, "proxy", backendURL))
}

func selfCommand(tb testing.TB, kind, arg string) *exec.Cmd {
	self, err := os.Executable()
	if err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), envChild+"="+kind, envChildArg+"="+arg)
	return cmd
}

// startProcess starts cmd, waits for its "listening" log line and stops it
// (SIGTERM, then SIGKILL after 10s) when the test ends.
func startProcess(tb testing.TB, cmd *exec.Cmd) *hopProcess {
	tb.Helper()
	pipe, err := cmd.StderrPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	p := &hopProcess{cmd: cmd, done: make(chan error, 1)}
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
				tb.Errorf("%s: %v\n%s", cmd.Path, err, p.log())
			}
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-p.done
			tb.Errorf("%s ignored SIGTERM for 10s; killed\n%s", cmd.Path, p.log())
		}
	})
	select {
	case addr := <-addrc:
		p.url = "http://" + addr + "/mcp"
	case <-p.done:
		tb.Fatalf("%s exited before listening\n%s", cmd.Path, p.log())
	case <-time.After(20 * time.Second):
		tb.Fatalf("%s did not listen within 20s\n%s", cmd.Path, p.log())
	}
	return p
}

func (p *hopProcess) log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stderr.String()
}

// rss returns the process's RSS and its anonymous part.
func (p *hopProcess) rss(tb testing.TB) (total, anon int64) {
	tb.Helper()
	total, err := RSS(p.cmd.Process.Pid)
	if err != nil {
		tb.Fatal(err)
	}
	anon, err = RSSAnon(p.cmd.Process.Pid)
	if err != nil {
		tb.Fatal(err)
	}
	return total, anon
}

func (p *hopProcess) cpu(tb testing.TB) time.Duration {
	tb.Helper()
	v, err := p.cpuErr()
	if err != nil {
		tb.Fatal(err)
	}
	return v
}

func (p *hopProcess) cpuErr() (time.Duration, error) { return CPUTime(p.cmd.Process.Pid) }

// idleSessions is how many idle sessions the per-session figure opens.
const idleSessions = 1000

// settle gives the edge a moment to finish the work the last requests
// started (and the runtime to return what it freed) before RSS is read.
const settle = 500 * time.Millisecond

// BenchmarkEdgeMemory reports the edge process's RSS idle (started, backend
// catalog fetched, no client session) and the RSS each idle session adds,
// over idleSessions sessions opened through a 16-connection client: the
// figure is the session state, not a TCP connection per session. The
// anonymous part of RSS (heap and stacks) is reported too: the rest is
// pages of the executable, which depend on the binary more than on the edge.
func BenchmarkEdgeMemory(b *testing.B) {
	backend := serve(b, NewEcho())
	p := startEdgeProcess(b, backend.URL())
	time.Sleep(settle)
	idle, idleAnon := p.rss(b)

	tr := NewTransport(16)
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	sessions, err := OpenSessions(b.Context(), client, p.url, benchKey, idleSessions)
	if err != nil {
		b.Fatalf("opening %d sessions: %v\n%s", idleSessions, err, p.log())
	}
	time.Sleep(settle)
	loaded, _ := p.rss(b)
	if err := CloseSessions(b.Context(), sessions); err != nil {
		b.Errorf("closing sessions: %v", err)
	}

	b.ReportMetric(0, "ns/op")
	b.ReportMetric(float64(idle)/(1<<20), "idle-MiB")
	b.ReportMetric(float64(idleAnon)/(1<<20), "idle-anon-MiB")
	b.ReportMetric(float64(loaded)/(1<<20), "1000-sessions-MiB")
	b.ReportMetric(float64(loaded-idle)/idleSessions/(1<<10), "KiB/session")
}

// TestHopProcesses checks the machinery of the memory and CPU benchmarks
// quickly: the edge and proxy processes start, sessions open and close
// through the edge, calls go through the proxy, RSS and CPU time can be read.
func TestHopProcesses(t *testing.T) {
	backend := serve(t, NewEcho())
	p := startEdgeProcess(t, backend.URL())
	if rss, anon := p.rss(t); rss < 1<<20 || anon <= 0 || anon > rss {
		t.Errorf("edge RSS %d bytes, %d anonymous: implausible", rss, anon)
	}
	sessions, err := OpenSessions(t.Context(), http.DefaultClient, p.url, benchKey, 20)
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
	if _, err := p.cpuErr(); err != nil {
		t.Error(err)
	}

	proxy := startProxyProcess(t, backend.URL())
	sum, err := Run(t.Context(), Config{URL: proxy.url, Sessions: 2, Calls: 50})
	if err != nil {
		t.Fatal(err)
	}
	checkSummary(t, sum, 50)
	if _, err := proxy.cpuErr(); err != nil {
		t.Error(err)
	}

	if _, err := OpenSessions(t.Context(), http.DefaultClient, "http://127.0.0.1:1/mcp", "", 1); err == nil {
		t.Error("opening a session on a closed port must fail")
	}
}
