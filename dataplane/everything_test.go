package dataplane_test

import (
	"context"
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgw/mcpgw/dataplane/internal/mcptest"
)

// Tools whose behaviour depends on more than the call: they change the
// server's lists (the 2026-07-28 multi-round-trip tools are skipped below:
// a legacy client meets them only through era bridging, a later issue).
// test_reconnection is kept although it fails both ways: the server closes
// the call's stream without event ids, so there is nothing to resume (the
// SDK client fails direct too); the edge must fail it, not fake a success.
var skipTools = map[string]bool{
	"test_trigger_tool_change":   true,
	"test_trigger_prompt_change": true,
}

// toolArgs fills a tool's required arguments from its input schema.
func toolArgs(tool *mcp.Tool) map[string]any {
	if tool.Name == "json_schema_2020_12_tool" {
		return map[string]any{"name": "x", "email": "x@example.com", "phone": "+1 555 0100", "address": map[string]any{"street": "s", "city": "c"}}
	}
	return fillSchema(tool.InputSchema)
}

// toolsThatFail fail directly as through the edge: one by design, one
// because the Go SDK client (v1.8.0) refuses the server's titled
// multi-select enum schema, one because its stream ends unresumable. Only
// the fact that both fail is compared for the last (the messages differ).
var toolsThatFail = map[string]bool{"test_error_handling": true, "test_elicitation_sep1330_enums": true}

// normalize drops what legitimately differs between a direct call and one
// through the edge.
func normalize(t *testing.T, v any, err error) string {
	t.Helper()
	if err != nil {
		return "error: " + err.Error()
	}
	b, merr := json.Marshal(v)
	if merr != nil {
		t.Fatal(merr)
	}
	// Cache hints differ by design: the edge marks what it serves private.
	var m map[string]any
	if json.Unmarshal(b, &m) == nil {
		delete(m, "cacheScope")
		delete(m, "ttlMs")
		b, _ = json.Marshal(m)
	}
	return string(b)
}

