package dataplane_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mcpgw/mcpgw/internal/proctest"
)

// principalKeys are the API keys of the two principals these tests act as.
var principalKeys = map[string]string{
	"alice": "mcpgw_alice_aliceSecret0123456789",
	"bob":   "mcpgw_bob_bobSecret0123456789abc",
}

// twoPrincipals is a policy under which alice and bob, each known by the
// SHA-256 of their key, may use everything.
func twoPrincipals() string {
	var b strings.Builder
	b.WriteString("roles:\n  - name: everything\n    rules: [{effect: allow}]\n")
	b.WriteString("bindings:\n  - {role: everything, subjects: [\"user:alice\", \"user:bob\"]}\nprincipals:\n")
	for _, p := range []string{"alice", "bob"} {
		h := sha256.Sum256([]byte(principalKeys[p]))
		fmt.Fprintf(&b, "  - {name: %s, api_key_sha256: %s}\n", p, hex.EncodeToString(h[:]))
	}
	return b.String()
}

// taskRun is what taskclient.mjs prints.
type taskRun struct {
	ServerTasks map[string]any     `json:"serverTasks"`
	TaskSupport map[string]*string `json:"taskSupport"`
	Stream      []string           `json:"stream"`
	TaskID      string             `json:"taskId"`
	Result      struct {
		Meta    map[string]map[string]string `json:"_meta"`
		Content []struct{ Text string }      `json:"content"`
	} `json:"result"`
	StreamError *tsErr           `json:"streamError"`
	Get         map[string]any   `json:"get"`
	ListIDs     []string         `json:"listIds"`
	ForeverID   string           `json:"foreverId"`
	Cancel      map[string]any   `json:"cancel"`
	CancelError *tsErr           `json:"cancelError"`
	Statuses    []map[string]any `json:"statuses"`
	Fatal       *tsErr           `json:"fatal"`
	// --probe
	ProbeGet *tsProbe `json:"get_probe"`
}

type tsErr struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

type tsProbe struct {
	OK    bool   `json:"ok"`
	Error *tsErr `json:"error"`
}

func runTaskClient(t *testing.T, dir string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", append([]string{filepath.Join(dir, "taskclient.mjs")}, args...)...)
	cmd.Dir = dir
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("taskclient %v: %v\n%s\n%s", args, err, out, stderr.String())
	}
	return out
}

// Tasks (2025-11-25) pass through to a backend that offers them: the
// TypeScript SDK's task support is the only implementation among the
// project's peers (the Go SDK has none), so the backend is a stdio server
// built on it (testdata/tsclient/taskserver.mjs) and the client is the
// same SDK's. The run through the edge must match the run direct, with
// the edge's own task ids; another principal cannot see or touch the task.
func TestTasksThroughEdge(t *testing.T) {
	dir := proctest.TSClientDir(t)
	backend := fmt.Sprintf("  - name: tk\n    stdio:\n      command: [node, %q]\n      dir: %q\n    timeout: 20s\n", filepath.Join(dir, "taskserver.mjs"), dir)
	e := startEdge(t, twoPrincipals()+"backends:\n"+backend+stdioBackend("ev"), nil)

	var direct, via taskRun
	if err := json.Unmarshal(runTaskClient(t, dir, "--stdio", "node", filepath.Join(dir, "taskserver.mjs"), "--", "--prefix", ""), &direct); err != nil {
		t.Fatal(err)
	}
	raw := runTaskClient(t, dir, "--url", e.URL, "--key", principalKeys["alice"], "--prefix", "tk__")
	if err := json.Unmarshal(raw, &via); err != nil {
		t.Fatal(err)
	}
	t.Logf("through the edge: %s", raw)
	if via.Fatal != nil || via.StreamError != nil || via.CancelError != nil {
		t.Fatalf("through the edge: %s", raw)
	}
	if fmt.Sprint(via.ServerTasks) != fmt.Sprint(direct.ServerTasks) {
		t.Errorf("tasks capability: edge %v, direct %v", via.ServerTasks, direct.ServerTasks)
	}
	if ts := via.TaskSupport["tk__slow_echo"]; ts == nil || *ts != "optional" {
		t.Errorf("tk__slow_echo execution.taskSupport = %v", ts)
	}
	if strings.Join(via.Stream, ",") != strings.Join(direct.Stream, ",") {
		t.Errorf("callToolStream: edge %v, direct %v", via.Stream, direct.Stream)
	}
	if !strings.HasPrefix(via.TaskID, "mcpgw-task-") {
		t.Errorf("task id %q is not the edge's own", via.TaskID)
	}
	if len(via.Result.Content) != 1 || via.Result.Content[0].Text != "echo: hi" {
		t.Errorf("task result = %+v", via.Result)
	}
	if got := via.Result.Meta["io.modelcontextprotocol/related-task"]["taskId"]; got != via.TaskID {
		t.Errorf("related-task in the result = %q, want %q", got, via.TaskID)
	}
	if via.Get["taskId"] != via.TaskID || via.Get["status"] != "completed" {
		t.Errorf("tasks/get = %v", via.Get)
	}
	if len(via.ListIDs) != 1 || via.ListIDs[0] != via.TaskID {
		t.Errorf("tasks/list = %v, want exactly %s", via.ListIDs, via.TaskID)
	}
	if via.Cancel["taskId"] != via.ForeverID || via.Cancel["status"] != "cancelled" {
		t.Errorf("tasks/cancel = %v", via.Cancel)
	}
	var sawStatus bool
	for _, s := range via.Statuses {
		if s["taskId"] != via.TaskID {
			t.Errorf("status notification with a task id that is not the client's: %v", s)
		}
		sawStatus = sawStatus || s["status"] == "completed"
	}
	if len(direct.Statuses) > 0 && !sawStatus {
		t.Errorf("no notifications/tasks/status through the edge (direct: %v)", direct.Statuses)
	}

	// Another principal: the task does not exist for it.
	var probe map[string]json.RawMessage
	raw = runTaskClient(t, dir, "--url", e.URL, "--key", principalKeys["bob"], "--prefix", "tk__", "--probe", via.TaskID)
	if err := json.Unmarshal(raw, &probe); err != nil {
		t.Fatal(err)
	}
	for _, op := range []string{"get", "result", "cancel"} {
		var p tsProbe
		_ = json.Unmarshal(probe[op], &p)
		if p.OK || p.Error == nil || !strings.Contains(p.Error.Message, "not found") {
			t.Errorf("bob's tasks/%s of alice's task: %s", op, probe[op])
		}
	}
	if string(probe["listIds"]) != "[]" {
		t.Errorf("bob's tasks/list = %s, want none", probe["listIds"])
	}
	// And the owner still can.
	raw = runTaskClient(t, dir, "--url", e.URL, "--key", principalKeys["alice"], "--prefix", "tk__", "--probe", via.TaskID)
	if err := json.Unmarshal(raw, &probe); err != nil {
		t.Fatal(err)
	}
	var p tsProbe
	_ = json.Unmarshal(probe["get"], &p)
	if !p.OK {
		t.Errorf("alice's tasks/get from a new session: %s", probe["get"])
	}
	var ids []string
	_ = json.Unmarshal(probe["listIds"], &ids)
	if len(ids) != 2 || !contains(ids, via.TaskID) || !contains(ids, via.ForeverID) {
		t.Errorf("alice's tasks/list from a new session = %v, want %s and %s", ids, via.TaskID, via.ForeverID)
	}
}
