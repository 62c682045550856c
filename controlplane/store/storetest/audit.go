package storetest

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/mcpgw/mcpgw/internal/audit"
	"github.com/mcpgw/mcpgw/internal/auditdb"
)

const auditNode = "0190c0de-0000-7000-8000-0000000000aa"

func auditEvent(ts time.Time, i int) audit.Event {
	st, dec := audit.StatusOK, audit.DecisionAllow
	if i%3 == 2 {
		st, dec = audit.StatusDenied, audit.DecisionDeny
	}
	return audit.Event{
		ID: audit.NewID(ts), TS: ts, NodeID: auditNode, SessionID: "sess", Principal: []string{"alice", "bob"}[i%2],
		Transport: audit.TransportHTTP, ProtocolVersion: "2025-11-25", ClientName: "claude", ClientVersion: "1.0",
		Method: "tools/call", Backend: []string{"github", "search"}[i%2], Name: fmt.Sprintf("tool%d", i%5),
		Decision: dec, Rule: "r1", PolicyRevision: 3, Status: st,
		LatencyUS: int64(i), UpstreamLatencyUS: 5, RequestBytes: 10, ResponseBytes: 20,
		ArgsSHA256: strings.Repeat("ab", 32), TraceID: "t",
	}
}

// events makes n events a millisecond apart from start, numbered from.
func events(start time.Time, n, from int) []audit.Event {
	out := make([]audit.Event, n)
	for i := range out {
		out[i] = auditEvent(start.Add(time.Duration(from+i)*time.Millisecond), from+i)
	}
	return out
}

// chain seals one batch per element of evs, seqs from `from`, linked by
// hash from prev.
func chain(epoch, from int64, prev [32]byte, evs ...[]audit.Event) []auditdb.Batch {
	var out []auditdb.Batch
	for i, es := range evs {
		b := auditdb.Batch{Epoch: epoch, Seq: from + int64(i), PrevHash: prev}
		for _, e := range es {
			b.Lines = append(e.AppendJSON(b.Lines), '\n')
			b.Count++
		}
		b.CRC = auditdb.CRC32C(b.Lines)
		prev = b.Hash()
		out = append(out, b)
	}
	return out
}

func ingestOK(t *testing.T, s Store, batches ...auditdb.Batch) auditdb.Result {
	t.Helper()
	res, err := s.IngestAll(t.Context(), auditdb.NodeBatches{Node: auditNode, Batches: batches})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func countAll(t *testing.T, s Store, f auditdb.Filter) []audit.Event {
	t.Helper()
	var all []audit.Event
	tok := ""
	for range 100 {
		page, next, err := s.Query(t.Context(), f, tok, 7)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, page...)
		if next == "" {
			return all
		}
		tok = next
	}
	t.Fatal("pagination did not end")
	return nil
}

