package ingest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/mcpgw/mcpgw/controlplane/pki"
	mcpgwv1 "github.com/mcpgw/mcpgw/gen/mcpgw/v1"
	"github.com/mcpgw/mcpgw/internal/auditdb"
	"github.com/mcpgw/mcpgw/internal/wait"
)

// AuditStreamServer is the server side of NodeService.AuditStream.
type AuditStreamServer = grpc.BidiStreamingServer[mcpgwv1.AuditStreamRequest, mcpgwv1.AuditStreamResponse]

// maxPending bounds the batches a stream holds received but uncommitted. An
// edge keeps at most its window in flight; one that sends far more is
// broken, and holding its batches in memory would let it exhaust ours.
const maxPending = 4096

// Errors a stream ends with; AuditStream turns them into gRPC codes.
var (
	errProtocol = errors.New("audit stream protocol violation")
	errReplaced = errors.New("replaced by a newer audit stream of this node")
)

// streamSlot is a node's live stream, so a newer one can end it and wait.
type streamSlot struct {
	cancel context.CancelCauseFunc
	done   chan struct{}
}

// AuditStream serves one edge's AuditStream. The node is the one its
// verified client certificate names; plug it into nodeapi.Config.AuditStream
// (which has already refused unknown and revoked nodes).
func (s *Server) AuditStream(stream AuditStreamServer) error {
	node, err := peerNode(stream.Context())
	if err != nil {
		return err
	}
	ctx, release, err := s.claim(stream.Context(), node)
	if err != nil {
		return status.FromContextError(err).Err()
	}
	defer release()
	err = s.serve(ctx, node, stream)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, errProtocol):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, errReplaced):
		return status.Error(codes.Aborted, err.Error())
	case errors.Is(err, auditdb.ErrConflict):
		return status.Error(codes.FailedPrecondition, err.Error())
	case stream.Context().Err() != nil:
		return status.FromContextError(stream.Context().Err()).Err()
	default:
		s.cfg.Logger.Error("audit stream failed", "node", node, "err", err)
		return status.Error(codes.Unavailable, "audit ingest failed; reconnect and resend")
	}
}

// claim makes this stream the node's only one: an older stream (a
// connection the edge gave up on) is ended and waited for, so the two never
// commit the same node's batches concurrently.
func (s *Server) claim(ctx context.Context, node string) (context.Context, func(), error) {
	ctx, cancel := context.WithCancelCause(ctx)
	me := &streamSlot{cancel: cancel, done: make(chan struct{})}
	for {
		s.mu.Lock()
		old := s.streams[node]
		if old == nil {
			s.streams[node] = me
			s.mu.Unlock()
			break
		}
		s.mu.Unlock()
		old.cancel(errReplaced)
		select {
		case <-old.done:
		case <-ctx.Done():
			cancel(nil)
			return nil, nil, ctx.Err()
		}
	}
	return ctx, func() {
		s.mu.Lock()
		if s.streams[node] == me {
			delete(s.streams, node)
		}
		s.mu.Unlock()
		cancel(nil)
		close(me.done)
	}, nil
}

// streamState is one stream's view of its node's epoch. Seqs count from 1
// on the wire, in the spool and in the ledger, so an ack of 0 means
// "nothing".
type streamState struct {
	node     string
	epoch    int64
	acked    uint64 // wire seq acked through; never decreases
	expect   uint64 // wire seq of the next batch; 0 before the first
	firstMin uint64 // the first batch may start anywhere in [firstMin, acked+1]

	pending   []auditdb.Batch // received, not committed, in seq order
	pendingEv int
	paused    bool
	narrowed  bool
	retryAt   time.Time
}

