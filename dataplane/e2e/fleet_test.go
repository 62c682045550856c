package e2e_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgw/mcpgw/dataplane/internal/mcptest"
	"github.com/mcpgw/mcpgw/internal/pgtest"
	"github.com/mcpgw/mcpgw/internal/proctest"
)

var bins struct{ mcpgw, mcpctl, everything string }

func TestMain(m *testing.M) {
	proctest.Main(m, func(dir string) error {
		built, err := proctest.Build(dir, "github.com/mcpgw/mcpgw/cmd/mcpgw", "github.com/mcpgw/mcpgw/cmd/mcpctl")
		if err != nil {
			return err
		}
		bins.mcpgw, bins.mcpctl = built[0], built[1]
		bins.everything, err = mcptest.Build(dir)
		return err
	})
}

// fleet is the processes of one test (proctest kills every one at
// cleanup) and the environment they share.
type fleet struct {
	t   *testing.T
	dir string
	env []string
	*proctest.Procs
}

// newFleet returns a fleet whose children all get env (the replicas' shared
// key-encryption key and admin token).
func newFleet(t *testing.T, env ...string) *fleet {
	dir := t.TempDir()
	return &fleet{t: t, dir: dir, env: env, Procs: proctest.New(t, dir, env...)}
}

// mcpctl runs the admin CLI against the replica at server and returns its
// stdout.
func (f *fleet) mcpctl(server, caFile string, args ...string) string {
	f.t.Helper()
	stdout, stderr, code := f.mcpctlExit(server, caFile, args...)
	if code != 0 {
		f.t.Fatalf("mcpctl %s: exit %d\n%s%s", strings.Join(args, " "), code, stdout, stderr)
	}
	return stdout
}

// mcpctlExit runs mcpctl like mcpctl but returns its exit code rather than
// failing the test on a non-zero one.
func (f *fleet) mcpctlExit(server, caFile string, args ...string) (stdout, stderr string, code int) {
	f.t.Helper()
	cmd := exec.Command(bins.mcpctl, args...)
	cmd.Env = append(os.Environ(), f.env...)
	cmd.Env = append(cmd.Env, "MCPCTL_SERVER="+server, "MCPCTL_CA_FILE="+caFile, "MCPCTL_TOKEN="+adminToken)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil && cmd.ProcessState == nil {
		f.t.Fatalf("mcpctl %s: %v", strings.Join(args, " "), err)
	}
	return out.String(), errOut.String(), cmd.ProcessState.ExitCode()
}

const adminToken = "mcpgwadm_e2etest_0123456789abcdef0123456789abcdef"

// replica is one control-plane replica's fixed addresses, so it can be
// restarted where its edges expect it.
type replica struct {
	name                      string
	node, admin, ops, dataDir string
	dbURL                     string
	proc                      *proctest.Proc
}

func (f *fleet) startCP(r *replica) {
	f.t.Helper()
	r.proc = f.Start(r.name, nil, bins.mcpgw, "cp", "--database-url", r.dbURL, "--node-listen", r.node, "--admin-listen", r.admin,
		"--ops-listen", r.ops, "--data-dir", r.dataDir, "--replica-name", r.name, "--log-level", "info")
	proctest.WaitHTTP(f.t, r.proc, "http://"+r.ops+"/readyz", 30*time.Second)
}

// edgeProc is one `mcpgw edge --control-plane` process.
type edgeProc struct {
	name, listen, stateDir string
	proc                   *proctest.Proc
}

func (e *edgeProc) url() string { return "http://" + e.listen + "/mcp" }

// metric reads one unlabelled metric from the edge's /metrics.
func (e *edgeProc) metric(t *testing.T, name string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + e.listen + "/metrics")
	if err != nil {
		t.Fatalf("%s metrics: %v", e.name, err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	t.Fatalf("%s: no metric %s", e.name, name)
	return 0
}

func readyz(t *testing.T, e *edgeProc) string {
	t.Helper()
	resp, err := http.Get("http://" + e.listen + "/readyz")
	if err != nil {
		t.Fatalf("%s readyz: %v", e.name, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return fmt.Sprintf("%d %s", resp.StatusCode, strings.TrimSpace(string(b)))
}

type bearerRT struct{ key string }

func (b bearerRT) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.key)
	return http.DefaultTransport.RoundTrip(r)
}

// client is a Go SDK client session on an edge, acting with key; it is
// closed when owner's test ends.
func client(t, owner *testing.T, url, key string) *mcp.ClientSession {
	t.Helper()
	c := mcp.NewClient(&mcp.Implementation{Name: "e2e", Version: "1"}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cs, err := c.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: url, HTTPClient: &http.Client{Transport: bearerRT{key}}, MaxRetries: -1},
		&mcp.ClientSessionOptions{ProtocolVersion: "2025-11-25"})
	if err != nil {
		t.Fatalf("connecting to %s: %v", url, err)
	}
	owner.Cleanup(func() { cs.Close() })
	return cs
}

