// Package auditship is the edge's audit shipper (DESIGN §3, §6): a
// dataplane/auditlog Sink that sends spooled batches to the control plane
// over NodeService.AuditStream on the node's mTLS connection, with a window
// of in-flight batches, and reports them delivered only once the control
// plane has acknowledged their commit, so the spool deletes nothing that is
// not in Postgres. After a cut it reconnects with capped, jittered backoff
// and resends oldest first, byte for byte as sealed.
package auditship

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mcpgw/mcpgw/dataplane/auditlog"
	mcpgwv1 "github.com/mcpgw/mcpgw/gen/mcpgw/v1"
)

// Defaults for Config.
const (
	// DefaultWindow: under sync durability a spool batch may hold one
	// event, and a window of batches is shipped per commit round trip; at
	// 8 a backlog of small batches drained at about 1,000 batches/s
	// (test/auditfault), at 64 it keeps up.
	DefaultWindow     = 64
	DefaultBackoffMin = 100 * time.Millisecond
	DefaultBackoffMax = 30 * time.Second
	DefaultAckTimeout = 30 * time.Second
	// Deliveries the Log hands over at once: enough windows to keep the
	// stream busy, bounded so one Deliver's wait stays short.
	deliveryBatches = 256
	deliveryBytes   = 8 << 20
)

// Config configures a Shipper.
type Config struct {
	// Conn is the edge's connection to the control plane's node listener,
	// authenticated with the node certificate (dataplane/cpclient holds
	// the identity). Exactly one of Conn and Connect is required.
	Conn grpc.ClientConnInterface
	// Connect returns the connection to use for the next stream, blocking
	// until there is one (e.g. until the edge has enrolled); called before
	// every stream, so a connection replaced after a certificate renewal
	// is picked up.
	Connect func(ctx context.Context) (grpc.ClientConnInterface, error)
	// Window is how many batches may be in flight until the control plane
	// sends AuditFlowControl.
	Window int
	// BackoffMin and BackoffMax bound the jittered wait between attempts to
	// (re)open the stream.
	BackoffMin, BackoffMax time.Duration
	// AckTimeout: a stream that leaves a sent batch unacknowledged this
	// long, while not paused, is given up and reopened.
	AckTimeout time.Duration
	Logger     *slog.Logger
}

// Shipper implements auditlog.Sink. Run must be running for Deliver to make
// progress.
type Shipper struct {
	cfg        Config
	deliveries chan *delivery
	stats      counters
}

type counters struct {
	sent, acked, notices, sessions, pauses atomic.Int64
}

// Stats are the shipper's counters.
type Stats struct {
	// BatchesSent counts sends, retries included; BatchesAcked batches
	// reported delivered to the spool.
	BatchesSent, BatchesAcked int64
	// Notices from the control plane, streams opened, pauses received.
	Notices, Sessions, Pauses int64
}

// delivery is one Deliver call waiting for its batches to be acknowledged.
type delivery struct {
	batches []auditlog.SealedBatch
	done    chan error // buffered: the session never waits on an abandoned Deliver
}

var _ auditlog.Sink = (*Shipper)(nil)