func testAuditExactlyOnce(t *testing.T, s Store) {
	start := time.Now().Add(-time.Minute).UTC().Truncate(time.Millisecond)
	bs := chain(1, 1, [32]byte{}, events(start, 5, 0), events(start, 4, 5))
	if res := ingestOK(t, s, bs...); res.Batches != 2 || res.Events != 9 || res.Duplicates != 0 || res.ChainBreaks != 0 {
		t.Fatalf("first ingest: %+v", res)
	}
	// The same batches again (a retry after a lost ack) store nothing.
	if res := ingestOK(t, s, bs...); res.Batches != 0 || res.Events != 0 || res.Duplicates != 2 {
		t.Fatalf("replay: %+v", res)
	}
	if got := countAll(t, s, auditdb.Filter{}); len(got) != 9 {
		t.Fatalf("%d events stored after a replay, want 9", len(got))
	}
	// A different batch under a stored seq is a conflict and stores nothing.
	forged := chain(1, 2, bs[0].Hash(), events(start, 3, 50))
	if _, err := s.IngestAll(t.Context(), auditdb.NodeBatches{Node: auditNode, Batches: append(chain(1, 3, bs[1].Hash(), events(start, 1, 60)), forged...)}); !errors.Is(err, auditdb.ErrConflict) {
		t.Fatalf("forged batch: %v, want ErrConflict", err)
	}
	if got := countAll(t, s, auditdb.Filter{}); len(got) != 9 {
		t.Fatalf("%d events after a refused call, want 9 (nothing of the call stored)", len(got))
	}
	held, err := s.LedgerHeld(t.Context(), auditNode, 1, 1)
	if err != nil || held.Through != 2 || held.PrevMissing {
		t.Fatalf("LedgerHeld(1): %+v, %v", held, err)
	}
	rows, err := s.LedgerRows(t.Context(), auditNode, 1, 1, 5)
	if err != nil || len(rows) != 2 || rows[0].Seq != 1 || rows[1].EventCount != 4 || !rows[1].ChainOK || !rows[1].CRCOK || rows[0].ReceivedAt.IsZero() {
		t.Fatalf("LedgerRows: %+v, %v", rows, err)
	}
	// A batch corrupted in transit is recorded, its events refused.
	bad := chain(1, 3, bs[1].Hash(), events(start, 2, 70))
	bad[0].CRC++
	if res := ingestOK(t, s, bad...); res.CRCFailures != 1 || res.Events != 0 || res.Rejected != 2 {
		t.Fatalf("corrupt batch: %+v", res)
	}
	// Events of another node or outside the window are refused and counted.
	odd := events(start, 3, 80)
	odd[0].NodeID = uuid.NewString()
	odd[1].TS = time.Now().Add(-400 * 24 * time.Hour)
	if res := ingestOK(t, s, chain(2, 1, [32]byte{}, odd)...); res.Events != 1 || res.Rejected != 2 {
		t.Fatalf("odd events: %+v", res)
	}
	if _, err := s.IngestAll(t.Context(), auditdb.NodeBatches{Node: "not-a-uuid", Batches: bs}); err == nil {
		t.Fatal("a node that is not a UUID was accepted")
	}
}

func testAuditQuery(t *testing.T, s Store) {
	start := time.Now().Add(-time.Hour).UTC().Truncate(time.Millisecond)
	var evs [][]audit.Event
	for i := range 6 {
		evs = append(evs, events(start, 10, 10*i))
	}
	ingestOK(t, s, chain(1, 1, [32]byte{}, evs...)...)

	all := countAll(t, s, auditdb.Filter{})
	if len(all) != 60 {
		t.Fatalf("paged through %d events, want 60", len(all))
	}
	for i := 1; i < len(all); i++ {
		if !all[i].TS.Before(all[i-1].TS) && !(all[i].TS.Equal(all[i-1].TS) && all[i].ID.String() < all[i-1].ID.String()) {
			t.Fatalf("events %d and %d out of newest-first order", i-1, i)
		}
	}
	first, want := all[len(all)-1], evs[0][0]
	if first.ID != want.ID || !first.TS.Equal(want.TS) || first.Principal != "alice" || first.ArgsSHA256 != want.ArgsSHA256 ||
		first.PolicyRevision != 3 || first.UpstreamLatencyUS != 5 || first.NodeID != auditNode || first.ClientName != "claude" {
		t.Fatalf("oldest event read back as %+v, want %+v", first, want)
	}
	for _, c := range []struct {
		name string
		f    auditdb.Filter
		want int
	}{
		{"principal", auditdb.Filter{Principal: "bob"}, 30},
		{"denied", auditdb.Filter{Status: audit.StatusDenied}, 20},
		{"deny decision and bob", auditdb.Filter{Decision: audit.DecisionDeny, Principal: "bob"}, 10},
		{"name", auditdb.Filter{Name: "tool3"}, 12},
		{"backend", auditdb.Filter{Backend: "github"}, 30},
		{"method", auditdb.Filter{Method: "tools/call"}, 60},
		{"node", auditdb.Filter{Node: auditNode}, 60},
		{"other node", auditdb.Filter{Node: uuid.NewString()}, 0},
		{"since", auditdb.Filter{Since: start.Add(50 * time.Millisecond)}, 10},
		{"until", auditdb.Filter{Until: start.Add(5 * time.Millisecond)}, 5},
	} {
		if got := countAll(t, s, c.f); len(got) != c.want {
			t.Errorf("filter %s: %d events, want %d", c.name, len(got), c.want)
		}
	}
	for name, f := range map[string]auditdb.Filter{"status": {Status: "weird"}, "decision": {Decision: "maybe"}, "node": {Node: "x"}} {
		if _, _, err := s.Query(t.Context(), f, "", 10); err == nil {
			t.Errorf("bad %s filter accepted", name)
		}
	}
	if _, _, err := s.Query(t.Context(), auditdb.Filter{}, "garbage!", 10); err == nil || !strings.Contains(err.Error(), "page token") {
		t.Errorf("bad page token: %v", err)
	}
	if _, _, err := s.Query(t.Context(), auditdb.Filter{}, "", auditdb.MaxQueryLimit+1); err == nil {
		t.Error("limit above the maximum accepted")
	}
}

