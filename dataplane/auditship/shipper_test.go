package auditship_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc"

	"github.com/mcpgw/mcpgw/controlplane/ingest"
	mcpgwv1 "github.com/mcpgw/mcpgw/gen/mcpgw/v1"
	"github.com/mcpgw/mcpgw/internal/audit"
	"github.com/mcpgw/mcpgw/internal/auditdb"
)

// Batches shipped by an edge reach audit_events exactly once although the
// control plane dies mid-stream (batches in flight, acks lost), the edge
// keeps spooling meanwhile, and the edge later restarts and replays its
// spool from the start (its cursor gone): the hello's ack tells it the
// ledger has everything, so nothing is sent or stored twice.
func TestShipExactlyOnceAcrossCutAndReplay(t *testing.T) {
	e := newEnv(t)
	cp1 := e.startCP("127.0.0.1:0", nil)
	node := uuid.NewString()
	conn := e.nodeConn(node, cp1.addr)
	dir := t.TempDir()
	ed := startEdge(t, node, dir, conn)

	var (
		mu  sync.Mutex
		ids []uuid.UUID
	)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 100 {
				got := ed.record(t, 1)
				mu.Lock()
				ids = append(ids, got...)
				mu.Unlock()
				time.Sleep(time.Millisecond)
			}
		})
	}
	waitFor(t, 10*time.Second, "some events are committed", func() bool { r, _ := e.counts(node); return r > 0 })
	cp1.stop() // cut while the edges keep recording
	wg.Wait()
	if rows, _ := e.counts(node); rows == len(ids) {
		t.Logf("note: everything was committed before the cut (%d rows)", rows)
	}
	cp2 := e.startCP(cp1.addr, nil)
	waitFor(t, 20*time.Second, "every event is committed after the cut", func() bool { r, _ := e.counts(node); return r >= len(ids) })
	sessionsBefore := ed.shipper.Stats().Sessions
	if sessionsBefore < 2 {
		t.Errorf("shipper opened %d streams, want a reconnect after the cut", sessionsBefore)
	}

	// Restart the edge from its state dir without its cursor: the spool
	// replays every batch from the oldest segment.
	ed.stop()
	if err := os.Remove(filepath.Join(dir, "cursor-controlplane")); err != nil {
		t.Fatal(err)
	}
	ed2 := startEdge(t, node, dir, conn)
	more := ed2.record(t, 50)
	ids = append(ids, more...)
	waitFor(t, 20*time.Second, "the restarted edge's events are committed", func() bool { r, _ := e.counts(node); return r >= len(ids) })
	time.Sleep(200 * time.Millisecond) // a late duplicate would show now

	rows, distinct := e.counts(node)
	t.Logf("recorded %d events; audit_events holds %d rows, %d distinct ids; duplicates acked without storing: %d",
		len(ids), rows, distinct, cp1.ing.Stats().Duplicates+cp2.ing.Stats().Duplicates)
	if rows != len(ids) || distinct != len(ids) {
		t.Fatalf("audit_events holds %d rows (%d distinct) for %d recorded events", rows, distinct, len(ids))
	}
	var missing int
	if err := e.direct.QueryRow(t.Context(), `SELECT count(*) FROM unnest($1::uuid[]) AS r(id)
		WHERE NOT EXISTS (SELECT 1 FROM audit_events e WHERE e.id = r.id)`, ids).Scan(&missing); err != nil {
		t.Fatal(err)
	}
	if missing != 0 {
		t.Fatalf("%d recorded events are not in audit_events", missing)
	}
	rep, err := e.store.Verify(t.Context(), node)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.ChainComplete {
		t.Fatalf("chain not complete: %v", rep.Problems)
	}
}

// sealed builds a chain of spool batches as an edge would seal them.
type sealed struct {
	hash [32]byte
	b    auditdb.Batch
}

func sealChain(node string, epoch int64, perBatch int, n int) []sealed {
	var out []sealed
	var prev [32]byte
	for seq := int64(1); seq <= int64(n); seq++ {
		b := auditdb.Batch{Epoch: epoch, Seq: seq, PrevHash: prev}
		for i := range perBatch {
			now := time.Now()
			ev := audit.Event{ID: audit.NewID(now), TS: now, NodeID: node, Principal: "alice", Transport: audit.TransportHTTP,
				Method: "tools/call", Name: "t", Decision: audit.DecisionAllow, Status: audit.StatusOK, LatencyUS: int64(i)}
			b.Lines = append(ev.AppendJSON(b.Lines), '\n')
			b.Count++
		}
		b.CRC = auditdb.CRC32C(b.Lines)
		s := sealed{b: b, hash: b.Hash()}
		prev = s.hash
		out = append(out, s)
	}
	return out
}

