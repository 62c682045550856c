package auditdb_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/mcpgw/mcpgw/internal/audit"
)

// BenchmarkIngest measures exactly-once ingest (ledger row + COPY in one
// transaction, the schema's real index set) of batches of 1,000 events,
// one or eight batches per call, as events/s. Run with -benchtime Nx to
// bound the rows: each op stores 1,000 or 8,000 events.
func BenchmarkIngest(b *testing.B) {
	for _, perCall := range []int{1, 8} {
		b.Run(fmt.Sprintf("batch=1000/batches_per_call=%d", perCall), func(b *testing.B) {
			s, _ := newStore(b)
			ctx := context.Background()
			now := time.Now().UTC()
			groups := make([][]audit.Event, b.N*perCall)
			for i := range groups {
				groups[i] = evts(now, 1000, i*1000)
			}
			batches := chain(1, 1, [32]byte{}, groups)
			b.ResetTimer()
			start := time.Now()
			for i := range b.N {
				res, err := s.Ingest(ctx, node, batches[i*perCall:(i+1)*perCall]...)
				if err != nil {
					b.Fatal(err)
				}
				if res.Events != 1000*perCall {
					b.Fatalf("stored %d events", res.Events)
				}
			}
			el := time.Since(start)
			b.ReportMetric(float64(b.N*perCall*1000)/el.Seconds(), "events/s")
		})
	}
}