// New returns a Shipper.
func New(cfg Config) (*Shipper, error) {
	if (cfg.Conn == nil) == (cfg.Connect == nil) {
		return nil, errors.New("audit shipper: exactly one of Conn and Connect is required")
	}
	if cfg.Conn != nil {
		conn := cfg.Conn
		cfg.Connect = func(context.Context) (grpc.ClientConnInterface, error) { return conn, nil }
	}
	if cfg.Window <= 0 {
		cfg.Window = DefaultWindow
	}
	if cfg.BackoffMin <= 0 {
		cfg.BackoffMin = DefaultBackoffMin
	}
	if cfg.BackoffMax < cfg.BackoffMin {
		cfg.BackoffMax = max(DefaultBackoffMax, cfg.BackoffMin)
	}
	if cfg.AckTimeout <= 0 {
		cfg.AckTimeout = DefaultAckTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Shipper{cfg: cfg, deliveries: make(chan *delivery)}, nil
}

// Name implements auditlog.Sink; it names the cursor file in the spool.
func (s *Shipper) Name() string { return "controlplane" }

// MaxDelivery implements auditlog.DeliveryLimiter.
func (s *Shipper) MaxDelivery() (batches, bytes int) { return deliveryBatches, deliveryBytes }

// Stats returns the counters.
func (s *Shipper) Stats() Stats {
	return Stats{BatchesSent: s.stats.sent.Load(), BatchesAcked: s.stats.acked.Load(), Notices: s.stats.notices.Load(),
		Sessions: s.stats.sessions.Load(), Pauses: s.stats.pauses.Load()}
}

// Deliver implements auditlog.Sink: it returns nil once the control plane
// acknowledged every batch (committed in Postgres), or the error that ended
// the attempt; the Log then redelivers the same batches after a backoff.
//
// The batches are handed to the stream in runs of contiguous seqs of one
// epoch. A spool that skipped a corrupt record delivers across the hole
// (seq 3 after seq 1); a stream must not carry that (the control plane
// ends it as a protocol violation, and the redelivery would fail the same
// way forever), so the run after a hole opens a new stream whose hello
// names its first seq, and the control plane records the hole as a gap that
// VerifyAudit reports.
func (s *Shipper) Deliver(ctx context.Context, batches []auditlog.SealedBatch) error {
	for len(batches) > 0 {
		n := 1
		for n < len(batches) && batches[n].Epoch == batches[0].Epoch && batches[n].Seq == batches[n-1].Seq+1 {
			n++
		}
		if err := s.deliver(ctx, batches[:n]); err != nil {
			return err
		}
		batches = batches[n:]
	}
	return nil
}

// deliver hands one contiguous run to Run and waits for its acks.
func (s *Shipper) deliver(ctx context.Context, batches []auditlog.SealedBatch) error {
	d := &delivery{batches: batches, done: make(chan error, 1)}
	select {
	case s.deliveries <- d:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-d.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Run ships deliveries until ctx ends, one stream at a time, reopening it
// with capped, jittered backoff after a failure.
func (s *Shipper) Run(ctx context.Context) error {
	backoff := s.cfg.BackoffMin
	var next *delivery
	for {
		if next == nil {
			select {
			case <-ctx.Done():
				return nil
			case next = <-s.deliveries:
			}
		}
		var progressed bool
		var err error
		next, progressed, err = s.session(ctx, next)
		if ctx.Err() != nil {
			return nil
		}
		if progressed {
			backoff = s.cfg.BackoffMin
		}
		if err == nil {
			continue // a non-contiguous delivery: start a fresh stream at once
		}
		s.cfg.Logger.Warn("audit stream to the control plane ended; batches stay spooled and are resent", "err", err, "retry_in", backoff)
		// Jitter so a fleet does not reconnect to a recovering control
		// plane in step.
		d := backoff/2 + rand.N(backoff/2+1)
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		backoff = min(2*backoff, s.cfg.BackoffMax)
	}
}

// session runs one AuditStream, starting with delivery first and taking
// further deliveries while they continue its seqs. It returns a delivery
// that must start a new stream (nil when it ended in error: the failed
// delivery was answered with the error), and whether any batch was acked.
func (s *Shipper) session(ctx context.Context, first *delivery) (next *delivery, progressed bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	// The reader goroutine ends once the stream is cancelled; wait for it.
	defer wg.Wait()
	defer cancel()

	cur := first
	fail := func(err error) (*delivery, bool, error) {
		if cur != nil {
			cur.done <- err
		}
		return nil, progressed, err
	}
	conn, err := s.cfg.Connect(ctx)
	if err != nil {
		return fail(fmt.Errorf("connecting to the control plane: %w", err))
	}
	stream, err := mcpgwv1.NewNodeServiceClient(conn).AuditStream(ctx)
	if err != nil {
		return fail(fmt.Errorf("opening the audit stream: %w", err))
	}
	s.stats.sessions.Add(1)
	epoch := cur.batches[0].Epoch
	start := uint64(cur.batches[0].Seq)
	if err := stream.Send(&mcpgwv1.AuditStreamRequest{Msg: &mcpgwv1.AuditStreamRequest_Hello{Hello: &mcpgwv1.AuditHello{
		SpoolEpoch: uint64(epoch), NextUnackedSeq: start,
	}}}); err != nil {
		return fail(fmt.Errorf("sending the audit hello: %w", err))
	}
	msgs := make(chan *mcpgwv1.AuditStreamResponse, 16)
	recvErr := make(chan error, 1)
	wg.Go(func() {
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
	})

	var (
		acked     = start - 1 // wire seq acknowledged through
		sent      = start - 1 // wire seq sent through
		helloed   bool        // the hello's ack arrived
		window    = s.cfg.Window
		probe     bool // paused, but retry_after allows one batch
		probeAt   time.Time
		lastAck   = time.Now()
		deadline  = time.NewTimer(s.cfg.AckTimeout)
		probeTime = time.NewTimer(time.Hour)
	)
	defer deadline.Stop()
	defer probeTime.Stop()
	probeTime.Stop()
	wire := func(b *auditlog.SealedBatch) uint64 { return uint64(b.Seq) }

	for {
		// Send what the window allows.
		if helloed && cur != nil {
			for i := range cur.batches {
				b := &cur.batches[i]
				w := wire(b)
				if w <= sent {
					continue
				}
				inflight := int(sent - acked)
				if inflight >= window && !(probe && inflight == 0) {
					break
				}
				if w <= acked {
					// The ledger already holds it (an ack was lost): skip.
					sent = w
					continue
				}
				if err := stream.Send(wireBatch(b)); err != nil {
					return fail(fmt.Errorf("sending audit batch %d: %w", w, err))
				}
				s.stats.sent.Add(1)
				sent, probe = w, false
			}
			if acked >= wire(&cur.batches[len(cur.batches)-1]) {
				s.stats.acked.Add(int64(len(cur.batches)))
				cur.done <- nil
				cur, progressed = nil, true
			}
		}
		var deliveries chan *delivery
		if cur == nil {
			deliveries = s.deliveries
		}
		// Waiting for the hello's answer or for acks of batches in flight
		// is bounded, unless the control plane paused us.
		if (!helloed || (cur != nil && sent > acked)) && window > 0 {
			deadline.Reset(max(time.Until(lastAck.Add(s.cfg.AckTimeout)), 0))
		} else {
			deadline.Stop()
		}
		select {
		case <-ctx.Done():
			return fail(ctx.Err())
		case err := <-recvErr:
			if errors.Is(err, io.EOF) {
				err = errors.New("the control plane closed the audit stream")
			}
			return fail(fmt.Errorf("audit stream: %w", err))
		case <-deadline.C:
			return fail(fmt.Errorf("no audit ack within %v", s.cfg.AckTimeout))
		case <-probeTime.C:
			if window == 0 && time.Now().After(probeAt) {
				probe = true
			}
		case d := <-deliveries:
			if d.batches[0].Epoch != epoch || wire(&d.batches[0]) != sent+1 {
				return d, progressed, nil // start a stream for it
			}
			cur, lastAck = d, time.Now()
		case m := <-msgs:
			switch m := m.Msg.(type) {
			case *mcpgwv1.AuditStreamResponse_Ack:
				a := m.Ack.GetAckedThroughSeq()
				if !helloed {
					helloed = true
					acked = max(acked, a)
					sent = max(sent, acked)
				} else if a > acked {
					if a > sent {
						return fail(fmt.Errorf("audit ack %d is beyond the batches sent (%d)", a, sent))
					}
					acked = a
				}
				lastAck = time.Now()
			case *mcpgwv1.AuditStreamResponse_FlowControl:
				fc := m.FlowControl
				window = int(fc.GetMaxInflight())
				probe = false
				probeTime.Stop()
				if window == 0 {
					s.stats.pauses.Add(1)
					s.cfg.Logger.Info("control plane paused audit shipping; batches keep spooling", "reason", fc.GetReason())
					if ra := fc.GetRetryAfter(); ra != nil && ra.AsDuration() > 0 {
						probeAt = time.Now().Add(ra.AsDuration())
						probeTime.Reset(ra.AsDuration())
					}
				}
				lastAck = time.Now()
			case *mcpgwv1.AuditStreamResponse_Notice:
				n := m.Notice
				s.stats.notices.Add(1)
				s.cfg.Logger.Warn("control plane flagged an audit batch", "seq", n.GetSeq(), "code", n.GetCode().String(),
					"events", n.GetEvents(), "message", n.GetMessage())
			}
		}
	}
}

// wireBatch is the AuditStream message for a spooled batch: its lines
// exactly as sealed (so a retry sends identical bytes), their CRC-32C, and
// the chain fields the control plane recomputes the hash from.
func wireBatch(b *auditlog.SealedBatch) *mcpgwv1.AuditStreamRequest {
	wb := &mcpgwv1.AuditBatch{
		Seq:             uint64(b.Seq),
		Payload:         b.Lines,
		PayloadEncoding: mcpgwv1.PayloadEncoding_PAYLOAD_ENCODING_JSONL,
		EventCount:      uint32(b.Count),
		Crc32C:          b.CRC,
		DroppedBefore:   uint64(b.DroppedBefore),
		Hash:            b.Hash[:],
	}
	if b.HasPrev() {
		wb.PrevHash = b.PrevHash[:]
	}
	// The gap's time span is in the hash when set, so it goes out exactly
	// as sealed.
	if !b.GapFirst.IsZero() {
		wb.GapFirstTime, wb.GapLastTime = timestamppb.New(b.GapFirst), timestamppb.New(b.GapLast)
	}
	return &mcpgwv1.AuditStreamRequest{Msg: &mcpgwv1.AuditStreamRequest_Batch{Batch: wb}}
}
