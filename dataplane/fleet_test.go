package dataplane_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mcpgw/mcpgw/dataplane"
)

// A new fleet edge whose control plane cannot be reached opens its front
// doors before it enrolls: /healthz answers, /readyz says what it waits
// for, and MCP requests get a JSON-RPC error saying why, until ctx ends.
// (dataplane/e2e runs the same with real processes through to enrollment.)
func TestFleetEdgeServesOpsWhileEnrolling(t *testing.T) {
	// Nothing listens at the control plane's address.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cpAddr := l.Addr().String()
	l.Close()

	addrs := make(chan net.Addr, 2)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- dataplane.Run(ctx, dataplane.Config{
			ControlPlane: cpAddr, CAFile: writeCA(t), JoinToken: "mcpgwjoin_x_y", StateDir: t.TempDir(),
			Listen: "127.0.0.1:0", OnListen: func(_ string, a net.Addr) { addrs <- a },
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		})
	}()
	var base string
	select {
	case a := <-addrs:
		base = "http://" + a.String()
	case err := <-done:
		t.Fatalf("edge ended before it listened: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("edge not listening after 10s")
	}

	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/healthz"); code != http.StatusOK || body != "ok\n" {
		t.Errorf("/healthz while enrolling: %d %q", code, body)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, body := get("/readyz")
		if code != http.StatusServiceUnavailable || !strings.HasPrefix(body, "not ready: enrolling with "+cpAddr) {
			t.Fatalf("/readyz while enrolling: %d %q", code, body)
		}
		if strings.Contains(body, "(last attempt: ") && strings.Contains(body, "connection refused") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz does not say why enrolling fails: %q", body)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code, _ := get("/metrics"); code != http.StatusOK {
		t.Errorf("/metrics while enrolling: %d", code)
	}

	resp, err := http.Post(base+"/mcp", "application/json", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}`))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var msg struct {
		JSONRPC string          `json:"jsonrpc"`
		ID      json.RawMessage `json:"id"`
		Error   struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal(b, &msg); err != nil || resp.StatusCode != http.StatusServiceUnavailable || msg.JSONRPC != "2.0" ||
		msg.Error.Code != -32603 || !strings.Contains(msg.Error.Message, "no configuration yet: enrolling with "+cpAddr) ||
		resp.Header.Get("Retry-After") == "" {
		t.Errorf("/mcp while enrolling: %d %v %s", resp.StatusCode, resp.Header, b)
	}

	// Stopping while enrolling is a clean shutdown that closes the doors.
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run after cancel while enrolling: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	if _, err := http.Get(base + "/healthz"); err == nil {
		t.Error("the front doors are still open after Run returned")
	}
}

// writeCA writes a self-signed CA certificate: a bundle the edge can load
// (it is never used, the control plane is not there).
func writeCA(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
