package auditdb_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mcpgw/mcpgw/internal/audit"
	"github.com/mcpgw/mcpgw/internal/auditdb"
	"github.com/mcpgw/mcpgw/internal/pgtest"
)

const node = "0190c0de-0000-7000-8000-0000000000aa"

func event(ts time.Time, i int) audit.Event {
	st, dec := audit.StatusOK, audit.DecisionAllow
	if i%3 == 2 {
		st, dec = audit.StatusDenied, audit.DecisionDeny
	}
	return audit.Event{
		ID: audit.NewID(ts), TS: ts, NodeID: node, SessionID: "sess", Principal: []string{"alice", "bob"}[i%2],
		Transport: audit.TransportHTTP, ProtocolVersion: "2025-11-25", ClientName: "claude", ClientVersion: "1.0",
		Method: "tools/call", Backend: []string{"github", "search"}[i%2], Name: fmt.Sprintf("tool%d", i%5),
		Decision: dec, Rule: "r1", PolicyRevision: 3, Status: st, Error: "",
		LatencyUS: int64(i), UpstreamLatencyUS: 5, RequestBytes: 10, ResponseBytes: 20,
		ArgsSHA256: strings.Repeat("ab", 32), TraceID: "t",
	}
}

// chain seals n batches of the given events per batch, linked by hash.
func chain(epoch, from int64, prev [32]byte, events [][]audit.Event) []auditdb.Batch {
	var out []auditdb.Batch
	for i, evs := range events {
		b := auditdb.Batch{Epoch: epoch, Seq: from + int64(i), PrevHash: prev}
		for _, e := range evs {
			b.Lines = append(e.AppendJSON(b.Lines), '\n')
			b.Count++
		}
		b.CRC = auditdb.CRC32C(b.Lines)
		prev = b.Hash()
		out = append(out, b)
	}
	return out
}

func evts(ts time.Time, n, from int) []audit.Event {
	out := make([]audit.Event, n)
	for i := range out {
		out[i] = event(ts.Add(time.Duration(from+i)*time.Millisecond), from+i)
	}
	return out
}

func newStore(t testing.TB) (*auditdb.Store, *pgxpool.Pool) {
	pool := pgtest.NewPool(t, pgtest.NewDatabase(t))
	return auditdb.New(pool, auditdb.Options{}), pool
}

