package dataplane_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgw/mcpgw/dataplane"
	"github.com/mcpgw/mcpgw/dataplane/enforce"
	"github.com/mcpgw/mcpgw/dataplane/internal/mcptest"
	"github.com/mcpgw/mcpgw/dataplane/state"
	"github.com/mcpgw/mcpgw/internal/audit"
	"github.com/mcpgw/mcpgw/internal/document"
	"github.com/mcpgw/mcpgw/internal/loadgen"
	"github.com/mcpgw/mcpgw/internal/policy"
)

// enforcedConfig is issue 5's scenario for the whole edge (dataplane.Run
// from a config file): two real backends, the everything-server over stdio
// as "github" and the echo server over HTTP as "search"; alice is a
// developer (every github__ tool except the denied pattern), bob is
// read-only (the search backend), carol is known but bound to nothing,
// root may do anything (the reference for what the backends offer).
// There is no anonymous opt-in: a request without a key is refused.
func enforcedConfig(searchURL, auditFile string, sums map[string]string, denied string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "backends:\n%s%s", stdioBackend("github"), httpBackend("search", searchURL, "-"))
	b.WriteString("roles:\n  - name: developer\n    rules:\n")
	b.WriteString("      - {id: dev-github, effect: allow, tools: [\"github__*\"]}\n")
	if denied != "" {
		fmt.Fprintf(&b, "      - {id: dev-deny, effect: deny, tools: [%q]}\n", denied)
	}
	b.WriteString("  - name: readonly\n    rules:\n      - {id: ro-search, effect: allow, backends: [search], tools: [\"*\"]}\n")
	b.WriteString("  - name: admin\n    rules:\n      - {id: admin-all, effect: allow}\n")
	b.WriteString("bindings:\n  - {role: developer, subjects: [\"user:alice\"]}\n  - {role: readonly, subjects: [\"user:bob\"]}\n  - {role: admin, subjects: [\"user:root\"]}\n")
	b.WriteString("principals:\n")
	for _, p := range []string{"alice", "bob", "carol", "root"} {
		fmt.Fprintf(&b, "  - {name: %s, api_key_sha256: %s}\n", p, sums[p])
	}
	fmt.Fprintf(&b, "audit: {file: %q, durability: sync}\n", auditFile)
	return b.String()
}

// fileRevision is the policy revision the edge stamps for a config file:
// derived from its policy content (enforce.Prepare), as `mcpgw policy
// check` prints it.
func fileRevision(t *testing.T, yaml string) int64 {
	t.Helper()
	doc, err := document.Parse(strings.NewReader(yaml), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	g, err := enforce.Prepare(doc, state.Meta{})
	if err != nil {
		t.Fatal(err)
	}
	return g.Revision
}

// auditEvents reads the JSON-lines audit file; every line must decode and
// validate as an audit event.
func auditEvents(t *testing.T, path string) []audit.Event {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var evs []audit.Event
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		ev, err := audit.DecodeJSON(sc.Bytes())
		if err != nil {
			t.Fatalf("audit line does not validate: %v\n%s", err, sc.Bytes())
		}
		evs = append(evs, ev)
	}
	return evs
}