// waitCallable calls tool until it is allowed (want true) or refused by
// policy (want false), and returns how long that took.
func waitCallable(t *testing.T, cs *mcp.ClientSession, tool string, want bool, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: tool})
		cancel()
		switch {
		case want && err == nil:
			return time.Since(start)
		case !want && err != nil && strings.Contains(err.Error(), "is not permitted"):
			return time.Since(start)
		}
		if time.Since(start) > within {
			t.Fatalf("%s: want allowed=%v after %v, last error: %v", tool, want, within, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// auditedCalls opens a session on e with raw HTTP and makes n calls,
// returning the Mcpgw-Audit-Id of every answered request (initialize
// included): the events the control plane must end up holding once each.
func auditedCalls(t *testing.T, e *edgeProc, key string, n int) []string {
	t.Helper()
	var ids []string
	sid := ""
	post := func(body string) *http.Response {
		t.Helper()
		req, err := http.NewRequest("POST", e.url(), strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("Authorization", "Bearer "+key)
		if sid != "" {
			req.Header.Set("Mcp-Session-Id", sid)
			req.Header.Set("MCP-Protocol-Version", "2025-11-25")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", e.name, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode/100 != 2 || bytes.Contains(b, []byte(`"error"`)) {
			t.Fatalf("%s: %d %s", e.name, resp.StatusCode, b)
		}
		if id := resp.Header.Get("Mcpgw-Audit-Id"); id != "" {
			ids = append(ids, id)
		}
		return resp
	}
	resp := post(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"e2e-raw","version":"1"}}}`)
	if sid = resp.Header.Get("Mcp-Session-Id"); sid == "" {
		t.Fatalf("%s: no session", e.name)
	}
	post(`{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	for i := range n {
		post(fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"ev__test_simple_text","arguments":{}}}`, i+2))
	}
	if len(ids) != n+1 {
		t.Fatalf("%s: %d audit ids for %d requests", e.name, len(ids), n+1)
	}
	return ids
}

func policyDoc(deny bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "backends:\n  - name: ev\n    stdio: {command: [%q]}\n    timeout: 20s\n", bins.everything)
	b.WriteString("roles:\n  - name: developer\n    rules:\n      - {id: dev-ev, effect: allow, tools: [\"ev__*\"]}\n")
	if deny {
		b.WriteString("      - {id: dev-deny, effect: deny, tools: [\"ev__test_e*\"]}\n")
	}
	b.WriteString("bindings:\n  - {role: developer, subjects: [\"user:alice\"]}\n")
	b.WriteString("principals:\n  - {name: alice}\n")
	return b.String()
}

// Issue 6's fleet scenario with real processes: two control-plane replicas
// on one database, two edges (one per replica) enrolled with join tokens;
// a policy change through either replica reaches both edges and a real MCP
// client sees it within a second; with the control plane SIGKILLed the
// edges keep serving, an edge restarted meanwhile serves from its
// last-known-good cache within a second, and once the control plane is
// back the edges reconnect without being sent the config again.
func TestFleetEndToEnd(t *testing.T) {
	begin := time.Now()
	top := t
	dbURL := pgtest.NewDatabase(t)
	kek := make([]byte, 32)
	if _, err := rand.Read(kek); err != nil {
		t.Fatal(err)
	}
	// Every replica needs the same key-encryption key and admin token.
	f := newFleet(t, "MCPGW_KEK="+base64.StdEncoding.EncodeToString(kek), "MCPGW_ADMIN_TOKEN="+adminToken)

	cps := []*replica{
		{name: "cp1", node: mcptest.FreeAddr(t), admin: mcptest.FreeAddr(t), ops: mcptest.FreeAddr(t), dataDir: filepath.Join(f.dir, "cp1"), dbURL: dbURL},
		{name: "cp2", node: mcptest.FreeAddr(t), admin: mcptest.FreeAddr(t), ops: mcptest.FreeAddr(t), dataDir: filepath.Join(f.dir, "cp2"), dbURL: dbURL},
	}
	// The first replica migrates and creates the CA; the second finds both.
	f.startCP(cps[0])
	f.startCP(cps[1])
	caFile := func(r *replica) string { return filepath.Join(r.dataDir, "ca.crt") }

	policyFile := filepath.Join(f.dir, "policy.yaml")
	if err := os.WriteFile(policyFile, []byte(policyDoc(true)), 0o600); err != nil {
		t.Fatal(err)
	}
	f.mcpctl(cps[0].admin, caFile(cps[0]), "apply", "-f", policyFile)
	var key struct {
		Key string `json:"key"`
	}
	if err := json.Unmarshal([]byte(f.mcpctl(cps[0].admin, caFile(cps[0]), "keys", "create", "--principal", "alice", "-o", "json")), &key); err != nil {
		t.Fatal(err)
	}

	joinToken := func(r *replica) string {
		var tok struct {
			Token string `json:"token"`
		}
		if err := json.Unmarshal([]byte(f.mcpctl(r.admin, caFile(r), "join-token", "create", "--ttl", "10m", "-o", "json")), &tok); err != nil {
			t.Fatal(err)
		}
		return tok.Token
	}
	// Two edges, each enrolled through a different replica.
	edges := make([]*edgeProc, 2)
	tokens := make([]string, 2)
	for i := range edges {
		tokens[i] = joinToken(cps[i])
		e := &edgeProc{name: fmt.Sprintf("edge%d", i+1), listen: mcptest.FreeAddr(t), stateDir: filepath.Join(f.dir, fmt.Sprintf("edge%d", i+1))}
		e.proc = f.Start(e.name, nil, bins.mcpgw, "edge", "--control-plane", cps[i].node, "--ca-file", caFile(cps[i]),
			"--join-token", tokens[i], "--state-dir", e.stateDir, "--listen", e.listen, "--node-name", e.name, "--label", "e2e-edge="+e.name)
		edges[i] = e
	}
	// A third edge enrolls later, while the control plane is down.
	edge3 := &edgeProc{name: "edge3", listen: mcptest.FreeAddr(t), stateDir: filepath.Join(f.dir, "edge3")}
	token3 := joinToken(cps[0])
	sessions := make([]*mcp.ClientSession, 2)
	for i, e := range edges {
		proctest.WaitHTTP(t, e.proc, "http://"+e.listen+"/readyz", 30*time.Second)
		sessions[i] = client(t, t, e.url(), key.Key)
		// The backend starts with the config; until it lists, the tool
		// is unknown rather than refused.
		waitCallable(t, sessions[i], "ev__test_simple_text", true, 20*time.Second)
		waitCallable(t, sessions[i], "ev__test_embedded_resource", false, 5*time.Second)
		if r := readyz(t, e); !strings.Contains(r, "control plane connected") {
			t.Errorf("%s readyz: %s", e.name, r)
		}
	}
	t.Logf("fleet up after %v", time.Since(begin))

	t.Run("a change through either replica reaches both edges within 1s", func(t *testing.T) {
		for i, deny := range []bool{false, true} {
			if err := os.WriteFile(policyFile, []byte(policyDoc(deny)), 0o600); err != nil {
				t.Fatal(err)
			}
			via := cps[1-i] // cp2 first, then cp1
			f.mcpctl(via.admin, caFile(via), "apply", "-f", policyFile)
			for j, cs := range sessions {
				d := waitCallable(t, cs, "ev__test_embedded_resource", !deny, time.Second)
				t.Logf("change via %s (deny=%v) seen at %s after %v", via.name, deny, edges[j].name, d)
			}
		}
		// Leave the grant in place for the rest of the test; --wait
		// reports both edges' ACKs (each through its own replica).
		if err := os.WriteFile(policyFile, []byte(policyDoc(false)), 0o600); err != nil {
			t.Fatal(err)
		}
		if out := f.mcpctl(cps[0].admin, caFile(cps[0]), "apply", "-f", policyFile, "--wait", "--timeout", "20s"); !strings.HasSuffix(out, ": 2/2 nodes acked\n") {
			t.Errorf("apply --wait with two edges:\n%s", out)
		}
		for _, cs := range sessions {
			waitCallable(t, cs, "ev__test_embedded_resource", true, time.Second)
		}
		// Both edges ACKed the same, latest revision.
		r1, r2 := edges[0].metric(t, "mcpgw_edge_config_revision"), edges[1].metric(t, "mcpgw_edge_config_revision")
		if r1 == 0 || r1 != r2 {
			t.Errorf("edges apply revisions %v and %v", r1, r2)
		}
		// Both are registered, with the status report each edge sends on
		// its stream (the audit spool; backend health from the next report on).
		deadline := time.Now().Add(5 * time.Second)
		for {
			nodes := f.mcpctl(cps[1].admin, caFile(cps[1]), "get", "nodes", "-o", "json")
			// (Reported when the stream opens, which for a new edge is
			// before its first config and backends, and every 20 s after.)
			ok := strings.Count(nodes, `"audit_spool"`) == 2 && strings.Count(nodes, `"e2e-edge"`) == 2
			for _, e := range edges {
				ok = ok && strings.Contains(nodes, e.name)
			}
			if ok {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("get nodes does not show both edges with their status:\n%s", nodes)
			}
			time.Sleep(100 * time.Millisecond)
		}
	})

	t.Run("a config an edge cannot apply is NACKed and the previous one keeps serving", func(t *testing.T) {
		revBefore := edges[0].metric(t, "mcpgw_edge_config_revision")
		// The control plane accepts the reference; the edges cannot resolve
		// it, since the variable is unset in their environment.
		bad := strings.Replace(policyDoc(false), "roles:\n",
			"  - name: broken\n    stdio: {command: [\"true\"], env: {TOKEN: \"${env:MCPGW_E2E_UNSET}\"}}\nroles:\n", 1)
		badFile := filepath.Join(f.dir, "bad.yaml")
		if err := os.WriteFile(badFile, []byte(bad), 0o600); err != nil {
			t.Fatal(err)
		}
		// apply --wait fails and names both edges and the error.
		out, errOut, code := f.mcpctlExit(cps[0].admin, caFile(cps[0]), "apply", "-f", badFile, "--wait", "--timeout", "20s")
		if code != 1 || strings.Count(out, "NACK from node edge") != 2 || !strings.Contains(out, "MCPGW_E2E_UNSET") ||
			!strings.Contains(errOut, "failed: 2 nodes rejected it") {
			t.Errorf("apply --wait of a config both edges reject: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			nodes := f.mcpctl(cps[1].admin, caFile(cps[1]), "get", "nodes", "-o", "json")
			if strings.Count(nodes, "MCPGW_E2E_UNSET") >= 2 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("get nodes does not show both edges' NACK:\n%s", nodes)
			}
			time.Sleep(100 * time.Millisecond)
		}
		for i, e := range edges {
			if got := e.metric(t, "mcpgw_edge_config_revision"); got != revBefore {
				t.Errorf("%s applies revision %v after a NACK, want %v", e.name, got, revBefore)
			}
			if e.metric(t, "mcpgw_edge_config_nacks_total") < 1 {
				t.Errorf("%s counted no NACK", e.name)
			}
			// The edge says so itself, for whoever looks at it rather than
			// at the control plane.
			if r := readyz(t, e); !strings.HasPrefix(r, "200 ") || !strings.Contains(r, "rejected (") || !strings.Contains(r, "MCPGW_E2E_UNSET") {
				t.Errorf("%s readyz after a NACK: %s", e.name, r)
			}
			waitCallable(t, sessions[i], "ev__test_embedded_resource", true, time.Second)
		}
		// Remove the broken backend again.
		f.mcpctl(cps[0].admin, caFile(cps[0]), "apply", "--prune", "-f", policyFile)
		deadline = time.Now().Add(5 * time.Second)
		for _, e := range edges {
			for e.metric(t, "mcpgw_edge_config_revision") <= revBefore {
				if time.Now().After(deadline) {
					t.Fatalf("%s did not apply the repaired config", e.name)
				}
				time.Sleep(20 * time.Millisecond)
			}
			if r := readyz(t, e); strings.Contains(r, "rejected") {
				t.Errorf("%s readyz after the repair: %s", e.name, r)
			}
		}
	})

	// Audited calls while the control plane is up; more follow while it is
	// down, which the edges must spool and ship once it is back.
	var auditIDs []string
	for _, e := range edges {
		auditIDs = append(auditIDs, auditedCalls(t, e, key.Key, 5)...)
	}

	// What each edge was sent before the control plane goes away.
	received := make([]float64, len(edges))
	for i, e := range edges {
		received[i] = e.metric(t, "mcpgw_edge_config_snapshots_received_total")
		if received[i] < 1 {
			t.Fatalf("%s received no snapshot", e.name)
		}
	}

	t.Run("with the control plane SIGKILLed the edges keep serving", func(t *testing.T) {
		for _, r := range cps {
			r.proc.Kill(syscall.SIGKILL)
		}
		for i, cs := range sessions {
			waitCallable(t, cs, "ev__test_embedded_resource", true, time.Second)
			waitCallable(t, cs, "ev__test_simple_text", true, time.Second)
			deadline := time.Now().Add(5 * time.Second)
			for edges[i].metric(t, "mcpgw_edge_control_plane_connected") != 0 && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
			if r := readyz(t, edges[i]); !strings.HasPrefix(r, "200 ") || !strings.Contains(r, "disconnected") {
				t.Errorf("%s readyz with the control plane down: %s", edges[i].name, r)
			}
			auditIDs = append(auditIDs, auditedCalls(t, edges[i], key.Key, 5)...)
		}
	})

	t.Run("an edge restarted while the control plane is down serves its last-known-good config within 1s", func(t *testing.T) {
		e := edges[0]
		e.proc.Kill(syscall.SIGTERM)
		// Restarted with its own spool cap, which its status reports must
		// carry (checked once the control plane is back).
		e.proc = f.Start(e.name, nil, bins.mcpgw, "edge", "--control-plane", cps[0].node, "--state-dir", e.stateDir, "--listen", e.listen, "--node-name", e.name,
			"--audit-spool-max-bytes", "268435456", "--audit-durability", "sync", "--audit-on-full", "refuse")
		ready := proctest.WaitHTTP(t, e.proc, "http://"+e.listen+"/readyz", 10*time.Second)
		if ready > time.Second {
			t.Errorf("serving from the last-known-good config took %v", ready)
		}
		t.Logf("%s ready from its last-known-good config %v after start: %s", e.name, ready, readyz(t, e))
		// The session on the killed process is gone; this one serves the
		// rest of the test.
		cs := client(t, top, e.url(), key.Key)
		sessions[0] = cs
		// The decision is the last policy's; the stdio backend needs a
		// moment to start before its tools are callable.
		waitCallable(t, cs, "ev__test_embedded_resource", true, 20*time.Second)
		auditIDs = append(auditIDs, auditedCalls(t, e, key.Key, 5)...)
		received[0] = e.metric(t, "mcpgw_edge_config_snapshots_received_total")
		if received[0] != 0 {
			t.Errorf("the restarted edge received %v snapshots with the control plane down", received[0])
		}
	})

	t.Run("a new edge whose control plane is unreachable serves its ops endpoints while it enrolls", func(t *testing.T) {
		e := edge3
		e.proc = f.Start(e.name, nil, bins.mcpgw, "edge", "--control-plane", cps[0].node, "--ca-file", caFile(cps[0]),
			"--join-token", token3, "--state-dir", e.stateDir, "--listen", e.listen, "--node-name", e.name)
		if d := proctest.WaitHTTP(t, e.proc, "http://"+e.listen+"/healthz", 5*time.Second); d > 2*time.Second {
			t.Errorf("/healthz answered after %v", d)
		}
		// Not ready, and why: it keeps trying the control plane.
		deadline := time.Now().Add(10 * time.Second)
		for r := readyz(t, e); !strings.Contains(r, "last attempt"); r = readyz(t, e) {
			if !strings.HasPrefix(r, "503 not ready: enrolling with "+cps[0].node) {
				t.Fatalf("%s readyz while enrolling: %s", e.name, r)
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s readyz does not say why enrolling fails: %s", e.name, r)
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Logf("%s while enrolling: %s", e.name, readyz(t, e))
		// MCP requests are refused with a JSON-RPC error that says why.
		resp, err := http.Post(e.url(), "application/json", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"e2e","version":"1"}}}`))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var rpcErr struct {
			Error struct {
				Code    int    `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
		}
		if err := json.Unmarshal(body, &rpcErr); err != nil || resp.StatusCode != http.StatusServiceUnavailable ||
			!strings.Contains(rpcErr.Error.Message, "no configuration yet: enrolling with "+cps[0].node) {
			t.Fatalf("%s /mcp while enrolling: %d %s", e.name, resp.StatusCode, body)
		}
		// The join token another edge used is refused: that edge exits
		// with the control plane's reason instead of retrying. Run while
		// the control plane is up (below).
	})

	t.Run("the control plane returns; edges reconnect without being sent the config again", func(t *testing.T) {
		for _, r := range cps {
			f.startCP(r)
		}
		for i, e := range edges {
			deadline := time.Now().Add(40 * time.Second)
			for e.metric(t, "mcpgw_edge_control_plane_connected") != 1 {
				if time.Now().After(deadline) {
					t.Fatalf("%s did not reconnect: %s", e.name, readyz(t, e))
				}
				time.Sleep(50 * time.Millisecond)
			}
			// A snapshot sent after the reconnect would arrive right after
			// the stream is accepted; give it the time it would take.
			time.Sleep(300 * time.Millisecond)
			if got := e.metric(t, "mcpgw_edge_config_snapshots_received_total"); got != received[i] {
				t.Errorf("%s was sent the config again on reconnect: %v snapshots, had %v", e.name, got, received[i])
			}
			waitCallable(t, sessions[i], "ev__test_embedded_resource", true, time.Second)
			if r := readyz(t, e); !strings.Contains(r, "control plane connected") {
				t.Errorf("%s readyz after the reconnect: %s", e.name, r)
			}
		}
		// The restarted edge reports the spool cap its flags set; the other
		// keeps the default.
		deadline := time.Now().Add(10 * time.Second)
		for {
			nodes := f.mcpctl(cps[0].admin, caFile(cps[0]), "get", "nodes", "-o", "json")
			if strings.Contains(nodes, `"limit_bytes": "268435456"`) && strings.Contains(nodes, `"limit_bytes": "1073741824"`) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("get nodes does not show the restarted edge's --audit-spool-max-bytes:\n%s", nodes)
			}
			time.Sleep(100 * time.Millisecond)
		}
		// And it still follows changes.
		if err := os.WriteFile(policyFile, []byte(policyDoc(true)), 0o600); err != nil {
			t.Fatal(err)
		}
		f.mcpctl(cps[1].admin, caFile(cps[1]), "apply", "-f", policyFile)
		for _, cs := range sessions {
			waitCallable(t, cs, "ev__test_embedded_resource", false, time.Second)
		}
	})

	t.Run("the edge that waited enrolls, serves, and reports its backends at once", func(t *testing.T) {
		e := edge3
		// Enrollment retries back off (capped at 30 s, jittered).
		proctest.WaitHTTP(t, e.proc, "http://"+e.listen+"/readyz", 40*time.Second)
		ready := time.Now()
		cs := client(t, top, e.url(), key.Key)
		waitCallable(t, cs, "ev__test_simple_text", true, 20*time.Second)
		waitCallable(t, cs, "ev__test_embedded_resource", false, time.Second)
		// Its first status report went out when its stream opened, before
		// it had a config; the one sent after the config went live lists
		// the backend, long before the next periodic report (20 s).
		deadline := time.Now().Add(8 * time.Second)
		for {
			var nodes struct {
				Nodes []struct {
					Name   string `json:"name"`
					Status struct {
						Backends []struct {
							Name  string `json:"name"`
							State string `json:"state"`
						} `json:"backends"`
					} `json:"status"`
				} `json:"nodes"`
			}
			out := f.mcpctl(cps[0].admin, caFile(cps[0]), "get", "nodes", "-o", "json")
			if err := json.Unmarshal([]byte(out), &nodes); err != nil {
				t.Fatal(err)
			}
			healthy := false
			for _, n := range nodes.Nodes {
				for _, b := range n.Status.Backends {
					healthy = healthy || n.Name == e.name && b.Name == "ev" && b.State == "BACKEND_STATE_HEALTHY"
				}
			}
			if healthy {
				t.Logf("%s's backend reported healthy %v after it became ready", e.name, time.Since(ready))
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s's backend is not reported healthy %v after it became ready:\n%s", e.name, time.Since(ready), out)
			}
			time.Sleep(100 * time.Millisecond)
		}
	})

	t.Run("used and expired join tokens are refused and the edge says so", func(t *testing.T) {
		var tok struct {
			Token string `json:"token"`
		}
		if err := json.Unmarshal([]byte(f.mcpctl(cps[1].admin, caFile(cps[1]), "join-token", "create", "--ttl", "1s", "-o", "json")), &tok); err != nil {
			t.Fatal(err)
		}
		time.Sleep(1500 * time.Millisecond)
		for name, token := range map[string]string{"used": tokens[0], "expired": tok.Token} {
			p := f.Start("edge-"+name+"-token", nil, bins.mcpgw, "edge", "--control-plane", cps[1].node, "--ca-file", caFile(cps[1]),
				"--join-token", token, "--state-dir", filepath.Join(f.dir, "edge-"+name), "--listen", mcptest.FreeAddr(t))
			select {
			case <-p.Done():
			case <-time.After(15 * time.Second):
				t.Fatalf("an edge with a %s join token is still running", name)
			}
			b, _ := os.ReadFile(p.Log)
			if p.ExitCode() != 1 || !bytes.Contains(b, []byte("join token refused")) {
				t.Fatalf("edge with a %s join token: exit %d, output:\n%s", name, p.ExitCode(), b)
			}
		}
	})

	t.Run("every answered request's audit event reaches the control plane once", func(t *testing.T) {
		want := map[string]bool{}
		for _, id := range auditIDs {
			want[id] = true
		}
		deadline := time.Now().Add(20 * time.Second)
		for {
			out := f.mcpctl(cps[0].admin, caFile(cps[0]), "audit", "query", "--principal", "alice", "--limit", "0", "-o", "jsonl")
			seen := map[string]int{}
			nodes := map[string]bool{}
			for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
				var ev struct {
					ID     string `json:"id"`
					NodeID string `json:"node_id"`
				}
				if line == "" {
					continue
				}
				if err := json.Unmarshal([]byte(line), &ev); err != nil {
					t.Fatalf("audit query line %q: %v", line, err)
				}
				seen[ev.ID]++
				if want[ev.ID] {
					nodes[ev.NodeID] = true
				}
			}
			missing, dup := 0, 0
			for id := range want {
				switch seen[id] {
				case 0:
					missing++
				case 1:
				default:
					dup++
				}
			}
			if dup > 0 {
				t.Fatalf("%d audit events stored more than once", dup)
			}
			if missing == 0 {
				if len(nodes) != 2 {
					t.Errorf("events came from %d nodes, want 2", len(nodes))
				}
				t.Logf("%d answered requests, each in the control plane's audit_events once, from %d nodes", len(want), len(nodes))
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d of %d answered requests have no audit event at the control plane", missing, len(want))
			}
			time.Sleep(200 * time.Millisecond)
		}
		f.mcpctl(cps[1].admin, caFile(cps[1]), "audit", "verify") // exits 1 on an incomplete chain
	})

	t.Run("a revoked edge is refused by the control plane", func(t *testing.T) {
		e := edge3
		f.mcpctl(cps[0].admin, caFile(cps[0]), "delete", "node", e.name)
		deadline := time.Now().Add(10 * time.Second)
		for r := readyz(t, e); !strings.Contains(r, "refuses this node"); r = readyz(t, e) {
			if time.Now().After(deadline) {
				t.Fatalf("%s readyz after its revocation: %s", e.name, r)
			}
			time.Sleep(50 * time.Millisecond)
		}
		if got := e.metric(t, "mcpgw_edge_control_plane_connected"); got != 0 {
			t.Errorf("revoked %s is connected (%v)", e.name, got)
		}
		// It stops serving: not ready, and MCP requests get a 503 that says why.
		if r := readyz(t, e); !strings.HasPrefix(r, "503 ") {
			t.Errorf("revoked %s readyz: %s", e.name, r)
		}
		req, _ := http.NewRequest(http.MethodPost, e.url(), strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"ping"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("Authorization", "Bearer "+key.Key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "this edge does not serve") {
			t.Errorf("revoked %s answered an MCP request: %d %s", e.name, resp.StatusCode, body)
		}
		if nodes := f.mcpctl(cps[1].admin, caFile(cps[1]), "get", "nodes", "-o", "json"); strings.Contains(nodes, `"`+e.name+`"`) {
			t.Errorf("get nodes still lists the revoked %s:\n%s", e.name, nodes)
		}
		t.Logf("%s after revocation: %s", e.name, readyz(t, e))
	})
	t.Logf("total %v", time.Since(begin))
}
