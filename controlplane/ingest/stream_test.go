package ingest_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mcpgw/mcpgw/controlplane/ingest"
	"github.com/mcpgw/mcpgw/controlplane/nodeapi"
	"github.com/mcpgw/mcpgw/controlplane/pki"
	"github.com/mcpgw/mcpgw/controlplane/store"
	mcpgwv1 "github.com/mcpgw/mcpgw/gen/mcpgw/v1"
	"github.com/mcpgw/mcpgw/internal/audit"
	"github.com/mcpgw/mcpgw/internal/auditdb"
	"github.com/mcpgw/mcpgw/internal/pgtest"
)

type nodeService struct {
	mcpgwv1.UnimplementedNodeServiceServer
	ing *ingest.Server
}

func (n nodeService) AuditStream(s grpc.BidiStreamingServer[mcpgwv1.AuditStreamRequest, mcpgwv1.AuditStreamResponse]) error {
	return n.ing.AuditStream(s)
}

// harness is a database, its CA, and an ingest server on a loopback port
// with the node listener's mTLS.
type harness struct {
	t     *testing.T
	ca    *pki.CA
	addr  string
	ing   *ingest.Server
	store *auditdb.Store
	pool  *pgxpool.Pool
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	pool := pgtest.NewPool(t, pgtest.NewDatabase(t))
	kek, _, _, err := pki.LoadKEK("", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ca, _, err := pki.Init(t.Context(), store.New(pool), kek)
	if err != nil {
		t.Fatal(err)
	}
	st := auditdb.New(pool, auditdb.Options{})
	ing, err := ingest.New(ingest.Config{Store: st, MaintenanceInterval: -1, HelloTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	certs, err := pki.NewServerCerts(ca, []string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(grpc.Creds(credentials.NewTLS(nodeapi.TLSConfig(certs.GetCertificate, ca.Pool()))))
	mcpgwv1.RegisterNodeServiceServer(gs, nodeService{ing: ing})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 2)
	go func() { _ = ing.Run(ctx); done <- struct{}{} }()
	go func() { _ = gs.Serve(lis); done <- struct{}{} }()
	t.Cleanup(func() { gs.Stop(); cancel(); <-done; <-done })
	return &harness{t: t, ca: ca, addr: lis.Addr().String(), ing: ing, store: st, pool: pool}
}

// client dials as node ("" = without a client certificate).
func (h *harness) client(node string) mcpgwv1.NodeServiceClient {
	t := h.t
	cfg := &tls.Config{RootCAs: h.ca.Pool(), ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
	if node != "" {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
		if err != nil {
			t.Fatal(err)
		}
		nc, err := h.ca.SignNodeCSR(csr, node, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		cert := &tls.Certificate{Certificate: [][]byte{nc.Leaf.Raw}, PrivateKey: key, Leaf: nc.Leaf}
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
	}
	conn, err := grpc.NewClient(h.addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return mcpgwv1.NewNodeServiceClient(conn)
}

type auditClient = grpc.BidiStreamingClient[mcpgwv1.AuditStreamRequest, mcpgwv1.AuditStreamResponse]

func (h *harness) open(c mcpgwv1.NodeServiceClient, msgs ...*mcpgwv1.AuditStreamRequest) auditClient {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(h.t.Context(), 15*time.Second)
	h.t.Cleanup(cancel)
	s, err := c.AuditStream(ctx)
	if err != nil {
		h.t.Fatal(err)
	}
	for _, m := range msgs {
		// io.EOF: the server already ended the stream; Recv says why.
		if err := s.Send(m); err != nil && !errors.Is(err, io.EOF) {
			h.t.Fatal(err)
		}
	}
	return s
}

func hello(epoch, next uint64) *mcpgwv1.AuditStreamRequest {
	return &mcpgwv1.AuditStreamRequest{Msg: &mcpgwv1.AuditStreamRequest_Hello{Hello: &mcpgwv1.AuditHello{SpoolEpoch: epoch, NextUnackedSeq: next}}}
}

func batch(node string, seq uint64, prev [32]byte, enc mcpgwv1.PayloadEncoding) (*mcpgwv1.AuditStreamRequest, [32]byte) {
	now := time.Now()
	ev := audit.Event{ID: audit.NewID(now), TS: now, NodeID: node, Transport: audit.TransportHTTP, Method: "tools/call",
		Decision: audit.DecisionAllow, Status: audit.StatusOK}
	b := auditdb.Batch{Seq: int64(seq), PrevHash: prev, Count: 1, Lines: append(ev.AppendJSON(nil), '\n')}
	b.CRC = auditdb.CRC32C(b.Lines)
	h := b.Hash()
	wb := &mcpgwv1.AuditBatch{Seq: seq, Payload: b.Lines, PayloadEncoding: enc, EventCount: 1, Crc32C: b.CRC, Hash: h[:]}
	if b.HasPrev() {
		wb.PrevHash = prev[:]
	}
	return &mcpgwv1.AuditStreamRequest{Msg: &mcpgwv1.AuditStreamRequest_Batch{Batch: wb}}, h
}

// endCode reads until the stream ends and returns its code.
func endCode(t *testing.T, s auditClient) codes.Code {
	t.Helper()
	for {
		if _, err := s.Recv(); err != nil {
			return status.Code(err)
		}
	}
}

func TestAuditStreamNeedsANodeCertificate(t *testing.T) {
	h := newHarness(t)
	s := h.open(h.client(""), hello(1, 1))
	if c := endCode(t, s); c != codes.Unauthenticated {
		t.Fatalf("without a client certificate: %v, want Unauthenticated", c)
	}
}

// Protocol violations end the stream with FAILED_PRECONDITION: nothing a
// resend could fix, and nothing that may be acked.
func TestAuditStreamProtocolViolations(t *testing.T) {
	h := newHarness(t)
	node := uuid.NewString()
	c := h.client(node)
	b1, h1 := batch(node, 1, [32]byte{}, mcpgwv1.PayloadEncoding_PAYLOAD_ENCODING_JSONL)
	b3, _ := batch(node, 3, h1, mcpgwv1.PayloadEncoding_PAYLOAD_ENCODING_JSONL)
	gz, _ := batch(node, 1, [32]byte{}, mcpgwv1.PayloadEncoding_PAYLOAD_ENCODING_PROTO_GZIP)
	// Gap times must come in pairs, in order, and only with dropped_before.
	gapTimes := func(drop uint64, first, last *timestamppb.Timestamp) *mcpgwv1.AuditStreamRequest {
		b, _ := batch(node, 1, [32]byte{}, mcpgwv1.PayloadEncoding_PAYLOAD_ENCODING_JSONL)
		b.GetBatch().DroppedBefore, b.GetBatch().GapFirstTime, b.GetBatch().GapLastTime = drop, first, last
		return b
	}
	t0, t1 := timestamppb.New(time.Now().Add(-time.Second)), timestamppb.Now()
	for name, msgs := range map[string][]*mcpgwv1.AuditStreamRequest{
		"batch before hello":           {b1},
		"seq zero in hello":            {hello(1, 0)},
		"seq skipped":                  {hello(2, 1), b1, b3},
		"encoding not accepted yet":    {hello(3, 1), gz},
		"gap times without a drop":     {hello(6, 1), gapTimes(0, t0, t1)},
		"only the first gap time":      {hello(7, 1), gapTimes(3, t0, nil)},
		"gap times out of order":       {hello(8, 1), gapTimes(3, t1, t0)},
		"gap time not a valid instant": {hello(9, 1), gapTimes(3, &timestamppb.Timestamp{Seconds: -1 << 40}, t1)},
	} {
		t.Run(name, func(t *testing.T) {
			if got := endCode(t, h.open(c, msgs...)); got != codes.FailedPrecondition {
				t.Fatalf("got %v, want FailedPrecondition", got)
			}
		})
	}
	t.Run("no hello in time", func(t *testing.T) {
		if got := endCode(t, h.open(c)); got != codes.FailedPrecondition {
			t.Fatalf("got %v, want FailedPrecondition", got)
		}
	})
}

// A node's reconnect replaces its older stream, which ends ABORTED.
func TestNewerStreamReplacesOlder(t *testing.T) {
	h := newHarness(t)
	node := uuid.NewString()
	c := h.client(node)
	old := h.open(c, hello(5, 1))
	if m, err := old.Recv(); err != nil || m.GetAck() == nil {
		t.Fatalf("first stream: %v, %v", m, err)
	}
	b1, _ := batch(node, 1, [32]byte{}, mcpgwv1.PayloadEncoding_PAYLOAD_ENCODING_JSONL)
	cur := h.open(c, hello(5, 1), b1)
	if c := endCode(t, old); c != codes.Aborted {
		t.Fatalf("older stream ended with %v, want Aborted", c)
	}
	for {
		m, err := cur.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if m.GetAck().GetAckedThroughSeq() == 1 {
			break
		}
	}
	if n := h.ing.Stats().Streams; n != 1 {
		t.Fatalf("%d streams registered, want 1", n)
	}
}

// A hello that resumes past batches the ledger never got (the edge lost
// them) is acked where the edge stands, with a SEQ_GAP notice.
func TestHelloPastAGapIsNoticed(t *testing.T) {
	h := newHarness(t)
	node := uuid.NewString()
	s := h.open(h.client(node), hello(9, 5))
	var gap bool
	for {
		m, err := s.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if n := m.GetNotice(); n != nil && n.GetCode() == mcpgwv1.AuditNoticeCode_AUDIT_NOTICE_CODE_SEQ_GAP {
			gap = true
		}
		if a := m.GetAck(); a != nil {
			if a.GetAckedThroughSeq() != 4 {
				t.Fatalf("hello ack %d, want 4", a.GetAckedThroughSeq())
			}
			break
		}
	}
	if !gap {
		t.Fatal("no SEQ_GAP notice before the hello's ack")
	}
}

// An edge that half-closes after its last batch still gets it committed
// and acked before the stream ends cleanly.
func TestHalfCloseStillCommitsAndAcks(t *testing.T) {
	h := newHarness(t)
	node := uuid.NewString()
	b1, h1 := batch(node, 1, [32]byte{}, mcpgwv1.PayloadEncoding_PAYLOAD_ENCODING_JSONL)
	b2, _ := batch(node, 2, h1, mcpgwv1.PayloadEncoding_PAYLOAD_ENCODING_JSONL)
	s := h.open(h.client(node), hello(3, 1), b1, b2)
	if err := s.CloseSend(); err != nil {
		t.Fatal(err)
	}
	var acked uint64
	for {
		m, err := s.Recv()
		if err != nil {
			if status.Code(err) != codes.OK && !errors.Is(err, io.EOF) {
				t.Fatalf("stream ended with %v", err)
			}
			break
		}
		acked = max(acked, m.GetAck().GetAckedThroughSeq())
	}
	if acked != 2 {
		t.Fatalf("acked through %d before the stream ended, want 2", acked)
	}
	if st := h.ing.Stats(); st.Batches != 2 || st.Events != 2 {
		t.Fatalf("stats %+v, want 2 batches and 2 events", st)
	}
}

// A batch whose claimed hash is not the hash of what it carries is
// reported at once (even as an epoch's last batch), and still acked.
func TestWrongHashIsNoticed(t *testing.T) {
	h := newHarness(t)
	node := uuid.NewString()
	b1, _ := batch(node, 1, [32]byte{}, mcpgwv1.PayloadEncoding_PAYLOAD_ENCODING_JSONL)
	b1.GetBatch().Hash = make([]byte, 32)
	s := h.open(h.client(node), hello(4, 1), b1)
	var noticed bool
	for {
		m, err := s.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if n := m.GetNotice(); n != nil && n.GetSeq() == 1 && n.GetCode() == mcpgwv1.AuditNoticeCode_AUDIT_NOTICE_CODE_CHAIN_BROKEN {
			noticed = true
		}
		if m.GetAck().GetAckedThroughSeq() == 1 {
			break
		}
	}
	if !noticed {
		t.Fatal("no CHAIN_BROKEN notice for a batch with a wrong hash")
	}
}

// A gap's time span is covered by the batch hash: times altered on the way
// (here: moved an hour later) no longer match the hash the edge sealed, and
// the batch is flagged; the same span as sealed is stored and verified.
func TestGapTimesAreHashed(t *testing.T) {
	h := newHarness(t)
	node := uuid.NewString()
	first, last := time.Now().Add(-time.Minute).Truncate(time.Microsecond), time.Now().Add(-50*time.Second).Truncate(time.Microsecond)
	seal := func(seq uint64, prev [32]byte) (*mcpgwv1.AuditStreamRequest, [32]byte) {
		ev := audit.Event{ID: audit.NewID(time.Now()), TS: time.Now(), NodeID: node, Transport: audit.TransportHTTP, Method: "tools/call",
			Decision: audit.DecisionAllow, Status: audit.StatusOK}
		b := auditdb.Batch{Seq: int64(seq), PrevHash: prev, DroppedBefore: 5, GapFirst: first, GapLast: last, Count: 1,
			Lines: append(ev.AppendJSON(nil), '\n')}
		b.CRC = auditdb.CRC32C(b.Lines)
		sum := b.Hash()
		wb := &mcpgwv1.AuditBatch{Seq: seq, Payload: b.Lines, PayloadEncoding: mcpgwv1.PayloadEncoding_PAYLOAD_ENCODING_JSONL,
			EventCount: 1, Crc32C: b.CRC, Hash: sum[:], DroppedBefore: 5, GapFirstTime: timestamppb.New(first), GapLastTime: timestamppb.New(last)}
		if b.HasPrev() {
			wb.PrevHash = prev[:]
		}
		return &mcpgwv1.AuditStreamRequest{Msg: &mcpgwv1.AuditStreamRequest_Batch{Batch: wb}}, sum
	}
	b1, h1 := seal(1, [32]byte{})
	b2, _ := seal(2, h1)
	b2.GetBatch().GapLastTime = timestamppb.New(last.Add(time.Hour))
	s := h.open(h.client(node), hello(10, 1), b1, b2)
	var flagged []uint64
	for {
		m, err := s.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if n := m.GetNotice(); n != nil && n.GetCode() == mcpgwv1.AuditNoticeCode_AUDIT_NOTICE_CODE_CHAIN_BROKEN {
			flagged = append(flagged, n.GetSeq())
		}
		if m.GetAck().GetAckedThroughSeq() == 2 {
			break
		}
	}
	if len(flagged) == 0 || flagged[0] != 2 {
		t.Fatalf("CHAIN_BROKEN notices for seqs %v, want one for the batch whose gap time was altered (2)", flagged)
	}
	rep, err := h.store.Verify(t.Context(), node)
	if err != nil {
		t.Fatal(err)
	}
	gaps := rep.Epochs[0].Gaps
	if len(gaps) != 2 || !gaps[0].First.Equal(first) || !gaps[0].Last.Equal(last) || rep.Dropped != 10 {
		t.Fatalf("verify gaps %+v (dropped %d), want two of 5 events, the first spanning %v..%v", gaps, rep.Dropped, first, last)
	}
}

// An edge that replays batches retention pruned from the ledger (after
// losing its cursor) gets them acknowledged and nothing stored twice: the
// hello answer covers the pruned prefix, a replay of it is acked as a
// duplicate, and the next new batch links to the prefix's last hash.
func TestReplayOfPrunedBatchesIsAckedNotStored(t *testing.T) {
	h := newHarness(t)
	ctx := t.Context()
	node := uuid.NewString()
	var (
		reqs []*mcpgwv1.AuditStreamRequest
		prev [32]byte
	)
	for seq := uint64(1); seq <= 4; seq++ {
		var r *mcpgwv1.AuditStreamRequest
		r, prev = batch(node, seq, prev, mcpgwv1.PayloadEncoding_PAYLOAD_ENCODING_JSONL)
		reqs = append(reqs, r)
	}
	ackedThrough := func(s auditClient, want uint64) {
		t.Helper()
		for {
			m, err := s.Recv()
			if err != nil {
				t.Fatalf("waiting for the ack of %d: %v", want, err)
			}
			if n := m.GetNotice(); n != nil {
				t.Fatalf("notice %v", n)
			}
			if a := m.GetAck(); a != nil && a.GetAckedThroughSeq() >= want {
				if a.GetAckedThroughSeq() != want {
					t.Fatalf("acked through %d, want %d", a.GetAckedThroughSeq(), want)
				}
				return
			}
		}
	}
	c := h.client(node)
	s := h.open(c, hello(7, 1), reqs[0], reqs[1], reqs[2])
	ackedThrough(s, 3)
	if err := s.CloseSend(); err != nil {
		t.Fatal(err)
	}
	endCode(t, s)

	// Batches 1 and 2 expire: their events go (as with their day's
	// partition), their ledger rows are aged, and retention prunes them.
	if _, err := h.pool.Exec(ctx, `DELETE FROM audit_events WHERE node_id = $1
		AND ts <= (SELECT last_ts FROM audit_ledger WHERE node_id = $1 AND seq = 2)`, node); err != nil {
		t.Fatal(err)
	}
	if _, err := h.pool.Exec(ctx, `UPDATE audit_ledger SET first_ts = now() - interval '40 days', last_ts = now() - interval '40 days'
		WHERE node_id = $1 AND seq <= 2`, node); err != nil {
		t.Fatal(err)
	}
	if m, err := h.store.MaintainPartitions(ctx, 7); err != nil || m.Pruned != 2 {
		t.Fatalf("maintenance: %+v, %v; want 2 ledger rows pruned", m, err)
	}

	// The edge lost its cursor: hello from 1, replays 1..3, then sends 4.
	s = h.open(c, hello(7, 1))
	ackedThrough(s, 3)
	for _, r := range reqs {
		if err := s.Send(r); err != nil {
			t.Fatal(err)
		}
	}
	ackedThrough(s, 4)
	if st := h.ing.Stats(); st.Batches != 4 || st.Duplicates != 3 || st.Events != 4 || st.ChainBreaks != 0 {
		t.Fatalf("stats %+v, want 4 batches and 4 events stored, 3 duplicates, no chain break", st)
	}
	var n int64
	if err := h.pool.QueryRow(ctx, `SELECT count(*) FROM audit_events WHERE node_id = $1`, node).Scan(&n); err != nil || n != 2 {
		t.Fatalf("%d events stored (%v), want 2 (batches 3 and 4)", n, err)
	}
	rep, err := h.store.Verify(ctx, node)
	if err != nil || !rep.ChainComplete || len(rep.Epochs) != 1 || rep.Epochs[0].Batches != 4 || rep.Epochs[0].Pruned.Through != 2 {
		t.Fatalf("verify: %+v, %v", rep, err)
	}
}
