package demo

import (
	"context"
	"encoding/json"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// connect runs the demo server on one end of an in-memory pipe and returns
// a Go SDK client session on the other.
func connect(t *testing.T, opts Options) *mcp.ClientSession {
	t.Helper()
	ctx := t.Context()
	st, ct := mcp.NewInMemoryTransports()
	ss, err := NewServer(opts).Connect(ctx, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ss.Close() })
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "demo-test", Version: "1"}, nil).Connect(ctx, ct, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cs.Close() })
	return cs
}

func call(t *testing.T, cs *mcp.ClientSession, name string, args map[string]any) *mcp.CallToolResult {
	t.Helper()
	res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: name, Arguments: args})
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return res
}

func text(t *testing.T, res *mcp.CallToolResult) string {
	t.Helper()
	if len(res.Content) != 1 {
		t.Fatalf("want one content item, got %d", len(res.Content))
	}
	tc, ok := res.Content[0].(*mcp.TextContent)
	if !ok {
		t.Fatalf("content is %T, want text", res.Content[0])
	}
	return tc.Text
}

func structured[T any](t *testing.T, res *mcp.CallToolResult) T {
	t.Helper()
	var v T
	b, err := json.Marshal(res.StructuredContent)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("structured content %s: %v", b, err)
	}
	return v
}

func TestListsEverything(t *testing.T) {
	cs := connect(t, Options{})
	ctx := t.Context()
	tools, err := cs.ListTools(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tool := range tools.Tools {
		names = append(names, tool.Name)
		if tool.Description == "" || tool.InputSchema == nil {
			t.Errorf("tool %s lacks a description or input schema", tool.Name)
		}
	}
	slices.Sort(names)
	want := slices.Clone(Tools)
	slices.Sort(want)
	if !slices.Equal(names, want) {
		t.Fatalf("tools %v, want %v", names, want)
	}
	prompts, err := cs.ListPrompts(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(prompts.Prompts) != 1 || prompts.Prompts[0].Name != PromptName {
		t.Fatalf("prompts %+v", prompts.Prompts)
	}
	res, err := cs.ListResources(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Resources) != 1 || res.Resources[0].URI != ReadmeURI {
		t.Fatalf("resources %+v", res.Resources)
	}
	read, err := cs.ReadResource(ctx, &mcp.ReadResourceParams{URI: ReadmeURI})
	if err != nil {
		t.Fatal(err)
	}
	if len(read.Contents) != 1 || !strings.Contains(read.Contents[0].Text, "word_count") || read.Contents[0].MIMEType != "text/markdown" {
		t.Fatalf("readme %+v", read.Contents)
	}
	if int64(len(read.Contents[0].Text)) != res.Resources[0].Size {
		t.Errorf("listed size %d, read %d bytes", res.Resources[0].Size, len(read.Contents[0].Text))
	}
}

func TestTools(t *testing.T) {
	fixed := time.Date(2026, 3, 29, 0, 30, 0, 0, time.UTC) // a DST change in Europe
	cs := connect(t, Options{Now: func() time.Time { return fixed }})

	if got := text(t, call(t, cs, ToolEcho, map[string]any{"text": "héllo, gateway"})); got != "héllo, gateway" {
		t.Errorf("echo: %q", got)
	}

	for _, tc := range []struct {
		nums []any
		want float64
	}{{[]any{1, 2, 3.5}, 6.5}, {[]any{}, 0}, {[]any{-2, 2}, 0}} {
		res := call(t, cs, ToolAdd, map[string]any{"numbers": tc.nums})
		if res.IsError {
			t.Fatalf("add %v: %s", tc.nums, text(t, res))
		}
		if got := structured[addOut](t, res).Sum; got != tc.want {
			t.Errorf("add %v = %v, want %v", tc.nums, got, tc.want)
		}
	}
	if res := call(t, cs, ToolAdd, map[string]any{"numbers": []any{1, "two"}}); !res.IsError {
		t.Errorf("add with a string: want a tool error, got %+v", res)
	}
	if res := call(t, cs, ToolAdd, map[string]any{}); !res.IsError {
		t.Errorf("add without numbers: want a tool error, got %+v", res)
	}

	for _, tc := range []struct{ zone, want string }{
		{"", "2026-03-29T00:30:00Z"},
		{"Europe/Paris", "2026-03-29T01:30:00+01:00"},
		{"Asia/Kolkata", "2026-03-29T06:00:00+05:30"},
	} {
		res := call(t, cs, ToolTimeNow, map[string]any{"zone": tc.zone})
		if res.IsError {
			t.Fatalf("time_now %q: %s", tc.zone, text(t, res))
		}
		if got := structured[timeOut](t, res).Time; got != tc.want {
			t.Errorf("time_now %q = %s, want %s", tc.zone, got, tc.want)
		}
	}
	for _, zone := range []string{"Mars/Olympus", "Local", "../../etc/passwd"} {
		res := call(t, cs, ToolTimeNow, map[string]any{"zone": zone})
		if !res.IsError || !strings.Contains(text(t, res), "unknown time zone") {
			t.Errorf("time_now %q: want a tool error naming the zone, got %+v", zone, res)
		}
	}

	for _, tc := range []struct {
		in   string
		want wordCountOut
	}{
		{"", wordCountOut{}},
		{"one two  three\nfour", wordCountOut{Words: 4, Lines: 2, Characters: 19}},
		{"ça va\n", wordCountOut{Words: 2, Lines: 1, Characters: 6}},
	} {
		res := call(t, cs, ToolWordCount, map[string]any{"text": tc.in})
		if got := structured[wordCountOut](t, res); got != tc.want {
			t.Errorf("word_count %q = %+v, want %+v", tc.in, got, tc.want)
		}
	}
}

func TestSummarizePrompt(t *testing.T) {
	cs := connect(t, Options{})
	ctx := t.Context()
	res, err := cs.GetPrompt(ctx, &mcp.GetPromptParams{Name: PromptName, Arguments: map[string]string{"text": "The gateway audits every call.", "sentences": "1"}})
	if err != nil {
		t.Fatal(err)
	}
	msg := res.Messages[0].Content.(*mcp.TextContent).Text
	if !strings.Contains(msg, "at most 1 sentences") || !strings.HasSuffix(msg, "The gateway audits every call.") {
		t.Errorf("prompt text %q", msg)
	}
	for _, args := range []map[string]string{{}, {"text": "x", "sentences": "many"}, {"text": "x", "sentences": "0"}} {
		if _, err := cs.GetPrompt(ctx, &mcp.GetPromptParams{Name: PromptName, Arguments: args}); err == nil {
			t.Errorf("summarize %v: want an error", args)
		}
	}
}

// The server ends cleanly when its client closes stdin, which is how the
// edge stops a stdio backend first.
func TestServeEndsOnEOF(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	r, w := io.Pipe()
	out, sink := io.Pipe()
	go func() { _, _ = io.ReadAll(out) }()
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, Options{}, r, sink) }()
	w.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve after EOF: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("Serve did not return after its input closed")
	}
}
