package main

// These tests run `mcpgw dev` the way the README tells a newcomer to, as a
// real process, and follow the README's quickstart with the real tools: the
// official TypeScript SDK client connects with the printed URL and key (and
// through the printed stdio config), mcpctl uses the printed context line
// to apply examples/dev-no-echo.yaml, the client sees its tool list change,
// and `mcpctl audit query` shows the calls. Then the process is stopped the
// way a terminal does and must leave no process behind, and a restart on
// the same data dir must print the same credentials and keep the state.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mcpgw/mcpgw/controlplane"
	"github.com/mcpgw/mcpgw/internal/devmode"
	"github.com/mcpgw/mcpgw/internal/pgtest"
	"github.com/mcpgw/mcpgw/internal/proctest"
)

var (
	binDir   string // mcpgw and mcpctl, built by TestMain
	repoRoot string
)

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	_, file, _, _ := runtime.Caller(0)
	repoRoot = filepath.Join(filepath.Dir(file), "..", "..")
	dir, err := os.MkdirTemp("", "mcpgw-dev-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	binDir = dir
	// The README's install command, into a private GOBIN.
	cmd := exec.Command("go", "install", "./cmd/mcpgw", "./cmd/mcpctl")
	cmd.Dir = repoRoot
	cmd.Env = append(os.Environ(), "GOBIN="+binDir)
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go install ./cmd/mcpgw ./cmd/mcpctl: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

// banner is what `mcpgw dev` printed once ready.
type banner struct {
	Key, URL, AdminToken, McpctlLine string
	HTTPConfig, StdioConfig          map[string]any
	Text                             string
}

var keyLine = regexp.MustCompile(`^mcpgw_[A-Za-z0-9]+_[A-Za-z0-9_-]+$`)

// parseBanner reads the banner's sections by their headings.
func parseBanner(t *testing.T, text string) banner {
	t.Helper()
	lines := strings.Split(text, "\n")
	b := banner{Text: text, Key: lines[0]}
	if !keyLine.MatchString(b.Key) {
		t.Fatalf("the first line is not the demo API key alone: %q\n%s", b.Key, text)
	}
	after := func(heading string) int {
		i := slices.Index(lines, heading)
		if i < 0 || i+1 >= len(lines) {
			t.Fatalf("no section %q in:\n%s", heading, text)
		}
		return i + 1
	}
	b.URL = strings.TrimSpace(lines[after(devmode.HeadingURL)])
	b.AdminToken = strings.TrimSpace(lines[after(devmode.HeadingAdminToken)])
	b.McpctlLine = strings.TrimSpace(lines[after(devmode.HeadingMcpctl)])
	jsonAfter := func(heading string) map[string]any {
		i := after(heading)
		end := i
		for end < len(lines) && lines[end] != "}" {
			end++
		}
		var v map[string]any
		if err := json.Unmarshal([]byte(strings.Join(lines[i:end+1], "\n")), &v); err != nil {
			t.Fatalf("section %q is not JSON: %v\n%s", heading, err, text)
		}
		return v
	}
	b.HTTPConfig = jsonAfter(devmode.HeadingHTTPConfig)
	b.StdioConfig = jsonAfter(devmode.HeadingStdio)
	if !strings.HasPrefix(b.URL, "http://127.0.0.1:") || !strings.HasSuffix(b.URL, "/mcp") {
		t.Errorf("MCP URL %q", b.URL)
	}
	if !strings.HasPrefix(b.AdminToken, "mcpgwadm_") {
		t.Errorf("admin token %q lacks the mcpgwadm_ prefix", b.AdminToken)
	}
	if !strings.HasPrefix(b.McpctlLine, "mcpctl config set-context ") || !strings.Contains(b.McpctlLine, "--ca-file ") {
		t.Errorf("mcpctl line %q", b.McpctlLine)
	}
	return b
}

// devProc is a running `mcpgw dev`.
type devProc struct {
	cmd    *exec.Cmd
	stderr *bytes.Buffer
	// exited is closed once the process was waited for; waitErr is then
	// its result.
	exited  chan struct{}
	waitErr error
}

// startDev runs argv (the binary or `go run`) in its own process group, as
// a shell runs a foreground job, and waits for the banner.
func startDev(t *testing.T, argv []string) (*devProc, banner) {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = repoRoot
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &devProc{cmd: cmd, stderr: &bytes.Buffer{}, exited: make(chan struct{})}
	cmd.Stderr = syncWriter{p.stderr}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// A failed test must not leave the installation running.
		select {
		case <-p.exited:
		default:
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-p.exited
		}
	})
	text := make(chan string, 1)
	go func() {
		var b strings.Builder
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			b.WriteString(sc.Text() + "\n")
			if strings.HasPrefix(sc.Text(), "Press Ctrl-C") {
				text <- b.String()
				b.Reset()
			}
		}
		text <- b.String()
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	select {
	case s := <-text:
		if !strings.Contains(s, "Press Ctrl-C") {
			t.Fatalf("mcpgw dev ended before it was ready; stdout:\n%s\nstderr:\n%s", s, p.stderrText())
		}
		return p, parseBanner(t, s)
	case <-time.After(3 * time.Minute):
		t.Fatalf("mcpgw dev printed no banner within 3 minutes; stderr:\n%s", p.stderrText())
	}
	return nil, banner{}
}

