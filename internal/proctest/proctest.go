// Package proctest runs the real mcpgw binaries as child processes for
// end-to-end tests: it builds them once per test binary, starts each child
// with its output in a log file, kills every child at cleanup (and with the
// test binary, where the OS allows), and shows the tail of each log when a
// test fails.
package proctest

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Build builds each package (an import path such as
// "github.com/mcpgw/mcpgw/cmd/mcpgw") into dir and returns the binaries'
// paths in the same order. Call it from TestMain, once per test binary.
func Build(dir string, pkgs ...string) ([]string, error) {
	out := make([]string, len(pkgs))
	for i, pkg := range pkgs {
		out[i] = filepath.Join(dir, filepath.Base(pkg))
		cmd := exec.Command("go", "build", "-o", out[i], pkg)
		cmd.Stderr = os.Stderr
		if err := cmd.Run(); err != nil {
			return nil, fmt.Errorf("building %s: %w", pkg, err)
		}
	}
	return out, nil
}

// Proc is one child process.
type Proc struct {
	Name string
	// Log is the file holding its stdout and stderr.
	Log  string
	cmd  *exec.Cmd
	done chan struct{}
}

// Procs starts and owns one test's child processes.
type Procs struct {
	t   testing.TB
	dir string
	env []string
	// tail is how much of each log a failed test shows.
	tail int

	mu  sync.Mutex // guards all
	all []*Proc
}

// New returns a Procs whose children get env added to the test's own
// environment and write their logs under dir. At cleanup every child is
// killed, and if the test failed the last 6000 bytes of each log are shown.
func New(t testing.TB, dir string, env ...string) *Procs {
	ps := &Procs{t: t, dir: dir, env: env, tail: 6000}
	t.Cleanup(func() {
		ps.mu.Lock()
		all := append([]*Proc(nil), ps.all...)
		ps.mu.Unlock()
		for _, p := range all {
			p.Kill(syscall.SIGKILL)
		}
		if t.Failed() {
			for _, p := range all {
				b, _ := os.ReadFile(p.Log)
				if len(b) > ps.tail {
					b = b[len(b)-ps.tail:]
				}
				t.Logf("--- %s (%s), last output:\n%s", p.Name, p.Log, b)
			}
		}
	})
	return ps
}

// Start runs bin with args and extra environment env; its output goes to
// a log file named after name and how many processes of that name ran
// before (a restarted process keeps its earlier log).
func (ps *Procs) Start(name string, env []string, bin string, args ...string) *Proc {
	ps.t.Helper()
	ps.mu.Lock()
	defer ps.mu.Unlock()
	n := 0
	for _, p := range ps.all {
		if p.Name == name {
			n++
		}
	}
	logPath := filepath.Join(ps.dir, fmt.Sprintf("%s.%d.log", name, n))
	out, err := os.Create(logPath)
	if err != nil {
		ps.t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(append(os.Environ(), ps.env...), env...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = procAttr()
	if err := cmd.Start(); err != nil {
		out.Close()
		ps.t.Fatalf("starting %s: %v", name, err)
	}
	p := &Proc{Name: name, Log: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		out.Close()
		close(p.done)
	}()
	ps.all = append(ps.all, p)
	return p
}

// Kill sends sig and waits for the process to exit, escalating to SIGKILL
// after 15 s.
func (p *Proc) Kill(sig syscall.Signal) {
	if p.Exited() {
		return
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// Exited reports whether the process has exited.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// ExitCode is the process's exit status once it has exited (-1 if it was
// killed by a signal or has not exited).
func (p *Proc) ExitCode() int {
	if !p.Exited() {
		return -1
	}
	return p.cmd.ProcessState.ExitCode()
}

// FreeAddr returns a loopback address with a port that was free a moment
// ago, for a child that must listen at an address known in advance (and
// keep it across a restart).
func FreeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// WaitHTTP waits until url answers 200 while p runs and returns how long
// that took; it fails the test if p exits or within passes first.
func WaitHTTP(t testing.TB, p *Proc, url string, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		resp, err := http.Get(url)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return time.Since(start)
			}
			err = fmt.Errorf("status %s", resp.Status)
		}
		if p.Exited() {
			t.Fatalf("%s exited while waiting for %s", p.Name, url)
		}
		if time.Since(start) > within {
			t.Fatalf("%s: %s not ready after %v (%v)", p.Name, url, within, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Main is a TestMain body: it gives setup a temporary directory (for the
// binaries it builds), runs the tests if setup succeeded, removes the
// directory and exits with the tests' status.
func Main(m *testing.M, setup func(dir string) error) {
	dir, err := os.MkdirTemp("", "mcpgw-proctest")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := 1
	if err := setup(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
	} else {
		code = m.Run()
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

// TSClientDir returns testdata/tsclient, the pinned TypeScript SDK client
// driver the end-to-end tests run with node. Without node or its
// node_modules the calling test skips, except under CI (.ci/run runs npm ci
// first), where it fails.
func TSClientDir(t testing.TB) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	dir := filepath.Join(filepath.Dir(file), "..", "..", "testdata", "tsclient")
	missing := ""
	if _, err := exec.LookPath("node"); err != nil {
		missing = "node is not on PATH"
	} else if _, err := os.Stat(filepath.Join(dir, "node_modules", "@modelcontextprotocol", "sdk", "package.json")); err != nil {
		missing = "the TypeScript SDK is not installed (run npm ci in " + dir + ")"
	}
	if missing != "" {
		if os.Getenv("CI") != "" {
			t.Fatalf("TypeScript SDK client tests: %s", missing)
		}
		t.Skipf("TypeScript SDK client tests skipped: %s; CI fails instead", missing)
	}
	return dir
}
