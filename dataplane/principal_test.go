package dataplane_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgw/mcpgw/dataplane/internal/mcptest"
	"github.com/mcpgw/mcpgw/internal/mcpwire"
)

// sessionTap is a reverse proxy in front of a backend that notes, for
// every request, the upstream session it was sent on.
type sessionTap struct {
	mu    sync.Mutex          // guards calls
	calls map[string][]string // "method name" → Mcp-Session-Id of each
}

func startSessionTap(t *testing.T, backend string) (string, *sessionTap) {
	t.Helper()
	u, err := url.Parse(backend)
	if err != nil {
		t.Fatal(err)
	}
	tap := &sessionTap{calls: map[string][]string{}}
	rp := httputil.NewSingleHostReverseProxy(u)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			body, _ := io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(body))
			var env mcpwire.Envelope
			if mcpwire.Scan(body, &env) == nil && env.Kind == mcpwire.KindRequest {
				key := env.MethodString() + " " + env.NameString()
				tap.mu.Lock()
				tap.calls[key] = append(tap.calls[key], r.Header.Get("Mcp-Session-Id"))
				tap.mu.Unlock()
			}
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL + u.Path, tap
}

func (s *sessionTap) sessions(key string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.calls[key]...)
}

// connectAs opens a legacy SDK session as principal (with its API key).
func connectAs(t *testing.T, url, principal string) *mcp.ClientSession {
	t.Helper()
	c := mcp.NewClient(&mcp.Implementation{Name: "as-" + principal, Version: "1"}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	hc := &http.Client{Transport: bearerTransport{principalKeys[principal]}}
	cs, err := c.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: url, HTTPClient: hc}, &mcp.ClientSessionOptions{ProtocolVersion: "2025-11-25"})
	if err != nil {
		t.Fatalf("connecting as %s: %v", principal, err)
	}
	t.Cleanup(func() { cs.Close() })
	return cs
}

type bearerTransport struct{ token string }

func (b bearerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return http.DefaultTransport.RoundTrip(r)
}

// `sessions: per_principal`: each principal's calls reach a stateful
// backend on an upstream session of their own (two sessions of one
// principal share it), separate from the shared session the edge lists
// with; `shared` (the default) sends everyone's calls on the one session.
func TestSessionsPerPrincipal(t *testing.T) {
	for _, mode := range []string{"per_principal", "shared"} {
		t.Run(mode, func(t *testing.T) {
			srv := mcptest.StartHTTP(t, serverBin, "", true)
			tapURL, tap := startSessionTap(t, srv.URL())
			e := startEdge(t, twoPrincipals()+"backends:\n"+httpBackend("ev", tapURL, "-")+"    sessions: "+mode+"\n", nil)
			alice1 := connectAs(t, e.URL, "alice")
			waitTools(t, alice1, everythingTools)
			alice2 := connectAs(t, e.URL, "alice")
			bob := connectAs(t, e.URL, "bob")
			ctx := context.Background()
			for i, cs := range []*mcp.ClientSession{alice1, bob, alice2, alice1} {
				res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "ev__test_simple_text"})
				if err != nil || res.IsError {
					t.Fatalf("call %d: %v %+v", i, err, res)
				}
			}
			listed := tap.sessions("tools/list ")
			called := tap.sessions("tools/call test_simple_text")
			if len(listed) == 0 || len(called) != 4 {
				t.Fatalf("tap saw tools/list on %v, tools/call on %v", listed, called)
			}
			shared := listed[0]
			a, b, a2, a3 := called[0], called[1], called[2], called[3]
			t.Logf("shared %s; alice %s %s %s; bob %s", shared, a, a2, a3, b)
			switch mode {
			case "per_principal":
				if a == "" || a == shared || b == shared || a == b || a2 != a || a3 != a {
					t.Errorf("per_principal: shared %q, alice %q %q %q, bob %q: want one session per principal, none the shared one", shared, a, a2, a3, b)
				}
				if n := len(tap.sessions("initialize ")); n != 3 {
					t.Errorf("%d upstream initializes, want 3 (shared, alice, bob)", n)
				}
				resp, err := http.Get(e.Base + "/metrics")
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if want := `mcpgw_edge_backend_principal_sessions{backend="ev"} 2`; !bytes.Contains(body, []byte(want)) {
					t.Errorf("/metrics lacks %s", want)
				}
			case "shared":
				for _, s := range called {
					if s != shared {
						t.Errorf("shared: a call went on %q, not the shared session %q", s, shared)
					}
				}
			}
		})
	}
}

// A per_principal stdio backend runs one child process per principal
// besides the shared one, and stops them all with the edge.
func TestSessionsPerPrincipalStdio(t *testing.T) {
	e := startEdge(t, twoPrincipals()+"backends:\n"+stdioBackend("ev")+"    sessions: per_principal\n", nil)
	// Listing runs on the shared process; count once it is up.
	waitTools(t, connectAs(t, e.URL, "alice"), everythingTools)
	before := childPIDs(t, serverBin)
	for _, p := range []string{"alice", "bob", "alice"} {
		cs := connectAs(t, e.URL, p)
		res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "ev__test_simple_text"})
		if err != nil || res.IsError {
			t.Fatalf("call as %s: %v %+v", p, err, res)
		}
	}
	after := childPIDs(t, serverBin)
	if len(after)-len(before) != 2 {
		t.Errorf("backend processes: %d before the calls, %d after; want 2 more (alice, bob)", len(before), len(after))
	}
	if err := e.Stop(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "every backend process to exit", func() bool { return len(childPIDs(t, serverBin)) == 0 })
}

// Log messages of a call on a per-principal session reach the client: the
// level the edge asked the backend for carries over to the principal's
// own session.
func TestSessionsPerPrincipalLogs(t *testing.T) {
	e := startEdge(t, twoPrincipals()+"backends:\n"+stdioBackend("ev")+"    sessions: per_principal\n", nil)
	rec := &clientRecorder{}
	c := mcp.NewClient(&mcp.Implementation{Name: "logs", Version: "1"}, rec.options())
	ctx := context.Background()
	cs, err := c.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: e.URL, HTTPClient: &http.Client{Transport: bearerTransport{principalKeys["alice"]}}}, &mcp.ClientSessionOptions{ProtocolVersion: "2025-11-25"})
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	waitTools(t, cs, everythingTools)
	if err := cs.SetLoggingLevel(ctx, &mcp.SetLoggingLevelParams{Level: "debug"}); err != nil {
		t.Fatal(err)
	}
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "ev__test_tool_with_logging", Arguments: map[string]any{}})
	if err != nil || res.IsError {
		t.Fatalf("call: %v %+v", err, res)
	}
	waitFor(t, "log messages from the per-principal session", func() bool {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		return len(rec.logs) > 0
	})
}
