package storetest

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/mcpgw/mcpgw/controlplane/store"
	"github.com/mcpgw/mcpgw/internal/auditdb"
)

// testConcurrentWriters runs config writers, audit ingest, registry
// flushes and readers at once: every write commits (no lock errors), each
// config write gets its own revision, and reads stay consistent.
func testConcurrentWriters(t *testing.T, s Store) {
	ctx := t.Context()
	const writers, each = 6, 5
	var wg sync.WaitGroup
	revs := make(chan int64, writers*each)
	errs := make(chan error, 64)
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				r, err := s.CreateBackend(ctx, meta, httpBackend(fmt.Sprintf("w%d-%d", w, i), "http://127.0.0.1:9000/mcp"), store.WriteOptions{})
				if err != nil {
					errs <- fmt.Errorf("writer %d: %w", w, err)
					return
				}
				revs <- r.Revision
			}
		})
	}
	start := time.Now().Add(-time.Minute).UTC().Truncate(time.Millisecond)
	wg.Go(func() {
		var prev [32]byte
		for seq := int64(1); seq <= 10; seq++ {
			b := chain(1, seq, prev, events(start, 20, int(seq)*20))
			prev = b[0].Hash()
			if _, err := s.IngestAll(ctx, auditdb.NodeBatches{Node: auditNode, Batches: b}); err != nil {
				errs <- fmt.Errorf("ingest %d: %w", seq, err)
				return
			}
		}
	})
	wg.Go(func() {
		for range 20 {
			cfg, err := s.LoadConfig(ctx)
			if err != nil {
				errs <- err
				return
			}
			// A snapshot read is one revision: it holds exactly the
			// backends committed up to it.
			if int64(len(cfg.Backends)) != cfg.Revision {
				errs <- fmt.Errorf("config at revision %d holds %d backends", cfg.Revision, len(cfg.Backends))
				return
			}
			if err := s.FlushNodeStatus(ctx, "r1", nil); err != nil {
				errs <- err
				return
			}
		}
	})
	wg.Wait()
	close(revs)
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	seen := map[int64]bool{}
	for r := range revs {
		if seen[r] {
			t.Errorf("revision %d committed twice", r)
		}
		seen[r] = true
	}
	if len(seen) != writers*each {
		t.Fatalf("%d revisions committed, want %d", len(seen), writers*each)
	}
	if head, err := s.CurrentRevision(ctx); err != nil || head != writers*each {
		t.Fatalf("head revision %d, %v; want %d", head, err, writers*each)
	}
	if evs := countAll(t, s, auditdb.Filter{}); len(evs) != 200 {
		t.Fatalf("%d audit events stored, want 200", len(evs))
	}
}
