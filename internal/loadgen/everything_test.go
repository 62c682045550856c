package loadgen

import (
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestAgainstEverythingServer points the load generator at an independent
// peer, the Go SDK's conformance everything-server (a tool dependency of the
// module), over stateful Streamable HTTP. Its replies come as SSE streams,
// so this checks the client's SSE path against a server nobody here wrote,
// and that an isError result is counted as an error.
func TestAgainstEverythingServer(t *testing.T) {
	dir := t.TempDir()
	install := exec.Command("go", "install", "github.com/modelcontextprotocol/go-sdk/conformance/everything-server")
	install.Env = append(os.Environ(), "GOBIN="+dir)
	if out, err := install.CombinedOutput(); err != nil {
		t.Fatalf("building the everything-server: %v\n%s", err, out)
	}
	// Pick a free loopback port; the server binds it a moment later.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	srv := exec.Command(filepath.Join(dir, "everything-server"), "-http", addr, "-stateless=false")
	var stderr strings.Builder
	srv.Stderr = &stderr
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = srv.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = srv.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = srv.Process.Kill()
			<-done
		}
	})
	url := "http://" + addr + "/mcp"
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("everything-server did not listen on %s: %v\n%s", addr, err, stderr.String())
		}
	}

	sum, err := Run(t.Context(), Config{URL: url, Sessions: 2, Calls: 20, Tool: "test_simple_text", Arguments: []byte(`{}`)})
	if err != nil {
		t.Fatal(err)
	}
	checkSummary(t, sum, 20)

	sum, err = Run(t.Context(), Config{URL: url, Sessions: 1, Calls: 2, Tool: "test_error_handling", Arguments: []byte(`{}`)})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Errors != 2 || sum.OK != 0 || !strings.Contains(sum.FirstError, "isError") {
		t.Errorf("isError results from the everything-server: %+v", sum)
	}

	s := NewSession(http.DefaultClient, url, "")
	if err := s.Initialize(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CallTool(t.Context(), "no_such_tool", []byte(`{}`)); err == nil {
		t.Error("calling an unknown tool must fail")
	}
	if err := s.Close(t.Context()); err != nil {
		t.Error(err)
	}
}
