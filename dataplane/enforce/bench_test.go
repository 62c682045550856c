package enforce_test

import (
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcpgw/mcpgw/dataplane/auditlog"
)

// BenchmarkEdgeCall is what audit durability costs per tools/call through
// the whole edge (HTTP front door, authentication, policy, a real stdio
// backend): no recording at all, async, and sync, at 1 and 64 concurrent
// sessions. ns/op is wall time per call across all sessions, so the
// differences between modes are the cost of recording. On a shared 2-core
// machine read ratios, not absolutes.
func BenchmarkEdgeCall(b *testing.B) {
	key, sum := newKey(b)
	for _, mode := range []string{"discard", "async", "sync"} {
		o := edgeOptions{AuditFile: filepath.Join(b.TempDir(), "audit.jsonl"), Audit: &auditlog.Config{Durability: auditlog.DurabilitySync}}
		switch mode {
		case "discard":
			o.Discard = true
		case "async":
			o.Audit.Durability = auditlog.DurabilityAsync
			o.Audit.QueueSize = 1 << 20
		}
		e := startEdgeWith(b, oneBackendConfig(sum), o)
		client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 128, DisableCompression: true}}
		waitListed(b, client, e.URL, key, "github__test_simple_text")
		for _, sessions := range []int{1, 64} {
			b.Run(fmt.Sprintf("%s/sessions=%d", mode, sessions), func(b *testing.B) {
				ids := make([]string, sessions)
				for i := range ids {
					ids[i] = initSession(b, client, e.URL, key)
				}
				b.ReportAllocs()
				b.ResetTimer()
				var wg sync.WaitGroup
				per := b.N/sessions + 1
				for _, sid := range ids {
					wg.Go(func() {
						for i := range per {
							body := fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"github__test_simple_text","arguments":{}}}`, i+2)
							if _, err := rawPost(client, e.URL, key, sid, body); err != nil {
								b.Error(err)
								return
							}
						}
					})
				}
				wg.Wait()
			})
		}
	}
}

func rawPost(c *http.Client, url, key, sid, body string) (*http.Response, error) {
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Authorization", "Bearer "+key)
	if sid != "" {
		req.Header.Set("Mcp-Session-Id", sid)
		req.Header.Set("Mcp-Protocol-Version", "2025-11-25")
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 || strings.Contains(string(b), `"error"`) {
		return nil, fmt.Errorf("%s: %s", resp.Status, b)
	}
	resp.Body = io.NopCloser(strings.NewReader(string(b)))
	return resp, nil
}

func initSession(t testing.TB, c *http.Client, url, key string) string {
	t.Helper()
	resp, err := rawPost(c, url, key, "", `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"bench","version":"1"}}}`)
	if err != nil {
		t.Fatal(err)
	}
	sid := resp.Header.Get("Mcp-Session-Id")
	if _, err := rawPost(c, url, key, sid, `{"jsonrpc":"2.0","method":"notifications/initialized"}`); err != nil {
		t.Fatal(err)
	}
	return sid
}

func waitListed(t testing.TB, c *http.Client, url, key, name string) {
	t.Helper()
	sid := initSession(t, c, url, key)
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := rawPost(c, url, key, sid, `{"jsonrpc":"2.0","id":9,"method":"tools/list"}`)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		if strings.Contains(string(b), name) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never listed", name)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