func count(t *testing.T, pool *pgxpool.Pool, sql string, args ...any) int64 {
	t.Helper()
	var n int64
	if err := pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// Ingesting the same batch twice (a replay after a lost ack) stores it once.
func TestIngestIsExactlyOnce(t *testing.T) {
	s, pool := newStore(t)
	ctx := context.Background()
	now := time.Now().UTC()
	bs := chain(1, 1, [32]byte{}, [][]audit.Event{evts(now, 10, 0), evts(now, 5, 10)})
	res, err := s.Ingest(ctx, node, bs...)
	if err != nil {
		t.Fatal(err)
	}
	if res.Batches != 2 || res.Events != 15 || res.Duplicates != 0 || res.ChainBreaks != 0 {
		t.Fatalf("first ingest: %+v", res)
	}
	// The replay overlaps: batch 1 again plus a new batch 2.
	more := chain(1, 3, bs[1].Hash(), [][]audit.Event{evts(now, 3, 15)})
	res, err = s.Ingest(ctx, node, bs[1], more[0])
	if err != nil {
		t.Fatal(err)
	}
	if res.Batches != 1 || res.Duplicates != 1 || res.Events != 3 {
		t.Fatalf("replay: %+v", res)
	}
	if n := count(t, pool, `SELECT count(*) FROM audit_events`); n != 18 {
		t.Fatalf("audit_events has %d rows, want 18", n)
	}
	if n := count(t, pool, `SELECT count(DISTINCT id) FROM audit_events`); n != 18 {
		t.Fatalf("%d distinct ids, want 18", n)
	}
	rep, err := s.Verify(ctx, node)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.ChainComplete || len(rep.Problems) != 0 {
		t.Fatalf("verify: %+v", rep)
	}
}

// A batch whose prev_hash does not match the stored previous batch is stored
// but flagged, and Verify reports it; a different batch under a known seq
// is refused.
func TestIngestFlagsBrokenChainAndRefusesForgery(t *testing.T) {
	s, pool := newStore(t)
	ctx := context.Background()
	now := time.Now().UTC()
	bs := chain(1, 1, [32]byte{}, [][]audit.Event{evts(now, 2, 0), evts(now, 2, 2), evts(now, 2, 4)})
	bs[2].PrevHash[0] ^= 0xff // link to something else
	bs[2].CRC = auditdb.CRC32C(bs[2].Lines)
	res, err := s.Ingest(ctx, node, bs...)
	if err != nil {
		t.Fatal(err)
	}
	if res.ChainBreaks != 1 {
		t.Fatalf("chain breaks = %d, want 1", res.ChainBreaks)
	}
	if n := count(t, pool, `SELECT count(*) FROM audit_ledger WHERE NOT chain_ok`); n != 1 {
		t.Fatalf("%d ledger rows flagged, want 1", n)
	}
	rep, err := s.Verify(ctx, node)
	if err != nil {
		t.Fatal(err)
	}
	if rep.ChainComplete || !slices.Equal(rep.Epochs[0].BrokenLinks, []int64{3}) {
		t.Fatalf("verify did not report the broken link: %+v", rep)
	}

	forged := chain(1, 2, bs[0].Hash(), [][]audit.Event{evts(now, 2, 100)})
	if _, err := s.Ingest(ctx, node, forged...); !errors.Is(err, auditdb.ErrConflict) {
		t.Fatalf("forged batch for a stored seq: err = %v, want ErrConflict", err)
	}

	// A batch corrupted in transit is recorded (crc_ok = false) without its events.
	bad := chain(1, 4, bs[2].Hash(), [][]audit.Event{evts(now, 2, 200)})
	bad[0].CRC ^= 1
	res, err = s.Ingest(ctx, node, bad...)
	if err != nil {
		t.Fatal(err)
	}
	if res.CRCFailures != 1 || res.Events != 0 {
		t.Fatalf("corrupted batch: %+v", res)
	}
	rep, _ = s.Verify(ctx, node)
	if !slices.Equal(rep.Epochs[0].CRCFailures, []int64{4}) || rep.ChainComplete {
		t.Fatalf("verify did not report the CRC failure: %+v", rep)
	}
	if rep.StoredEvents != rep.LedgerEvents {
		t.Fatalf("counts: stored %d, ledger %d", rep.StoredEvents, rep.LedgerEvents)
	}
}

// Events outside the accepted window are not stored, and the ledger says
// how many and why; the other events of the batch are stored.
func TestIngestRejectsEventsOutsideTheWindowWithAReason(t *testing.T) {
	s, pool := newStore(t)
	ctx := context.Background()
	now := time.Now().UTC()
	evs := evts(now, 3, 0)
	evs = append(evs, event(now.Add(48*time.Hour), 3), event(now.Add(-40*24*time.Hour), 4))
	other := event(now, 5)
	other.NodeID = uuid.NewString()
	evs = append(evs, other)
	res, err := s.Ingest(ctx, node, chain(1, 1, [32]byte{}, [][]audit.Event{evs})...)
	if err != nil {
		t.Fatal(err)
	}
	if res.Events != 3 || res.Rejected != 3 {
		t.Fatalf("%+v, want 3 stored and 3 rejected", res)
	}
	var reason string
	if err := pool.QueryRow(ctx, `SELECT rejected_reason FROM audit_ledger`).Scan(&reason); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"1 too far in the future", "1 older than the retention period", "1 node_id is not the sending node"} {
		if !strings.Contains(reason, want) {
			t.Fatalf("reason %q lacks %q", reason, want)
		}
	}
	rep, err := s.Verify(ctx, node)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Rejected != 3 || rep.StoredEvents != 3 || rep.LedgerEvents != 3 {
		t.Fatalf("verify: %+v", rep)
	}
}

// Partitions for the batch's days are created on demand (within the window).
func TestIngestCreatesPartitions(t *testing.T) {
	s, pool := newStore(t)
	ctx := context.Background()
	old := time.Now().UTC().Add(-20 * 24 * time.Hour) // before the migration's window
	if _, err := s.Ingest(ctx, node, chain(1, 1, [32]byte{}, [][]audit.Event{evts(old, 4, 0)})...); err != nil {
		t.Fatal(err)
	}
	part := "audit_events_p" + old.Format("20060102")
	if n := count(t, pool, `SELECT count(*) FROM `+part); n != 4 {
		t.Fatalf("%s has %d rows, want 4", part, n)
	}
}