func (p *devProc) stderrText() string {
	mu.Lock()
	defer mu.Unlock()
	return p.stderr.String()
}

// stop signals the process group as a terminal does and requires a clean
// exit with no process of the installation left. Under `go run`, the go
// command exits 1 after an interrupt whatever its child returned (cmd/go
// sets that status when interrupted), so there a clean exit is one with no
// error line from mcpgw; the binary itself must exit 0.
func (p *devProc) stop(t *testing.T, sig syscall.Signal, goRun bool) {
	t.Helper()
	descendants := processTree(p.cmd.Process.Pid)
	if len(descendants) == 0 {
		t.Fatal("found no child process (the demo backend) of mcpgw dev: the orphan check would prove nothing")
	}
	var names []string
	for _, d := range descendants {
		names = append(names, fmt.Sprintf("%d %s", d.pid, d.comm))
	}
	t.Logf("processes under mcpgw dev before %v: %v", sig, names)
	if err := syscall.Kill(-p.cmd.Process.Pid, sig); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.exited:
		err := p.waitErr
		// An error ends mcpgw with one line "mcpgw: ..." on stderr.
		if regexp.MustCompile(`(?m)^mcpgw: `).MatchString(p.stderrText()) || (err != nil && !goRun) {
			t.Fatalf("mcpgw dev exited with %v after %v; stderr:\n%s", err, sig, p.stderrText())
		}
		if !strings.Contains(p.stderrText(), "mcpgw dev: stopping") {
			t.Errorf("mcpgw dev did not say it was stopping; stderr:\n%s", p.stderrText())
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("mcpgw dev still running 60s after %v", sig)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		var left []string
		for _, d := range descendants {
			if st, err := readStat(d.pid); err == nil && st.start == d.start && st.state != "Z" {
				left = append(left, fmt.Sprintf("%d (%s)", d.pid, d.comm))
			}
		}
		for _, st := range allProcs() {
			if st.pgid == p.cmd.Process.Pid {
				left = append(left, fmt.Sprintf("%d (%s) in the process group", st.pid, st.comm))
			}
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("processes left after mcpgw dev exited: %v", left)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestDevQuickstart(t *testing.T) {
	tsDir := proctest.TSClientDir(t)
	work := t.TempDir()
	dataDir := filepath.Join(work, "data")
	// No --database-url: the embedded store, which never opens a Postgres
	// connection.
	args := []string{"dev", "--data-dir", dataDir, "--listen", "127.0.0.1:0", "--node-listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"}
	env := append(os.Environ(), "PATH="+binDir+string(os.PathListSeparator)+os.Getenv("PATH"), "MCPCTL_CONFIG="+filepath.Join(work, "mcpctl.yaml"))

	// The README's first command, with flags so parallel runs do not clash.
	p, b := startDev(t, append([]string{"go", "run", "./cmd/mcpgw"}, args...))
	t.Logf("banner:\n%s", b.Text)

	if _, err := os.Stat(filepath.Join(dataDir, controlplane.EmbeddedStoreFile)); err != nil {
		t.Errorf("the embedded store is not in the data dir: %v", err)
	}
	// The edge's certificate outlives a long pause (it renews only while
	// running).
	if left := time.Until(certNotAfter(t, filepath.Join(dataDir, "edge", "node.pem"))); left < 300*24*time.Hour {
		t.Errorf("the dev edge's certificate expires in %v; want about a year", left)
	}
	// The credentials file: 0600, and the banner says it is dev mode only.
	st, err := os.Stat(filepath.Join(dataDir, devmode.CredentialsFile))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("credentials file: %v, mode %v", err, st.Mode())
	}
	if !strings.Contains(b.Text, "DEV MODE ONLY") {
		t.Error("the banner does not say plainly that stored credentials are for dev mode only")
	}

	// The printed mcpctl line, pasted into a shell.
	mcpctlShell(t, env, b.McpctlLine)
	if out := mcpctl(t, env, "config", "current-context"); strings.TrimSpace(out) != devmode.ContextName {
		t.Fatalf("current context %q", out)
	}

	// The printed HTTP config, used by the TypeScript SDK client.
	srv := b.HTTPConfig["mcpServers"].(map[string]any)["mcpgw-dev"].(map[string]any)
	url := srv["url"].(string)
	auth := srv["headers"].(map[string]any)["Authorization"].(string)
	if url != b.URL || auth != "Bearer "+b.Key {
		t.Fatalf("HTTP config %v does not match the URL %s and key", srv, b.URL)
	}
	mark := filepath.Join(work, "listed")
	ops := []map[string]any{
		{"op": "listTools"},
		{"op": "callTool", "name": "demo__echo", "arguments": map[string]any{"text": "hello through mcpgw"}},
		{"op": "callTool", "name": "demo__add", "arguments": map[string]any{"numbers": []int{2, 3, 37}}},
		{"op": "readResource", "uri": "demo://readme"},
		{"op": "getPrompt", "name": "demo__summarize", "arguments": map[string]any{"text": "mcpgw is a gateway."}},
		{"op": "mark", "file": mark},
		{"op": "waitToolGone", "name": "demo__echo", "timeoutMs": 20000},
		{"op": "callTool", "name": "demo__echo", "arguments": map[string]any{"text": "denied now"}},
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	clientDone := make(chan tsResult, 1)
	go func() {
		clientDone <- runTSClient(ctx, tsDir, []string{"--url", url, "--key", strings.TrimPrefix(auth, "Bearer ")}, nil, ops)
	}()

	waitFile(t, mark, clientDone)
	// The README's policy change.
	if out := mcpctl(t, env, "get", "roles", "demo", "-o", "yaml"); !strings.Contains(out, "demo-all") {
		t.Errorf("get roles demo -o yaml:\n%s", out)
	}
	mcpctl(t, env, "apply", "-f", "examples/dev-no-echo.yaml")
	applied := time.Now()
	if out := mcpctl(t, env, "check", "--principal", "demo", "--tool", "demo__echo"); !strings.Contains(out, "deny") || !strings.Contains(out, "demo-no-echo") {
		t.Errorf("check after the change:\n%s", out)
	}

	res := <-clientDone
	if res.err != nil {
		t.Fatalf("TypeScript client: %v", res.err)
	}
	for i, r := range res.results[:7] {
		if !r.OK {
			t.Fatalf("op %d (%s) failed: %s", i, r.Op, r.Error)
		}
	}
	tools := toolNames(t, res.results[0].Result)
	for _, want := range []string{"demo__echo", "demo__add", "demo__time_now", "demo__word_count"} {
		if !slices.Contains(tools, want) {
			t.Errorf("tools/list lacks %s: %v", want, tools)
		}
	}
	if got := textOf(t, res.results[1].Result); got != "hello through mcpgw" {
		t.Errorf("demo__echo answered %q", got)
	}
	if got := textOf(t, res.results[2].Result); !sameJSON(got, `{"sum":42}`) {
		t.Errorf("demo__add answered %q", got)
	}
	var gone struct {
		At          int64    `json:"at"`
		ListChanged int      `json:"listChanged"`
		Tools       []string `json:"tools"`
	}
	if err := json.Unmarshal(res.results[6].Result, &gone); err != nil {
		t.Fatal(err)
	}
	lag := time.UnixMilli(gone.At).Sub(applied)
	t.Logf("the client's tool list lost demo__echo %v after mcpctl apply returned (%d list_changed)", lag, gone.ListChanged)
	if lag > time.Second {
		t.Errorf("the tool list changed %v after the apply; want within 1s", lag)
	}
	if slices.Contains(gone.Tools, "demo__echo") || !slices.Contains(gone.Tools, "demo__add") {
		t.Errorf("tools after the policy change: %v", gone.Tools)
	}
	if last := res.results[7]; last.OK && !strings.Contains(string(last.Result), `"isError":true`) {
		t.Errorf("demo__echo still callable after the policy removed it: %s", last.Result)
	}

	// The printed stdio config, launched by the TypeScript SDK client the
	// way a desktop client launches it.
	sc := b.StdioConfig["mcpServers"].(map[string]any)["mcpgw-dev"].(map[string]any)
	stdioArgv := []string{sc["command"].(string)}
	for _, a := range sc["args"].([]any) {
		stdioArgv = append(stdioArgv, a.(string))
	}
	var stdioEnv []string
	for k, v := range sc["env"].(map[string]any) {
		stdioEnv = append(stdioEnv, k+"="+v.(string))
	}
	sres := runTSClient(ctx, tsDir, append(append([]string{"--stdio"}, stdioArgv...), "--"), stdioEnv, []map[string]any{
		{"op": "listTools"},
		{"op": "callTool", "name": "demo__word_count", "arguments": map[string]any{"text": "one two three"}},
	})
	if sres.err != nil {
		t.Fatalf("stdio client: %v", sres.err)
	}
	for i, r := range sres.results {
		if !r.OK {
			t.Fatalf("stdio op %d (%s) failed: %s", i, r.Op, r.Error)
		}
	}
	if st := toolNames(t, sres.results[0].Result); !slices.Contains(st, "demo__word_count") || slices.Contains(st, "demo__echo") {
		t.Errorf("stdio client lists %v; want the demo tools under the current policy (no echo)", st)
	}
	if got := textOf(t, sres.results[1].Result); !sameJSON(got, `{"words":3,"lines":1,"characters":13}`) {
		t.Errorf("demo__word_count over stdio answered %q", got)
	}

	// The README's audit query shows the calls: the allowed echo and add,
	// and the echo the new policy denied.
	auditDeadline := time.Now().Add(60 * time.Second)
	for {
		out := mcpctl(t, env, "audit", "query", "--principal", "demo", "--method", "tools/call", "-o", "jsonl")
		var allowedEcho, deniedEcho, add, wc bool
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			var ev map[string]any
			if json.Unmarshal([]byte(line), &ev) != nil {
				continue
			}
			switch {
			case ev["name"] == "demo__echo" && ev["decision"] == "allow":
				allowedEcho = true
			case ev["name"] == "demo__echo" && ev["decision"] == "deny":
				deniedEcho = true
			case ev["name"] == "demo__add":
				add = true
			case ev["name"] == "demo__word_count":
				wc = true
			}
		}
		if allowedEcho && deniedEcho && add && wc {
			break
		}
		if time.Now().After(auditDeadline) {
			t.Fatalf("audit query after 60s lacks calls (echo allowed %v, echo denied %v, add %v, word_count %v):\n%s", allowedEcho, deniedEcho, add, wc, out)
		}
		time.Sleep(250 * time.Millisecond)
	}
	if out := mcpctl(t, env, "audit", "query", "--principal", "demo"); !strings.Contains(out, "demo__echo") {
		t.Errorf("the README's audit query (table) does not show the calls:\n%s", out)
	}

	// On the embedded store nothing in the installation holds a connection
	// to Postgres (a pgx pool keeps its connections after use), though the
	// machine runs one.
	for _, d := range append(processTree(p.cmd.Process.Pid), proc{pid: p.cmd.Process.Pid, comm: "root"}) {
		if n := postgresConnections(t, d.pid); n > 0 {
			t.Errorf("process %d (%s) of mcpgw dev holds %d connections to port 5432", d.pid, d.comm, n)
		}
	}

	// A second mcpgw dev on the same data dir is refused, clearly.
	second := exec.Command(filepath.Join(binDir, "mcpgw"), args...)
	out, err := second.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "another mcpgw dev is running") {
		t.Errorf("a second mcpgw dev on the same data dir: %v\n%s", err, out)
	}

	// Ctrl-C in the terminal: SIGINT to the foreground process group.
	p.stop(t, syscall.SIGINT, true)

	// Secrets stay out of the logs, stderr and the stdio edge's config
	// (which takes the key from its environment).
	for name, text := range map[string]string{"dev.log": readFile(t, filepath.Join(dataDir, "dev.log")), "stderr": p.stderrText(),
		"stdio-edge.yaml": readFile(t, filepath.Join(dataDir, "stdio-edge.yaml"))} {
		if strings.Contains(text, b.Key[len(b.Key)-20:]) || strings.Contains(text, b.AdminToken[len(b.AdminToken)-20:]) {
			t.Errorf("%s holds the demo key or the admin token", name)
		}
	}

	// A restart (the built binary this time, stopped with SIGTERM) prints
	// the same credentials, re-enrolls nothing and keeps the policy.
	p2, b2 := startDev(t, append([]string{filepath.Join(binDir, "mcpgw")}, args...))
	if b2.Key != b.Key || b2.AdminToken != b.AdminToken {
		t.Errorf("restart printed other credentials: key %q → %q", b.Key, b2.Key)
	}
	mcpctlShell(t, env, b2.McpctlLine) // the admin port may have moved
	res2 := runTSClient(ctx, tsDir, []string{"--url", b2.URL, "--key", b2.Key}, nil, []map[string]any{{"op": "listTools"}})
	if res2.err != nil || !res2.results[0].OK {
		t.Fatalf("client after restart: %v %+v", res2.err, res2.results)
	}
	if tools := toolNames(t, res2.results[0].Result); slices.Contains(tools, "demo__echo") || !slices.Contains(tools, "demo__add") {
		t.Errorf("after a restart the applied policy is lost: tools %v", tools)
	}
	// The README's undo brings echo back.
	mcpctl(t, env, "apply", "-f", "examples/dev-default.yaml")
	res3 := runTSClient(ctx, tsDir, []string{"--url", b2.URL, "--key", b2.Key}, nil, []map[string]any{
		{"op": "callTool", "name": "demo__echo", "arguments": map[string]any{"text": "back"}},
	})
	if res3.err != nil || !res3.results[0].OK || textOf(t, res3.results[0].Result) != "back" {
		t.Errorf("echo after examples/dev-default.yaml: %v %+v", res3.err, res3.results)
	}
	var nodes struct {
		Nodes []map[string]any `json:"nodes"`
	}
	if err := json.Unmarshal([]byte(mcpctl(t, env, "get", "nodes", "-o", "json")), &nodes); err != nil {
		t.Fatal(err)
	}
	if len(nodes.Nodes) != 1 {
		t.Errorf("want the one edge enrolled once, got %d nodes: %v", len(nodes.Nodes), nodes.Nodes)
	}
	p2.stop(t, syscall.SIGTERM, false)
}

// A taken port fails the start at once, naming the flag to change.
func TestDevPortTaken(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cmd := exec.Command(filepath.Join(binDir, "mcpgw"), "dev", "--data-dir", t.TempDir(), "--listen", "127.0.0.1:0",
		"--node-listen", ln.Addr().String(), "--admin-listen", "127.0.0.1:0")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("want exit 1, got %v\n%s", err, out)
	}
	if !strings.Contains(string(out), ln.Addr().String()) || !strings.Contains(string(out), "--node-listen") {
		t.Errorf("the error does not name the address and the flag:\n%s", out)
	}
}

