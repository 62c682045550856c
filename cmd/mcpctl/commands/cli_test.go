package commands

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/mcpgw/mcpgw/controlplane"
)

// cli runs the command tree in-process with its own environment, so tests
// never read the developer's contexts file or MCPCTL_* variables.
type cli struct {
	t     *testing.T
	env   map[string]string
	stdin string
}

func newCLI(t *testing.T) *cli {
	t.Helper()
	return &cli{t: t, env: map[string]string{
		"HOME":          t.TempDir(),
		"MCPCTL_CONFIG": filepath.Join(t.TempDir(), "mcpctl", "config.yaml"),
	}}
}

func (c *cli) run(args ...string) (code int, stdout, stderr string) {
	c.t.Helper()
	var out, errOut bytes.Buffer
	e := env{
		getenv: func(k string) string { return c.env[k] },
		stdin:  strings.NewReader(c.stdin),
		age:    func(time.Time) string { return "<age>" },
		until:  func(time.Time) string { return "<until>" },
	}
	code = run(c.t.Context(), e, args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// mustRun runs a command that must succeed and returns its stdout.
func (c *cli) mustRun(args ...string) string {
	c.t.Helper()
	code, out, errOut := c.run(args...)
	if code != exitOK {
		c.t.Fatalf("mcpctl %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// oneErrorLine checks the contract for failures: exactly one line on
// stderr, prefixed "mcpctl: ".
func oneErrorLine(t *testing.T, stderr string) {
	t.Helper()
	if strings.Count(stderr, "\n") != 1 || !strings.HasPrefix(stderr, "mcpctl: ") {
		t.Errorf("stderr is not one 'mcpctl: ...' line:\n%s", stderr)
	}
	for _, bad := range []string{"rpc error", "code = ", "goroutine ", "panic"} {
		if strings.Contains(stderr, bad) {
			t.Errorf("stderr leaks %q:\n%s", bad, stderr)
		}
	}
}

func TestUsageErrorsExit2(t *testing.T) {
	c := newCLI(t)
	c.env["MCPCTL_SERVER"] = "127.0.0.1:1"
	c.env["MCPCTL_TOKEN"] = "mcpgwadm_x"
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"unknown command", []string{"frobnicate"}, `unknown command "frobnicate" for "mcpctl"`},
		{"unknown subcommand", []string{"config", "frob"}, `unknown command "frob" for "mcpctl config"`},
		{"typo", []string{"gett", "roles"}, `did you mean "get"?`},
		{"unknown flag", []string{"get", "backends", "--bogus"}, "unknown flag: --bogus"},
		{"unknown global flag", []string{"--bogus", "version"}, "unknown flag: --bogus"},
		{"bad output", []string{"get", "backends", "-o", "xml"}, `unknown output format "xml"`},
		{"unknown kind", []string{"get", "widgets"}, `unknown kind "widgets"`},
		{"get without kind", []string{"get"}, "takes 1 to 2 arguments"},
		{"describe without name", []string{"describe", "role"}, "needs KIND NAME"},
		{"delete unknown kind", []string{"delete", "policy", "x"}, `unknown kind "policy"`},
		{"apply without -f", []string{"apply"}, "apply needs -f"},
		{"apply wait and dry run", []string{"apply", "-f", "x.yaml", "--wait", "--dry-run"}, "--wait and --dry-run"},
		{"keys create without principal", []string{"keys", "create"}, "needs --principal"},
		{"bad expires", []string{"keys", "create", "--principal", "a", "--expires", "soon"}, `--expires "soon"`},
		{"bad ttl", []string{"join-token", "create", "--ttl", "-1h"}, `--ttl "-1h"`},
		{"bad labels", []string{"join-token", "create", "--labels", "novalue"}, "--labels"},
		{"check without principal", []string{"check", "--tool", "x"}, "needs --principal"},
		{"check without method", []string{"check", "--principal", "a"}, "needs --method"},
		{"check tool and name", []string{"check", "--principal", "a", "--tool", "x", "--name", "y"}, "--tool NAME is short for"},
		{"check bad args", []string{"check", "--principal", "a", "--tool", "x", "--args", "[1]"}, "--args must be a JSON object"},
		{"audit bad status", []string{"audit", "query", "--status", "fine"}, `--status "fine"`},
		{"audit bad decision", []string{"audit", "query", "--decision", "maybe"}, `--decision "maybe"`},
		{"audit bad since", []string{"audit", "query", "--since", "yesterday"}, `--since "yesterday"`},
		{"audit bad limit", []string{"audit", "query", "--limit", "-1"}, "--limit"},
		{"completion shell", []string{"completion", "powershell"}, "unsupported shell"},
		{"version args", []string{"version", "extra"}, "takes no arguments"},
		{"principal on roles", []string{"get", "roles", "--principal", "a"}, "--principal only applies to keys"},
		{"http server", []string{"get", "backends", "--server", "http://cp:80"}, "TLS only"},
		{"server without port", []string{"get", "backends", "--server", "cp"}, "want host:port"},
		{"use-context without name", []string{"config", "use-context"}, "needs NAME"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := c.run(tc.args...)
			if code != exitUsage || !strings.Contains(errOut, tc.want) {
				t.Fatalf("exit %d, stderr %q; want exit 2 and %q", code, errOut, tc.want)
			}
			if out != "" {
				t.Errorf("stdout %q, want nothing", out)
			}
			oneErrorLine(t, errOut)
		})
	}
}

func TestMissingConnectionSettings(t *testing.T) {
	c := newCLI(t)
	code, _, errOut := c.run("get", "backends")
	if code != exitUsage || !strings.Contains(errOut, "no control plane given: pass --server, set MCPCTL_SERVER") {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	code, _, errOut = c.run("get", "backends", "--server", "127.0.0.1:1")
	if code != exitUsage || !strings.Contains(errOut, "no admin token given") {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	code, _, errOut = c.run("get", "backends", "--context", "nope")
	if code != exitUsage || !strings.Contains(errOut, `context "nope" is not in`) {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
}

func TestUnreachableServerIsOneLine(t *testing.T) {
	c := newCLI(t)
	// Port 1 on loopback refuses at once.
	code, out, errOut := c.run("get", "backends", "--server", "127.0.0.1:1", "--token", "mcpgwadm_x")
	if code != exitFailure || !strings.Contains(errOut, "cannot reach the control plane at 127.0.0.1:1: ") || out != "" {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	oneErrorLine(t, errOut)
}

func TestContextsCommands(t *testing.T) {
	c := newCLI(t)
	path := c.env["MCPCTL_CONFIG"]

	code, _, errOut := c.run("config", "current-context")
	if code != exitFailure || !strings.Contains(errOut, "no current context") {
		t.Fatalf("current-context with no file: exit %d, %q", code, errOut)
	}

	out := c.mustRun("config", "set-context", "prod", "--server", "https://cp.example.com:8443/", "--token", "mcpgwadm_prod", "--ca-file", "ca.crt")
	want := `context "prod" created in ` + path + "\nswitched to context \"prod\"\n"
	if out != want {
		t.Fatalf("set-context:\n%s\nwant:\n%s", out, want)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("contexts file: %v, %v; want mode 0600", st, err)
	}
	out = c.mustRun("config", "set-context", "dev", "--server", "127.0.0.1:9443", "--insecure-skip-tls-verify")
	if out != `context "dev" created in `+path+"\n" {
		t.Fatalf("second set-context: %q", out)
	}
	// Only the token changes; the rest stays.
	c.mustRun("config", "set-context", "prod", "--token", "mcpgwadm_rotated")

	if got := c.mustRun("config", "current-context"); got != "prod\n" {
		t.Fatalf("current-context = %q", got)
	}
	abs, _ := filepath.Abs("ca.crt")
	table := c.mustRun("config", "get-contexts")
	wantRows := [][]string{
		{"CURRENT", "NAME", "SERVER", "CA", "FILE", "TOKEN"},
		{"dev", "127.0.0.1:9443", "(TLS", "not", "verified)", "none"},
		{"*", "prod", "cp.example.com:8443", abs, "set"},
	}
	lines := strings.Split(strings.TrimSuffix(table, "\n"), "\n")
	if len(lines) != len(wantRows) {
		t.Fatalf("get-contexts:\n%s", table)
	}
	for i, want := range wantRows {
		if got := strings.Fields(lines[i]); strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("get-contexts row %d = %q, want %q", i, got, want)
		}
	}
	if strings.Contains(table, "mcpgwadm_") {
		t.Error("get-contexts printed a token")
	}
	var views []contextView
	if err := json.Unmarshal([]byte(c.mustRun("config", "get-contexts", "-o", "json")), &views); err != nil {
		t.Fatal(err)
	}
	if len(views) != 2 || !views[1].Current || views[1].Server != "cp.example.com:8443" || !views[1].HasToken || views[0].HasToken {
		t.Errorf("get-contexts -o json = %+v", views)
	}

	if got := c.mustRun("config", "use-context", "dev"); got != "switched to context \"dev\"\n" {
		t.Fatalf("use-context = %q", got)
	}
	if got := c.mustRun("config", "current-context"); got != "dev\n" {
		t.Fatalf("current-context after use = %q", got)
	}
	code, _, errOut = c.run("config", "use-context", "staging")
	if code != exitFailure || !strings.Contains(errOut, `no context "staging"`) {
		t.Fatalf("use-context of a missing context: exit %d, %q", code, errOut)
	}
	code, _, errOut = c.run("config", "set-context", "empty")
	if code != exitUsage || !strings.Contains(errOut, "has no server") {
		t.Fatalf("set-context without a server: exit %d, %q", code, errOut)
	}
	c.mustRun("config", "delete-context", "dev")
	code, _, _ = c.run("config", "current-context")
	if code != exitFailure {
		t.Fatalf("current-context after deleting it: exit %d", code)
	}
	raw, _ := os.ReadFile(path)
	if !strings.Contains(string(raw), "mcpgwadm_rotated") || strings.Contains(string(raw), "mcpgwadm_prod") {
		t.Errorf("file after rotation:\n%s", raw)
	}
}

// TestConnectionPrecedence checks flags > environment > context, using
// unreachable loopback ports: the error names the address that was used.
func TestConnectionPrecedence(t *testing.T) {
	c := newCLI(t)
	c.mustRun("config", "set-context", "lab", "--server", "127.0.0.1:3", "--token", "mcpgwadm_ctx")
	reached := func(args ...string) string {
		t.Helper()
		_, _, errOut := c.run(append([]string{"get", "roles"}, args...)...)
		i := strings.Index(errOut, "127.0.0.1:")
		if i < 0 {
			t.Fatalf("stderr %q names no address", errOut)
		}
		return errOut[i : i+len("127.0.0.1:3")]
	}
	if got := reached(); got != "127.0.0.1:3" {
		t.Errorf("context only: used %s", got)
	}
	c.env["MCPCTL_SERVER"] = "127.0.0.1:2"
	if got := reached(); got != "127.0.0.1:2" {
		t.Errorf("env over context: used %s", got)
	}
	if got := reached("--server", "127.0.0.1:1"); got != "127.0.0.1:1" {
		t.Errorf("flag over env: used %s", got)
	}
	// A CA file that does not exist proves which setting was read.
	c.env["MCPCTL_CA_FILE"] = "/nonexistent/env-ca.crt"
	if _, _, errOut := c.run("get", "roles"); !strings.Contains(errOut, "reading CA file: open /nonexistent/env-ca.crt") {
		t.Errorf("env CA file not used: %q", errOut)
	}
	if _, _, errOut := c.run("get", "roles", "--ca-file", "/nonexistent/flag-ca.crt"); !strings.Contains(errOut, "/nonexistent/flag-ca.crt") {
		t.Errorf("flag CA file not used: %q", errOut)
	}
	// A contexts file others can read is worth a warning: it holds tokens.
	if err := os.Chmod(c.env["MCPCTL_CONFIG"], 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, errOut := c.run("get", "roles"); !strings.Contains(errOut, "holds admin tokens but others can read it; run: chmod 600") {
		t.Errorf("no warning for a world-readable contexts file: %q", errOut)
	}
	if err := os.Chmod(c.env["MCPCTL_CONFIG"], 0o600); err != nil {
		t.Fatal(err)
	}
	// --insecure-skip-tls-verify warns every time.
	delete(c.env, "MCPCTL_CA_FILE")
	if _, _, errOut := c.run("get", "roles", "--insecure-skip-tls-verify"); !strings.Contains(errOut, "warning: TLS verification is off") {
		t.Errorf("no warning for --insecure-skip-tls-verify: %q", errOut)
	}
}

func TestVersionWithoutServer(t *testing.T) {
	c := newCLI(t)
	code, out, errOut := c.run("version")
	if code != exitOK || !strings.HasPrefix(out, "client: mcpctl ") || strings.Contains(out, "server:") {
		t.Fatalf("exit %d, stdout %q", code, out)
	}
	if !strings.Contains(errOut, "note: no control plane configured") {
		t.Errorf("stderr %q, want a note", errOut)
	}
	code, out, errOut = c.run("version", "--server", "127.0.0.1:1", "--token", "mcpgwadm_x", "-o", "json")
	var v versionView
	if code != exitOK || json.Unmarshal([]byte(out), &v) != nil || v.Client == "" || v.Server != nil {
		t.Fatalf("exit %d, stdout %q", code, out)
	}
	if !strings.Contains(errOut, "cannot reach the control plane at 127.0.0.1:1") {
		t.Errorf("stderr %q, want why the server version is missing", errOut)
	}
}

func TestCompletion(t *testing.T) {
	c := newCLI(t)
	for shell, marker := range map[string]string{"bash": "__start_mcpctl", "zsh": "#compdef mcpctl", "fish": "complete -c mcpctl"} {
		if out := c.mustRun("completion", shell); !strings.Contains(out, marker) {
			t.Errorf("completion %s lacks %q", shell, marker)
		}
	}
	// Dynamic completion of get's KIND argument goes through cobra's
	// hidden __complete command.
	out := c.mustRun("__complete", "get", "")
	for _, k := range []string{"backends", "roles", "keys", "nodes", "policy"} {
		if !strings.Contains(out, k+"\n") {
			t.Errorf("completion of get KIND lacks %s:\n%s", k, out)
		}
	}
}

func TestHumanAge(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "0s", 45 * time.Second: "45s", 119 * time.Second: "119s", 150 * time.Second: "2m30s",
		5 * time.Minute: "5m", 90 * time.Minute: "90m", 5*time.Hour + 7*time.Minute: "5h7m",
		20 * time.Hour: "20h", 90 * 24 * time.Hour: "90d", -time.Second: "0s",
	} {
		if got := humanAge(d); got != want {
			t.Errorf("humanAge(%v) = %q, want %q", d, got, want)
		}
	}
}

// Time left is rounded up to the unit shown: what was just created with
// --expires 90d or --ttl 1h reads as such.
func TestUntilText(t *testing.T) {
	for d, want := range map[time.Duration]string{
		90*24*time.Hour - 300*time.Millisecond: "in 90d", time.Hour - 2*time.Second: "in 60m",
		5*time.Hour + 6*time.Minute + 30*time.Second: "in 5h7m", 20*time.Hour - time.Minute: "in 20h",
		150*time.Second - time.Millisecond: "in 2m30s", 45 * time.Second: "in 45s", 0: "expired", -time.Hour: "expired",
	} {
		if got := untilText(d); got != want {
			t.Errorf("untilText(%v) = %q, want %q", d, got, want)
		}
	}
}

func TestParseLifetime(t *testing.T) {
	for s, want := range map[string]time.Duration{"90d": 90 * 24 * time.Hour, "36h": 36 * time.Hour, "90m": 90 * time.Minute} {
		if got, err := parseLifetime("x", s); err != nil || got != want {
			t.Errorf("parseLifetime(%q) = %v, %v", s, got, err)
		}
	}
	for _, s := range []string{"", "0d", "-1d", "1.5d", "0s", "soon"} {
		if _, err := parseLifetime("x", s); err == nil {
			t.Errorf("parseLifetime(%q) succeeded", s)
		}
	}
}

func protojsonUnmarshal(s string, m proto.Message) error {
	return protojson.Unmarshal([]byte(s), m)
}

func regexpMatch(re, s string) bool { return regexp.MustCompile(re).MatchString(s) }

func TestDefaultNodePortMatchesControlPlane(t *testing.T) {
	_, port, err := net.SplitHostPort(controlplane.DefaultNodeListen)
	if err != nil || port != defaultNodePort {
		t.Fatalf("controlplane.DefaultNodeListen = %q; mcpctl assumes port %s", controlplane.DefaultNodeListen, defaultNodePort)
	}
	if got := defaultNodeAddr("cp.example.com:7444"); got != "cp.example.com:7443" {
		t.Errorf("defaultNodeAddr = %q", got)
	}
}

// TestRPCErrorWording pins the words each gRPC code becomes; the codes are
// the ones admin.proto promises.
func TestRPCErrorWording(t *testing.T) {
	cl := &client{addr: "cp:7444", timeout: 30 * time.Second}
	for _, tc := range []struct {
		err  error
		want string
	}{
		{status.Error(codes.Unauthenticated, "admin API needs a token"), "the control plane refused the token; check --token or MCPCTL_TOKEN"},
		{status.Error(codes.Unavailable, "connection error: desc = \"transport: Error while dialing: dial tcp: connection refused\""), "cannot reach the control plane at cp:7444: dial tcp: connection refused"},
		{status.Error(codes.Unavailable, "store unavailable: timeout"), "doing it: the control plane at cp:7444 cannot reach its database right now (store unavailable: timeout); retry shortly"},
		{status.Error(codes.InvalidArgument, "invalid configuration:\n  roles[0]: bad"), "doing it: invalid configuration:\n  roles[0]: bad"},
		{status.Error(codes.InvalidArgument, "page_token: malformed"), "doing it: invalid: page_token: malformed"},
		{status.Error(codes.NotFound, `backend "x": not found`), `doing it: backend "x": not found`},
		{status.Error(codes.Aborted, "at revision 3, not 2"), "doing it: at revision 3, not 2 (someone changed it since you read it; read it again and retry)"},
		{status.Error(codes.DeadlineExceeded, "slow"), "doing it: the control plane at cp:7444 did not answer within 30s (raise --request-timeout?)"},
		{status.Error(codes.Unimplemented, "unknown method"), "doing it: the control plane does not support this yet (unknown method)"},
		{status.Error(codes.Internal, "boom"), "doing it: internal: boom"},
		{context.Canceled, "doing it: interrupted"},
	} {
		if got := cl.rpcError("doing it", tc.err).Error(); got != tc.want {
			t.Errorf("%v:\n got %q\nwant %q", tc.err, got, tc.want)
		}
	}
}
