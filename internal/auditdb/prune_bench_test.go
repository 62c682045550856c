package auditdb_test

import (
	"context"
	"crypto/sha256"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/mcpgw/mcpgw/internal/audit"
	"github.com/mcpgw/mcpgw/internal/auditdb"
)

// seededHash is the batch_hash the seeded ledger rows carry: computable in
// SQL and in Go, so a seeded chain links and ingest can continue it.
func seededHash(node uuid.UUID, epoch, seq int64) [32]byte {
	return sha256.Sum256(fmt.Appendf(nil, "%s/%d/%d", node, epoch, seq))
}

// BenchmarkPruneLedger measures ledger pruning on Postgres: 8 nodes with
// 50,000 one-event ledger rows each (400,000 rows, as sync edges leave
// them), the oldest 40,000 per node 40 days old (320,000 to prune under the
// 30-day retention). While MaintainPartitions prunes, two writers keep
// ingesting one-event batches (64 per call, as a window) that continue the
// same nodes' chains at their head; the benchmark reports the prune's time
// and the writers' commit latency and throughput in the seconds before the
// prune and during it. Run with -benchtime 1x.
func BenchmarkPruneLedger(b *testing.B) {
	const (
		nodes      = 8
		perNode    = 50000
		expiredPer = 40000
		writers    = 2
		perCall    = 64
	)
	for range b.N {
		b.StopTimer()
		s, pool := newStore(b)
		ctx := context.Background()
		ids := make([]uuid.UUID, nodes)
		for i := range ids {
			ids[i] = uuid.New()
		}
		if _, err := pool.Exec(ctx, `
INSERT INTO audit_ledger (node_id, epoch, seq, event_count, first_ts, last_ts, batch_hash, prev_hash, crc, chain_ok, received_at)
SELECT n, 1, q, 1, t, t,
    sha256(convert_to(n::text || '/1/' || q, 'UTF8')),
    CASE WHEN q > 1 THEN sha256(convert_to(n::text || '/1/' || (q - 1), 'UTF8')) END,
    0, true, t
FROM unnest($1::uuid[]) AS n, generate_series(1, $2::bigint) AS q,
    LATERAL (SELECT CASE WHEN q <= $3 THEN now() - interval '40 days' + q * interval '1 ms'
                         ELSE now() - interval '1 hour' + q * interval '1 ms' END AS t) AS ts`,
			ids, perNode, expiredPer); err != nil {
			b.Fatal(err)
		}
		if _, err := pool.Exec(ctx, `VACUUM ANALYZE audit_ledger`); err != nil {
			b.Fatal(err)
		}

		// Writers continue the chains of nodes 0 and 1 from their head.
		type sample struct {
			at  time.Time
			lat time.Duration
			n   int
		}
		var (
			mu      sync.Mutex // guards samples
			samples []sample
		)
		wctx, stop := context.WithCancel(ctx)
		var wg sync.WaitGroup
		errs := make(chan error, writers)
		for w := range writers {
			wg.Go(func() {
				node := ids[w]
				seq, prev := int64(perNode+1), seededHash(node, 1, perNode)
				for i := 0; wctx.Err() == nil; i++ {
					groups := make([][]audit.Event, perCall)
					for j := range groups {
						e := event(time.Now().UTC(), i*perCall+j)
						e.NodeID = node.String()
						groups[j] = []audit.Event{e}
					}
					bs := chain(1, seq, prev, groups)
					start := time.Now()
					res, err := s.Ingest(ctx, node.String(), bs...)
					if err != nil || res.Events != perCall || res.ChainBreaks != 0 {
						errs <- fmt.Errorf("writer %d: %+v, %v", w, res, err)
						return
					}
					mu.Lock()
					samples = append(samples, sample{start, time.Since(start), perCall})
					mu.Unlock()
					seq, prev = seq+perCall, bs[perCall-1].Hash()
				}
			})
		}
		time.Sleep(3 * time.Second) // the baseline
		b.StartTimer()
		pruneStart := time.Now()
		m, err := s.MaintainPartitions(ctx, 7)
		pruneTime := time.Since(pruneStart)
		b.StopTimer()
		stop()
		wg.Wait()
		close(errs)
		for err := range errs {
			b.Fatal(err)
		}
		if err != nil || m.Pruned != nodes*expiredPer {
			b.Fatalf("maintenance: pruned %d, %v; want %d", m.Pruned, err, nodes*expiredPer)
		}
		var left int64
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM audit_ledger`).Scan(&left); err != nil {
			b.Fatal(err)
		}
		rep, err := s.Verify(ctx, ids[0].String())
		if err != nil || len(rep.Epochs) != 1 || rep.Epochs[0].Pruned.Through != expiredPer || len(rep.Epochs[0].Missing) != 0 || len(rep.Epochs[0].BrokenLinks) != 0 {
			b.Fatalf("verify of a pruned, continued chain: %+v, %v", rep, err)
		}

		stats := func(from, to time.Time) (p50, p99 time.Duration, evs float64) {
			var lats []time.Duration
			n := 0
			for _, x := range samples {
				if !x.at.Before(from) && x.at.Before(to) {
					lats = append(lats, x.lat)
					n += x.n
				}
			}
			if len(lats) == 0 {
				return 0, 0, 0
			}
			slices.Sort(lats)
			return lats[len(lats)/2], lats[len(lats)*99/100], float64(n) / to.Sub(from).Seconds()
		}
		bp50, bp99, bev := stats(pruneStart.Add(-3*time.Second), pruneStart)
		dp50, dp99, dev := stats(pruneStart, pruneStart.Add(pruneTime))
		b.ReportMetric(pruneTime.Seconds(), "prune-s")
		b.ReportMetric(float64(m.Pruned)/pruneTime.Seconds(), "rows-pruned/s")
		b.ReportMetric(float64(bp99.Microseconds())/1000, "ingest-p99-ms-before")
		b.ReportMetric(float64(dp99.Microseconds())/1000, "ingest-p99-ms-during")
		b.Logf("pruned %d of %d ledger rows (chunks of %d) in %v (%.0f rows/s), %d rows left (%d ingested meanwhile); ingest of one-event batches, %d per call, %d writers: before p50 %v p99 %v %.0f events/s, during p50 %v p99 %v %.0f events/s",
			m.Pruned, nodes*perNode, auditdb.PruneChunk, pruneTime.Round(time.Millisecond), float64(m.Pruned)/pruneTime.Seconds(), left, int(left)-nodes*(perNode-expiredPer),
			perCall, writers, bp50.Round(10*time.Microsecond), bp99.Round(10*time.Microsecond), bev,
			dp50.Round(10*time.Microsecond), dp99.Round(10*time.Microsecond), dev)
	}
}