func testAuditVerify(t *testing.T, s Store) {
	ctx := t.Context()
	start := time.Now().Add(-time.Minute).UTC().Truncate(time.Millisecond)
	bs := chain(1, 1, [32]byte{}, events(start, 3, 0), events(start, 3, 3), events(start, 3, 6), events(start, 3, 9))
	ingestOK(t, s, bs[0], bs[1])
	rep, err := s.Verify(ctx, auditNode)
	if err != nil || !rep.ChainComplete || rep.LedgerEvents != 6 || rep.StoredEvents != 6 || len(rep.Epochs) != 1 || rep.Epochs[0].LastSeq != 2 {
		t.Fatalf("verify of a whole chain: %+v, %v", rep, err)
	}
	// Seq 3 never arrives; seq 4 does.
	ingestOK(t, s, bs[3])
	rep, err = s.Verify(ctx, auditNode)
	if err != nil || rep.ChainComplete || len(rep.Epochs) != 1 || len(rep.Epochs[0].Missing) != 1 || rep.Epochs[0].Missing[0] != (auditdb.SeqRange{From: 3, To: 3}) {
		t.Fatalf("verify with seq 3 missing: %+v, %v", rep, err)
	}
	if !strings.Contains(strings.Join(rep.Problems, "\n"), "batches 3..3 missing") {
		t.Fatalf("problems %q do not name the gap", rep.Problems)
	}
	held, err := s.LedgerHeld(ctx, auditNode, 1, 3)
	if err != nil || held.Through != 2 || held.PrevMissing {
		t.Fatalf("LedgerHeld(3): %+v, %v", held, err)
	}
	// A batch that does not link to its predecessor is a broken link.
	other := uuid.NewString()
	forged := chain(1, 1, [32]byte{}, events(start, 1, 0), events(start, 1, 1))
	forged[1].PrevHash[0] ^= 1
	if _, err := s.IngestAll(ctx, auditdb.NodeBatches{Node: other, Batches: relabel(forged, other)}); err != nil {
		t.Fatal(err)
	}
	rep, err = s.Verify(ctx, other)
	if err != nil || rep.ChainComplete || len(rep.Epochs) != 1 || len(rep.Epochs[0].BrokenLinks) != 1 || rep.Epochs[0].BrokenLinks[0] != 2 {
		t.Fatalf("verify of a broken link: %+v, %v", rep, err)
	}
	// A loss the edge recorded (on_full: drop) is counted, not hidden.
	lossy := uuid.NewString()
	before, after := events(start, 2, 0), events(start, 2, 2)
	for i := range 2 {
		before[i].NodeID, after[i].NodeID = lossy, lossy
	}
	gap := chain(1, 1, [32]byte{}, before, after)
	gap[1].DroppedBefore = 5 // the last batch: changing its hash breaks no link
	// When the five were lost, to the microsecond the wire carries.
	gapFirst, gapLast := start.Add(-time.Minute).Truncate(time.Microsecond), start.Add(-time.Second).Truncate(time.Microsecond)
	gap[1].GapFirst, gap[1].GapLast = gapFirst, gapLast
	if _, err := s.IngestAll(ctx, auditdb.NodeBatches{Node: lossy, Batches: gap}); err != nil {
		t.Fatal(err)
	}
	rep, err = s.Verify(ctx, lossy)
	if err != nil || !rep.ChainComplete || rep.Dropped != 5 || len(rep.Epochs) != 1 || rep.Epochs[0].Dropped != 5 || rep.StoredEvents != 4 ||
		!strings.Contains(strings.Join(rep.Problems, "\n"), "dropped at the edge") {
		t.Fatalf("verify of a recorded drop: %+v, %v", rep, err)
	}
	if g := rep.Epochs[0].Gaps; len(g) != 1 || g[0].Seq != 2 || g[0].Events != 5 || !g[0].First.Equal(gapFirst) || !g[0].Last.Equal(gapLast) {
		t.Fatalf("verify lists the drop as %+v, want seq 2, 5 events, %v..%v", g, gapFirst, gapLast)
	}
	nodes, err := s.Nodes(ctx)
	if err != nil || len(nodes) != 3 {
		t.Fatalf("Nodes: %v, %v", nodes, err)
	}
	if _, err := s.Verify(ctx, "nope"); err == nil {
		t.Fatal("verify of a node that is not a UUID succeeded")
	}
}

