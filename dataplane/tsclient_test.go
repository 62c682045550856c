package dataplane_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgw/mcpgw/dataplane/internal/mcptest"
	"github.com/mcpgw/mcpgw/internal/proctest"
)

// These tests prove with an independent client, the official TypeScript SDK
// (testdata/tsclient, a legacy 2025-11-25 client), that every feature of the
// Go SDK's everything-server works through the edge exactly as it does
// direct. Each scenario runs one operation list twice, one node process
// each: straight to the everything-server over the same kind of transport,
// and through the edge. Results are compared op by op after normalising only
// what the gateway owns: the "<backend>__" prefix on tool and prompt names,
// pagination cursors (the driver follows them to the end), server info, list
// order, progress tokens (rewritten per call; the one tool that echoes its
// token shows the edge's) and the documented cache hints on lists and reads.

// TestTSClientEverything covers the edge's HTTP front door, with the
// everything-server as a stdio backend and as a stateful HTTP backend, and
// its stdio front door (`mcpgw edge --stdio`) with a stdio backend.
func TestTSClientEverything(t *testing.T) {
	dir := proctest.TSClientDir(t)
	ops := everythingOps(t)

	t.Run("http/stdio-backend", func(t *testing.T) {
		t.Parallel()
		e := startEdge(t, openPolicy+"backends:\n"+stdioBackend("ev"), nil)
		waitTools(t, connect(t, e.URL, nil), countTools(ops))
		compareTS(t, dir, ops, tsComparison{
			direct: []string{"--stdio", serverBin, "--"},
			edges:  [][]string{{"--url", e.URL}},
		})
	})
	t.Run("http/http-backend", func(t *testing.T) {
		t.Parallel()
		// Two servers: the ops change the server's lists, so direct and
		// edge runs must not share one.
		direct := mcptest.StartHTTP(t, serverBin, "", true)
		backend := mcptest.StartHTTP(t, serverBin, "", true)
		e := startEdge(t, openPolicy+"backends:\n"+httpBackend("ev", backend.URL(), "-"), nil)
		waitTools(t, connect(t, e.URL, nil), countTools(ops))
		// The everything-server runs without an EventStore, so the stream
		// test_reconnection closes cannot be resumed: direct, the client
		// waits out its 60 s request timeout; through the edge the call
		// fails at once ("backend connection lost mid-call"). Nothing to
		// compare but two failures. It is compared over stdio.
		compareTS(t, dir, withoutTool(ops, "test_reconnection"), tsComparison{
			direct: []string{"--url", direct.URL()},
			// Two clients at once: over HTTP every call has its own
			// upstream stream, so progress, logs and server→client
			// requests reach exactly the client that made the call.
			edges:           [][]string{{"--url", e.URL}, {"--url", e.URL}},
			withdrawalsLost: true,
		})
	})
	t.Run("stdio/stdio-backend", func(t *testing.T) {
		t.Parallel()
		bin := buildMCPGW(t)
		cfg := filepath.Join(t.TempDir(), "mcpgw.yaml")
		writeConfig(t, cfg, openPolicy+"backends:\n"+stdioBackend("ev"))
		// The stdio front door lets its backends list before it answers, so
		// the client's first tools/list is complete.
		compareTS(t, dir, ops, tsComparison{
			direct: []string{"--stdio", serverBin, "--"},
			edges:  [][]string{{"--stdio", bin, "edge", "--stdio", "--config", cfg, "--state-dir", t.TempDir(), "--log-level", "warn", "--"}},
		})
	})
}

func withoutTool(ops []tsOp, name string) []tsOp {
	var out []tsOp
	for _, o := range ops {
		if o.Name != name {
			out = append(out, o)
		}
	}
	return out
}

