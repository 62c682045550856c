//go:build linux

package auditfault_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mcpgw/mcpgw/internal/loadgen"
	"github.com/mcpgw/mcpgw/internal/pgcluster"
	"github.com/mcpgw/mcpgw/internal/proctest"
)

var bins struct{ mcpgw, mcpctl string }

func TestMain(m *testing.M) {
	proctest.Main(m, func(dir string) error {
		b, err := proctest.Build(dir, "github.com/mcpgw/mcpgw/cmd/mcpgw", "github.com/mcpgw/mcpgw/cmd/mcpctl")
		if err != nil {
			return err
		}
		bins.mcpgw, bins.mcpctl = b[0], b[1]
		return nil
	})
}

const adminToken = "mcpgwadm_auditfault_0123456789abcdef0123456789"

// procs is the test's child processes (killed at cleanup, and with the
// test binary) and the helpers that start the installation's parts.
type procs struct {
	*proctest.Procs
	t testing.TB
}

func newProcs(t *testing.T, dir string, env []string) *procs {
	return &procs{Procs: proctest.New(t, dir, env...), t: t}
}

// cp is the one control-plane replica, at fixed addresses so it can be
// restarted where the edges expect it.
type cp struct {
	node, admin, ops, dataDir, dbURL string
	proc                             *proctest.Proc
}

func (ps *procs) startCP(c *cp) {
	ps.t.Helper()
	c.proc = ps.Start("cp", nil, bins.mcpgw, "cp", "--database-url", c.dbURL, "--node-listen", c.node, "--admin-listen", c.admin,
		"--ops-listen", c.ops, "--data-dir", c.dataDir, "--replica-name", "cp", "--log-level", "warn")
	proctest.WaitHTTP(ps.t, c.proc, "http://"+c.ops+"/readyz", 60*time.Second)
}

func (c *cp) caFile() string { return filepath.Join(c.dataDir, "ca.crt") }

// mcpctl runs the admin CLI against c and returns its stdout and exit code.
func (ps *procs) mcpctl(c *cp, args ...string) (string, int) {
	ps.t.Helper()
	cmd := exec.Command(bins.mcpctl, args...)
	cmd.Env = append(os.Environ(), "MCPCTL_SERVER="+c.admin, "MCPCTL_CA_FILE="+c.caFile(), "MCPCTL_TOKEN="+adminToken)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return stdout.String(), 0
	case errors.As(err, &exit):
		return stdout.String() + stderr.String(), exit.ExitCode()
	default:
		ps.t.Fatalf("mcpctl %s: %v", strings.Join(args, " "), err)
		return "", -1
	}
}

func (ps *procs) mustMcpctl(c *cp, args ...string) string {
	ps.t.Helper()
	out, code := ps.mcpctl(c, args...)
	if code != 0 {
		ps.t.Fatalf("mcpctl %s: exit %d\n%s", strings.Join(args, " "), code, out)
	}
	return out
}

// edge is one `mcpgw edge --control-plane` process and its state dir.
type edge struct {
	name, listen, stateDir string
	proc                   *proctest.Proc
}

func (ps *procs) startEdge(e *edge, c *cp, joinToken string) {
	ps.t.Helper()
	args := []string{"edge", "--control-plane", c.node, "--state-dir", e.stateDir, "--listen", e.listen,
		"--node-name", e.name, "--log-level", "warn"}
	if joinToken != "" {
		args = append(args, "--ca-file", c.caFile(), "--join-token", joinToken)
	}
	e.proc = ps.Start(e.name, nil, bins.mcpgw, args...)
	proctest.WaitHTTP(ps.t, e.proc, "http://"+e.listen+"/readyz", 60*time.Second)
}

// tally is what the clients saw, shared by every worker.
type tally struct {
	// mu guards ids: the audit id of every answered request, by edge.
	mu  sync.Mutex
	ids map[string]string

	answered          atomic.Int64
	refused, failures atomic.Int64 // 503 audit unavailable; transport errors and other statuses
	target            int64

	// Pacing: call n may not start before start + n*interval, so the run
	// lasts long enough for every fault to happen while calls flow.
	issued   atomic.Int64
	start    time.Time
	interval time.Duration
}

// pace waits for the next call's slot.
func (tl *tally) pace(ctx context.Context) {
	at := tl.start.Add(time.Duration(tl.issued.Add(1)) * tl.interval)
	if d := time.Until(at); d > 0 {
		select {
		case <-ctx.Done():
		case <-time.After(d):
		}
	}
}

