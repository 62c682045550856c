package admin

import (
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	mcpgwv1 "github.com/mcpgw/mcpgw/gen/mcpgw/v1"
)

// TailAudit needs commit notifications from the audit ingest, which do not
// exist yet; it says so rather than pretending to stream.
func (s *Server) TailAudit(*mcpgwv1.TailAuditRequest, mcpgwv1.AdminService_TailAuditServer) error {
	return status.Error(codes.Unimplemented, "TailAudit is not implemented yet in this control plane; use QueryAudit (mcpctl audit query) meanwhile")
}