// TestDevOnPostgres starts mcpgw dev with --database-url: the same
// installation on Postgres, ready to serve the demo tools, and a clean stop.
func TestDevOnPostgres(t *testing.T) {
	tsDir := proctest.TSClientDir(t)
	dataDir := filepath.Join(t.TempDir(), "data")
	p, b := startDev(t, []string{filepath.Join(binDir, "mcpgw"), "dev", "--data-dir", dataDir, "--database-url", pgtest.NewDatabase(t),
		"--listen", "127.0.0.1:0", "--node-listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"})
	res := runTSClient(t.Context(), tsDir, []string{"--url", b.URL, "--key", b.Key}, nil, []map[string]any{
		{"op": "callTool", "name": "demo__time_now", "arguments": map[string]any{"zone": "Asia/Tokyo"}},
	})
	if res.err != nil || !res.results[0].OK || !strings.Contains(textOf(t, res.results[0].Result), "+09:00") {
		t.Fatalf("demo__time_now on Postgres: %v %+v", res.err, res.results)
	}
	if _, err := os.Stat(filepath.Join(dataDir, controlplane.EmbeddedStoreFile)); err == nil {
		t.Error("with --database-url, an embedded store file was created too")
	}
	// The control check for the quickstart's "no Postgres connection": here
	// the control plane's pool must be seen.
	if n := postgresConnections(t, p.cmd.Process.Pid); n == 0 {
		t.Error("on Postgres, no connection to port 5432 was found: the embedded test's check for none would prove nothing")
	}
	p.stop(t, syscall.SIGTERM, false)
}

