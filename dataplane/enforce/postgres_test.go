package enforce_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgw/mcpgw/dataplane/internal/mcptest"
	"github.com/mcpgw/mcpgw/internal/pgtest"
)

// The edge's events, as this package builds them, are what Postgres'
// audit_events accepts: a standalone edge with audit.postgres_url gets a
// row per request, with the node id, decision, rule and revision.
func TestEventsReachPostgres(t *testing.T) {
	dbURL := pgtest.NewDatabase(t)
	db := pgtest.NewPool(t, dbURL)
	key, sum := newKey(t)
	cfg := "backends:\n  - name: github\n    stdio: {command: [\"" + serverBin + "\"]}\n    timeout: 20s\n" +
		"roles:\n  - name: dev\n    rules:\n      - {id: dev-all, effect: allow, tools: [\"github__*\"]}\n      - {id: dev-deny, effect: deny, tools: [\"github__test_error_handling\"]}\n" +
		"bindings:\n  - {role: dev, subjects: [\"user:alice\"]}\n" +
		"principals:\n  - {name: alice, api_key_sha256: " + sum + "}\n" +
		"audit: {postgres_url: \"" + dbURL + "\", spool_dir: \"" + filepath.Join(t.TempDir(), "spool") + "\"}\n"
	e := startEdge(t, cfg)
	cs := mcptest.ConnectWithKey(t, e.URL, key, nil)
	waitTool(t, cs, "github__test_simple_text")
	ctx := context.Background()
	if _, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "github__test_simple_text", Arguments: map[string]any{"a": 1}}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "github__test_error_handling"}); err == nil {
		t.Fatal("a denied call succeeded")
	}
	rev := e.Holder.Load().Revision
	type row struct {
		node, status, decision, rule, args string
		rev                                int64
	}
	want := map[string]row{
		"github__test_simple_text":    {e.NodeID, "ok", "allow", "dev-all", "", rev},
		"github__test_error_handling": {e.NodeID, "denied", "deny", "dev-deny", "", rev},
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		got := map[string]row{}
		rows, err := db.Query(ctx, `SELECT name, node_id::text, status, decision, rule, args_sha256, policy_revision FROM audit_events WHERE principal = 'alice' AND method = 'tools/call'`)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var name string
			var r row
			if err := rows.Scan(&name, &r.node, &r.status, &r.decision, &r.rule, &r.args, &r.rev); err != nil {
				t.Fatal(err)
			}
			got[name] = r
		}
		rows.Close()
		if len(got) == 2 {
			for name, r := range got {
				// Both calls carry arguments (the SDK sends {} for none).
				if len(r.args) != 64 {
					t.Errorf("%s: args_sha256 %q", name, r.args)
				}
				r.args = ""
				got[name] = r
			}
			for name, w := range want {
				if got[name] != w {
					t.Errorf("%s: row %+v, want %+v", name, got[name], w)
				}
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("audit_events has %v", got)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
