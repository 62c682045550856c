package auditlog

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/mcpgw/mcpgw/internal/audit"
)

var testNode = uuid.MustParse("0190c0de-0000-7000-8000-000000000001")

func testEvent(i int) *audit.Event {
	now := time.Now()
	return &audit.Event{
		ID: audit.NewID(now), TS: now, NodeID: testNode.String(), SessionID: "s1", Principal: "alice",
		Transport: audit.TransportHTTP, ProtocolVersion: "2025-11-25", Method: "tools/call",
		Backend: "github", Name: "github__create_issue", Decision: audit.DecisionAllow,
		Rule: "developer/0", PolicyRevision: int64(i), Status: audit.StatusOK,
		LatencyUS: 120, UpstreamLatencyUS: 100, RequestBytes: 200, ResponseBytes: 300,
	}
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// gateSink is a real FileSink behind a switch, so a test can make the sink
// unavailable and available again.
type gateSink struct {
	*FileSink
	mu     sync.Mutex // guards open
	open   bool
	calls  int
	failed int
}

func newGateSink(t *testing.T, path string, open bool) *gateSink {
	fs, err := NewFileSink(path, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	return &gateSink{FileSink: fs, open: open}
}

func (g *gateSink) set(open bool) {
	g.mu.Lock()
	g.open = open
	g.mu.Unlock()
}

func (g *gateSink) Deliver(ctx context.Context, b []SealedBatch) error {
	g.mu.Lock()
	open := g.open
	g.calls++
	if !open {
		g.failed++
	}
	g.mu.Unlock()
	if !open {
		return errors.New("sink closed by the test")
	}
	return g.FileSink.Deliver(ctx, b)
}

// startLog opens a Log and runs it until the test ends (or stop is called).
func startLog(t *testing.T, cfg Config, sinks ...Sink) (l *Log, stop func() error) {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = quietLogger()
	}
	if cfg.ShutdownDrain == 0 {
		cfg.ShutdownDrain = 2 * time.Second
	}
	if cfg.RetryMin == 0 {
		cfg.RetryMin = 5 * time.Millisecond
		cfg.RetryMax = 20 * time.Millisecond
	}
	l, err := Open(cfg, sinks...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	var once sync.Once
	var runErr error
	stop = func() error {
		once.Do(func() {
			cancel()
			runErr = <-done
		})
		return runErr
	}
	t.Cleanup(func() { _ = stop() })
	return l, stop
}

// readSpool reads every batch in a spool directory as a new process would,
// with the recovery report.
func readSpool(t *testing.T, dir string) ([]SealedBatch, recoveryReport) {
	t.Helper()
	s, rep, err := openSpool(dir, DefaultSegmentBytes, []string{"inspect"}, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	r := s.newReader("inspect")
	defer r.closeFile()
	out, err := r.read(1<<30, 1<<40)
	if err != nil {
		t.Fatal(err)
	}
	return out, rep
}

// eventIDs lists the ids of the events in batches, checking the hash chain.
func eventIDs(t *testing.T, batches []SealedBatch) []string {
	t.Helper()
	var ids []string
	for i := range batches {
		b := &batches[i]
		if i > 0 {
			if b.Seq != batches[i-1].Seq+1 {
				t.Fatalf("seq %d follows %d", b.Seq, batches[i-1].Seq)
			}
			if b.PrevHash != batches[i-1].Hash {
				t.Fatalf("batch %d does not link to batch %d", b.Seq, batches[i-1].Seq)
			}
		}
		if err := b.EachLine(func(line []byte) error {
			ev, err := audit.DecodeJSON(line)
			if err != nil {
				return err
			}
			ids = append(ids, ev.ID.String())
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	return ids
}

// fileLines reads a JSON-lines audit file into event ids and gap lines.
func fileLines(t *testing.T, path string) (ids []string, gaps []string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) > 7 && string(line[:7]) == `{"gap":` {
			gaps = append(gaps, string(line))
			continue
		}
		ev, err := audit.DecodeJSON(line)
		if err != nil {
			t.Fatalf("audit file line %q: %v", line, err)
		}
		ids = append(ids, ev.ID.String())
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return ids, gaps
}

func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func segmentFiles(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "seg-*.log"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}