// relabel re-seals batches with their events' node_id set to node (hashes
// are recomputed but the first PrevHash and any deliberate break in the
// links are kept).
func relabel(bs []auditdb.Batch, node string) []auditdb.Batch {
	out := make([]auditdb.Batch, len(bs))
	for i, b := range bs {
		var lines []byte
		_ = b.EachLine(func(line []byte) error {
			ev, err := audit.DecodeJSON(line)
			if err != nil {
				return err
			}
			ev.NodeID = node
			lines = append(ev.AppendJSON(lines), '\n')
			return nil
		})
		b.Lines, b.CRC = lines, auditdb.CRC32C(lines)
		out[i] = b
	}
	return out
}

func testAuditTail(t *testing.T, s Store) {
	ctx := t.Context()
	start := time.Now().Add(-time.Minute).UTC().Truncate(time.Millisecond)
	bs := chain(1, 1, [32]byte{}, events(start, 4, 0), events(start, 4, 4), events(start, 4, 8))
	ingestOK(t, s, bs[0])
	if _, err := s.OpenTail(auditdb.Filter{Status: "weird"}, 0); err == nil {
		t.Fatal("a tail with a bad filter opened")
	}
	tl, err := s.OpenTail(auditdb.Filter{Principal: "alice"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := tl.Poll(ctx); err != nil || len(got) != 0 {
		t.Fatalf("first poll returned %d events (committed before the tail), %v", len(got), err)
	}
	ingestOK(t, s, bs[1], bs[2])
	var got []audit.Event
	deadline := time.Now().Add(10 * time.Second)
	for len(got) < 4 && time.Now().Before(deadline) {
		evs, err := tl.Poll(ctx)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, evs...)
		time.Sleep(20 * time.Millisecond)
	}
	if len(got) != 4 {
		t.Fatalf("tail got %d of alice's 4 new events", len(got))
	}
	for _, e := range got {
		if e.Principal != "alice" {
			t.Fatalf("tail returned %+v, filtered on alice", e)
		}
	}
	if evs, err := tl.Poll(ctx); err != nil || len(evs) != 0 {
		t.Fatalf("tail repeated %d events, %v", len(evs), err)
	}
}

// Retention prunes the ledger rows of an epoch's expired prefix and keeps
// one row of it: a replay of a pruned batch is acknowledged and stores
// nothing (a different batch under the last pruned seq is still a
// conflict), the hello answer covers the prefix, the batch after it links
// to it, and Verify gives the same verdict and totals as before the prune,
// reporting the prefix as pruned rather than missing.
func testAuditLedgerPruning(t *testing.T, open Opener) {
	ctx := t.Context()
	var skew atomic.Int64 // added to the store's clock
	s := open(t, auditdb.Options{Now: func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }})
	old := time.Now().Add(-time.Hour).UTC().Truncate(time.Millisecond)
	var e1, e2 [][]audit.Event
	for i := range 5 {
		e1 = append(e1, events(old, 2, 2*i))
	}
	for i := range 2 {
		e2 = append(e2, events(old, 3, 100+3*i))
	}
	a1, a2 := chain(1, 1, [32]byte{}, e1...), chain(2, 1, [32]byte{}, e2...)
	ingestOK(t, s, a1...)
	ingestOK(t, s, a2...)
	// Another node whose seq 3 never arrives.
	gappy := uuid.NewString()
	var g [][]audit.Event
	for i := range 4 {
		evs := events(old, 1, 200+i)
		evs[0].NodeID = gappy
		g = append(g, evs)
	}
	b := chain(1, 1, [32]byte{}, g...)
	if _, err := s.IngestAll(ctx, auditdb.NodeBatches{Node: gappy, Batches: []auditdb.Batch{b[0], b[1], b[3]}}); err != nil {
		t.Fatal(err)
	}
	before, err := s.Verify(ctx, gappy)
	if err != nil || before.ChainComplete || len(before.Epochs) != 1 || before.Epochs[0].Missing[0] != (auditdb.SeqRange{From: 3, To: 3}) {
		t.Fatalf("verify of the gap before pruning: %+v, %v", before, err)
	}

	// Forty days on (retention is 30): epoch 1 goes on with fresh events.
	skew.Store(int64(40 * 24 * time.Hour))
	fresh := time.Now().Add(40*24*time.Hour - time.Minute).UTC().Truncate(time.Millisecond)
	a1 = append(a1, chain(1, 6, a1[4].Hash(), events(fresh, 2, 300), events(fresh, 2, 302))...)
	if res := ingestOK(t, s, a1[5:]...); res.Batches != 2 || res.Events != 4 || res.ChainBreaks != 0 {
		t.Fatalf("fresh batches: %+v", res)
	}
	pre, err := s.Verify(ctx, auditNode)
	if err != nil || !pre.ChainComplete {
		t.Fatalf("verify before pruning: %+v, %v", pre, err)
	}
	m, err := s.MaintainPartitions(ctx, 7)
	if err != nil || !m.Locked || m.Pruned != 5+2+3 {
		t.Fatalf("maintenance: %+v, %v; want the 10 expired ledger rows pruned", m, err)
	}
	if m, err := s.MaintainPartitions(ctx, 7); err != nil || m.Pruned != 0 {
		t.Fatalf("second maintenance: %+v, %v; want nothing more pruned", m, err)
	}

	rep, err := s.Verify(ctx, auditNode)
	if err != nil || !rep.ChainComplete || len(rep.Problems) != 0 || rep.LedgerEvents != 4 || rep.StoredEvents != 4 || len(rep.Epochs) != 2 {
		t.Fatalf("verify after pruning: %+v, %v", rep, err)
	}
	ep1, ep2 := rep.Epochs[0], rep.Epochs[1]
	if ep1.Epoch != 1 || ep1.FirstSeq != 1 || ep1.LastSeq != 7 || ep1.Batches != 7 || ep1.Events != 14 || len(ep1.Missing) != 0 ||
		ep1.Pruned.Through != 5 || ep1.Pruned.Batches != 5 || ep1.Pruned.Events != 10 || !ep1.Pruned.LastTS.Equal(e1[4][1].TS) {
		t.Fatalf("epoch 1 after pruning seqs 1..5: %+v", ep1)
	}
	if ep2.Epoch != 2 || ep2.FirstSeq != 1 || ep2.LastSeq != 2 || ep2.Batches != 2 || ep2.Events != 6 || ep2.Pruned.Through != 2 {
		t.Fatalf("epoch 2, pruned whole: %+v", ep2)
	}
	for i := range pre.Epochs {
		if !sameEpoch(pre.Epochs[i], rep.Epochs[i]) {
			t.Fatalf("epoch %d reads\n%+v after pruning,\n%+v before", pre.Epochs[i].Epoch, rep.Epochs[i], pre.Epochs[i])
		}
	}
	after, err := s.Verify(ctx, gappy)
	if err != nil || after.ChainComplete || len(after.Epochs) != 1 || after.Epochs[0].Pruned.Missing != 1 || after.Epochs[0].Pruned.Through != 4 ||
		!sameEpoch(after.Epochs[0], before.Epochs[0]) || !slices.Equal(after.Problems, before.Problems) {
		t.Fatalf("verify of the gap after pruning: %+v, %v; want it as before: %+v", after, err, before)
	}
	if nodes, err := s.Nodes(ctx); err != nil || len(nodes) != 2 {
		t.Fatalf("Nodes after the gappy node's rows were all pruned: %v, %v", nodes, err)
	}

	// Replays of pruned batches: acknowledged, nothing stored.
	if res := ingestOK(t, s, a1[2], a1[4]); res.Duplicates != 2 || res.Pruned != 2 || res.Batches != 0 || res.Events != 0 || res.Rejected != 0 {
		t.Fatalf("replay of pruned seqs 3 and 5: %+v", res)
	}
	forged := chain(1, 5, a1[3].Hash(), events(fresh, 2, 400))
	if _, err := s.IngestAll(ctx, auditdb.NodeBatches{Node: auditNode, Batches: forged}); !errors.Is(err, auditdb.ErrConflict) {
		t.Fatalf("a different batch under the last pruned seq: %v, want ErrConflict", err)
	}
	for _, c := range []struct {
		epoch, start, through int64
	}{{1, 1, 7}, {1, 2, 7}, {1, 6, 7}, {2, 1, 2}, {2, 3, 2}} {
		held, err := s.LedgerHeld(ctx, auditNode, c.epoch, c.start)
		if err != nil || held.Through != c.through || held.PrevMissing {
			t.Fatalf("LedgerHeld(epoch %d, from %d): %+v, %v; want through %d", c.epoch, c.start, held, err, c.through)
		}
	}

	// The batch after a pruned prefix links to it; one that does not is a
	// broken link.
	next := chain(2, 3, a2[1].Hash(), events(fresh, 2, 500))
	if res := ingestOK(t, s, next...); res.Batches != 1 || res.Events != 2 || res.ChainBreaks != 0 {
		t.Fatalf("batch after the pruned prefix: %+v", res)
	}
	bad := chain(1, 5, [32]byte{1}, []audit.Event{func() audit.Event { e := auditEvent(fresh, 600); e.NodeID = gappy; return e }()})
	if res, err := s.IngestAll(ctx, auditdb.NodeBatches{Node: gappy, Batches: bad}); err != nil || res.ChainBreaks != 1 {
		t.Fatalf("batch not linked to the pruned prefix: %+v, %v", res, err)
	}
	if rep, err := s.Verify(ctx, auditNode); err != nil || !rep.ChainComplete || rep.Epochs[1].LastSeq != 3 || rep.Epochs[1].Batches != 3 || rep.StoredEvents != 6 {
		t.Fatalf("verify after the next batch: %+v, %v", rep, err)
	}
	if rep, err := s.Verify(ctx, gappy); err != nil || rep.ChainComplete || len(rep.Epochs[0].BrokenLinks) != 1 || rep.Epochs[0].BrokenLinks[0] != 5 {
		t.Fatalf("verify after a batch not linked to the pruned prefix: %+v, %v", rep, err)
	}
}

// sameEpoch compares what a report shows of an epoch, but its Pruned.
func sameEpoch(a, b auditdb.EpochReport) bool {
	return a.Epoch == b.Epoch && a.Batches == b.Batches && a.FirstSeq == b.FirstSeq && a.LastSeq == b.LastSeq &&
		slices.Equal(a.Missing, b.Missing) && slices.Equal(a.BrokenLinks, b.BrokenLinks) && slices.Equal(a.CRCFailures, b.CRCFailures) &&
		a.Events == b.Events && a.Rejected == b.Rejected && a.Dropped == b.Dropped &&
		slices.EqualFunc(a.Gaps, b.Gaps, func(x, y auditdb.Gap) bool {
			return x.Seq == y.Seq && x.Events == y.Events && x.First.Equal(y.First) && x.Last.Equal(y.Last)
		})
}