// tsOp is one operation of testdata/tsclient/client.mjs (see its header).
type tsOp struct {
	Op        string         `json:"op"`
	Name      string         `json:"name,omitempty"`
	Arguments map[string]any `json:"arguments,omitempty"`
	URI       string         `json:"uri,omitempty"`
	Level     string         `json:"level,omitempty"`
	Ref       map[string]any `json:"ref,omitempty"`
	Argument  map[string]any `json:"argument,omitempty"`
	Progress  bool           `json:"progress,omitempty"`
	Method    string         `json:"method,omitempty"`
	TimeoutMs int            `json:"timeoutMs,omitempty"`

	// wantFail: a JSON-RPC error or an isError result, direct and through
	// the edge. Everything else must succeed both ways: equal failures
	// would hide a feature that never ran.
	wantFail bool
	// codeOnly compares errors by code: the edge answers for names and URIs
	// no backend serves, in its own words.
	codeOnly bool
	// notes, when set, is how many log or progress notifications the op
	// must see, so that two empty lists cannot pass for a feature.
	notes *int
}

func count(n int) *int { return &n }

// Server→client requests some tools must make, direct and through the edge.
var serverRequestsOf = map[string]int{
	"test_sampling":                              1,
	"test_elicitation":                           1,
	"test_elicitation_sep1034_defaults":          1,
	"test_input_required_result_elicitation":     1,
	"test_input_required_result_sampling":        1,
	"test_input_required_result_list_roots":      1,
	"test_input_required_result_multiple_inputs": 3,
	// go-sdk v1.8.0 fulfils one round for a legacy client and returns the
	// second round's inputRequests as the result.
	"test_input_required_result_multi_round": 1,
}

func (o tsOp) String() string {
	s := o.Op
	for _, x := range []string{o.Name, o.URI, o.Level, o.Method} {
		if x != "" {
			s += " " + x
		}
	}
	if o.Progress {
		s += " (progress)"
	}
	return s
}

// viaEdge is the op as a client of the edge sends it: tool and prompt names
// carry the backend's prefix.
func (o tsOp) viaEdge(prefix string) tsOp {
	switch o.Op {
	case "callTool", "callToolCancelled", "getPrompt":
		o.Name = prefix + o.Name
	case "complete":
		if o.Ref["type"] == "ref/prompt" {
			ref := map[string]any{}
			for k, v := range o.Ref {
				ref[k] = v
			}
			ref["name"] = prefix + ref["name"].(string)
			o.Ref = ref
		}
	}
	return o
}

// countTools is how many tools the ops call: all the server has.
func countTools(ops []tsOp) int {
	names := map[string]bool{}
	for _, o := range ops {
		if o.Op == "callTool" && o.Name != "no_such_tool" {
			names[o.Name] = true
		}
	}
	return len(names)
}

// Tools whose calls fail direct, so through the edge they must fail alike.
var toolsFailingDirect = map[string]bool{
	"test_error_handling": true, // by design
	// go-sdk v1.8.0 rejects its own elicitation schema ("items must specify
	// enum for untitled enums") before sending it.
	"test_elicitation_sep1330_enums": true,
}

// Tools that change the server's lists; they run last, followed by a wait
// for list_changed and a fresh list.
var listChangingTools = map[string]string{
	"test_trigger_tool_change":   "tools",
	"test_trigger_prompt_change": "prompts",
}

