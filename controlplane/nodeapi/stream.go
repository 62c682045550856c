package nodeapi

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/mcpgw/mcpgw/controlplane/snapshot"
	"github.com/mcpgw/mcpgw/controlplane/store"
	mcpgwv1 "github.com/mcpgw/mcpgw/gen/mcpgw/v1"
)

// ReplicaHeader is the response header naming the replica that accepted a
// ConfigStream.
const ReplicaHeader = "mcpgw-replica"

type configStream = grpc.BidiStreamingServer[mcpgwv1.ConfigStreamRequest, mcpgwv1.ConfigStreamResponse]

// inflight is the one snapshot a stream has sent and not yet had answered.
type inflight struct {
	nonce    string
	revision int64
	hash     string
	commit   time.Time
}

// ConfigStream implements NodeService.ConfigStream (docs/api.md): the hello
// says what the edge runs; the stream then sends the group's current
// snapshot whenever it is newer than that, one at a time, each answered by
// an ack or nack before the next.
func (s *Server) ConfigStream(stream configStream) error {
	id, err := peerNodeID(stream.Context())
	if err != nil {
		return err
	}
	node, err := s.checkNode(stream.Context(), id)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancelCause(stream.Context())
	defer cancel(nil)

	// The receiver is the only caller of Recv. It ends when the RPC ends,
	// which gRPC guarantees once this handler returns; it never blocks the
	// handler because its channel sends also watch ctx.
	in := make(chan *mcpgwv1.ConfigStreamRequest, 4)
	recvErr := make(chan error, 1)
	go func() {
		for {
			m, err := stream.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			select {
			case in <- m:
			case <-ctx.Done():
				return
			}
		}
	}()

	hello, err := s.awaitHello(ctx, in, recvErr)
	if err != nil {
		return err
	}
	token := s.reg.attach(id, hello.GetVersion(), cancel)
	defer s.reg.detach(id, token)
	s.streamsOpened.Add(1)
	// Headers tell the edge its stream is accepted even when there is
	// nothing to send: that is how it knows to reconnect at once, not after
	// a backoff, when this stream later ends (GOAWAY, replica shutdown).
	if err := stream.SendHeader(s.header); err != nil {
		return err
	}
	log := s.cfg.Logger.With("node", id, "group", node.NodeGroup)
	log.Debug("config stream open", "applied_revision", hello.GetAppliedRevision())

	acceptGzip := slices.Contains(hello.GetCapabilities(), "gzip")
	appliedRev, appliedHash := hello.GetAppliedRevision(), hello.GetAppliedHash()
	// sentRev is the newest revision sent (or known applied); only newer
	// ones go out, so a NACKed revision is not retried on this stream.
	sentRev := appliedRev
	sentAny := false
	var pending *inflight
	var seq uint64

	for {
		snap, changed, err := s.cfg.Cache.Watch(node.NodeGroup)
		if err != nil {
			log.Error("building snapshot for node group", "err", err)
			return status.Error(codes.Internal, "building config snapshot failed")
		}
		if pending == nil && snap != nil && s.shouldSend(snap, sentRev, sentAny, appliedRev, appliedHash) {
			seq++
			nonce := strconv.FormatUint(seq, 10)
			empty := snap.Hash == appliedHash
			if err := s.send(stream, snap, nonce, acceptGzip, empty); err != nil {
				return err
			}
			pending = &inflight{nonce: nonce, revision: snap.Revision, hash: snap.Hash, commit: snap.CommitTime}
			sentRev, sentAny = snap.Revision, true
		}
		select {
		case <-ctx.Done():
			return streamEndStatus(ctx)
		case err := <-recvErr:
			return recvEndStatus(err)
		case <-changed:
		case m := <-in:
			switch msg := m.GetMsg().(type) {
			case *mcpgwv1.ConfigStreamRequest_Ack:
				a := msg.Ack
				if pending == nil || a.GetNonce() != pending.nonce {
					s.reg.seen(id)
					continue // stale
				}
				appliedRev, appliedHash = pending.revision, pending.hash
				s.reg.acked(id, appliedRev, appliedHash)
				s.metrics.acks.Inc()
				if !pending.commit.IsZero() {
					s.metrics.pushLatency.Observe(time.Since(pending.commit).Seconds())
				}
				if s.cfg.OnAck != nil {
					s.cfg.OnAck(id, appliedRev)
				}
				pending = nil
			case *mcpgwv1.ConfigStreamRequest_Nack:
				n := msg.Nack
				if pending == nil || n.GetNonce() != pending.nonce {
					s.reg.seen(id)
					continue
				}
				s.reg.nacked(id, store.NodeNack{
					Revision:     pending.revision,
					Error:        nackText(n),
					RejectedJSON: rejectedJSON(n.GetRejected()),
					At:           time.Now(),
				})
				s.metrics.nacks.Inc()
				log.Warn("edge rejected config", "revision", pending.revision, "error", n.GetError())
				pending = nil
			case *mcpgwv1.ConfigStreamRequest_Status:
				s.reg.reported(id, report(msg.Status))
			case *mcpgwv1.ConfigStreamRequest_Hello:
				return status.Error(codes.InvalidArgument, "hello may be sent only once, first")
			default:
				s.reg.seen(id)
			}
		}
	}
}

