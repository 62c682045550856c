// Package mcptest provides the real MCP peers the data plane's tests run
// against: the Go SDK's conformance everything-server, built once per test
// binary, run over stdio or Streamable HTTP.
package mcptest

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// Build compiles the everything-server into dir and returns its path. Call
// it from TestMain; it works offline from the module cache because the
// server is a tool dependency in go.mod.
func Build(dir string) (string, error) {
	bin := filepath.Join(dir, "everything-server")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/modelcontextprotocol/go-sdk/conformance/everything-server")
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("building everything-server: %w", err)
	}
	return bin, nil
}

// FreeAddr returns a loopback address that was free a moment ago.
func FreeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// Server is an everything-server running over HTTP.
type Server struct {
	Addr string
	cmd  *exec.Cmd
}

// URL is the server's MCP endpoint.
func (s *Server) URL() string { return "http://" + s.Addr + "/mcp" }

// Stop kills the server and waits for it.
func (s *Server) Stop() {
	if s.cmd.ProcessState != nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGKILL)
	_ = s.cmd.Wait()
}

// StartHTTP runs bin over HTTP on addr ("" picks one) and waits until it
// accepts connections. The server is stopped at test cleanup.
func StartHTTP(t testing.TB, bin, addr string, stateful bool) *Server {
	t.Helper()
	if addr == "" {
		addr = FreeAddr(t)
	}
	cmd := exec.Command(bin, "-http", addr, fmt.Sprintf("-stateless=%t", !stateful))
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting everything-server: %v", err)
	}
	s := &Server{Addr: addr, cmd: cmd}
	t.Cleanup(s.Stop)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return s
		}
		if ctx.Err() != nil {
			t.Fatalf("everything-server did not listen on %s: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Bearer is an http.RoundTripper that adds an API key to every request of
// an SDK client.
type Bearer struct{ Key string }

// RoundTrip sends r with the key.
func (b Bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.Key)
	return http.DefaultTransport.RoundTrip(r)
}

// ConnectWithKey opens a 2025-11-25 Go SDK client session on url that
// presents key, closed at the end of the test.
func ConnectWithKey(t testing.TB, url, key string, opts *mcp.ClientOptions) *mcp.ClientSession {
	t.Helper()
	c := mcp.NewClient(&mcp.Implementation{Name: "mcpgw-test", Version: "1"}, opts)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cs, err := c.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: url, HTTPClient: &http.Client{Transport: Bearer{key}}}, &mcp.ClientSessionOptions{ProtocolVersion: "2025-11-25"})
	if err != nil {
		t.Fatalf("connecting with a key: %v", err)
	}
	t.Cleanup(func() { cs.Close() })
	return cs
}

// ToolNames lists every tool the session sees, sorted.
func ToolNames(t testing.TB, cs *mcp.ClientSession) []string {
	t.Helper()
	var names []string
	for tool, err := range cs.Tools(context.Background(), nil) {
		if err != nil {
			t.Fatalf("listing tools: %v", err)
		}
		names = append(names, tool.Name)
	}
	slices.Sort(names)
	return names
}
