package enforce_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgw/mcpgw/dataplane/auditlog"
	"github.com/mcpgw/mcpgw/dataplane/internal/mcptest"
	"github.com/mcpgw/mcpgw/internal/audit"
)

func oneBackendConfig(sum string) string {
	return "backends:\n  - name: github\n    stdio: {command: [\"" + serverBin + "\"]}\n    timeout: 20s\n" +
		"roles:\n  - name: admin\n    rules:\n      - {id: admin-all, effect: allow}\n" +
		"bindings:\n  - {role: admin, subjects: [\"user:root\"]}\n" +
		"principals:\n  - {name: root, api_key_sha256: " + sum + "}\n" +
		"audit: {file: AUDITFILE}\n"
}

// waitTool waits until the edge lists name.
func waitTool(t *testing.T, cs *mcp.ClientSession, name string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(strings.Join(mcptest.ToolNames(t, cs), " "), name) {
		if time.Now().After(deadline) {
			t.Fatalf("%s never listed", name)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// With the sink unable to deliver, the spool fills. Under on_full: refuse
// the edge then answers with an error saying audit is unavailable, and
// serves again by itself once the sink delivers and frees the spool; every
// event of an answered call reaches the file.
func TestFullSpoolRefusesAndRecovers(t *testing.T) {
	key, sum := newKey(t)
	sinkDir := filepath.Join(t.TempDir(), "not-yet")
	e := startEdgeWith(t, oneBackendConfig(sum), edgeOptions{
		AuditFile: filepath.Join(sinkDir, "audit.jsonl"),
		Audit:     &auditlog.Config{MaxBytes: 32 << 10, OnFull: auditlog.OnFullRefuse, RetryMin: 10 * time.Millisecond, RetryMax: 100 * time.Millisecond},
	})
	cs := mcptest.ConnectWithKey(t, e.URL, key, nil)
	waitTool(t, cs, "github__test_simple_text")
	ctx := context.Background()
	answered := 0
	var refusal error
	for i := 0; i < 2000 && refusal == nil; i++ {
		res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "github__test_simple_text"})
		switch {
		case err != nil:
			refusal = err
		case res.IsError:
			t.Fatalf("call %d: %+v", i, res)
		default:
			answered++
		}
	}
	// The gateway answers with a JSON-RPC error saying so; once it also
	// sets HTTP 503 (DESIGN §6) the SDK client reports the status instead.
	if refusal == nil || !strings.Contains(refusal.Error(), "audit unavailable") && !strings.Contains(refusal.Error(), "Service Unavailable") {
		t.Fatalf("a full spool under refuse: %v after %d calls", refusal, answered)
	}
	if answered == 0 {
		t.Fatal("nothing was answered before the spool filled")
	}
	if err := os.MkdirAll(sinkDir, 0o700); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		_, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "github__test_simple_text"})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still refused after the sink recovered: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	answered++
	// Every answered call has its event (sync: written before the answer).
	waitEvent(t, e.AuditFile, "every answered call", func(audit.Event) bool {
		n := 0
		for _, ev := range readEvents(t, e.AuditFile) {
			if ev.Name == "github__test_simple_text" && ev.Status == audit.StatusOK {
				n++
			}
		}
		return n >= answered
	})
}

// Under on_full: drop the edge keeps answering and counts what it drops;
// the loss shows as a gap line in the file once the sink delivers.
func TestFullSpoolDropsAndCounts(t *testing.T) {
	key, sum := newKey(t)
	sinkDir := filepath.Join(t.TempDir(), "not-yet")
	e := startEdgeWith(t, oneBackendConfig(sum), edgeOptions{
		AuditFile: filepath.Join(sinkDir, "audit.jsonl"),
		Audit:     &auditlog.Config{MaxBytes: 32 << 10, OnFull: auditlog.OnFullDrop, RetryMin: 10 * time.Millisecond, RetryMax: 100 * time.Millisecond},
	})
	cs := mcptest.ConnectWithKey(t, e.URL, key, nil)
	waitTool(t, cs, "github__test_simple_text")
	ctx := context.Background()
	for i := 0; e.Log.Stats().Dropped == 0; i++ {
		if i == 2000 {
			t.Fatalf("nothing dropped after %d calls: %+v", i, e.Log.Stats())
		}
		if _, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "github__test_simple_text"}); err != nil {
			t.Fatalf("call %d under drop: %v", i, err)
		}
	}
	if err := os.MkdirAll(sinkDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "github__test_simple_text"}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		raw, _ := os.ReadFile(e.AuditFile)
		if strings.Contains(string(raw), `{"gap":`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no gap line in the audit file; dropped %d", e.Log.Stats().Dropped)
		}
		time.Sleep(50 * time.Millisecond)
	}
	readEvents(t, e.AuditFile) // every other line still validates
}
