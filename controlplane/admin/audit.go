package admin

import (
	"context"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	mcpgwv1 "github.com/mcpgw/mcpgw/gen/mcpgw/v1"
	"github.com/mcpgw/mcpgw/internal/audit"
	"github.com/mcpgw/mcpgw/internal/auditdb"
)

func (s *Server) auditStore() (AuditStore, error) {
	if s.audit == nil {
		return nil, status.Error(codes.Unimplemented, "audit queries are not enabled on this control plane")
	}
	return s.audit, nil
}

func auditFilter(f *mcpgwv1.AuditFilter) auditdb.Filter {
	out := auditdb.Filter{Principal: f.GetPrincipal(), Node: f.GetNodeId(), Backend: f.GetBackend(), Name: f.GetName(),
		Method: f.GetMethod(), Status: f.GetStatus(), Decision: f.GetDecision()}
	if f.GetStartTime() != nil {
		out.Since = f.GetStartTime().AsTime()
	}
	if f.GetEndTime() != nil {
		out.Until = f.GetEndTime().AsTime()
	}
	return out
}

func auditEventProto(e audit.Event) *mcpgwv1.AuditEvent {
	return &mcpgwv1.AuditEvent{
		Id: e.ID.String(), Ts: timestamppb.New(e.TS), NodeId: e.NodeID, SessionId: e.SessionID, Principal: e.Principal,
		Transport: e.Transport, ProtocolVersion: e.ProtocolVersion, ClientName: e.ClientName, ClientVersion: e.ClientVersion,
		Method: e.Method, Backend: e.Backend, Name: e.Name, Decision: e.Decision, Rule: e.Rule, PolicyRevision: e.PolicyRevision,
		Status: e.Status, Error: e.Error, LatencyUs: e.LatencyUS, UpstreamLatencyUs: e.UpstreamLatencyUS,
		RequestBytes: e.RequestBytes, ResponseBytes: e.ResponseBytes, ArgsSha256: e.ArgsSHA256, TraceId: e.TraceID,
	}
}

// QueryAudit returns committed audit events, newest first, with keyset
// pagination (internal/auditdb).
func (s *Server) QueryAudit(ctx context.Context, req *mcpgwv1.QueryAuditRequest) (*mcpgwv1.QueryAuditResponse, error) {
	a, err := s.auditStore()
	if err != nil {
		return nil, err
	}
	if sid := req.GetFilter().GetSessionId(); sid != "" {
		return nil, invalidArg("filter.session_id", "filtering by session is not supported yet")
	}
	events, next, err := a.Query(ctx, auditFilter(req.GetFilter()), req.GetPageToken(), pageSize(req.GetPageSize()))
	if err != nil {
		if ctx.Err() == nil && strings.Contains(err.Error(), "page token") {
			return nil, invalidArg("page_token", err.Error())
		}
		return nil, toStatus(err)
	}
	out := &mcpgwv1.QueryAuditResponse{NextPageToken: next}
	for _, e := range events {
		out.Events = append(out.Events, auditEventProto(e))
	}
	return out, nil
}

// VerifyAudit checks node chains against the ledger and the stored events.
func (s *Server) VerifyAudit(ctx context.Context, req *mcpgwv1.VerifyAuditRequest) (*mcpgwv1.VerifyAuditResponse, error) {
	a, err := s.auditStore()
	if err != nil {
		return nil, err
	}
	nodes := []string{req.GetNodeId()}
	if req.GetNodeId() == "" {
		if nodes, err = a.Nodes(ctx); err != nil {
			return nil, toStatus(err)
		}
	}
	out := &mcpgwv1.VerifyAuditResponse{Complete: true}
	for _, n := range nodes {
		rep, err := a.Verify(ctx, n)
		if err != nil {
			return nil, toStatus(err)
		}
		// A chain with recorded drops is intact but not complete: events the
		// edge handled are not in the log (AuditChainReport.complete).
		r := &mcpgwv1.AuditChainReport{NodeId: rep.Node, Complete: rep.ChainComplete && rep.Dropped == 0}
		for _, ep := range rep.Epochs {
			e := &mcpgwv1.AuditEpochReport{Epoch: uint64(ep.Epoch), FirstSeq: uint64(ep.FirstSeq), LastSeq: uint64(ep.LastSeq),
				Batches: uint64(ep.Batches), LedgerEvents: uint64(ep.Events), RejectedEvents: uint64(ep.Rejected), DroppedEvents: uint64(ep.Dropped),
				PrunedThroughSeq: uint64(ep.Pruned.Through), PrunedBatches: uint64(ep.Pruned.Batches)}
			for _, m := range ep.Missing {
				e.Missing = append(e.Missing, &mcpgwv1.SeqRange{First: uint64(m.From), Last: uint64(m.To)})
			}
			for _, b := range ep.BrokenLinks {
				e.BrokenLinks = append(e.BrokenLinks, uint64(b))
			}
			for _, c := range ep.CRCFailures {
				e.CrcFailures = append(e.CrcFailures, uint64(c))
			}
			for _, g := range ep.Gaps {
				pg := &mcpgwv1.AuditGap{Seq: uint64(g.Seq), Events: uint64(g.Events)}
				if !g.First.IsZero() {
					pg.FirstEventTime, pg.LastEventTime = timestamppb.New(g.First), timestamppb.New(g.Last)
				}
				e.Gaps = append(e.Gaps, pg)
			}
			// Stored counts are known per node, not per epoch; an epoch is
			// complete on its own chain evidence.
			e.Complete = len(ep.Missing) == 0 && len(ep.BrokenLinks) == 0 && len(ep.CRCFailures) == 0 && ep.Dropped == 0
			r.Epochs = append(r.Epochs, e)
		}
		if len(r.Epochs) == 1 {
			r.Epochs[0].StoredEvents = uint64(rep.StoredEvents)
		}
		out.Reports = append(out.Reports, r)
		out.Complete = out.Complete && r.Complete
	}
	return out, nil
}

// TailAudit streams committed audit events live (audit_tail.go).
func (s *Server) TailAudit(req *mcpgwv1.TailAuditRequest, stream mcpgwv1.AdminService_TailAuditServer) error {
	return s.tailAudit(req, stream)
}