// everythingOps builds the operation list from what the everything-server
// itself lists (asked with the Go SDK client over stdio), so a tool, prompt
// or resource added to the server is covered without editing this test.
func everythingOps(t *testing.T) []tsOp {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := mcp.NewClient(&mcp.Implementation{Name: "discover", Version: "1"}, nil)
	cs, err := c.Connect(ctx, &mcp.CommandTransport{Command: exec.Command(serverBin)}, nil)
	if err != nil {
		t.Fatalf("connecting to the everything-server: %v", err)
	}
	defer cs.Close()
	var tools []*mcp.Tool
	for tool, err := range cs.Tools(ctx, nil) {
		if err != nil {
			t.Fatal(err)
		}
		tools = append(tools, tool)
	}
	var prompts []*mcp.Prompt
	for p, err := range cs.Prompts(ctx, nil) {
		if err != nil {
			t.Fatal(err)
		}
		prompts = append(prompts, p)
	}
	var resources []*mcp.Resource
	for r, err := range cs.Resources(ctx, nil) {
		if err != nil {
			t.Fatal(err)
		}
		resources = append(resources, r)
	}
	var templates []*mcp.ResourceTemplate
	for r, err := range cs.ResourceTemplates(ctx, nil) {
		if err != nil {
			t.Fatal(err)
		}
		templates = append(templates, r)
	}
	sort.Slice(tools, func(i, j int) bool { return tools[i].Name < tools[j].Name })
	if len(tools) < 20 || len(prompts) < 4 || len(resources) < 3 || len(templates) < 1 {
		t.Fatalf("the everything-server lists %d tools, %d prompts, %d resources, %d templates", len(tools), len(prompts), len(resources), len(templates))
	}

	ops := []tsOp{
		{Op: "ping"},
		{Op: "listTools"}, {Op: "listPrompts"}, {Op: "listResources"}, {Op: "listResourceTemplates"},
	}
	// Every tool, no log level set yet: the logging tools log nothing.
	for _, tool := range tools {
		if listChangingTools[tool.Name] != "" {
			continue
		}
		ops = append(ops, tsOp{Op: "callTool", Name: tool.Name, Arguments: tsToolArgs(tool), wantFail: toolsFailingDirect[tool.Name]})
	}
	ops = append(ops,
		tsOp{Op: "callTool", Name: "no_such_tool", wantFail: true, codeOnly: true},
		// Logging: levels are per session and filter.
		tsOp{Op: "setLoggingLevel", Level: "info"},
		tsOp{Op: "callTool", Name: "test_tool_with_logging", notes: count(3)},
		tsOp{Op: "callTool", Name: "test_logging_tool", notes: count(1)},
		tsOp{Op: "setLoggingLevel", Level: "error"},
		tsOp{Op: "callTool", Name: "test_tool_with_logging", notes: count(0)},
		// Progress, with the client's own token on every notification.
		tsOp{Op: "callTool", Name: "test_tool_with_progress", Progress: true, notes: count(3)},
		// Cancellation both ways: the client aborts the call while the
		// server waits on its sampling request, and the server withdraws
		// that request.
		tsOp{Op: "callToolCancelled", Name: "test_sampling", Arguments: map[string]any{"prompt": "never answered"}, TimeoutMs: 5000},
		tsOp{Op: "callToolCancelled", Name: "test_elicitation", Arguments: map[string]any{"message": "never answered"}, TimeoutMs: 5000},
		tsOp{Op: "callTool", Name: "test_sampling", Arguments: map[string]any{"prompt": "after a cancellation"}},
	)
	for _, p := range prompts {
		args := map[string]any{}
		for _, a := range p.Arguments {
			if strings.HasSuffix(strings.ToLower(a.Name), "uri") {
				args[a.Name] = "test://static-text"
			} else {
				args[a.Name] = "tsclient-" + a.Name
			}
		}
		ops = append(ops, tsOp{Op: "getPrompt", Name: p.Name, Arguments: args})
	}
	ops = append(ops, tsOp{Op: "getPrompt", Name: "no_such_prompt", wantFail: true, codeOnly: true})
	for _, r := range resources {
		ops = append(ops, tsOp{Op: "readResource", URI: r.URI})
	}
	for _, tpl := range templates {
		ops = append(ops, tsOp{Op: "readResource", URI: expandTemplate(tpl.URITemplate)})
	}
	ops = append(ops, tsOp{Op: "readResource", URI: "test://no-such-resource", wantFail: true, codeOnly: true})
	for _, p := range prompts {
		for _, a := range p.Arguments {
			ops = append(ops, tsOp{Op: "complete", Ref: map[string]any{"type": "ref/prompt", "name": p.Name}, Argument: map[string]any{"name": a.Name, "value": "a"}})
		}
	}
	for _, tpl := range templates {
		ops = append(ops, tsOp{Op: "complete", Ref: map[string]any{"type": "ref/resource", "uri": tpl.URITemplate}, Argument: map[string]any{"name": "id", "value": "4"}})
	}
	// Subscriptions: the watched resource updates every 3 s.
	ops = append(ops,
		tsOp{Op: "subscribeResource", URI: "test://watched-resource"},
		tsOp{Op: "waitNotification", Method: "notifications/resources/updated", TimeoutMs: 8000},
		tsOp{Op: "unsubscribeResource", URI: "test://watched-resource"},
	)
	// list_changed, and a list that already shows the change.
	for _, name := range []string{"test_trigger_tool_change", "test_trigger_prompt_change"} {
		kind := listChangingTools[name]
		list := map[string]string{"tools": "listTools", "prompts": "listPrompts"}[kind]
		ops = append(ops,
			tsOp{Op: "callTool", Name: name},
			tsOp{Op: "waitNotification", Method: "notifications/" + kind + "/list_changed", TimeoutMs: 5000},
			tsOp{Op: list},
		)
	}
	return append(ops, tsOp{Op: "ping"})
}