func (s sealed) msg() *mcpgwv1.AuditStreamRequest {
	wb := &mcpgwv1.AuditBatch{
		Seq: uint64(s.b.Seq), Payload: s.b.Lines, PayloadEncoding: mcpgwv1.PayloadEncoding_PAYLOAD_ENCODING_JSONL,
		EventCount: uint32(s.b.Count), Crc32C: s.b.CRC, Hash: s.hash[:],
	}
	if s.b.HasPrev() {
		wb.PrevHash = s.b.PrevHash[:]
	}
	return &mcpgwv1.AuditStreamRequest{Msg: &mcpgwv1.AuditStreamRequest_Batch{Batch: wb}}
}

type rawStream struct {
	t *testing.T
	s grpc.BidiStreamingClient[mcpgwv1.AuditStreamRequest, mcpgwv1.AuditStreamResponse]
}

func openRaw(t *testing.T, conn grpc.ClientConnInterface, epoch, next uint64) *rawStream {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	t.Cleanup(cancel)
	s, err := mcpgwv1.NewNodeServiceClient(conn).AuditStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(&mcpgwv1.AuditStreamRequest{Msg: &mcpgwv1.AuditStreamRequest_Hello{Hello: &mcpgwv1.AuditHello{SpoolEpoch: epoch, NextUnackedSeq: next}}}); err != nil {
		t.Fatal(err)
	}
	return &rawStream{t: t, s: s}
}

func (r *rawStream) send(m *mcpgwv1.AuditStreamRequest) {
	r.t.Helper()
	if err := r.s.Send(m); err != nil {
		r.t.Fatal(err)
	}
}

// untilAck reads messages until an ack of at least seq, returning the
// notices seen on the way.
func (r *rawStream) untilAck(seq uint64) []*mcpgwv1.AuditNotice {
	r.t.Helper()
	var notices []*mcpgwv1.AuditNotice
	for {
		m, err := r.s.Recv()
		if err != nil {
			r.t.Fatalf("waiting for ack %d: %v", seq, err)
		}
		if n := m.GetNotice(); n != nil {
			notices = append(notices, n)
		}
		if a := m.GetAck(); a != nil && a.GetAckedThroughSeq() >= seq {
			return notices
		}
	}
}

// A batch sent again (its ack was lost, or the edge replays) is acked and
// stored once; the hello after a reconnect already acks what the ledger has.
func TestSameBatchTwiceInsertsOnce(t *testing.T) {
	e := newEnv(t)
	cp := e.startCP("127.0.0.1:0", nil)
	node := uuid.NewString()
	conn := e.nodeConn(node, cp.addr)
	bs := sealChain(node, 42, 10, 2)

	r := openRaw(t, conn, 42, 1)
	r.untilAck(0)
	r.send(bs[0].msg())
	r.untilAck(1)
	r.s.CloseSend()

	// As if the ack had been lost: the edge still holds batch 1.
	r2 := openRaw(t, conn, 42, 1)
	m, err := r2.s.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if got := m.GetAck().GetAckedThroughSeq(); got != 1 {
		t.Fatalf("hello answered with %v, want ack 1 (what the ledger holds)", m)
	}
	r2.send(bs[0].msg()) // allowed: the stream starts at next_unacked_seq
	r2.send(bs[1].msg())
	r2.untilAck(2)

	rows, distinct := e.counts(node)
	if rows != 20 || distinct != 20 {
		t.Fatalf("audit_events holds %d rows (%d distinct), want 20", rows, distinct)
	}
	if st := cp.ing.Stats(); st.Duplicates != 1 || st.Batches != 2 {
		t.Fatalf("stats %+v, want 2 batches and 1 duplicate", st)
	}
}