// Verify reports missing batches and recorded drops.
func TestVerifyReportsGaps(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	now := time.Now().UTC()
	bs := chain(5, 1, [32]byte{}, [][]audit.Event{evts(now, 1, 0), evts(now, 1, 1), evts(now, 1, 2), evts(now, 1, 3), nil})
	// The last batch is a gap record: 7 events dropped at the edge.
	bs[4].DroppedBefore, bs[4].GapFirst, bs[4].GapLast = 7, now, now.Add(time.Second)
	bs[4].CRC = auditdb.CRC32C(bs[4].Lines)
	// Batch 2 never arrives.
	if _, err := s.Ingest(ctx, node, bs[0], bs[1], bs[3], bs[4]); err != nil {
		t.Fatal(err)
	}
	rep, err := s.Verify(ctx, node)
	if err != nil {
		t.Fatal(err)
	}
	e := rep.Epochs[0]
	if rep.ChainComplete || !slices.Equal(e.Missing, []auditdb.SeqRange{{3, 3}}) || rep.Dropped != 7 {
		t.Fatalf("verify: %+v", rep)
	}
	if len(e.BrokenLinks) != 0 {
		t.Fatalf("links after a gap are not checkable and must not be reported broken: %v", e.BrokenLinks)
	}
	t.Logf("problems: %q", rep.Problems)
	// Once it arrives the chain is complete; the drop is still reported.
	if _, err := s.Ingest(ctx, node, bs[2]); err != nil {
		t.Fatal(err)
	}
	rep, _ = s.Verify(ctx, node)
	if !rep.ChainComplete || rep.Dropped != 7 || len(rep.Problems) != 1 {
		t.Fatalf("verify after the late batch: %+v", rep)
	}
	// The drop says when it happened (to the microsecond the edge sent).
	gaps := rep.Epochs[0].Gaps
	if len(gaps) != 1 || gaps[0].Seq != 5 || gaps[0].Events != 7 ||
		!gaps[0].First.Equal(now.Truncate(time.Microsecond)) || !gaps[0].Last.Equal(now.Add(time.Second).Truncate(time.Microsecond)) {
		t.Fatalf("gaps %+v, want seq 5, 7 events, %v..%v", gaps, now, now.Add(time.Second))
	}
	if p := rep.Problems[0]; !strings.Contains(p, "7 events dropped") || !strings.Contains(p, now.Truncate(time.Microsecond).Format(time.RFC3339Nano)) {
		t.Fatalf("problem line lacks the gap's span: %q", p)
	}
}

func TestQueryFiltersAndPaginates(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	base := time.Now().UTC().Truncate(time.Second).Add(-time.Hour)
	all := evts(base, 60, 0)
	if _, err := s.Ingest(ctx, node, chain(1, 1, [32]byte{}, [][]audit.Event{all[:30], all[30:]})...); err != nil {
		t.Fatal(err)
	}
	// Every page in order, newest first, no duplicates.
	var got []audit.Event
	tok := ""
	pages := 0
	for {
		page, next, err := s.Query(ctx, auditdb.Filter{}, tok, 7)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, page...)
		pages++
		if next == "" {
			break
		}
		tok = next
	}
	if len(got) != 60 || pages != 9 {
		t.Fatalf("%d events in %d pages, want 60 in 9", len(got), pages)
	}
	for i := range got {
		want := all[59-i]
		want.TS = want.TS.Truncate(time.Microsecond)
		if got[i] != want {
			t.Fatalf("event %d:\n got %+v\nwant %+v", i, got[i], want)
		}
	}
	cases := []struct {
		f    auditdb.Filter
		want int
	}{
		{auditdb.Filter{Principal: "alice"}, 30},
		{auditdb.Filter{Backend: "search", Decision: "deny"}, 10},
		{auditdb.Filter{Status: "denied"}, 20},
		{auditdb.Filter{Name: "tool3"}, 12},
		{auditdb.Filter{Method: "tools/call", Node: node}, 60},
		{auditdb.Filter{Node: uuid.NewString()}, 0},
		{auditdb.Filter{Since: base.Add(10 * time.Millisecond), Until: base.Add(20 * time.Millisecond)}, 10},
	}
	for _, c := range cases {
		page, _, err := s.Query(ctx, c.f, "", 1000)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) != c.want {
			t.Errorf("filter %+v: %d events, want %d", c.f, len(page), c.want)
		}
	}
	for _, bad := range []auditdb.Filter{{Status: "OK"}, {Decision: "maybe"}, {Node: "n1"}} {
		if _, _, err := s.Query(ctx, bad, "", 10); err == nil {
			t.Errorf("filter %+v accepted", bad)
		}
	}
	if _, _, err := s.Query(ctx, auditdb.Filter{}, "!!", 10); err == nil {
		t.Error("malformed page token accepted")
	}
}