// tsToolArgs fills a tool's arguments from its input schema.
func tsToolArgs(tool *mcp.Tool) map[string]any {
	switch tool.Name {
	case "json_schema_2020_12_tool":
		// if/then/else: without contactMethod "phone", email is required.
		return map[string]any{"name": "tsclient", "contactMethod": "email", "email": "tsclient@example.com", "address": map[string]any{"street": "1 Main St", "city": "Springfield"}}
	case "test_x_mcp_header":
		return map[string]any{"region": "eu-west", "level": 3}
	}
	return fillSchema(tool.InputSchema)
}

// expandTemplate fills each {var} of an RFC 6570 level-1 template.
func expandTemplate(tpl string) string {
	var b strings.Builder
	for {
		i := strings.IndexByte(tpl, '{')
		j := strings.IndexByte(tpl, '}')
		if i < 0 || j < i {
			return b.String() + tpl
		}
		b.WriteString(tpl[:i] + "42")
		tpl = tpl[j+1:]
	}
}

// tsRun is what client.mjs prints.
type tsRun struct {
	Initialize         map[string]any `json:"initialize"`
	ServerCapabilities map[string]any `json:"serverCapabilities"`
	Results            []tsOpResult   `json:"results"`
}

type tsOpResult struct {
	Op            string          `json:"op"`
	OK            bool            `json:"ok"`
	Result        json.RawMessage `json:"result"`
	Error         *tsError        `json:"error"`
	Pages         int             `json:"pages"`
	Notifications []tsMessage     `json:"notifications"`
	Requests      []tsMessage     `json:"requests"`
	Errors        []string        `json:"errors"`
}

type tsError struct {
	Code    any    `json:"code"`
	Message string `json:"message"`
}

type tsMessage struct {
	Method string         `json:"method"`
	Params map[string]any `json:"params"`
}

// runTS runs client.mjs once and returns what it printed.
func runTS(ctx context.Context, dir string, args []string, ops []tsOp) (tsRun, error) {
	in, err := json.Marshal(ops)
	if err != nil {
		return tsRun{}, err
	}
	cmd := exec.CommandContext(ctx, "node", append([]string{filepath.Join(dir, "client.mjs")}, args...)...)
	cmd.Stdin = bytes.NewReader(in)
	cmd.WaitDelay = 5 * time.Second
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		return tsRun{}, fmt.Errorf("node client.mjs %s: %w\n%s", strings.Join(args, " "), err, stderr.String())
	}
	var r tsRun
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		return tsRun{}, fmt.Errorf("client.mjs output %q: %w\nstderr:\n%s", out.String(), err, stderr.String())
	}
	if len(r.Results) != len(ops) {
		return tsRun{}, fmt.Errorf("client.mjs ran %d of %d ops\nstderr:\n%s", len(r.Results), len(ops), stderr.String())
	}
	return r, nil
}