// A forged batch (prev_hash not linking) is stored but flagged; a tampered
// one (payload changed after its CRC) is recorded without its events. The
// edge hears of both, and Verify reports both.
func TestForgedAndTamperedBatchesAreFlagged(t *testing.T) {
	e := newEnv(t)
	cp := e.startCP("127.0.0.1:0", nil)
	node := uuid.NewString()
	conn := e.nodeConn(node, cp.addr)
	bs := sealChain(node, 7, 5, 3)

	forged := bs[1]
	forged.b.PrevHash = [32]byte{1, 2, 3}
	forged.hash = forged.b.Hash()

	tampered := bs[2]
	tampered.b.Lines = bytes.Replace(bytes.Clone(tampered.b.Lines), []byte(`"alice"`), []byte(`"mallory"`), 1)
	tm := tampered.msg() // still with the CRC and hash of what was sealed

	r := openRaw(t, conn, 7, 1)
	r.untilAck(0)
	r.send(bs[0].msg())
	r.send(forged.msg())
	r.send(tm)
	notices := r.untilAck(3)
	codes := map[uint64][]mcpgwv1.AuditNoticeCode{}
	for _, n := range notices {
		codes[n.GetSeq()] = append(codes[n.GetSeq()], n.GetCode())
	}
	if len(codes[2]) == 0 || codes[2][0] != mcpgwv1.AuditNoticeCode_AUDIT_NOTICE_CODE_CHAIN_BROKEN {
		t.Errorf("notices for the forged batch: %v, want CHAIN_BROKEN", codes[2])
	}
	if len(codes[3]) == 0 || codes[3][0] != mcpgwv1.AuditNoticeCode_AUDIT_NOTICE_CODE_CRC_MISMATCH {
		t.Errorf("notices for the tampered batch: %v, want CRC_MISMATCH", codes[3])
	}

	rows, _ := e.counts(node)
	if rows != 10 {
		t.Errorf("audit_events holds %d rows, want 10 (the good and the forged batch, not the tampered one)", rows)
	}
	var mallory int
	if err := e.direct.QueryRow(t.Context(), `SELECT count(*) FROM audit_events WHERE principal = 'mallory'`).Scan(&mallory); err != nil {
		t.Fatal(err)
	}
	if mallory != 0 {
		t.Errorf("%d tampered events were stored", mallory)
	}
	rep, err := e.store.Verify(t.Context(), node)
	if err != nil {
		t.Fatal(err)
	}
	if rep.ChainComplete || len(rep.Epochs) != 1 {
		t.Fatalf("verify: %+v, want an incomplete chain in one epoch", rep)
	}
	ep := rep.Epochs[0]
	if len(ep.BrokenLinks) == 0 || ep.BrokenLinks[0] != 2 {
		t.Errorf("broken links %v, want seq 2", ep.BrokenLinks)
	}
	if len(ep.CRCFailures) != 1 || ep.CRCFailures[0] != 3 {
		t.Errorf("CRC failures %v, want seq 3", ep.CRCFailures)
	}
	t.Logf("verify problems: %v", rep.Problems)
}

// With Postgres unreachable the control plane pauses the edge and acks
// nothing; the edge keeps spooling, and everything arrives, once, when
// Postgres is back.
func TestPostgresDownPausesAndRecovers(t *testing.T) {
	e := newEnv(t)
	cp := e.startCP("127.0.0.1:0", func(c *ingest.Config) { c.CommitTimeout = 2 * time.Second })
	node := uuid.NewString()
	conn := e.nodeConn(node, cp.addr)
	ed := startEdge(t, node, t.TempDir(), conn)

	ids := ed.record(t, 20)
	waitFor(t, 10*time.Second, "the first events are committed", func() bool { r, _ := e.counts(node); return r == len(ids) })
	acked := ed.shipper.Stats().BatchesAcked

	e.proxy.setUp(false)
	ids = append(ids, ed.record(t, 30)...)
	waitFor(t, 15*time.Second, "the control plane pauses the edge", func() bool {
		return cp.ing.Stats().Pauses > 0 && ed.shipper.Stats().Pauses > 0
	})
	time.Sleep(500 * time.Millisecond)
	if got := ed.shipper.Stats().BatchesAcked; got != acked {
		t.Fatalf("%d batches acked while Postgres was down", got-acked)
	}
	if rows, _ := e.counts(node); rows != 20 {
		t.Fatalf("%d rows while the control plane's Postgres was down, want 20", rows)
	}

	e.proxy.setUp(true)
	waitFor(t, 20*time.Second, "the spooled events arrive", func() bool { r, _ := e.counts(node); return r >= len(ids) })
	time.Sleep(200 * time.Millisecond)
	rows, distinct := e.counts(node)
	t.Logf("pauses sent %d, received %d; rows %d distinct %d", cp.ing.Stats().Pauses, ed.shipper.Stats().Pauses, rows, distinct)
	if rows != len(ids) || distinct != len(ids) {
		t.Fatalf("audit_events holds %d rows (%d distinct) for %d events", rows, distinct, len(ids))
	}
}

// A slow database narrows the edge's window to one batch; shipping still
// makes progress and stores everything once.
func TestSlowDatabaseNarrowsTheWindow(t *testing.T) {
	e := newEnv(t)
	cp := e.startCP("127.0.0.1:0", func(c *ingest.Config) { c.SlowCommit = time.Nanosecond })
	node := uuid.NewString()
	ed := startEdge(t, node, t.TempDir(), e.nodeConn(node, cp.addr))
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() { ed.record(t, 50) })
	}
	wg.Wait()
	waitFor(t, 20*time.Second, "every event is committed", func() bool { r, _ := e.counts(node); return r >= 200 })
	rows, distinct := e.counts(node)
	if rows != 200 || distinct != 200 {
		t.Fatalf("audit_events holds %d rows (%d distinct), want 200", rows, distinct)
	}
	if cp.ing.Stats().Pauses == 0 {
		t.Fatal("the control plane never narrowed the window although every commit was slow")
	}
}
