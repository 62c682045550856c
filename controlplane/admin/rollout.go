package admin

import (
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/mcpgw/mcpgw/controlplane/store"
	mcpgwv1 "github.com/mcpgw/mcpgw/gen/mcpgw/v1"
)

// WatchRollout streams how many connected nodes have applied a revision. It
// reads the node registry, which replicas flush within about 200ms of an
// ACK or NACK, sends the state at once and on every change (at most one
// message per poll), and ends after a message with done = true.
func (s *Server) WatchRollout(req *mcpgwv1.WatchRolloutRequest, stream mcpgwv1.AdminService_WatchRolloutServer) error {
	ctx := stream.Context()
	rev := req.GetRevision()
	if rev == 0 {
		cur, err := s.st.CurrentRevision(ctx)
		if err != nil {
			return toStatus(err)
		}
		rev = cur
	}
	tick := time.NewTicker(s.rolloutPoll)
	defer tick.Stop()
	var last *mcpgwv1.WatchRolloutResponse
	for {
		nodes, err := s.st.RolloutNodes(ctx, req.GetNodeGroup())
		if err != nil {
			return toStatus(err)
		}
		msg := rolloutState(rev, nodes)
		if last == nil || !proto.Equal(msg, last) {
			if err := stream.Send(msg); err != nil {
				return err
			}
			last = msg
		}
		if msg.Done {
			return nil
		}
		select {
		case <-ctx.Done():
			return toStatus(ctx.Err())
		case <-tick.C:
		}
	}
}

// rolloutState counts connected nodes: acked (applied ≥ rev), nacked (last
// NACK of a revision ≥ rev, not acked since) and pending (the rest).
func rolloutState(rev int64, nodes []store.NodeRollout) *mcpgwv1.WatchRolloutResponse {
	m := &mcpgwv1.WatchRolloutResponse{Revision: rev}
	for _, n := range nodes {
		if !n.Connected {
			m.Disconnected++
			continue
		}
		m.Total++
		switch {
		case n.AppliedRevision >= rev:
			m.Acked++
		case n.LastNackRevision >= rev && n.LastNackError != "":
			m.Nacked++
			m.Rejections = append(m.Rejections, &mcpgwv1.NodeRejection{NodeId: n.ID.String(), NodeName: n.Name,
				Rejection: rejectionProto(n.LastNackRevision, n.LastNackError, n.LastNackRejected, n.LastNackAt)})
		default:
			m.Pending++
		}
	}
	m.Done = m.Pending == 0
	return m
}
