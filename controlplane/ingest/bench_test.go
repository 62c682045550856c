package ingest_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"golang.org/x/sync/errgroup"

	"github.com/mcpgw/mcpgw/controlplane/ingest"
	"github.com/mcpgw/mcpgw/internal/audit"
	"github.com/mcpgw/mcpgw/internal/auditdb"
	"github.com/mcpgw/mcpgw/internal/pgtest"
)

// BenchmarkIngestSustained measures exactly-once audit ingest into Postgres
// through the control plane's coalescer, with the schema's real index set:
// concurrent streams (one node each, one submission in flight per stream,
// as AuditStream does) send chained batches; every 10th batch is sent
// twice, as after a lost ack. A stream submits one batch of 1,000 events at
// a time, or 64 one-event batches (a window) at a time. One op is one
// batch, so
//
//	go test -run '^$' -bench 'IngestSustained/events_per_batch=1000' -benchtime 2000x ./controlplane/ingest/
//
// stores 2,000,000 rows. events_per_batch=1 is what an edge under sync
// durability ships at moderate load (one sealed batch per group commit,
// often a single event), where the per-batch work (ledger row, chain
// check) dominates. It reports events/s over the whole run and the p50/p99
// latency of the coalesced commits, and checks afterwards that every event
// is stored exactly once.
func BenchmarkIngestSustained(b *testing.B) {
	for _, perBatch := range []int{1000, 1} {
		b.Run(fmt.Sprintf("events_per_batch=%d", perBatch), func(b *testing.B) { benchIngestSustained(b, perBatch) })
	}
}

func benchIngestSustained(b *testing.B, perBatch int) {
	const (
		streams   = 8
		dupEveryN = 10
	)
	// A stream hands the committer everything it holds: with 1,000-event
	// batches that is one at a time, with one-event batches the edge's
	// window (auditship.DefaultWindow) of them.
	perCall := 1
	if perBatch == 1 {
		perCall = 64
	}
	pool := pgtest.NewPool(b, pgtest.NewDatabase(b))
	store := auditdb.New(pool, auditdb.Options{})
	var (
		mu   sync.Mutex
		lats []time.Duration
	)
	srv, err := ingest.New(ingest.Config{Store: store, MaintenanceInterval: -1, OnCommit: func(d time.Duration, _ auditdb.Result) {
		mu.Lock()
		lats = append(lats, d)
		mu.Unlock()
	}})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var run errgroup.Group
	run.Go(func() error { return srv.Run(ctx) })
	defer func() { cancel(); _ = run.Wait() }()

	nodes := make([]string, streams)
	for i := range nodes {
		nodes[i] = uuid.NewString()
	}
	base := time.Now().UTC()
	b.ResetTimer()
	start := time.Now()
	var g errgroup.Group
	for si := range streams {
		n := b.N / streams
		if si < b.N%streams {
			n++
		}
		g.Go(func() error {
			var prev [32]byte
			var lines []byte
			var pending []auditdb.Batch
			for seq := int64(1); seq <= int64(n); seq++ {
				bt := auditdb.Batch{Epoch: 1, Seq: seq, PrevHash: prev, Count: perBatch}
				lines = lines[:0]
				for i := range perBatch {
					ts := base.Add(time.Duration(seq*int64(perBatch)+int64(i)) * time.Microsecond)
					ev := audit.Event{ID: audit.NewID(ts), TS: ts, NodeID: nodes[si], SessionID: "s", Principal: fmt.Sprintf("user%d", i%50),
						Transport: audit.TransportHTTP, ProtocolVersion: "2025-11-25", ClientName: "bench", ClientVersion: "1",
						Method: "tools/call", Backend: "github", Name: "github__create_issue", Decision: audit.DecisionAllow,
						Rule: "developer/0", PolicyRevision: 7, Status: audit.StatusOK, LatencyUS: 120, UpstreamLatencyUS: 100,
						RequestBytes: 200, ResponseBytes: 300}
					lines = append(ev.AppendJSON(lines), '\n')
				}
				bt.Lines = slices.Clone(lines)
				bt.CRC = auditdb.CRC32C(bt.Lines)
				prev = bt.Hash()
				pending = append(pending, bt)
				if seq%dupEveryN == 0 {
					pending = append(pending, bt)
				}
				if len(pending) >= perCall || seq == int64(n) {
					if _, err := srv.Ingest(ctx, nodes[si], pending); err != nil {
						return fmt.Errorf("stream %d batch %d: %w", si, seq, err)
					}
					pending = pending[:0]
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		b.Fatal(err)
	}
	elapsed := time.Since(start)
	b.StopTimer()

	var rows, distinct, ledger int64
	if err := pool.QueryRow(context.Background(), `SELECT count(*), count(DISTINCT id) FROM audit_events`).Scan(&rows, &distinct); err != nil {
		b.Fatal(err)
	}
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM audit_ledger`).Scan(&ledger); err != nil {
		b.Fatal(err)
	}
	want := int64(b.N) * int64(perBatch)
	if rows != want || distinct != want || ledger != int64(b.N) {
		b.Fatalf("stored %d rows (%d distinct), %d ledger rows; want %d rows, %d batches", rows, distinct, ledger, want, b.N)
	}
	st := srv.Stats()
	if st.Duplicates != int64(b.N/dupEveryN) && b.N >= streams*dupEveryN {
		b.Logf("duplicates acked: %d", st.Duplicates)
	}
	mu.Lock()
	slices.Sort(lats)
	p50, p99 := lats[len(lats)/2], lats[len(lats)*99/100]
	commits := len(lats)
	mu.Unlock()
	b.ReportMetric(float64(want)/elapsed.Seconds(), "events/s")
	b.ReportMetric(float64(p50.Microseconds())/1000, "commit-p50-ms")
	b.ReportMetric(float64(p99.Microseconds())/1000, "commit-p99-ms")
	b.ReportMetric(float64(want)/float64(commits), "events/commit")
	b.Logf("%d rows in %v over %d streams: %.0f events/s; %d commits (p50 %v, p99 %v); %d duplicate batches acked without storing",
		want, elapsed.Round(time.Millisecond), streams, float64(want)/elapsed.Seconds(), commits, p50, p99, st.Duplicates)
}