func (s *Server) serve(ctx context.Context, node string, stream AuditStreamServer) error {
	// Messages come from a reader goroutine so the loop can also wait for
	// commits and timers. It ends when the stream does, which gRPC ensures
	// once this handler returns.
	msgs := make(chan *mcpgwv1.AuditStreamRequest, 16)
	recvErr := make(chan error, 1)
	go func() {
		for {
			m, err := stream.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			select {
			case msgs <- m:
			case <-ctx.Done():
				return
			}
		}
	}()

	var hello *mcpgwv1.AuditHello
	helloTimer := time.NewTimer(s.cfg.HelloTimeout)
	select {
	case m := <-msgs:
		hello = m.GetHello()
	case err := <-recvErr:
		helloTimer.Stop()
		if errors.Is(err, io.EOF) {
			return nil
		}
		return err
	case <-helloTimer.C:
		return fmt.Errorf("%w: no hello within %v", errProtocol, s.cfg.HelloTimeout)
	case <-ctx.Done():
		helloTimer.Stop()
		return context.Cause(ctx)
	}
	helloTimer.Stop()
	if hello == nil {
		return fmt.Errorf("%w: the first message must be hello", errProtocol)
	}
	if hello.GetSpoolEpoch() > math.MaxInt64 || hello.GetNextUnackedSeq() < 1 || hello.GetNextUnackedSeq() > math.MaxInt64 {
		return fmt.Errorf("%w: hello spool_epoch %d must be below 2^63 and next_unacked_seq %d at least 1",
			errProtocol, hello.GetSpoolEpoch(), hello.GetNextUnackedSeq())
	}
	st := &streamState{node: node, epoch: int64(hello.GetSpoolEpoch())}
	start := hello.GetNextUnackedSeq()
	st.acked, st.firstMin = start-1, start

	send := func(m *mcpgwv1.AuditStreamResponse) error {
		if err := stream.Send(m); err != nil {
			return fmt.Errorf("sending to the edge: %w", err)
		}
		return nil
	}

	// Answer the hello with what the ledger holds; while it cannot be read,
	// tell the edge to hold on.
	for {
		held, err := s.cfg.Store.LedgerHeld(ctx, node, st.epoch, int64(start))
		if err == nil {
			st.acked = max(st.acked, uint64(held.Through))
			if held.PrevMissing && start > 1 {
				s.metrics.notices.Inc()
				if err := send(notice(0, mcpgwv1.AuditNoticeCode_AUDIT_NOTICE_CODE_SEQ_GAP, 0,
					fmt.Sprintf("the ledger never received batch %d of epoch %d; the gap is recorded", start-1, st.epoch))); err != nil {
					return err
				}
			}
			break
		}
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		if !st.paused {
			if err := s.pause(st, send, "database unavailable"); err != nil {
				return err
			}
		}
		s.cfg.Logger.Warn("cannot read the audit ledger for a hello; edge told to pause", "node", node, "err", err)
		if !wait.For(ctx, s.cfg.RetryAfter) {
			return context.Cause(ctx)
		}
	}
	if err := send(&mcpgwv1.AuditStreamResponse{Msg: &mcpgwv1.AuditStreamResponse_Ack{Ack: &mcpgwv1.AuditAck{AckedThroughSeq: st.acked}}}); err != nil {
		return err
	}
	if st.paused {
		if err := s.resume(st, send); err != nil {
			return err
		}
	}

	done := make(chan commitResult, 1)
	var current *commitReq
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	defer func() {
		// A taken request is still being committed: wait for it, so a
		// replacing stream never commits this node's next batch first.
		if current != nil {
			t := time.NewTimer(s.cfg.CommitTimeout + time.Second)
			defer t.Stop()
			select {
			case <-done:
			case <-t.C:
			}
		}
	}()
	// After the edge half-closes, what it sent is still committed and
	// acked before the stream ends.
	eof := false
	for {
		if eof && current == nil && len(st.pending) == 0 && len(msgs) == 0 {
			return nil
		}
		var reqs chan *commitReq
		var req *commitReq
		if current == nil && len(st.pending) > 0 && !time.Now().Before(st.retryAt) {
			req = &commitReq{node: node, batches: st.pending, events: st.pendingEv, done: done}
			reqs = s.reqs
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case err := <-recvErr:
			if !errors.Is(err, io.EOF) {
				return err
			}
			eof, recvErr = true, nil
		case m := <-msgs:
			if err := s.receive(st, m, send); err != nil {
				return err
			}
		case reqs <- req:
			current = req
		case r := <-done:
			sent := current
			current = nil
			if err := s.committed(ctx, st, sent, r, send); err != nil {
				return err
			}
			if st.paused {
				retry.Reset(time.Until(st.retryAt))
			}
		case <-retry.C:
			// Loop around: the retry time has come, pending is submitted.
		}
	}
}