func mcpctl(t *testing.T, env []string, args ...string) string {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, "mcpctl"), args...)
	cmd.Dir = repoRoot
	cmd.Env = env
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("mcpctl %s: %v\n%s%s", strings.Join(args, " "), err, out.String(), stderr.String())
	}
	return out.String()
}

// mcpctlShell runs a printed line as a user pasting it into a shell would.
func mcpctlShell(t *testing.T, env []string, line string) {
	t.Helper()
	cmd := exec.Command("sh", "-c", line)
	cmd.Env = env
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", line, err, out)
	}
}

func waitFile(t *testing.T, path string, clientDone chan tsResult) {
	t.Helper()
	deadline := time.After(time.Minute)
	for {
		if _, err := os.Stat(path); err == nil {
			return
		}
		select {
		case res := <-clientDone:
			t.Fatalf("the client ended before its mark: %v %+v", res.err, res.results)
		case <-deadline:
			t.Fatal("the client did not reach its mark within a minute")
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// tsResult is what client.mjs printed.
type tsResult struct {
	results []tsOpResult
	err     error
}

type tsOpResult struct {
	Op     string          `json:"op"`
	OK     bool            `json:"ok"`
	Result json.RawMessage `json:"result"`
	Error  json.RawMessage `json:"error"`
}

func runTSClient(ctx context.Context, dir string, args, env []string, ops []map[string]any) tsResult {
	in, err := json.Marshal(ops)
	if err != nil {
		return tsResult{err: err}
	}
	cmd := exec.CommandContext(ctx, "node", append([]string{filepath.Join(dir, "client.mjs")}, args...)...)
	cmd.Stdin = bytes.NewReader(in)
	cmd.Env = append(os.Environ(), env...)
	cmd.WaitDelay = 5 * time.Second
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		return tsResult{err: fmt.Errorf("%v\n%s", err, stderr.String())}
	}
	var v struct {
		Results []tsOpResult `json:"results"`
	}
	if err := json.Unmarshal(out.Bytes(), &v); err != nil {
		return tsResult{err: fmt.Errorf("client output %q: %v", out.String(), err)}
	}
	if len(v.Results) != len(ops) {
		return tsResult{err: fmt.Errorf("%d results for %d ops", len(v.Results), len(ops))}
	}
	return tsResult{results: v.Results}
}

func toolNames(t *testing.T, raw json.RawMessage) []string {
	t.Helper()
	var v struct {
		Tools []struct {
			Name string `json:"name"`
		} `json:"tools"`
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tool := range v.Tools {
		names = append(names, tool.Name)
	}
	return names
}

func certNotAfter(t *testing.T, path string) time.Time {
	t.Helper()
	rest := []byte(readFile(t, path))
	for {
		var blk *pem.Block
		if blk, rest = pem.Decode(rest); blk == nil {
			t.Fatalf("no certificate in %s", path)
		}
		if blk.Type == "CERTIFICATE" {
			c, err := x509.ParseCertificate(blk.Bytes)
			if err != nil {
				t.Fatal(err)
			}
			return c.NotAfter
		}
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func sameJSON(a, b string) bool {
	var x, y any
	if json.Unmarshal([]byte(a), &x) != nil || json.Unmarshal([]byte(b), &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}

func textOf(t *testing.T, raw json.RawMessage) string {
	t.Helper()
	var v struct {
		Content []struct {
			Text string `json:"text"`
		} `json:"content"`
	}
	if err := json.Unmarshal(raw, &v); err != nil || len(v.Content) == 0 {
		t.Fatalf("not a tool result with text: %s", raw)
	}
	return v.Content[0].Text
}

// proc is one line of /proc/PID/stat, the parts the orphan check needs.
type proc struct {
	pid, ppid, pgid int
	state, comm     string
	start           string // start time in clock ticks: tells a reused pid apart
}

func readStat(pid int) (proc, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return proc{}, err
	}
	s := string(b)
	open, closing := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || closing < 0 {
		return proc{}, fmt.Errorf("odd stat %q", s)
	}
	f := strings.Fields(s[closing+2:])
	if len(f) < 20 {
		return proc{}, fmt.Errorf("odd stat %q", s)
	}
	p := proc{pid: pid, comm: s[open+1 : closing], state: f[0], start: f[19]}
	p.ppid, _ = strconv.Atoi(f[1])
	p.pgid, _ = strconv.Atoi(f[2])
	return p, nil
}

func allProcs() []proc {
	entries, _ := os.ReadDir("/proc")
	var ps []proc
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if p, err := readStat(pid); err == nil {
			ps = append(ps, p)
		}
	}
	return ps
}

// postgresConnections counts the TCP connections of process pid to port
// 5432, from its socket inodes and the kernel's connection tables.
func postgresConnections(t *testing.T, pid int) int {
	t.Helper()
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return 0 // the process is gone
	}
	inodes := map[string]bool{}
	for _, fd := range fds {
		link, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if err == nil && strings.HasPrefix(link, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]")] = true
		}
	}
	n := 0
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(table)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			f := strings.Fields(line)
			// f[2] is the remote address as HEX_IP:HEX_PORT; 5432 = 0x1538.
			if len(f) > 9 && strings.HasSuffix(f[2], ":1538") && inodes[f[9]] {
				n++
			}
		}
	}
	return n
}

// processTree returns every descendant of root.
func processTree(root int) []proc {
	ps := allProcs()
	var out []proc
	parents := map[int]bool{root: true}
	for changed := true; changed; {
		changed = false
		for _, p := range ps {
			if parents[p.ppid] && !parents[p.pid] {
				parents[p.pid] = true
				out = append(out, p)
				changed = true
			}
		}
	}
	return out
}

// mu guards the stderr buffers of the dev processes.
var mu sync.Mutex

// syncWriter serialises writes from the process's stderr copier with
// reads by the test.
type syncWriter struct{ w io.Writer }

func (s syncWriter) Write(p []byte) (int, error) {
	mu.Lock()
	defer mu.Unlock()
	return s.w.Write(p)
}
