package enforce_test

import (
	"context"
	"encoding/hex"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"crypto/sha256"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgw/mcpgw/dataplane/internal/mcptest"
	"github.com/mcpgw/mcpgw/dataplane/state"
	"github.com/mcpgw/mcpgw/internal/audit"
)

// rbacConfig is the scenario on two real backends (the
// everything-server twice, as "github" and "search"): alice is a developer
// (every github__ tool but the denied pattern), bob is read-only (every
// search tool), carol is known but bound to nothing, root may do anything.
func rbacConfig(sums map[string]string, denied string) string {
	var b strings.Builder
	b.WriteString("backends:\n")
	for _, name := range []string{"github", "search"} {
		fmt.Fprintf(&b, "  - name: %s\n    stdio: {command: [%q]}\n    timeout: 20s\n", name, serverBin)
	}
	b.WriteString("roles:\n")
	b.WriteString("  - name: developer\n    rules:\n")
	b.WriteString("      - {id: dev-github, effect: allow, tools: [\"github__*\"]}\n")
	if denied != "" {
		fmt.Fprintf(&b, "      - {id: dev-deny, effect: deny, tools: [%q]}\n", denied)
	}
	b.WriteString("  - name: readonly\n    rules:\n      - {id: ro-search, effect: allow, backends: [search], tools: [\"*\"]}\n")
	b.WriteString("  - name: admin\n    rules:\n      - {id: admin-all, effect: allow}\n")
	b.WriteString("bindings:\n")
	b.WriteString("  - {role: developer, subjects: [\"user:alice\"]}\n")
	b.WriteString("  - {role: readonly, subjects: [\"user:bob\"]}\n")
	b.WriteString("  - {role: admin, subjects: [\"user:root\"]}\n")
	b.WriteString("principals:\n")
	for _, p := range []string{"alice", "bob", "carol", "root"} {
		fmt.Fprintf(&b, "  - {name: %s, api_key_sha256: %s}\n", p, sums[p])
	}
	b.WriteString("audit: {file: AUDITFILE, durability: sync}\n")
	return b.String()
}