// receive checks one batch and queues it.
func (s *Server) receive(st *streamState, m *mcpgwv1.AuditStreamRequest, send func(*mcpgwv1.AuditStreamResponse) error) error {
	wb := m.GetBatch()
	if wb == nil {
		return fmt.Errorf("%w: only batches may follow the hello", errProtocol)
	}
	seq := wb.GetSeq()
	if st.expect == 0 {
		if seq < st.firstMin || seq > st.acked+1 {
			return fmt.Errorf("%w: first batch has seq %d, want one in %d..%d", errProtocol, seq, st.firstMin, st.acked+1)
		}
	} else if seq != st.expect {
		return fmt.Errorf("%w: batch seq %d does not follow %d", errProtocol, seq, st.expect-1)
	}
	if seq > math.MaxInt64 {
		return fmt.Errorf("%w: seq %d out of range", errProtocol, seq)
	}
	st.expect = seq + 1
	if len(st.pending) >= maxPending {
		return fmt.Errorf("%w: more than %d batches sent beyond the window", errProtocol, maxPending)
	}
	b, err := wireBatch(st.epoch, wb)
	if err != nil {
		return err
	}
	// The ledger stores the hash of what arrived, and the next batch's
	// prev_hash is checked against it; a hash the edge claims for other
	// content is reported now, which also covers an epoch's last batch.
	if h := wb.GetHash(); len(h) > 0 && wb.GetCrc32C() == auditdb.CRC32C(b.Lines) {
		if sum := b.Hash(); string(h) != string(sum[:]) {
			s.metrics.notices.Inc()
			if err := send(notice(seq, mcpgwv1.AuditNoticeCode_AUDIT_NOTICE_CODE_CHAIN_BROKEN, 0,
				"hash does not match the batch's fields and payload; the ledger keeps the hash of what arrived")); err != nil {
				return err
			}
		}
	}
	st.pending = append(st.pending, b)
	st.pendingEv += b.Count
	return nil
}

// wireBatch turns a received batch into the auditdb.Batch the edge sealed:
// the payload is its canonical JSON lines, and the hash and CRC the edge
// computed are over fields the message carries (the gap times of a batch
// after on_full: drop included), so ingest recomputes them and records
// (never silently accepts) a mismatch.
func wireBatch(epoch int64, wb *mcpgwv1.AuditBatch) (auditdb.Batch, error) {
	if wb.GetPayloadEncoding() != mcpgwv1.PayloadEncoding_PAYLOAD_ENCODING_JSONL {
		return auditdb.Batch{}, fmt.Errorf("%w: payload_encoding %v is not accepted yet; send PAYLOAD_ENCODING_JSONL",
			errProtocol, wb.GetPayloadEncoding())
	}
	if p := wb.GetPrevHash(); len(p) != 0 && len(p) != 32 {
		return auditdb.Batch{}, fmt.Errorf("%w: prev_hash has %d bytes, want 32", errProtocol, len(p))
	}
	if wb.GetDroppedBefore() > math.MaxInt64 {
		return auditdb.Batch{}, fmt.Errorf("%w: dropped_before %d out of range", errProtocol, wb.GetDroppedBefore())
	}
	b := auditdb.Batch{
		Epoch: epoch, Seq: int64(wb.GetSeq()), DroppedBefore: int64(wb.GetDroppedBefore()),
		Count: int(wb.GetEventCount()), Lines: wb.GetPayload(), CRC: wb.GetCrc32C(),
	}
	copy(b.PrevHash[:], wb.GetPrevHash())
	if gf, gl := wb.GetGapFirstTime(), wb.GetGapLastTime(); gf != nil || gl != nil {
		if gf == nil || gl == nil || !gf.IsValid() || !gl.IsValid() || gl.AsTime().Before(gf.AsTime()) || wb.GetDroppedBefore() == 0 {
			return auditdb.Batch{}, fmt.Errorf("%w: batch %d: gap_first_time and gap_last_time must both be valid, in order, and only with dropped_before > 0",
				errProtocol, wb.GetSeq())
		}
		b.GapFirst, b.GapLast = gf.AsTime().Truncate(time.Microsecond), gl.AsTime().Truncate(time.Microsecond)
		if b.GapFirst.IsZero() {
			return auditdb.Batch{}, fmt.Errorf("%w: batch %d: gap_first_time is the zero time", errProtocol, wb.GetSeq())
		}
	}
	return b, nil
}

