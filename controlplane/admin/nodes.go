package admin

import (
	"context"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/mcpgw/mcpgw/controlplane/store"
	mcpgwv1 "github.com/mcpgw/mcpgw/gen/mcpgw/v1"
)

func nodeProto(n store.Node) *mcpgwv1.Node {
	p := &mcpgwv1.Node{
		Id: n.ID.String(), Name: n.Name, NodeGroup: n.NodeGroup, Labels: n.Labels, Version: n.Version,
		EnrollTime: ts(n.EnrolledAt), CertificateExpireTime: ts(n.CertNotAfter), LastSeenTime: ts(n.LastSeen),
		Connected: n.ConnectedReplica != "", ConnectedReplica: n.ConnectedReplica,
		AppliedRevision: n.AppliedRevision, AppliedHash: n.AppliedHash, RevokeTime: ts(n.RevokedAt),
	}
	if n.LastNackError != "" || n.LastNackRevision != 0 {
		p.LastNack = rejectionProto(n.LastNackRevision, n.LastNackError, n.LastNackRejected, n.LastNackAt)
	}
	if len(n.StatusJSON) > 0 {
		var st mcpgwv1.EdgeStatus
		// Written by the node API as protojson of this very message; a row
		// that does not parse (an older or newer edge) is shown without it.
		if protojson.Unmarshal(n.StatusJSON, &st) == nil {
			p.Status = &st
		}
	}
	if p.Status == nil && (n.SpoolDepthBytes > 0 || n.SpoolDepthBatches > 0) {
		p.Status = &mcpgwv1.EdgeStatus{AuditSpool: &mcpgwv1.AuditSpoolStatus{DepthBytes: n.SpoolDepthBytes, DepthBatches: n.SpoolDepthBatches}}
	}
	return p
}

// rejectionProto rebuilds a NACK from its columns; rejectedJSON is the JSON
// array of ResourceError (protojson, proto names) the node API stores.
func rejectionProto(rev int64, msg string, rejectedJSON []byte, at time.Time) *mcpgwv1.ConfigRejection {
	r := &mcpgwv1.ConfigRejection{Revision: rev, Error: msg, Time: ts(at)}
	if len(rejectedJSON) > 0 {
		// Parse through a wrapper message so protojson handles the enum.
		var wrap mcpgwv1.ConfigRejection
		if protojson.Unmarshal(append(append([]byte(`{"rejected":`), rejectedJSON...), '}'), &wrap) == nil {
			r.Rejected = wrap.GetRejected()
		}
	}
	return r
}

func parseNodeID(s string) (uuid.UUID, error) {
	id, err := uuid.Parse(s)
	if err != nil {
		return uuid.Nil, invalidArg("node_id", "not a node id (UUID)")
	}
	return id, nil
}

func (s *Server) ListNodes(ctx context.Context, req *mcpgwv1.ListNodesRequest) (*mcpgwv1.ListNodesResponse, error) {
	after, err := decodeNodeCursor(req.GetPageToken())
	if err != nil {
		return nil, err
	}
	n := pageSize(req.GetPageSize())
	nodes, rev, err := s.st.ListNodes(ctx, store.NodeFilter{NodeGroup: req.GetNodeGroup(), IncludeRevoked: req.GetIncludeRevoked(), After: after, Limit: n + 1})
	if err != nil {
		return nil, toStatus(err)
	}
	nodes, next := nextToken(nodes, n, "nodes", func(n store.Node) string { return n.ID.String() })
	out := &mcpgwv1.ListNodesResponse{NextPageToken: next, Revision: rev}
	for _, nd := range nodes {
		out.Nodes = append(out.Nodes, nodeProto(nd))
	}
	return out, nil
}

func (s *Server) GetNode(ctx context.Context, req *mcpgwv1.GetNodeRequest) (*mcpgwv1.GetNodeResponse, error) {
	id, err := parseNodeID(req.GetNodeId())
	if err != nil {
		return nil, err
	}
	n, err := s.st.GetNode(ctx, id)
	if err != nil {
		return nil, toStatus(err)
	}
	return &mcpgwv1.GetNodeResponse{Node: nodeProto(n)}, nil
}

// RevokeNode revokes a node. Its certificate is refused from then on; the
// replica holding its streams closes them when it next checks revocations.
func (s *Server) RevokeNode(ctx context.Context, req *mcpgwv1.RevokeNodeRequest) (*mcpgwv1.RevokeNodeResponse, error) {
	id, err := parseNodeID(req.GetNodeId())
	if err != nil {
		return nil, err
	}
	n, err := s.st.RevokeNode(ctx, id)
	if err != nil {
		return nil, toStatus(err)
	}
	return &mcpgwv1.RevokeNodeResponse{Node: nodeProto(n)}, nil
}
