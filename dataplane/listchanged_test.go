package dataplane_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// A backend's list_changed reaches clients even when the edge's merged
// catalog comes out the same after the re-read (here the backend
// re-registers a tool as it was), as it would talking to the backend
// directly. The edge used to announce only changes it could see itself,
// which made the TS-client conformance test flaky: with clients running
// concurrently, the second to trigger a change saw no notification.
func TestBackendListChangedReachesClientsWhenCatalogIsUnchanged(t *testing.T) {
	s := mcp.NewServer(&mcp.Implementation{Name: "retrigger", Version: "1"}, nil)
	same := &mcp.Tool{Name: "same", Description: "re-registered unchanged"}
	noop := func(context.Context, *mcp.CallToolRequest, any) (*mcp.CallToolResult, any, error) {
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "ok"}}}, nil, nil
	}
	mcp.AddTool(s, same, noop)
	mcp.AddTool(s, &mcp.Tool{Name: "retrigger", Description: "re-registers the tool named same"}, func(context.Context, *mcp.CallToolRequest, any) (*mcp.CallToolResult, any, error) {
		mcp.AddTool(s, same, noop)
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "re-registered"}}}, nil, nil
	})
	hs := httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, nil))
	t.Cleanup(hs.Close)
	e := startEdge(t, openPolicy+"backends:\n"+httpBackend("rt", hs.URL, "-"), nil)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	changed := make(chan struct{}, 16)
	c := mcp.NewClient(&mcp.Implementation{Name: "lc", Version: "1"}, &mcp.ClientOptions{
		ToolListChangedHandler: func(context.Context, *mcp.ToolListChangedRequest) { changed <- struct{}{} },
	})
	cs, err := c.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: e.URL}, &mcp.ClientSessionOptions{ProtocolVersion: "2025-11-25"})
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	waitTools(t, cs, 2)
	for len(changed) > 0 { // anything from the edge's start is not what this test is about
		<-changed
	}
	for i := range 2 {
		r, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "rt__retrigger", Arguments: map[string]any{}})
		if err != nil || r.IsError {
			t.Fatalf("retrigger: %v %+v", err, r)
		}
		select {
		case <-changed:
		case <-time.After(5 * time.Second):
			t.Fatalf("trigger %d: no notifications/tools/list_changed through the edge within 5s", i+1)
		}
	}
}