// findEvent waits for the audit file to hold an event matching ok. With
// sync durability the event is in the spool before the answer is released;
// the file sink follows within milliseconds.
func findEvent(t *testing.T, path, what string, ok func(audit.Event) bool) audit.Event {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		for _, ev := range auditEvents(t, path) {
			if ok(ev) {
				return ev
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no audit event for %s in %s", what, path)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// holdingSampler answers sampling requests once released, so a test can
// keep a tool call in flight.
type holdingSampler struct {
	started chan struct{}
	release chan struct{}
}

func (s *holdingSampler) handle(ctx context.Context, _ *mcp.CreateMessageRequest) (*mcp.CreateMessageResult, error) {
	s.started <- struct{}{}
	select {
	case <-s.release:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return &mcp.CreateMessageResult{Role: "assistant", Model: "test", Content: &mcp.TextContent{Text: "held"}}, nil
}

// The issue-5 "done when" scenario through the whole edge: what `mcpgw
// edge --config` runs, with enforcement on by default.
func TestEnforcementThroughRun(t *testing.T) {
	keys, sums := map[string]string{}, map[string]string{}
	for _, p := range []string{"alice", "bob", "carol", "root"} {
		key, err := policy.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		h := policy.HashKey(key)
		keys[p], sums[p] = key, hex.EncodeToString(h[:])
	}
	search := httptest.NewServer(loadgen.NewEcho())
	t.Cleanup(search.Close)
	auditFile := filepath.Join(t.TempDir(), "audit.jsonl")
	const denied = "github__test_e*"
	cfg1 := enforcedConfig(search.URL, auditFile, sums, denied)
	rev1 := fileRevision(t, cfg1)
	e := startEdge(t, cfg1, nil)
	ctx := context.Background()

	sampler := &holdingSampler{started: make(chan struct{}, 4), release: make(chan struct{})}
	var aliceChanged atomic.Int32
	alice := mcptest.ConnectWithKey(t, e.URL, keys["alice"], &mcp.ClientOptions{
		CreateMessageHandler:   sampler.handle,
		ToolListChangedHandler: func(context.Context, *mcp.ToolListChangedRequest) { aliceChanged.Add(1) },
	})
	// root's list, once both backends are up, is the reference set.
	root := mcptest.ConnectWithKey(t, e.URL, keys["root"], nil)
	var all []string
	deadline := time.Now().Add(20 * time.Second)
	for {
		all = mcptest.ToolNames(t, root)
		if slices.Contains(all, "github__test_simple_text") && slices.Contains(all, "search__echo") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("backends did not come up: root lists %v", all)
		}
		time.Sleep(50 * time.Millisecond)
	}

	t.Run("lists are exactly what each principal may use", func(t *testing.T) {
		var want []string
		for _, n := range all {
			if strings.HasPrefix(n, "github__") && !strings.HasPrefix(n, "github__test_e") {
				want = append(want, n)
			}
		}
		if got := mcptest.ToolNames(t, alice); !slices.Equal(got, want) || len(want) < 5 {
			t.Errorf("alice lists %v\nwant %v", got, want)
		}
		bob := mcptest.ConnectWithKey(t, e.URL, keys["bob"], nil)
		if got := mcptest.ToolNames(t, bob); !slices.Equal(got, []string{"search__echo"}) {
			t.Errorf("bob lists %v, want [search__echo]", got)
		}
		if _, err := bob.CallTool(ctx, &mcp.CallToolParams{Name: "search__echo", Arguments: map[string]any{"q": "x"}}); err != nil {
			t.Errorf("bob calling search__echo: %v", err)
		}
		if _, err := bob.CallTool(ctx, &mcp.CallToolParams{Name: "github__test_simple_text"}); err == nil {
			t.Error("bob called a github tool")
		}
		carol := mcptest.ConnectWithKey(t, e.URL, keys["carol"], nil)
		if got := mcptest.ToolNames(t, carol); len(got) != 0 {
			t.Errorf("carol has no binding but lists %v", got)
		}
	})

	t.Run("a denied call names the tool and is audited with the rule", func(t *testing.T) {
		const name = "github__test_embedded_resource"
		_, err := alice.CallTool(ctx, &mcp.CallToolParams{Name: name})
		if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("tool %q is not permitted", name)) {
			t.Fatalf("alice calling %s: %v", name, err)
		}
		ev := findEvent(t, auditFile, "the denied call", func(ev audit.Event) bool {
			return ev.Method == "tools/call" && ev.Name == name && ev.Principal == "alice"
		})
		if ev.Status != audit.StatusDenied || ev.Decision != audit.DecisionDeny || ev.Rule != "dev-deny" || ev.PolicyRevision != rev1 || ev.Backend != "github" {
			t.Errorf("denied call audited as %+v (want denied by dev-deny at revision %d)", ev, rev1)
		}
	})

	t.Run("no key or a wrong key is 401 with a challenge, and audited", func(t *testing.T) {
		wrong, err := policy.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		for what, hdr := range map[string]map[string]string{
			"no key":    nil,
			"wrong key": {"Authorization": "Bearer " + wrong},
		} {
			resp, body := post(t, e, initBody, hdr)
			if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") != `Bearer realm="mcpgw"` ||
				!strings.Contains(body, "a valid API key is required") {
				t.Errorf("%s: %d %q %s", what, resp.StatusCode, resp.Header.Get("WWW-Authenticate"), body)
			}
			if strings.Contains(body, wrong) {
				t.Errorf("%s: the answer echoes the key", what)
			}
			id := resp.Header.Get("Mcpgw-Audit-Id")
			if id == "" {
				t.Errorf("%s: 401 without Mcpgw-Audit-Id", what)
				continue
			}
			ev := findEvent(t, auditFile, what, func(ev audit.Event) bool { return ev.ID.String() == id })
			if ev.Principal != "" || ev.Status != audit.StatusDenied || ev.Decision != audit.DecisionDeny || ev.Method != "initialize" {
				t.Errorf("%s audited as %+v", what, ev)
			}
		}
	})

	t.Run("editing the file grants a tool within 1s; a call in flight completes", func(t *testing.T) {
		inflight := make(chan error, 1)
		go func() {
			_, err := alice.CallTool(ctx, &mcp.CallToolParams{Name: "github__test_sampling", Arguments: map[string]any{"prompt": "hi"}})
			inflight <- err
		}()
		select {
		case <-sampler.started:
		case <-time.After(10 * time.Second):
			t.Fatal("the sampling call never reached the client")
		}
		cfg2 := enforcedConfig(search.URL, auditFile, sums, "") // no deny rule
		rev2 := fileRevision(t, cfg2)
		if rev2 == rev1 {
			t.Fatal("the edited policy has the old revision")
		}
		changed := aliceChanged.Load()
		t0 := time.Now()
		writeConfig(t, e.CfgPath, cfg2)
		const grant = "github__test_embedded_resource"
		for {
			_, err := alice.CallTool(ctx, &mcp.CallToolParams{Name: grant})
			if err == nil {
				break
			}
			if time.Since(t0) > time.Second {
				t.Fatalf("%s still refused %v after the edit: %v", grant, time.Since(t0), err)
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Logf("granted after %v", time.Since(t0))
		close(sampler.release)
		select {
		case err := <-inflight:
			if err != nil {
				t.Errorf("the call in flight across the change failed: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the call in flight across the change never completed")
		}
		ev := findEvent(t, auditFile, "the granted call", func(ev audit.Event) bool {
			return ev.Name == grant && ev.Status == audit.StatusOK
		})
		if ev.PolicyRevision != rev2 || ev.Rule != "dev-github" {
			t.Errorf("granted call audited as %+v, want revision %d", ev, rev2)
		}
		old := findEvent(t, auditFile, "the call in flight", func(ev audit.Event) bool { return ev.Name == "github__test_sampling" })
		if old.Status != audit.StatusOK || old.PolicyRevision != rev1 {
			t.Errorf("the call in flight audited as %+v, want ok under revision %d", old, rev1)
		}
		for deadline := time.Now().Add(5 * time.Second); aliceChanged.Load() == changed && time.Now().Before(deadline); {
			time.Sleep(10 * time.Millisecond)
		}
		if aliceChanged.Load() == changed {
			t.Error("alice got no tools/list_changed when the policy changed what she may see")
		}
	})

	t.Run("readyz reports the policy revision and the audit log", func(t *testing.T) {
		resp, err := http.Get(e.Base + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(body), "policy revision") || !strings.Contains(string(body), "audit ok") {
			t.Errorf("readyz: %d %s", resp.StatusCode, body)
		}
	})
}

// Without any policy section, nothing is allowed: deny by default, and
// without the anonymous opt-in a keyless caller is refused outright.
func TestNoPolicyDeniesEverything(t *testing.T) {
	e := startEdge(t, "backends:\n"+stdioBackend("ev"), nil)
	resp, _ := post(t, e, initBody, nil)
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("keyless initialize without an anonymous opt-in: %d", resp.StatusCode)
	}
	e2 := startEdge(t, "auth: {anonymous: {principal: local}}\nbackends:\n"+stdioBackend("ev"), nil)
	cs := connect(t, e2.URL, nil)
	time.Sleep(500 * time.Millisecond) // let the backend list: an empty list must not be an artefact of timing
	if got := mcptest.ToolNames(t, cs); len(got) != 0 {
		t.Errorf("an unbound anonymous principal lists %v", got)
	}
	if _, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "ev__test_simple_text"}); err == nil || !strings.Contains(err.Error(), "not permitted") {
		t.Errorf("an unbound principal's call: %v", err)
	}
}

// Flags that cannot go together are refused before anything starts.
func TestFleetFlagsAreExclusive(t *testing.T) {
	for _, tc := range []struct {
		cfg  dataplane.Config
		want string
	}{
		{dataplane.Config{}, "--config FILE (standalone) or --control-plane"},
		{dataplane.Config{ConfigFile: "x.yaml", ControlPlane: "127.0.0.1:7443"}, "mutually exclusive"},
		{dataplane.Config{ConfigFile: "x.yaml", JoinToken: "t"}, "--join-token needs --control-plane"},
		{dataplane.Config{ConfigFile: "x.yaml", CAFile: "ca.crt"}, "--ca-file needs --control-plane"},
		{dataplane.Config{ConfigFile: "x.yaml", Labels: map[string]string{"a": "b"}}, "--label needs --control-plane"},
		{dataplane.Config{ControlPlane: "no-port"}, "want HOST:PORT"},
		{dataplane.Config{ConfigFile: "x.yaml", FleetAudit: dataplane.FleetAudit{OnFull: "drop"}}, "need --control-plane"},
		{dataplane.Config{ControlPlane: "cp:7443", FleetAudit: dataplane.FleetAudit{Durability: "eventually"}}, "want sync (default) or async"},
		{dataplane.Config{ControlPlane: "cp:7443", FleetAudit: dataplane.FleetAudit{OnFull: "block"}}, "want refuse (default) or drop"},
		{dataplane.Config{ControlPlane: "cp:7443", FleetAudit: dataplane.FleetAudit{SpoolMaxBytes: -1}}, "must not be negative"},
		{dataplane.Config{ControlPlane: "cp:7443", FleetAudit: dataplane.FleetAudit{Fsync: "sometimes"}}, "want interval (default), always or never"},
		{dataplane.Config{ConfigFile: "x.yaml", FleetAudit: dataplane.FleetAudit{Fsync: "always"}}, "need --control-plane"},
		{dataplane.Config{ConfigFile: "x.yaml", Principal: "alice"}, "needs --stdio"},
		{dataplane.Config{ConfigFile: "x.yaml", Stdio: true, Principal: "alice", APIKey: "k"}, "mutually exclusive"},
	} {
		err := tc.cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: Validate = %v, want %q", tc.cfg, err, tc.want)
		}
	}
}

// The stdio client acts as the edge's configured identity: --principal,
// or a key (MCPGW_API_KEY) checked against the policy like a bearer key;
// without either (and no anonymous opt-in) the edge refuses to serve.
func TestStdioIdentityThroughRun(t *testing.T) {
	key, err := policy.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	h := policy.HashKey(key)
	doc := "backends:\n" + stdioBackend("ev") +
		"roles:\n  - name: one\n    rules:\n      - {id: one-tool, effect: allow, tools: [ev__test_simple_text]}\n" +
		"bindings:\n  - {role: one, subjects: [\"user:alice\"]}\n" +
		"principals:\n  - {name: alice, api_key_sha256: " + hex.EncodeToString(h[:]) + "}\n  - {name: bob}\n"
	path := filepath.Join(t.TempDir(), "mcpgw.yaml")
	writeConfig(t, path, doc)

	run := func(t *testing.T, principal, apiKey string) (*mcp.ClientSession, chan error) {
		inR, inW := io.Pipe()
		outR, outW := io.Pipe()
		stateDir := t.TempDir()
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 2)
		var ended error
		t.Cleanup(func() {
			// Stop the edge before its state dir is removed.
			cancel()
			inW.Close()
			select {
			case ended = <-done:
			case <-time.After(15 * time.Second):
				t.Error("edge did not stop")
			}
			_ = ended
		})
		go func() {
			err := dataplane.Run(ctx, dataplane.Config{ConfigFile: path, StateDir: stateDir, Stdio: true, Stdin: inR, Stdout: outW,
				Principal: principal, APIKey: apiKey, Logger: testLogger()})
			outW.Close()
			done <- err
			done <- err // for the cleanup after a test read the first
		}()
		c := mcp.NewClient(&mcp.Implementation{Name: "stdio-test", Version: "1"}, nil)
		cs, err := c.Connect(ctx, &mcp.IOTransport{Reader: outR, Writer: inW}, &mcp.ClientSessionOptions{ProtocolVersion: "2025-11-25"})
		if err != nil {
			return nil, done
		}
		t.Cleanup(func() { cs.Close() })
		return cs, done
	}
	for _, tc := range []struct{ name, principal, key string }{{"principal", "alice", ""}, {"api key", "", key}} {
		t.Run(tc.name, func(t *testing.T) {
			cs, done := run(t, tc.principal, tc.key)
			if cs == nil {
				t.Fatalf("connecting: edge ended with %v", <-done)
			}
			if got := mcptest.ToolNames(t, cs); !slices.Equal(got, []string{"ev__test_simple_text"}) {
				t.Errorf("alice over stdio lists %v", got)
			}
		})
	}
	t.Run("bob is bound to nothing", func(t *testing.T) {
		cs, _ := run(t, "bob", "")
		if got := mcptest.ToolNames(t, cs); len(got) != 0 {
			t.Errorf("bob over stdio lists %v", got)
		}
	})
	t.Run("no identity", func(t *testing.T) {
		_, done := run(t, "", "")
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), "no stdio identity") {
				t.Errorf("Run without a stdio identity: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Fatal("the edge served a stdio client with no identity")
		}
	})
}

// With its audit database unreachable the edge starts and serves the same
// way (events wait in the spool) and says so in /readyz.
func TestAuditDatabaseDownThroughRun(t *testing.T) {
	closed := mcptest.FreeAddr(t) // nothing listens there
	e := startEdge(t, openPolicy+"backends:\n"+stdioBackend("ev")+
		fmt.Sprintf("audit: {postgres_url: \"postgres://postgres@%s/none?sslmode=disable&connect_timeout=1\"}\n", closed), nil)
	cs := connect(t, e.URL, nil)
	waitTools(t, cs, everythingTools)
	if _, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "ev__test_simple_text"}); err != nil {
		t.Fatalf("calling with the audit database down: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(e.Base + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 200 && strings.Contains(string(body), "audit degraded (audit sink postgres") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("readyz with the audit database down: %d %s", resp.StatusCode, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