// TestEverythingThroughEdge checks that every feature of the SDK's
// everything-server works through the edge exactly as it does direct, for a
// legacy client against a stateful backend over stdio and over HTTP.
func TestEverythingThroughEdge(t *testing.T) {
	srv := mcptest.StartHTTP(t, serverBin, "", true)
	for _, tc := range []struct {
		name    string
		backend string
		direct  func() mcp.Transport
	}{
		{"stdio", stdioBackend("ev"), func() mcp.Transport { return &mcp.CommandTransport{Command: exec.Command(serverBin)} }},
		{"http", httpBackend("ev", srv.URL(), "-"), func() mcp.Transport { return &mcp.StreamableClientTransport{Endpoint: srv.URL()} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := startEdge(t, openPolicy+"backends:\n"+tc.backend, nil)
			rec := &clientRecorder{}
			via := connect(t, e.URL, rec)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			dc := mcp.NewClient(&mcp.Implementation{Name: "direct", Version: "1"}, (&clientRecorder{}).options())
			direct, err := dc.Connect(ctx, tc.direct(), &mcp.ClientSessionOptions{ProtocolVersion: "2025-11-25"})
			if err != nil {
				t.Fatal(err)
			}
			defer direct.Close()

			dtools, err := direct.ListTools(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			waitTools(t, via, len(dtools.Tools))
			// Tools: same list (prefixed), same results.
			vtools := map[string]*mcp.Tool{}
			for tool, err := range via.Tools(ctx, nil) {
				if err != nil {
					t.Fatal(err)
				}
				vtools[tool.Name] = tool
			}
			for _, dt := range dtools.Tools {
				vt := vtools["ev__"+dt.Name]
				if vt == nil {
					t.Errorf("tool %s missing through the edge", dt.Name)
					continue
				}
				if vt.Description != dt.Description {
					t.Errorf("tool %s: description %q, want %q", dt.Name, vt.Description, dt.Description)
				}
				if skipTools[dt.Name] || strings.HasPrefix(dt.Name, "test_input_required_") {
					continue
				}
				params := &mcp.CallToolParams{Name: dt.Name, Arguments: toolArgs(dt)}
				dr, derr := direct.CallTool(ctx, params)
				params.Name = "ev__" + dt.Name
				vr, verr := via.CallTool(ctx, params)
				if got, want := normalize(t, vr, verr), normalize(t, dr, derr); got != want && dt.Name != "test_reconnection" {
					t.Errorf("tool %s through the edge:\n got %s\nwant %s", dt.Name, got, want)
				}
				// Equal failures would hide a feature that never ran.
				wantFail := toolsThatFail[dt.Name] || (dt.Name == "test_reconnection" && tc.name == "http")
				if (verr != nil || vr.IsError) != wantFail {
					t.Errorf("tool %s through the edge: %s", dt.Name, normalize(t, vr, verr))
				}
			}

			// Progress: tokens are the client's own again on the way back.
			rec.mu.Lock()
			rec.progress = nil
			rec.mu.Unlock()
			pr, err := via.CallTool(ctx, &mcp.CallToolParams{Name: "ev__test_tool_with_progress", Meta: mcp.Meta{"progressToken": "tok-7"}})
			if err != nil || pr.IsError {
				t.Fatalf("progress tool: %v %+v", err, pr)
			}
			rec.mu.Lock()
			if len(rec.progress) != 3 {
				t.Errorf("got %d progress notifications, want 3", len(rec.progress))
			}
			rec.mu.Unlock()

			// Logging: nothing until the client sets a level, then filtered.
			if err := via.SetLoggingLevel(ctx, &mcp.SetLoggingLevelParams{Level: "info"}); err != nil {
				t.Fatal(err)
			}
			if _, err := via.CallTool(ctx, &mcp.CallToolParams{Name: "ev__test_tool_with_logging"}); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "3 log messages", func() bool {
				rec.mu.Lock()
				defer rec.mu.Unlock()
				return len(rec.logs) >= 3
			})

			// Prompts.
			dprompts, err := direct.ListPrompts(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			for _, dp := range dprompts.Prompts {
				args := map[string]string{}
				for _, a := range dp.Arguments {
					args[a.Name] = "test://static-text"
				}
				if strings.HasPrefix(dp.Name, "test_input_required_") {
					continue
				}
				dg, derr := direct.GetPrompt(ctx, &mcp.GetPromptParams{Name: dp.Name, Arguments: args})
				vg, verr := via.GetPrompt(ctx, &mcp.GetPromptParams{Name: "ev__" + dp.Name, Arguments: args})
				if got, want := normalize(t, vg, verr), normalize(t, dg, derr); got != want {
					t.Errorf("prompt %s:\n got %s\nwant %s", dp.Name, got, want)
				}
			}

			// Resources and templates: URIs are not renamed.
			dres, err := direct.ListResources(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			vres, err := via.ListResources(ctx, nil)
			if err == nil && vres.CacheScope != "private" {
				t.Errorf("resources/list cacheScope = %q, want private", vres.CacheScope)
			}
			if got, want := normalize(t, vres, err), normalize(t, dres, nil); got != want {
				t.Errorf("resources/list:\n got %s\nwant %s", got, want)
			}
			for _, r := range dres.Resources {
				dr, derr := direct.ReadResource(ctx, &mcp.ReadResourceParams{URI: r.URI})
				vr, verr := via.ReadResource(ctx, &mcp.ReadResourceParams{URI: r.URI})
				if got, want := normalize(t, vr, verr), normalize(t, dr, derr); got != want {
					t.Errorf("read %s:\n got %s\nwant %s", r.URI, got, want)
				}
			}
			dtpl, err := direct.ListResourceTemplates(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			vtpl, err := via.ListResourceTemplates(ctx, nil)
			if got, want := normalize(t, vtpl, err), normalize(t, dtpl, nil); got != want {
				t.Errorf("templates:\n got %s\nwant %s", got, want)
			}
			dr, derr := direct.ReadResource(ctx, &mcp.ReadResourceParams{URI: "test://template/42/data"})
			vr, verr := via.ReadResource(ctx, &mcp.ReadResourceParams{URI: "test://template/42/data"})
			if got, want := normalize(t, vr, verr), normalize(t, dr, derr); got != want {
				t.Errorf("template read:\n got %s\nwant %s", got, want)
			}
			if _, err := via.ReadResource(ctx, &mcp.ReadResourceParams{URI: "test://nowhere"}); err == nil || !strings.Contains(err.Error(), "no backend serves") {
				t.Errorf("unknown resource: %v", err)
			}

			// Completion.
			cp := &mcp.CompleteParams{Ref: &mcp.CompleteReference{Type: "ref/prompt", Name: "test_prompt_with_arguments"}, Argument: mcp.CompleteParamsArgument{Name: "arg1", Value: "a"}}
			dc2, derr := direct.Complete(ctx, cp)
			cp.Ref.Name = "ev__test_prompt_with_arguments"
			vc, verr := via.Complete(ctx, cp)
			if got, want := normalize(t, vc, verr), normalize(t, dc2, derr); got != want {
				t.Errorf("completion:\n got %s\nwant %s", got, want)
			}

			// Subscriptions: the watched resource updates every 3s.
			if err := via.Subscribe(ctx, &mcp.SubscribeParams{URI: "test://watched-resource"}); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "a resources/updated notification", func() bool {
				rec.mu.Lock()
				defer rec.mu.Unlock()
				return len(rec.updated) > 0
			})
			if err := via.Unsubscribe(ctx, &mcp.UnsubscribeParams{URI: "test://watched-resource"}); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