// Batches of several nodes in one call (the control plane coalescing
// streams) are stored per node, each chain verified on its own.
func TestIngestAllCoalescesNodes(t *testing.T) {
	s, pool := newStore(t)
	ctx := context.Background()
	now := time.Now().UTC()
	other := "0190c0de-0000-7000-8000-0000000000bb"
	evB := evts(now, 4, 0)
	for i := range evB {
		evB[i].NodeID = other
	}
	res, err := s.IngestAll(ctx,
		auditdb.NodeBatches{Node: node, Batches: chain(1, 1, [32]byte{}, [][]audit.Event{evts(now, 3, 0), evts(now, 2, 3)})},
		auditdb.NodeBatches{Node: other, Batches: chain(9, 1, [32]byte{}, [][]audit.Event{evB})},
	)
	if err != nil {
		t.Fatal(err)
	}
	if res.Batches != 3 || res.Events != 9 || res.ChainBreaks != 0 {
		t.Fatalf("%+v", res)
	}
	nodes, err := s.Nodes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(nodes, []string{node, other}) {
		t.Fatalf("nodes %v", nodes)
	}
	for n, want := range map[string]int64{node: 5, other: 4} {
		rep, err := s.Verify(ctx, n)
		if err != nil {
			t.Fatal(err)
		}
		if !rep.ChainComplete || rep.StoredEvents != want {
			t.Fatalf("%s: %+v", n, rep)
		}
		if got := count(t, pool, `SELECT count(*) FROM audit_events WHERE node_id = $1`, n); got != want {
			t.Fatalf("%s has %d rows, want %d", n, got, want)
		}
	}
}

// TailAudit's poll reads the ledger by received_at; migration 0004's BRIN
// index is what keeps that from scanning the whole ledger. The planner
// prefers a scan on a table this small, so seq scans are priced out to see
// that the index exists and serves the tail's predicate.
func TestTailPollCanUseTheLedgerIndex(t *testing.T) {
	ctx := t.Context()
	pool := pgtest.NewPool(t, pgtest.NewDatabase(t))
	conn, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `SET enable_seqscan = off`); err != nil {
		t.Fatal(err)
	}
	defer func() { _, _ = conn.Exec(context.WithoutCancel(ctx), `RESET enable_seqscan`) }()
	rows, err := conn.Query(ctx, `EXPLAIN SELECT node_id, epoch, seq FROM audit_ledger
		WHERE received_at >= now() - interval '15 seconds' AND crc_ok AND first_ts IS NOT NULL ORDER BY received_at`)
	if err != nil {
		t.Fatal(err)
	}
	var plan strings.Builder
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			t.Fatal(err)
		}
		plan.WriteString(line + "\n")
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(plan.String(), "audit_ledger_received_at_brin") {
		t.Fatalf("the tail's ledger poll does not use the received_at index:\n%s", plan.String())
	}
}

// One call may carry the same batch twice (a resend queued behind the
// original) and batches whose predecessor is in the same call: the
// duplicate is stored once and counted, links within the call are checked
// like links to stored rows, and a different batch under a key the call
// itself inserts is a conflict.
func TestIngestOneCallWithRepeatsAndLinks(t *testing.T) {
	s, pool := newStore(t)
	ctx := context.Background()
	now := time.Now().UTC()
	bs := chain(2, 1, [32]byte{}, [][]audit.Event{evts(now, 2, 0), evts(now, 2, 2), evts(now, 2, 4), evts(now, 2, 6)})
	bs[3].PrevHash[5] ^= 1 // seq 4 does not link to seq 3
	res, err := s.Ingest(ctx, node, bs[0], bs[1], bs[1], bs[2], bs[3])
	if err != nil {
		t.Fatal(err)
	}
	if res.Batches != 4 || res.Duplicates != 1 || res.Events != 8 || res.ChainBreaks != 1 {
		t.Fatalf("result %+v, want 4 new batches, 1 duplicate, 8 events, 1 chain break", res)
	}
	if n := count(t, pool, `SELECT count(*) FROM audit_ledger WHERE NOT chain_ok AND seq = 4`); n != 1 {
		t.Fatalf("seq 4 not flagged (%d rows)", n)
	}
	rep, err := s.Verify(ctx, node)
	if err != nil || !slices.Equal(rep.Epochs[0].BrokenLinks, []int64{4}) || rep.StoredEvents != 8 {
		t.Fatalf("verify: %+v %v", rep, err)
	}

	// In one call: a new seq 5 and a different batch also claiming seq 5.
	next := chain(2, 5, bs[3].Hash(), [][]audit.Event{evts(now, 1, 8)})
	forged := chain(2, 5, bs[3].Hash(), [][]audit.Event{evts(now, 1, 9)})
	if _, err := s.Ingest(ctx, node, next[0], forged[0]); !errors.Is(err, auditdb.ErrConflict) {
		t.Fatalf("two different batches under one seq in one call: %v, want ErrConflict", err)
	}
	if n := count(t, pool, `SELECT count(*) FROM audit_ledger WHERE seq = 5`); n != 0 {
		t.Fatalf("a failed call left %d ledger rows", n)
	}
}
