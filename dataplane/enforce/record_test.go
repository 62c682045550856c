package enforce_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/mcpgw/mcpgw/dataplane/auditlog"
	"github.com/mcpgw/mcpgw/dataplane/enforce"
	"github.com/mcpgw/mcpgw/dataplane/gateway"
	"github.com/mcpgw/mcpgw/internal/audit"
)

// openLog runs a real audit log writing path; it stops with the test.
func openLog(t testing.TB, cfg auditlog.Config, path string) *auditlog.Log {
	t.Helper()
	sink, err := auditlog.NewFileSink(path, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Dir == "" {
		cfg.Dir = filepath.Join(t.TempDir(), "spool")
	}
	cfg.Logger = slog.New(slog.DiscardHandler)
	l, err := auditlog.Open(cfg, sink)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("audit log: %v", err)
		}
		sink.Close()
	})
	return l
}

func newRecorder(t testing.TB, l enforce.EventLog, h *enforce.Holder) *enforce.Recorder {
	t.Helper()
	node, err := enforce.StandaloneNodeID("recorder-test")
	if err != nil {
		t.Fatal(err)
	}
	r, err := enforce.NewRecorder(enforce.RecorderOptions{Log: l, NodeID: node, Holder: h})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestRecorderEvents(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l := openLog(t, auditlog.Config{}, path)
	_, sum := newKey(t)
	h := holderWith(t, sum, "")
	r := newRecorder(t, l, h)
	ctx := context.Background()
	start := time.Now()
	args := json.RawMessage(`{"owner":"mcpgw","repo":"x"}`)
	long := strings.Repeat("é", 2000)

	ok := &gateway.Request{Start: start, Transport: "http", SessionID: "s1", Principal: alice, ProtocolVersion: "2025-11-25",
		ClientName: "claude", ClientVersion: "1.2", Method: "tools/call", Backend: "github", Name: "github__create_issue",
		Arguments: args, Decision: gateway.Decision{Allow: true, Rule: "dev-github", Revision: "12345"}, Status: gateway.StatusOK,
		Latency: 1500 * time.Microsecond, UpstreamLatency: 1200 * time.Microsecond, RequestBytes: 200, ResponseBytes: 300}
	rejected := &gateway.Request{Start: start, Transport: "http", Method: "initialize", Status: gateway.StatusDenied, Error: enforce.ErrUnauthenticated.Error()}
	failed := &gateway.Request{Start: start, Transport: "stdio", Principal: alice, Method: "tools/call", Backend: "github", Name: "github__x",
		Decision: gateway.Decision{Allow: true, Rule: "dev-github", Revision: "12345"}, Status: "weird", Error: long}
	var ids []string
	for _, rq := range []*gateway.Request{ok, rejected, failed} {
		r.Begin(rq)
		id, err := uuid.Parse(rq.AuditID)
		if err != nil || id.Version() != 7 {
			t.Fatalf("Begin minted %q (%v)", rq.AuditID, err)
		}
		ids = append(ids, rq.AuditID)
		if err := r.Record(ctx, rq); err != nil {
			t.Fatal(err)
		}
	}
	byID := map[string]audit.Event{}
	waitEvent(t, path, "all three events", func(audit.Event) bool {
		for _, ev := range readEvents(t, path) {
			byID[ev.ID.String()] = ev
		}
		return len(byID) == 3
	})
	node, _ := enforce.StandaloneNodeID("recorder-test")
	digest := sha256.Sum256(args)
	want := audit.Event{
		TS: start.UTC().Truncate(time.Microsecond), NodeID: node, SessionID: "s1", Principal: "alice", Transport: "http",
		ProtocolVersion: "2025-11-25", ClientName: "claude", ClientVersion: "1.2", Method: "tools/call", Backend: "github",
		Name: "github__create_issue", Decision: "allow", Rule: "dev-github", PolicyRevision: 12345, Status: "ok",
		LatencyUS: 1500, UpstreamLatencyUS: 1200, RequestBytes: 200, ResponseBytes: 300, ArgsSHA256: hex.EncodeToString(digest[:]),
	}
	got := byID[ids[0]]
	want.ID = got.ID
	if !got.TS.Equal(want.TS) {
		t.Errorf("ts %v, want %v", got.TS, want.TS)
	}
	got.TS = want.TS
	if got != want {
		t.Errorf("allowed call:\n got %+v\nwant %+v", got, want)
	}
	// A rejected authentication: no principal, denied, and the revision of
	// the policy that refused the credential.
	rej := byID[ids[1]]
	if rej.Principal != "" || rej.Decision != "deny" || rej.Status != "denied" || rej.PolicyRevision != h.Load().Revision || rej.Error == "" || rej.ArgsSHA256 != "" {
		t.Errorf("rejected attempt: %+v", rej)
	}
	f := byID[ids[2]]
	if f.Status != "error" || f.Transport != "stdio" || len(f.Error) > 1100 || !strings.HasPrefix(long, strings.TrimSuffix(f.Error, "…")) {
		t.Errorf("failed call: status %q, %d bytes of error", f.Status, len(f.Error))
	}
}

func TestRecorderRefusesWhenAuditIsUnavailable(t *testing.T) {
	// The sink can never deliver (its directory does not exist), so the
	// spool only fills; on_full: refuse must then fail Record.
	path := filepath.Join(t.TempDir(), "missing", "audit.jsonl")
	l := openLog(t, auditlog.Config{MaxBytes: 64 << 10, OnFull: auditlog.OnFullRefuse, RetryMax: time.Hour}, path)
	r := newRecorder(t, l, nil)
	ctx := context.Background()
	var err error
	for i := 0; i < 10000 && err == nil; i++ {
		rq := &gateway.Request{Start: time.Now(), Transport: "http", Principal: alice, Method: "tools/call", Status: gateway.StatusOK, Error: strings.Repeat("x", 500)}
		r.Begin(rq)
		err = r.Record(ctx, rq)
	}
	if !errors.Is(err, auditlog.ErrAuditUnavailable) {
		t.Fatalf("a full spool under refuse: %v, want ErrAuditUnavailable", err)
	}
	if !errors.Is(r.Available(), auditlog.ErrAuditUnavailable) {
		t.Errorf("Available with a full spool: %v", r.Available())
	}
}

func TestNewRecorderNeedsANodeUUID(t *testing.T) {
	l := openLog(t, auditlog.Config{}, filepath.Join(t.TempDir(), "a.jsonl"))
	if _, err := enforce.NewRecorder(enforce.RecorderOptions{Log: l, NodeID: "edge-1"}); err == nil {
		t.Error("a node id that is not a UUID was accepted")
	}
	a, _ := enforce.StandaloneNodeID("x")
	b, _ := enforce.StandaloneNodeID("x")
	c, _ := enforce.StandaloneNodeID("y")
	if a != b || a == c {
		t.Errorf("node ids: x=%s x=%s y=%s", a, b, c)
	}
}

// BenchmarkRecord measures what recording costs per request, sync (the
// response waits for the spool write, shared by concurrent requests through
// group commit) against async, at 1 and 64 concurrent sessions.
func BenchmarkRecord(b *testing.B) {
	for _, mode := range []auditlog.Durability{auditlog.DurabilitySync, auditlog.DurabilityAsync} {
		for _, sessions := range []int{1, 64} {
			b.Run(fmt.Sprintf("%s/sessions=%d", mode, sessions), func(b *testing.B) {
				cfg := auditlog.Config{Durability: mode}
				if mode == auditlog.DurabilityAsync {
					// Async callers never wait, so a tight loop outruns the
					// writer and a default queue (8,192) refuses; size it to
					// measure the cost rather than the overflow.
					cfg.QueueSize = b.N + 1024
				}
				l := openLog(b, cfg, filepath.Join(b.TempDir(), "audit.jsonl"))
				r := newRecorder(b, l, nil)
				args := json.RawMessage(`{"owner":"mcpgw","repo":"mcpgw","title":"a bug"}`)
				b.ReportAllocs()
				b.ResetTimer()
				var wg sync.WaitGroup
				per := b.N/sessions + 1
				for range sessions {
					wg.Go(func() {
						ctx := context.Background()
						for range per {
							rq := &gateway.Request{Start: time.Now(), Transport: "http", SessionID: "s", Principal: alice,
								Method: "tools/call", Backend: "github", Name: "github__create_issue", Arguments: args,
								Decision: gateway.Decision{Allow: true, Rule: "dev-github", Revision: "1"}, Status: gateway.StatusOK,
								Latency: time.Millisecond, RequestBytes: 120, ResponseBytes: 300}
							r.Begin(rq)
							if err := r.Record(ctx, rq); err != nil {
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
