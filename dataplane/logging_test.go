package dataplane_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// A client's logging/setLevel returns only once the backends were asked for
// logs, also when another session's setLevel is the one asking: otherwise
// the second client's next call can run before the backend logs anything,
// and its first log messages are lost (seen as a TS-client conformance
// flake, one in a few runs, when two clients set levels concurrently).
func TestSetLevelWaitsForBackendsWhenAnotherSessionEnables(t *testing.T) {
	s := mcp.NewServer(&mcp.Implementation{Name: "slow-levels", Version: "1"}, nil)
	mcp.AddTool(s, &mcp.Tool{Name: "noop", Description: "does nothing"}, func(context.Context, *mcp.CallToolRequest, any) (*mcp.CallToolResult, any, error) {
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "ok"}}}, nil, nil
	})
	entered := make(chan struct{}, 1)
	var levelSet atomic.Bool
	s.AddReceivingMiddleware(func(next mcp.MethodHandler) mcp.MethodHandler {
		return func(ctx context.Context, method string, req mcp.Request) (mcp.Result, error) {
			if method != "logging/setLevel" {
				return next(ctx, method, req)
			}
			select {
			case entered <- struct{}{}:
			default:
			}
			time.Sleep(300 * time.Millisecond)
			r, err := next(ctx, method, req)
			levelSet.Store(true)
			return r, err
		}
	})
	hs := httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, nil))
	t.Cleanup(hs.Close)
	e := startEdge(t, openPolicy+"backends:\n"+httpBackend("slow", hs.URL, "-"), nil)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	connect := func(name string) *mcp.ClientSession {
		c := mcp.NewClient(&mcp.Implementation{Name: name, Version: "1"}, nil)
		cs, err := c.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: e.URL}, &mcp.ClientSessionOptions{ProtocolVersion: "2025-11-25"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cs.Close() })
		waitTools(t, cs, 1)
		return cs
	}
	a, b := connect("a"), connect("b")

	firstDone := make(chan error, 1)
	go func() { firstDone <- a.SetLoggingLevel(ctx, &mcp.SetLoggingLevelParams{Level: "info"}) }()
	select {
	case <-entered: // a's setLevel is at the backend, which takes its time
	case <-ctx.Done():
		t.Fatal("the backend never got logging/setLevel")
	}
	if err := b.SetLoggingLevel(ctx, &mcp.SetLoggingLevelParams{Level: "info"}); err != nil {
		t.Fatal(err)
	}
	if !levelSet.Load() {
		t.Error("the second session's logging/setLevel returned before the backend was asked for logs")
	}
	if err := <-firstDone; err != nil {
		t.Fatal(err)
	}
	if !levelSet.Load() {
		t.Error("the first session's logging/setLevel returned before the backend was asked for logs")
	}
}