// committed handles a commit's outcome for this stream.
func (s *Server) committed(ctx context.Context, st *streamState, req *commitReq, r commitResult, send func(*mcpgwv1.AuditStreamResponse) error) error {
	n := len(req.batches)
	if r.err != nil {
		if errors.Is(r.err, auditdb.ErrConflict) {
			// A different batch under a committed seq: resending the same
			// sealed bytes cannot fix it, and acking would claim it stored.
			s.metrics.notices.Inc()
			_ = send(notice(uint64(req.batches[0].Seq), mcpgwv1.AuditNoticeCode_AUDIT_NOTICE_CODE_CHAIN_BROKEN, 0, r.err.Error()))
			return r.err
		}
		s.cfg.Logger.Warn("audit ingest failed; edge paused, batches kept for retry", "node", st.node, "batches", n, "err", r.err)
		st.retryAt = time.Now().Add(s.cfg.RetryAfter)
		if !st.paused {
			return s.pause(st, send, "database unavailable")
		}
		return nil
	}
	first, last := req.batches[0].Seq, req.batches[n-1].Seq
	for i := range req.batches[:n] {
		st.pendingEv -= req.batches[i].Count
	}
	st.pending = append(st.pending[:0], st.pending[n:]...)
	if res := r.res; res.ChainBreaks > 0 || res.CRCFailures > 0 || res.Rejected > 0 {
		if err := s.reportFlags(ctx, st, first, last, send); err != nil {
			return err
		}
	}
	st.acked = max(st.acked, uint64(last))
	if err := send(&mcpgwv1.AuditStreamResponse{Msg: &mcpgwv1.AuditStreamResponse_Ack{Ack: &mcpgwv1.AuditAck{AckedThroughSeq: st.acked}}}); err != nil {
		return err
	}
	switch {
	case st.paused || (st.narrowed && r.latency < s.cfg.SlowCommit/2):
		return s.resume(st, send)
	case !st.narrowed && r.latency > s.cfg.SlowCommit:
		st.narrowed = true
		s.stats.pauses.Add(1)
		s.metrics.pauses.Inc()
		return send(&mcpgwv1.AuditStreamResponse{Msg: &mcpgwv1.AuditStreamResponse_FlowControl{FlowControl: &mcpgwv1.AuditFlowControl{
			MaxInflight: 1, Reason: fmt.Sprintf("database slow (commit took %v)", r.latency.Round(time.Millisecond)),
		}}})
	}
	return nil
}