// tsComparison is one scenario: the client's arguments direct and through
// the edge.
type tsComparison struct {
	direct []string
	// edges are the clients of the edge, run at the same time as each
	// other and as the direct one: identical clients pick identical
	// request ids and progress tokens, which the edge must keep apart.
	edges [][]string
	// withdrawalsLost: the direct server's withdrawal of a request it made
	// (notifications/cancelled once the client cancelled the call) never
	// reaches the client, as with the everything-server over HTTP, which
	// sends it on the cancelled call's stream after that closed. The edge
	// must deliver it anyway.
	withdrawalsLost bool
}

// compareTS runs ops direct and through the edge, all clients at once, and
// compares each edge client with the direct one op by op, one subtest per op.
func compareTS(t *testing.T, dir string, ops []tsOp, c tsComparison) {
	t.Helper()
	const prefix = "ev__"
	edgeOps := make([]tsOp, len(ops))
	for i, o := range ops {
		edgeOps[i] = o.viaEdge(prefix)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	runs := make([]tsRun, 1+len(c.edges))
	errs := make([]error, len(runs))
	var wg sync.WaitGroup
	for i := range runs {
		args, o := c.direct, ops
		if i > 0 {
			args, o = c.edges[i-1], edgeOps
		}
		wg.Add(1)
		go func() { defer wg.Done(); runs[i], errs[i] = runTS(ctx, dir, args, o) }()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	direct := runs[0]
	for n, via := range runs[1:] {
		name := "edge"
		if len(c.edges) > 1 {
			name = fmt.Sprintf("edge client %d", n+1)
		}
		t.Run(name, func(t *testing.T) {
			t.Run("initialize", func(t *testing.T) {
				if v := direct.Initialize["protocolVersion"]; v != "2025-11-25" {
					t.Errorf("direct: negotiated %v, want 2025-11-25", v)
				}
				if d, v := mustJSON(direct.Initialize), mustJSON(via.Initialize); d != v {
					t.Errorf("initialize result (without serverInfo and capabilities):\ndirect: %s\n  edge: %s", d, v)
				}
				// The edge may offer more (it aggregates), never less.
				if missing := missingCapabilities(direct.ServerCapabilities, via.ServerCapabilities, ""); len(missing) > 0 {
					t.Errorf("the edge does not advertise %v\ndirect: %s\n  edge: %s", missing, mustJSON(direct.ServerCapabilities), mustJSON(via.ServerCapabilities))
				}
			})
			for i, op := range ops {
				t.Run(fmt.Sprintf("%02d %s", i, op), func(t *testing.T) {
					d, v := direct.Results[i], via.Results[i]
					dn, dprob := normalizeTS(op, d, "", c.withdrawalsLost)
					vn, vprob := normalizeTS(op, v, prefix, c.withdrawalsLost)
					for _, p := range dprob {
						t.Errorf("direct: %s", p)
					}
					for _, p := range vprob {
						t.Errorf("through the edge: %s", p)
					}
					if dn != vn {
						t.Errorf("through the edge differs from direct (normalised):\ndirect: %s\n  edge: %s\nraw direct: %s\n  raw edge: %s", dn, vn, mustJSON(d), mustJSON(v))
					}
				})
			}
		})
	}
}

// missingCapabilities lists the capabilities in want that got lacks.
func missingCapabilities(want, got map[string]any, path string) []string {
	var missing []string
	for k, wv := range want {
		gv, ok := got[k]
		switch {
		case !ok:
			missing = append(missing, path+k)
		case reflect.TypeOf(wv) != reflect.TypeOf(gv):
			missing = append(missing, fmt.Sprintf("%s%s=%v (has %v)", path, k, wv, gv))
		default:
			if wm, ok := wv.(map[string]any); ok {
				missing = append(missing, missingCapabilities(wm, gv.(map[string]any), path+k+".")...)
			} else if !reflect.DeepEqual(wv, gv) {
				missing = append(missing, fmt.Sprintf("%s%s=%v (has %v)", path, k, wv, gv))
			}
		}
	}
	sort.Strings(missing)
	return missing
}

// Notifications compared op by op: those that belong to a call. The others
// (list_changed, resources/updated, cancelled) arrive when they arrive and
// are checked by the ops that wait for them.
var perOpNotifications = map[string]bool{
	"notifications/message":  true,
	"notifications/progress": true,
}

// normalizeTS renders an op's outcome without what the gateway owns, and
// lists problems that do not depend on the other side: an op that failed
// (or succeeded) against its expectation, a name without the prefix.
func normalizeTS(op tsOp, r tsOpResult, prefix string, withdrawalsLost bool) (string, []string) {
	var probs []string
	out := map[string]any{"ok": r.OK}
	if r.OK == op.wantFail && !(op.Op == "callTool" && r.OK) {
		if op.wantFail {
			probs = append(probs, fmt.Sprintf("%s succeeded, want an error: %s", op, r.Result))
		} else {
			probs = append(probs, fmt.Sprintf("%s failed: %+v", op, r.Error))
		}
	}
	if r.Error != nil {
		e := map[string]any{"code": r.Error.Code}
		if !op.codeOnly {
			e["message"] = r.Error.Message
		}
		out["error"] = e
	}
	var res any
	if len(r.Result) > 0 {
		if err := json.Unmarshal(r.Result, &res); err != nil {
			probs = append(probs, fmt.Sprintf("result %s: %v", r.Result, err))
		}
	}
	if m, ok := res.(map[string]any); ok {
		if op.Op == "callToolCancelled" {
			for _, k := range []string{"serverRequestArrived", "callRejected", "serverRequestCancelled"} {
				if k == "serverRequestCancelled" && withdrawalsLost {
					if prefix == "" {
						m[k] = "<lost direct>"
						continue
					}
					if m[k] == true {
						m[k] = "<lost direct>"
					}
				}
				if m[k] != true && m[k] != "<lost direct>" {
					probs = append(probs, fmt.Sprintf("%s: %s is %v", op, k, m[k]))
				}
			}
		}
		if op.Op == "callTool" {
			isErr, _ := m["isError"].(bool)
			if isErr != op.wantFail {
				probs = append(probs, fmt.Sprintf("%s: isError=%v: %s", op, isErr, r.Result))
			}
		}
		// Cache hints (DESIGN §4.1, docs/edge.md): what the edge lists and
		// relays from resources/read is decided per caller, so it says
		// private with ttlMs 0 where the server may say public.
		if _, has := m["cacheScope"]; has {
			if prefix != "" && (m["cacheScope"] != "private" || m["ttlMs"] != float64(0)) {
				probs = append(probs, fmt.Sprintf("cache hints cacheScope=%v ttlMs=%v, want private and 0", m["cacheScope"], m["ttlMs"]))
			}
			m["cacheScope"] = "<hint>"
			m["ttlMs"] = "<hint>"
		}
		for key, field := range map[string]string{"tools": "name", "prompts": "name", "resources": "uri", "resourceTemplates": "uriTemplate"} {
			items, ok := m[key].([]any)
			if !ok || !strings.HasPrefix(op.Op, "list") {
				continue
			}
			for _, it := range items {
				im, _ := it.(map[string]any)
				name, _ := im[field].(string)
				if prefix != "" && field == "name" {
					if !strings.HasPrefix(name, prefix) {
						probs = append(probs, fmt.Sprintf("%s %q lacks the prefix %q", key, name, prefix))
					}
					im[field] = strings.TrimPrefix(name, prefix)
				}
			}
			sort.SliceStable(items, func(i, j int) bool {
				a, _ := items[i].(map[string]any)[field].(string)
				b, _ := items[j].(map[string]any)[field].(string)
				return a < b
			})
		}
	}
	var notes []tsMessage
	token := any(nil)
	for _, n := range r.Notifications {
		if !perOpNotifications[n.Method] {
			continue
		}
		if n.Method == "notifications/progress" {
			// The everything-server reports progress even when the call
			// asked for none, with a null token the SDK client rejects
			// (into errors, dropped below); the edge drops them. Neither
			// reaches the caller's code.
			if n.Params["progressToken"] == nil && !op.Progress {
				continue
			}
			// The client's own token, the same on every notification of
			// the call (the SDK reports any other as unknown in errors).
			if token == nil {
				token = n.Params["progressToken"]
			} else if !reflect.DeepEqual(token, n.Params["progressToken"]) {
				probs = append(probs, fmt.Sprintf("progress tokens %v and %v in one call", token, n.Params["progressToken"]))
			}
			p := map[string]any{}
			for k, v := range n.Params {
				p[k] = v
			}
			p["progressToken"] = "<token>"
			n.Params = p
		}
		notes = append(notes, n)
	}
	var errs []string
	for _, e := range r.Errors {
		switch {
		case !op.Progress && strings.HasPrefix(e, "Uncaught error in notification handler") && strings.Contains(e, `"progressToken"`):
			// The null-token progress above.
		case strings.HasPrefix(e, "Received a response for an unknown message ID"):
			// A late answer to a call the client cancelled and forgot,
			// during that op or the next: the server's own result
			// direct over stdio, none direct over HTTP, the edge's
			// error through it; the client drops them all.
		default:
			errs = append(errs, e)
		}
	}
	// Server→client requests made concurrently (the server fulfils
	// several input requests at once) arrive in any order.
	reqs := make([]string, len(r.Requests))
	for i, q := range r.Requests {
		reqs[i] = mustJSON(q)
	}
	sort.Strings(reqs)
	if op.notes != nil && len(notes) != *op.notes {
		probs = append(probs, fmt.Sprintf("%d log or progress notifications, want %d", len(notes), *op.notes))
	}
	if n, ok := serverRequestsOf[op.Name]; ok && op.Op == "callTool" && len(r.Requests) != n {
		probs = append(probs, fmt.Sprintf("%d server→client requests, want %d", len(r.Requests), n))
	}
	out["notifications"] = notes
	out["requests"] = reqs
	out["errors"] = errs
	// test_tool_with_progress answers with the token it saw: the edge's
	// own, by design (tokens are rewritten per call).
	if op.Name == "test_tool_with_progress" && op.Progress {
		if m, ok := res.(map[string]any); ok {
			if content, ok := m["content"].([]any); ok && len(content) == 1 {
				c := content[0].(map[string]any)
				text, _ := c["text"].(string)
				if prefix == "" && text != fmt.Sprint(token) {
					probs = append(probs, fmt.Sprintf("the tool echoed token %q, the notifications carried %v", text, token))
				}
				if text == "" || text == "<nil>" {
					probs = append(probs, fmt.Sprintf("the tool saw no progress token: %q", text))
				}
				c["text"] = "<token>"
			}
		}
	}
	// A notification without params is one with empty params.
	if op.Op == "waitNotification" {
		if m, ok := res.(map[string]any); ok && m["params"] == nil {
			m["params"] = map[string]any{}
		}
	}
	if res != nil {
		out["result"] = res
	}
	return mustJSON(out), probs
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// buildMCPGW builds the mcpgw binary for tests that launch it.
func buildMCPGW(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "mcpgw")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/mcpgw/mcpgw/cmd/mcpgw")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("building mcpgw: %v\n%s", err, stderr.String())
	}
	return bin
}
