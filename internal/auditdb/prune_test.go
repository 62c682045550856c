package auditdb_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/google/uuid"
)

// seedLedger inserts seqs 1..n of (node, epoch 1) as one-event rows linked
// by seededHash, expired (40 days old) up to expiredThrough and recent
// after; skip names seqs left out and broken seqs whose prev_hash is wrong.
func seedLedger(t *testing.T, exec func(sql string, args ...any), node uuid.UUID, n, expiredThrough int64, skip, broken []int64) {
	t.Helper()
	skip, broken = append([]int64{}, skip...), append([]int64{}, broken...) // not NULL
	exec(`
INSERT INTO audit_ledger (node_id, epoch, seq, event_count, first_ts, last_ts, batch_hash, prev_hash, crc, chain_ok, received_at)
SELECT $1::uuid, 1, q, 1, t, t,
    sha256(convert_to($1::uuid::text || '/1/' || q, 'UTF8')),
    CASE WHEN q = ANY($5) THEN sha256('forged')
         WHEN q > 1 THEN sha256(convert_to($1::uuid::text || '/1/' || (q - 1), 'UTF8')) END,
    0, true, t
FROM generate_series(1, $2::bigint) AS q,
    LATERAL (SELECT CASE WHEN q <= $3 THEN now() - interval '40 days' + q * interval '1 ms'
                         ELSE now() - interval '1 hour' + q * interval '1 ms' END AS t) AS ts
WHERE q <> ALL($4)`, node, n, expiredThrough, skip, broken)
}

// Pruning walks an epoch in chunks and stops at the first row still
// retained, even when later rows expired; a link broken and a seq missing
// inside the pruned prefix are still counted (the verdict does not change);
// and a row that reappears below the prefix (a replay racing a prune) is
// ignored by Verify and removed by the next prune.
func TestPruneLedgerStopsAtTheFirstRetainedRow(t *testing.T) {
	ctx := context.Background()
	s, pool := newStore(t)
	exec := func(sql string, args ...any) {
		t.Helper()
		if _, err := pool.Exec(ctx, sql, args...); err != nil {
			t.Fatal(err)
		}
	}
	good, bad := uuid.New(), uuid.New()
	// good: 12,000 rows, 1..11,999 expired, but 11,000 is recent (an edge
	// clock that jumped): the prefix is 1..10,999, more than two chunks.
	seedLedger(t, exec, good, 12000, 11999, nil, nil)
	exec(`UPDATE audit_ledger SET first_ts = now(), last_ts = now() WHERE node_id = $1 AND seq = 11000`, good)
	// bad: 30 rows, 1..20 expired, seq 7 never arrived, seq 12 misses its link.
	seedLedger(t, exec, bad, 30, 20, []int64{7}, []int64{12})

	before, err := s.Verify(ctx, bad.String())
	if err != nil || len(before.Epochs) != 1 || len(before.Epochs[0].Missing) != 1 || len(before.Epochs[0].BrokenLinks) != 1 {
		t.Fatalf("verify before pruning: %+v, %v", before, err)
	}
	m, err := s.MaintainPartitions(ctx, 7)
	if err != nil || m.Pruned != 10999+19 {
		t.Fatalf("maintenance: %+v, %v; want 10,999 + 19 rows pruned", m, err)
	}
	if n := count(t, pool, `SELECT count(*) FROM audit_ledger WHERE node_id = $1`, good); n != 1001 {
		t.Fatalf("%d rows of the good node left, want 1,001 (11,000..12,000)", n)
	}
	rep, err := s.Verify(ctx, good.String())
	if err != nil || len(rep.Epochs) != 1 {
		t.Fatalf("verify: %+v, %v", rep, err)
	}
	e := rep.Epochs[0]
	if e.Pruned.Through != 10999 || e.Pruned.Batches != 10999 || e.Batches != 12000 || e.LastSeq != 12000 || len(e.Missing) != 0 || len(e.BrokenLinks) != 0 {
		t.Fatalf("good node after pruning: %+v", e)
	}

	after, err := s.Verify(ctx, bad.String())
	if err != nil || after.ChainComplete || len(after.Epochs) != 1 {
		t.Fatalf("verify after pruning: %+v, %v", after, err)
	}
	p := after.Epochs[0].Pruned
	if p.Through != 20 || p.Batches != 19 || p.Missing != 1 || p.BrokenLinks != 1 || after.Epochs[0].Batches != before.Epochs[0].Batches {
		t.Fatalf("bad node's pruned prefix: %+v (before: %+v)", p, before.Epochs[0])
	}
	if !slices.Equal(after.Problems, before.Problems) || !slices.Equal(after.Epochs[0].Missing, before.Epochs[0].Missing) ||
		!slices.Equal(after.Epochs[0].BrokenLinks, []int64{12}) || !strings.Contains(strings.Join(after.Problems, "\n"), "batches 7..7 missing") {
		t.Fatalf("problems after pruning %q, before %q", after.Problems, before.Problems)
	}

	// A pruned seq comes back as a row (ingest raced the prune that deleted it).
	exec(`INSERT INTO audit_ledger (node_id, epoch, seq, event_count, batch_hash, crc, chain_ok)
		VALUES ($1, 1, 5, 1, sha256('stray'), 0, false)`, good)
	if rep, err := s.Verify(ctx, good.String()); err != nil || rep.Epochs[0].Batches != 12000 || len(rep.Epochs[0].BrokenLinks) != 0 {
		t.Fatalf("verify with a row below the pruned prefix: %+v, %v", rep, err)
	}
	held, err := s.LedgerHeld(ctx, good.String(), 1, 3)
	if err != nil || held.Through != 12000 || held.PrevMissing {
		t.Fatalf("LedgerHeld from 3: %+v, %v; want through 12,000 (the pruned prefix, then the rows)", held, err)
	}
	exec(`UPDATE audit_ledger SET first_ts = now() - interval '40 days', last_ts = now() - interval '40 days' WHERE node_id = $1 AND seq = 11000`, good)
	if m, err := s.MaintainPartitions(ctx, 7); err != nil || m.Pruned != 1001 {
		t.Fatalf("second maintenance: %+v, %v; want seq 11,000 through 11,999 and the stray row pruned", m, err)
	}
	if n := count(t, pool, `SELECT count(*) FROM audit_ledger WHERE node_id = $1 AND seq <= 11999`, good); n != 0 {
		t.Fatalf("%d rows of the good node left at or below the pruned prefix", n)
	}
}
