package devmode

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgw/mcpgw/internal/buildinfo"
)

// readyGrace is how long a working but empty tool list is waited on before
// it is taken as the truth: the demo backend lists a moment after the edge
// applies its config, but a user's policy may also hide every tool.
const readyGrace = 15 * time.Second

// waitForTools polls the edge the way a client would, with the demo key,
// until it lists the demo backend's tools. It proves the whole chain a
// newcomer is about to use: the edge enrolled, applied the config (the key
// is known only from a snapshot), started the backend and lists through
// policy. It returns the names listed.
func waitForTools(ctx context.Context, url, key string) ([]string, error) {
	client := mcp.NewClient(&mcp.Implementation{Name: "mcpgw-dev-readiness", Version: buildinfo.Get()}, nil)
	httpClient := &http.Client{Transport: keyTransport{key: key, base: http.DefaultTransport}, Timeout: 10 * time.Second}
	var (
		lastErr    error
		emptySince time.Time
	)
	for {
		tools, err := listTools(ctx, client, httpClient, url)
		switch {
		case err != nil:
			lastErr = err
			emptySince = time.Time{}
		case hasDemoTool(tools):
			return tools, nil
		case emptySince.IsZero():
			emptySince = time.Now()
		case time.Since(emptySince) > readyGrace:
			return tools, nil
		default:
			lastErr = errors.New("the demo key lists no demo tool yet")
		}
		select {
		case <-ctx.Done():
			if lastErr == nil {
				lastErr = ctx.Err()
			}
			return nil, lastErr
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func listTools(ctx context.Context, client *mcp.Client, hc *http.Client, url string) ([]string, error) {
	cs, err := client.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: url, HTTPClient: hc, MaxRetries: -1, DisableStandaloneSSE: true}, nil)
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", url, err)
	}
	defer cs.Close()
	var names []string
	for t, err := range cs.Tools(ctx, nil) {
		if err != nil {
			return nil, fmt.Errorf("listing tools: %w", err)
		}
		names = append(names, t.Name)
	}
	return names, nil
}

func hasDemoTool(names []string) bool {
	for _, n := range names {
		if strings.HasPrefix(n, DemoBackend+"__") {
			return true
		}
	}
	return false
}

// keyTransport adds the API key to every request.
type keyTransport struct {
	key  string
	base http.RoundTripper
}

func (t keyTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+t.key)
	return t.base.RoundTrip(r)
}
