// Package admin implements the AdminService (mcpctl ↔ control plane): CRUD
// of the configuration with validation by the edges' own compiler,
// ApplyPolicy with diffs, API keys and join tokens whose secrets are shown
// once, the node registry, Check/explain and rollout watching. It is the RPC
// boundary: the store speaks in typed Go errors and this package alone turns
// them into gRPC codes with messages meant for people.
package admin

import (
	"context"
	"log/slog"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mcpgw/mcpgw/controlplane/store"
	mcpgwv1 "github.com/mcpgw/mcpgw/gen/mcpgw/v1"
	"github.com/mcpgw/mcpgw/internal/buildinfo"
)

// Options configure a Server.
type Options struct {
	Store Store
	// Audit serves QueryAudit, VerifyAudit and TailAudit; nil leaves them
	// Unimplemented.
	Audit AuditStore
	// Replica names this control-plane replica (GetServerInfo).
	Replica string
	Logger  *slog.Logger
	// RolloutPoll is how often WatchRollout re-reads node state (default
	// 100ms; node status reaches the table within about 200ms).
	RolloutPoll time.Duration
}

// Server is the AdminService implementation. Register it on a gRPC server
// built with Interceptors (authentication lives there).
type Server struct {
	mcpgwv1.UnimplementedAdminServiceServer
	st          Store
	audit       AuditStore
	replica     string
	log         *slog.Logger
	rolloutPoll time.Duration
}

// New returns a Server over the options' store.
func New(o Options) *Server {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.RolloutPoll <= 0 {
		o.RolloutPoll = 100 * time.Millisecond
	}
	return &Server{st: o.Store, audit: o.Audit, replica: o.Replica, log: o.Logger, rolloutPoll: o.RolloutPoll}
}

// Register adds the AdminService to s.
func (s *Server) Register(g *grpc.Server) { mcpgwv1.RegisterAdminServiceServer(g, s) }

// GetServerInfo reports the replica's version and the current revision.
func (s *Server) GetServerInfo(ctx context.Context, _ *mcpgwv1.GetServerInfoRequest) (*mcpgwv1.GetServerInfoResponse, error) {
	rev, err := s.st.CurrentRevision(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	return &mcpgwv1.GetServerInfoResponse{Version: buildinfo.Get(), Replica: s.replica, Revision: rev, ServerTime: timestamppb.Now()}, nil
}

// meta is who is writing (from the authenticated identity) and with which RPC.
func meta(ctx context.Context, op string) store.Meta {
	return store.Meta{Actor: ActorFrom(ctx), Operation: op}
}