// reportFlags sends a notice for every batch of first..last
// the ledger recorded as flagged. The aggregate result of a coalesced
// commit does not say whose batches were flagged; the ledger does.
func (s *Server) reportFlags(ctx context.Context, st *streamState, first, last int64, send func(*mcpgwv1.AuditStreamResponse) error) error {
	rows, err := s.cfg.Store.LedgerRows(ctx, st.node, st.epoch, first, last)
	if err != nil {
		// The batches are committed and flagged in the ledger, where
		// VerifyAudit finds them; only the courtesy notice is lost.
		s.cfg.Logger.Warn("reading flagged audit batches for notices", "node", st.node, "err", err)
		return nil
	}
	for _, row := range rows {
		var m *mcpgwv1.AuditStreamResponse
		switch {
		case !row.CRCOK:
			m = notice(uint64(row.Seq), mcpgwv1.AuditNoticeCode_AUDIT_NOTICE_CODE_CRC_MISMATCH, uint64(row.EventCount),
				"payload does not match crc32c; recorded, events not stored")
		case !row.ChainOK:
			m = notice(uint64(row.Seq), mcpgwv1.AuditNoticeCode_AUDIT_NOTICE_CODE_CHAIN_BROKEN, 0,
				"prev_hash is not the hash of the stored batch before it; recorded and flagged")
		case row.Rejected > 0:
			m = notice(uint64(row.Seq), mcpgwv1.AuditNoticeCode_AUDIT_NOTICE_CODE_EVENTS_REJECTED, uint64(row.Rejected), row.RejectedReason)
		default:
			continue
		}
		s.metrics.notices.Inc()
		if err := send(m); err != nil {
			return err
		}
		if !row.CRCOK && !row.ChainOK {
			s.metrics.notices.Inc()
			if err := send(notice(uint64(row.Seq), mcpgwv1.AuditNoticeCode_AUDIT_NOTICE_CODE_CHAIN_BROKEN, 0,
				"prev_hash is not the hash of the stored batch before it; recorded and flagged")); err != nil {
				return err
			}
		}
	}
	return nil
}

func (s *Server) pause(st *streamState, send func(*mcpgwv1.AuditStreamResponse) error, reason string) error {
	st.paused = true
	st.retryAt = time.Now().Add(s.cfg.RetryAfter)
	s.stats.pauses.Add(1)
	s.metrics.pauses.Inc()
	return send(&mcpgwv1.AuditStreamResponse{Msg: &mcpgwv1.AuditStreamResponse_FlowControl{FlowControl: &mcpgwv1.AuditFlowControl{
		MaxInflight: 0, RetryAfter: durationpb.New(s.cfg.RetryAfter), Reason: reason,
	}}})
}

func (s *Server) resume(st *streamState, send func(*mcpgwv1.AuditStreamResponse) error) error {
	st.paused, st.narrowed = false, false
	return send(&mcpgwv1.AuditStreamResponse{Msg: &mcpgwv1.AuditStreamResponse_FlowControl{FlowControl: &mcpgwv1.AuditFlowControl{
		MaxInflight: uint32(s.cfg.Window), Reason: "resumed",
	}}})
}

func notice(seq uint64, code mcpgwv1.AuditNoticeCode, events uint64, msg string) *mcpgwv1.AuditStreamResponse {
	return &mcpgwv1.AuditStreamResponse{Msg: &mcpgwv1.AuditStreamResponse_Notice{Notice: &mcpgwv1.AuditNotice{
		Seq: seq, Code: code, Message: msg, Events: events,
	}}}
}

// peerNode returns the node id from the verified client certificate of the
// call: the only source of node identity (as in controlplane/nodeapi).
func peerNode(ctx context.Context) (string, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return "", status.Error(codes.Unauthenticated, "no peer")
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.VerifiedChains) == 0 || len(info.State.VerifiedChains[0]) == 0 {
		return "", status.Error(codes.Unauthenticated, "a client certificate issued by the installation CA is required")
	}
	name, err := pki.NodeID(info.State.VerifiedChains[0][0])
	if err != nil {
		return "", status.Error(codes.Unauthenticated, "client certificate is not a node certificate")
	}
	id, err := uuid.Parse(name)
	if err != nil {
		return "", status.Error(codes.Unauthenticated, "client certificate does not name a node")
	}
	return id.String(), nil
}
