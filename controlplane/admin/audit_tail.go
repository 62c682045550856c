package admin

import (
	"time"

	"google.golang.org/grpc/metadata"

	mcpgwv1 "github.com/mcpgw/mcpgw/gen/mcpgw/v1"
)

// Tail tuning. Polling the ledger (one row per batch, indexed by its
// primary key only, so this reads a short recent range) every quarter second
// keeps a tail close to live at a cost that does not grow with the event
// rate; LISTEN/NOTIFY would need a dedicated connection per replica and a
// fan-out, and would still need this catch-up read after a missed notify.
const (
	tailPollInterval = 250 * time.Millisecond
	tailMaxPerMsg    = 500
)

// TailLiveHeader is the response header a TailAudit stream sends once it is
// live: every event committed after it arrives is streamed.
const TailLiveHeader = "mcpgw-tail-live"

// tailAudit streams events matching the filter as they are committed on any
// replica, in commit order (auditdb.Tailer).
func (s *Server) tailAudit(req *mcpgwv1.TailAuditRequest, stream mcpgwv1.AdminService_TailAuditServer) error {
	a, err := s.auditStore()
	if err != nil {
		return err
	}
	if sid := req.GetFilter().GetSessionId(); sid != "" {
		return invalidArg("filter.session_id", "filtering by session is not supported yet")
	}
	tl, err := a.OpenTail(auditFilter(req.GetFilter()), 0)
	if err != nil {
		return invalidArg("filter", err.Error())
	}
	ctx := stream.Context()
	if _, err := tl.Poll(ctx); err != nil {
		return toStatus(err)
	}
	if err := stream.SendHeader(metadata.Pairs(TailLiveHeader, "1")); err != nil {
		return err
	}
	t := time.NewTicker(tailPollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		events, err := tl.Poll(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return toStatus(err)
		}
		for len(events) > 0 {
			n := min(len(events), tailMaxPerMsg)
			msg := &mcpgwv1.TailAuditResponse{Events: make([]*mcpgwv1.AuditEvent, n)}
			for i := range n {
				msg.Events[i] = auditEventProto(events[i])
			}
			if err := stream.Send(msg); err != nil {
				return err
			}
			events = events[n:]
		}
	}
}