// shouldSend decides whether snap goes to an edge whose newest known
// revision is sentRev.
func (s *Server) shouldSend(snap *snapshot.Snapshot, sentRev int64, sentAny bool, appliedRev int64, appliedHash string) bool {
	if snap.Revision > sentRev {
		return true
	}
	// Same revision as the edge runs but other content (its node group
	// changed, say): send it once, as a correction.
	return !sentAny && snap.Revision == appliedRev && snap.Hash != appliedHash
}

func (s *Server) awaitHello(ctx context.Context, in <-chan *mcpgwv1.ConfigStreamRequest, recvErr <-chan error) (*mcpgwv1.ConfigHello, error) {
	t := time.NewTimer(s.cfg.HelloTimeout)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return nil, streamEndStatus(ctx)
	case err := <-recvErr:
		return nil, recvEndStatus(err)
	case <-t.C:
		return nil, status.Error(codes.DeadlineExceeded, "no hello received")
	case m := <-in:
		h := m.GetHello()
		if h == nil {
			return nil, status.Error(codes.InvalidArgument, "the first message must be hello")
		}
		return h, nil
	}
}

func (s *Server) send(stream configStream, snap *snapshot.Snapshot, nonce string, acceptGzip, empty bool) error {
	msg, body := snapshotMessage(snap, nonce, acceptGzip, empty)
	var err error
	if s.rawSends.Load() {
		var pre *preEncoded
		if pre, err = encodeSnapshot(msg, body); err == nil {
			err = stream.SendMsg(pre)
		}
	} else {
		msg.GetSnapshot().Payload = body
		err = stream.Send(msg)
	}
	if err != nil {
		return err // the stream is broken; gRPC has its status
	}
	s.snapshotsSent.Add(1)
	s.payloadBytesSent.Add(int64(len(body)))
	s.metrics.snapshotsSent.Inc()
	s.metrics.configBytes.Add(float64(len(body)))
	return nil
}

// streamEndStatus turns the reason ctx ended into the RPC's status.
func streamEndStatus(ctx context.Context) error {
	switch cause := context.Cause(ctx); {
	case errors.Is(cause, errRevoked):
		return status.Error(codes.PermissionDenied, "node revoked")
	case errors.Is(cause, errReplaced):
		return status.Error(codes.Aborted, "replaced by a newer stream of this node")
	default:
		return status.FromContextError(ctx.Err()).Err()
	}
}

func recvEndStatus(err error) error {
	if _, ok := status.FromError(err); ok {
		return err
	}
	return nil // io.EOF: the edge closed its side
}

func nackText(n *mcpgwv1.ConfigNack) string {
	if n.GetError() != "" {
		return n.GetError()
	}
	return "rejected without a reason"
}

var protoNames = protojson.MarshalOptions{UseProtoNames: true}

func rejectedJSON(rs []*mcpgwv1.ResourceError) []byte {
	if len(rs) == 0 {
		return nil
	}
	out := []byte{'['}
	for i, r := range rs {
		if i > 0 {
			out = append(out, ',')
		}
		b, err := protoNames.Marshal(r)
		if err != nil {
			continue
		}
		out = append(out, b...)
	}
	return append(out, ']')
}

func report(st *mcpgwv1.EdgeStatus) store.NodeReport {
	rep := store.NodeReport{}
	if sp := st.GetAuditSpool(); sp != nil {
		rep.SpoolDepthBytes = max(sp.GetDepthBytes(), 0)
		rep.SpoolDepthBatches = max(sp.GetDepthBatches(), 0)
		if age := sp.GetOldestUnackedAge().AsDuration(); age > 0 {
			t := time.Now().Add(-age)
			rep.SpoolOldestUnackedAt = &t
		}
	}
	if b, err := protoNames.Marshal(st); err == nil {
		rep.JSON = b
	}
	return rep
}