func (tl *tally) answer(id, edge string) error {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	if prev, ok := tl.ids[id]; ok {
		return fmt.Errorf("audit id %s answered twice (%s and %s)", id, prev, edge)
	}
	tl.ids[id] = edge
	tl.answered.Add(1)
	return nil
}

// worker makes MCP calls on e until the tally reaches its target: a legacy
// (2025-11-25) session, re-initialized whenever the edge lost it (restart)
// or could not be reached. Every 2xx reply with an Mcpgw-Audit-Id (the
// initialize and every tools/call) is an answer the client saw, so its event
// must end up in Postgres.
func worker(ctx context.Context, e *edge, key string, tl *tally, hc *http.Client) error {
	sid := ""
	next := 1
	post := func(body string) (*http.Response, []byte, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+e.listen+"/mcp", strings.NewReader(body))
		if err != nil {
			return nil, nil, err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("Authorization", "Bearer "+key)
		if sid != "" {
			req.Header.Set("Mcp-Session-Id", sid)
			req.Header.Set("MCP-Protocol-Version", loadgen.LatestVersion)
		}
		resp, err := hc.Do(req)
		if err != nil {
			return nil, nil, err
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, b, err
	}
	// call posts body and records the answer; it reports whether the
	// request was answered.
	call := func(body string, wantResult bool) (*http.Response, bool, error) {
		resp, b, err := post(body)
		switch {
		case err != nil:
			tl.failures.Add(1)
			return nil, false, nil
		case resp.StatusCode == http.StatusServiceUnavailable:
			tl.refused.Add(1)
			return resp, false, nil
		case resp.StatusCode/100 != 2 || (wantResult && !bytes.Contains(b, []byte(`"result"`))):
			tl.failures.Add(1)
			return resp, false, nil
		}
		id := resp.Header.Get("Mcpgw-Audit-Id")
		switch {
		case id != "":
			return resp, true, tl.answer(id, e.name)
		case !wantResult:
			return resp, true, nil // a notification's 202
		default:
			return resp, false, fmt.Errorf("%s answered %d without an Mcpgw-Audit-Id", e.name, resp.StatusCode)
		}
	}
	for tl.answered.Load() < tl.target && ctx.Err() == nil {
		if sid == "" {
			resp, ok, err := call(`{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"auditfault","version":"1"}}}`, true)
			if err != nil {
				return err
			}
			if !ok || resp.Header.Get("Mcp-Session-Id") == "" {
				time.Sleep(20 * time.Millisecond)
				continue
			}
			sid = resp.Header.Get("Mcp-Session-Id")
			if _, _, err := call(`{"jsonrpc":"2.0","method":"notifications/initialized"}`, false); err != nil {
				return err
			}
			continue
		}
		next++
		tl.pace(ctx)
		resp, ok, err := call(fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"echo__echo","arguments":{"n":%d}}}`, next, next), true)
		if err != nil {
			return err
		}
		if !ok {
			if resp == nil || resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusBadRequest {
				sid = "" // the edge restarted (or never had the session)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return nil
}

// TestAuditSurvivesFaults is issue 7's end-to-end fault test: a fixed
// number of answered calls through two edges while the control plane is
// SIGKILLed twice, Postgres is killed and restarted once and one edge is
// SIGKILLed once and restarted from its state dir. Afterwards audit_events
// must hold exactly one row per call id the clients saw answered, no
// duplicates, and VerifyAudit must report every node's chain complete.
//
// MCPGW_AUDITFAULT_CALLS sets the number of answered calls (default
// 30,000). The clients are paced to at most 1,000 calls/s, so the faults,
// which take about 15 s together, all fall within the traffic.
func TestAuditSurvivesFaults(t *testing.T) {
	target := int64(30000)
	if v := os.Getenv("MCPGW_AUDITFAULT_CALLS"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 100 {
			t.Fatalf("MCPGW_AUDITFAULT_CALLS=%q: want a number >= 100", v)
		}
		target = n
	}
	begin := time.Now()
	ctx, cancel := context.WithTimeout(t.Context(), 8*time.Minute)
	defer cancel()

	pg, err := pgcluster.New(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := pg.Remove(); err != nil {
			t.Error(err)
		}
	})
	if err := pg.Start(ctx); err != nil {
		t.Fatal(err)
	}

	// The backend: an HTTP MCP echo server in this process.
	backend := &http.Server{Handler: loadgen.NewEcho(), ReadHeaderTimeout: 5 * time.Second}
	bl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = backend.Serve(bl) }()
	t.Cleanup(func() { backend.Close() })

	dir := t.TempDir()
	kek := make([]byte, 32)
	if _, err := rand.Read(kek); err != nil {
		t.Fatal(err)
	}
	ps := newProcs(t, dir, []string{"MCPGW_KEK=" + base64.StdEncoding.EncodeToString(kek), "MCPGW_ADMIN_TOKEN=" + adminToken})
	c := &cp{node: proctest.FreeAddr(t), admin: proctest.FreeAddr(t), ops: proctest.FreeAddr(t), dataDir: filepath.Join(dir, "cp"), dbURL: pg.URL()}
	ps.startCP(c)

	policy := fmt.Sprintf(`backends:
  - name: echo
    http: {url: "http://%s/mcp"}
    timeout: 20s
roles:
  - name: caller
    rules:
      - {id: call-echo, effect: allow, tools: ["echo__*"]}
bindings:
  - {role: caller, subjects: ["user:alice"]}
principals:
  - {name: alice}
`, bl.Addr())
	policyFile := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policyFile, []byte(policy), 0o600); err != nil {
		t.Fatal(err)
	}
	ps.mustMcpctl(c, "apply", "-f", policyFile)
	var key struct {
		Key string `json:"key"`
	}
	if err := json.Unmarshal([]byte(ps.mustMcpctl(c, "keys", "create", "--principal", "alice", "-o", "json")), &key); err != nil {
		t.Fatal(err)
	}
	edges := []*edge{
		{name: "edge1", listen: proctest.FreeAddr(t), stateDir: filepath.Join(dir, "edge1")},
		{name: "edge2", listen: proctest.FreeAddr(t), stateDir: filepath.Join(dir, "edge2")},
	}
	for _, e := range edges {
		var tok struct {
			Token string `json:"token"`
		}
		if err := json.Unmarshal([]byte(ps.mustMcpctl(c, "join-token", "create", "--ttl", "10m", "-o", "json")), &tok); err != nil {
			t.Fatal(err)
		}
		ps.startEdge(e, c, tok.Token)
	}
	t.Logf("private Postgres, control plane and two edges up after %v", time.Since(begin).Round(time.Millisecond))

	// Clients: four workers per edge until target answers.
	tl := &tally{ids: map[string]string{}, target: target, start: time.Now(), interval: time.Millisecond}
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	wctx, stopWorkers := context.WithCancel(ctx)
	defer stopWorkers()
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for _, e := range edges {
		for range 4 {
			wg.Go(func() {
				if err := worker(wctx, e, key.Key, tl, hc); err != nil {
					errs <- err
					stopWorkers()
				}
			})
		}
	}

	// Faults, each at a share of the target so traffic flows through all
	// of them; each outage lasts long enough for calls to be answered
	// (and spooled) while the part is away.
	waitShare := func(pct int64) {
		for tl.answered.Load() < target*pct/100 && wctx.Err() == nil {
			time.Sleep(10 * time.Millisecond)
		}
	}
	logStep := func(what string) {
		t.Logf("%7.2fs  %6d answered  %s", time.Since(begin).Seconds(), tl.answered.Load(), what)
	}
	faultsStart := time.Now()
	waitShare(10)
	logStep("SIGKILL the control plane (1/2)")
	c.proc.Kill(syscall.SIGKILL)
	time.Sleep(2 * time.Second)
	ps.startCP(c)
	logStep("control plane restarted")

	waitShare(30)
	logStep("SIGKILL Postgres")
	if err := pg.Kill(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	if err := pg.Start(ctx); err != nil {
		t.Fatal(err)
	}
	logStep("Postgres restarted (crash recovery)")

	waitShare(50)
	logStep("SIGKILL edge2")
	edges[1].proc.Kill(syscall.SIGKILL)
	time.Sleep(time.Second)
	ps.startEdge(edges[1], c, "")
	logStep("edge2 restarted from its state dir")

	waitShare(70)
	logStep("SIGKILL the control plane (2/2)")
	c.proc.Kill(syscall.SIGKILL)
	time.Sleep(2 * time.Second)
	ps.startCP(c)
	logStep("control plane restarted")

	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if got := tl.answered.Load(); got < target {
		t.Fatalf("only %d of %d calls answered before the deadline", got, target)
	}
	traffic := time.Since(faultsStart)
	logStep(fmt.Sprintf("traffic done: %d answered, %d refused (503), %d failed or unreachable", tl.answered.Load(), tl.refused.Load(), tl.failures.Load()))

	// Every answered call's event reaches Postgres through the spools.
	ids := make([]string, 0, len(tl.ids))
	for id := range tl.ids {
		ids = append(ids, id)
	}
	conn, err := pgx.Connect(ctx, pg.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var missing int
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM unnest($1::uuid[]) AS a(id)
			WHERE NOT EXISTS (SELECT 1 FROM audit_events e WHERE e.id = a.id)`, ids).Scan(&missing); err != nil {
			t.Fatal(err)
		}
		if missing == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d answered calls have no row in audit_events after 2 minutes", missing, len(ids))
		}
		time.Sleep(200 * time.Millisecond)
	}
	logStep("every answered call's event is in audit_events")
	time.Sleep(500 * time.Millisecond) // a late duplicate would land now

	var rows, distinct, answeredRows, nodes int64
	if err := conn.QueryRow(ctx, `SELECT count(*), count(DISTINCT id), count(DISTINCT node_id),
		count(*) FILTER (WHERE id = ANY($1::uuid[])) FROM audit_events`, ids).Scan(&rows, &distinct, &nodes, &answeredRows); err != nil {
		t.Fatal(err)
	}
	var ledgerBatches int64
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM audit_ledger`).Scan(&ledgerBatches); err != nil {
		t.Fatal(err)
	}
	t.Logf("answered %d calls (%d refused with 503, %d failed or unreachable) in %v; audit_events: %d rows, %d distinct ids, %d nodes; "+
		"%d rows are answered calls, %d rows are requests whose answer the client never saw; %d ledger batches",
		len(ids), tl.refused.Load(), tl.failures.Load(), traffic.Round(time.Millisecond), rows, distinct, nodes,
		answeredRows, rows-answeredRows, ledgerBatches)
	if rows != distinct {
		t.Errorf("audit_events holds %d rows for %d distinct ids: duplicates", rows, distinct)
	}
	if answeredRows != int64(len(ids)) {
		t.Errorf("audit_events holds %d rows of the %d answered calls, want exactly one each", answeredRows, len(ids))
	}
	if nodes != 2 {
		t.Errorf("events from %d nodes, want 2", nodes)
	}

	// VerifyAudit through the control plane: every node's chain complete.
	out, code := ps.mcpctl(c, "audit", "verify", "-o", "json")
	var v struct {
		Complete bool `json:"complete"`
		Reports  []struct {
			NodeID   string `json:"node_id"`
			Complete bool   `json:"complete"`
		} `json:"reports"`
	}
	if err := json.Unmarshal([]byte(strings.SplitN(out, "\nmcpctl:", 2)[0]), &v); err != nil {
		t.Fatalf("audit verify -o json (exit %d): %v\n%s", code, err, out)
	}
	if code != 0 || !v.Complete || len(v.Reports) != 2 {
		t.Fatalf("VerifyAudit: exit %d, complete %v, %d node reports:\n%s", code, v.Complete, len(v.Reports), out)
	}
	for _, r := range v.Reports {
		if !r.Complete {
			t.Errorf("node %s: chain incomplete", r.NodeID)
		}
	}
	logStep(fmt.Sprintf("VerifyAudit: %d node chains complete", len(v.Reports)))

	// The edges' status reports reach the node registry: ListNodes shows
	// each edge's audit spool, with the epoch its batches are in the
	// ledger under.
	epochs := map[string]uint64{}
	erows, err := conn.Query(ctx, `SELECT DISTINCT node_id::text, epoch FROM audit_ledger`)
	if err != nil {
		t.Fatal(err)
	}
	for erows.Next() {
		var node string
		var epoch int64
		if err := erows.Scan(&node, &epoch); err != nil {
			t.Fatal(err)
		}
		epochs[node] = uint64(epoch)
	}
	erows.Close()
	var listed struct {
		Nodes []struct {
			ID     string `json:"id"`
			Name   string `json:"name"`
			Status struct {
				AuditSpool *struct {
					Epoch      string `json:"epoch"`
					LimitBytes string `json:"limit_bytes"`
				} `json:"audit_spool"`
			} `json:"status"`
		} `json:"nodes"`
	}
	if err := json.Unmarshal([]byte(ps.mustMcpctl(c, "get", "nodes", "-o", "json")), &listed); err != nil {
		t.Fatal(err)
	}
	for _, n := range listed.Nodes {
		sp := n.Status.AuditSpool
		if sp == nil || sp.Epoch != strconv.FormatUint(epochs[n.ID], 10) || sp.LimitBytes == "" {
			t.Errorf("node %s (%s): audit spool in ListNodes %+v, want epoch %d and a limit", n.Name, n.ID, sp, epochs[n.ID])
		}
	}
	if len(listed.Nodes) != 2 {
		t.Errorf("ListNodes shows %d nodes, want 2", len(listed.Nodes))
	}
	logStep(fmt.Sprintf("ListNodes shows both edges' audit spools; total %v", time.Since(begin).Round(time.Millisecond)))
}