func TestRBACAndAuditThroughTheEdge(t *testing.T) {
	keys, sums := map[string]string{}, map[string]string{}
	for _, p := range []string{"alice", "bob", "carol", "root"} {
		keys[p], sums[p] = newKey(t)
	}
	const denied = "github__test_e*"
	e := startEdge(t, rbacConfig(sums, denied))
	rev1 := e.Holder.Load().Revision
	ctx := context.Background()

	// root sees everything once both backends are up: the reference set.
	root := mcptest.ConnectWithKey(t, e.URL, keys["root"], nil)
	var all []string
	deadline := time.Now().Add(20 * time.Second)
	for {
		all = mcptest.ToolNames(t, root)
		gh, se := withPrefix(all, "github__"), withPrefix(all, "search__")
		if len(gh) > 0 && len(gh) == len(se) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("backends did not come up: %v", all)
		}
		time.Sleep(50 * time.Millisecond)
	}

	var wantAlice, deniedTools []string
	for _, n := range withPrefix(all, "github__") {
		if strings.HasPrefix(n, "github__test_e") {
			deniedTools = append(deniedTools, n)
		} else {
			wantAlice = append(wantAlice, n)
		}
	}
	if len(deniedTools) == 0 || len(wantAlice) == 0 {
		t.Fatalf("the scenario needs allowed and denied github tools: %v", all)
	}

	var aliceChanged atomic.Int32
	alice := mcptest.ConnectWithKey(t, e.URL, keys["alice"], &mcp.ClientOptions{
		ToolListChangedHandler: func(context.Context, *mcp.ToolListChangedRequest) { aliceChanged.Add(1) },
		CreateMessageHandler:   sampler.handle,
	})
	t.Run("lists are exactly what each principal may use", func(t *testing.T) {
		if got := mcptest.ToolNames(t, alice); !slices.Equal(got, wantAlice) {
			t.Errorf("alice lists %v\nwant %v", got, wantAlice)
		}
		bob := mcptest.ConnectWithKey(t, e.URL, keys["bob"], nil)
		if got, want := mcptest.ToolNames(t, bob), withPrefix(all, "search__"); !slices.Equal(got, want) {
			t.Errorf("bob lists %v\nwant %v", got, want)
		}
		carol := mcptest.ConnectWithKey(t, e.URL, keys["carol"], nil)
		if got := mcptest.ToolNames(t, carol); len(got) != 0 {
			t.Errorf("carol has no binding but lists %v", got)
		}
		if _, err := carol.CallTool(ctx, &mcp.CallToolParams{Name: "search__test_simple_text"}); err == nil {
			t.Error("carol called a tool")
		}
	})

	t.Run("a denied call names the tool and is audited with the rule", func(t *testing.T) {
		name := deniedTools[0]
		_, err := alice.CallTool(ctx, &mcp.CallToolParams{Name: name, Arguments: map[string]any{"x": 1}})
		if err == nil {
			t.Fatalf("alice called %s", name)
		}
		msg := err.Error()
		if !strings.Contains(msg, fmt.Sprintf("tool %q is not permitted", name)) {
			t.Errorf("denial says %q", msg)
		}
		for _, other := range all {
			if other != name && strings.Contains(msg, other) {
				t.Errorf("denial reveals %s: %q", other, msg)
			}
		}
		if strings.Contains(msg, "dev-deny") {
			t.Errorf("denial reveals the rule: %q", msg)
		}
		ev := waitEvent(t, e.AuditFile, "the denied call", func(ev audit.Event) bool {
			return ev.Method == "tools/call" && ev.Name == name && ev.Principal == "alice"
		})
		if ev.Status != audit.StatusDenied || ev.Decision != audit.DecisionDeny || ev.Rule != "dev-deny" || ev.PolicyRevision != rev1 || ev.Backend != "github" {
			t.Errorf("denied call audited as %+v", ev)
		}
		if ev.NodeID != e.NodeID || ev.Transport != "http" || ev.ClientName != "mcpgw-test" || ev.SessionID == "" || ev.ProtocolVersion != "2025-11-25" {
			t.Errorf("denied call audited without its context: %+v", ev)
		}
		sum := sha256.Sum256([]byte(`{"x":1}`))
		if ev.ArgsSHA256 != hex.EncodeToString(sum[:]) {
			t.Errorf("args_sha256 %q, want the digest of {\"x\":1}", ev.ArgsSHA256)
		}
	})

	t.Run("an allowed call is audited with its latencies", func(t *testing.T) {
		if _, err := alice.CallTool(ctx, &mcp.CallToolParams{Name: "github__test_simple_text"}); err != nil {
			t.Fatal(err)
		}
		ev := waitEvent(t, e.AuditFile, "the allowed call", func(ev audit.Event) bool {
			return ev.Method == "tools/call" && ev.Name == "github__test_simple_text" && ev.Principal == "alice"
		})
		if ev.Status != audit.StatusOK || ev.Decision != audit.DecisionAllow || ev.Rule != "dev-github" || ev.PolicyRevision != rev1 {
			t.Errorf("allowed call audited as %+v", ev)
		}
		if ev.UpstreamLatencyUS <= 0 || ev.LatencyUS < ev.UpstreamLatencyUS || ev.RequestBytes <= 0 || ev.ResponseBytes <= 0 {
			t.Errorf("allowed call without latencies or sizes: %+v", ev)
		}
	})

	t.Run("the audit id goes back in a header", func(t *testing.T) {
		resp, _ := post(t, e.URL, keys["bob"], `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"2"}}}`)
		id := resp.Header.Get("Mcpgw-Audit-Id")
		if resp.StatusCode != http.StatusOK || id == "" {
			t.Fatalf("initialize: %s, audit id %q", resp.Status, id)
		}
		ev := waitEvent(t, e.AuditFile, "the initialize", func(ev audit.Event) bool { return ev.ID.String() == id })
		if ev.Principal != "bob" || ev.Method != "initialize" || ev.ClientName != "raw" || ev.ID.Version() != 7 {
			t.Errorf("initialize audited as %+v", ev)
		}
	})

	t.Run("no key or a bad key is refused with 401 and audited", func(t *testing.T) {
		before := countRejected(readEvents(t, e.AuditFile))
		init := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"2"}}}`
		wrong := keys["alice"][:len(keys["alice"])-1] + "x"
		if wrong == keys["alice"] {
			wrong = keys["alice"][:len(keys["alice"])-1] + "y"
		}
		var bodies []string
		for _, key := range []string{"", wrong, "mcpgw_nope", "not-a-key-at-all"} {
			resp, body := post(t, e.URL, key, init)
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("key %q: %s, want 401", key, resp.Status)
			}
			if got := resp.Header.Get("WWW-Authenticate"); got != `Bearer realm="mcpgw"` {
				t.Errorf("key %q: WWW-Authenticate %q", key, got)
			}
			bodies = append(bodies, body)
		}
		for _, b := range bodies[1:] {
			if b != bodies[0] {
				t.Errorf("401 bodies differ, telling which part was wrong:\n%s\n%s", bodies[0], b)
			}
		}
		waitEvent(t, e.AuditFile, "the rejected attempts", func(audit.Event) bool {
			return countRejected(readEvents(t, e.AuditFile)) >= before+4
		})
		for _, ev := range readEvents(t, e.AuditFile) {
			if ev.Principal == "" && (ev.Status != audit.StatusDenied || ev.Decision != audit.DecisionDeny || ev.Method != "initialize" || ev.Error == "") {
				t.Errorf("rejected attempt audited as %+v", ev)
			}
		}
	})

	t.Run("a policy edit applies to the next request; calls in flight complete", func(t *testing.T) {
		// A call that waits on the client (sampling) is in flight across
		// the change.
		sampler.block()
		inflight := make(chan error, 1)
		go func() {
			_, err := alice.CallTool(ctx, &mcp.CallToolParams{Name: "github__test_sampling", Arguments: map[string]any{"prompt": "hi"}})
			inflight <- err
		}()
		sampler.waitStarted(t)

		const grant = "github__test_embedded_resource"
		if !slices.Contains(deniedTools, grant) {
			t.Fatalf("%s is not among the denied tools %v", grant, deniedTools)
		}
		changedBefore := aliceChanged.Load()
		t0 := time.Now()
		if _, err := e.Holder.ApplyState(ctx, parseDoc(t, strings.ReplaceAll(rbacConfig(sums, ""), "AUDITFILE", e.AuditFile)), state.Meta{}, e.Mgr); err != nil {
			t.Fatal(err)
		}
		rev2 := e.Holder.Load().Revision
		if rev2 == rev1 {
			t.Fatalf("the edited policy kept revision %d", rev1)
		}
		if _, err := alice.CallTool(ctx, &mcp.CallToolParams{Name: grant}); err != nil {
			t.Fatalf("%s after the grant: %v", grant, err)
		}
		if d := time.Since(t0); d > time.Second {
			t.Errorf("the grant took %v to apply", d)
		}
		sampler.release()
		select {
		case err := <-inflight:
			if err != nil {
				t.Errorf("the call in flight across the change failed: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the call in flight across the change never completed")
		}
		ev := waitEvent(t, e.AuditFile, "the granted call", func(ev audit.Event) bool {
			return ev.Name == grant && ev.Status == audit.StatusOK
		})
		if ev.PolicyRevision != rev2 || ev.Rule != "dev-github" {
			t.Errorf("granted call audited as %+v, want revision %d", ev, rev2)
		}
		old := waitEvent(t, e.AuditFile, "the call in flight", func(ev audit.Event) bool {
			return ev.Name == "github__test_sampling" && ev.Method == "tools/call"
		})
		if old.Status != audit.StatusOK || old.PolicyRevision != rev1 {
			t.Errorf("the call in flight audited as %+v, want ok under revision %d (it was decided before the change)", old, rev1)
		}
		deadline := time.Now().Add(5 * time.Second)
		for aliceChanged.Load() == changedBefore && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if aliceChanged.Load() == changedBefore {
			t.Error("alice got no tools/list_changed when the policy changed what she sees")
		}
		if got := mcptest.ToolNames(t, alice); !slices.Contains(got, grant) {
			t.Errorf("alice's list after the grant lacks %s: %v", grant, got)
		}
	})

	t.Run("a bad policy never goes live", func(t *testing.T) {
		before := e.Holder.Load()
		st := e.Mgr.Load()
		bad := parseDoc(t, strings.ReplaceAll(rbacConfig(sums, ""), "AUDITFILE", e.AuditFile))
		bad.Bindings = append(bad.Bindings, bad.Bindings[0]) // a role bound twice
		bad.Roles[0].Rules[0].Effect = "permit"
		if _, err := e.Holder.ApplyState(ctx, bad, state.Meta{}, e.Mgr); err == nil {
			t.Fatal("a bad policy was accepted")
		}
		if e.Holder.Load() != before || e.Mgr.Load() != st {
			t.Error("a rejected apply changed the live policy or state")
		}
	})
}

func countRejected(evs []audit.Event) int {
	n := 0
	for _, ev := range evs {
		if ev.Principal == "" {
			n++
		}
	}
	return n
}

// blockingSampler answers sampling requests, optionally holding them until
// released, so a test can keep a call in flight.
type blockingSampler struct {
	gate    atomic.Pointer[chan struct{}]
	started chan struct{}
}

var sampler = &blockingSampler{started: make(chan struct{}, 16)}

func (s *blockingSampler) block() {
	ch := make(chan struct{})
	s.gate.Store(&ch)
}

func (s *blockingSampler) release() {
	if ch := s.gate.Swap(nil); ch != nil {
		close(*ch)
	}
}

func (s *blockingSampler) waitStarted(t *testing.T) {
	t.Helper()
	select {
	case <-s.started:
	case <-time.After(10 * time.Second):
		t.Fatal("the sampling call never reached the client")
	}
}

func (s *blockingSampler) handle(ctx context.Context, _ *mcp.CreateMessageRequest) (*mcp.CreateMessageResult, error) {
	if ch := s.gate.Load(); ch != nil {
		s.started <- struct{}{}
		select {
		case <-*ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return &mcp.CreateMessageResult{Role: "assistant", Model: "test", Content: &mcp.TextContent{Text: "ok"}}, nil
}
