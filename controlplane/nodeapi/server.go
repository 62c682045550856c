// Package nodeapi is the control plane's side of NodeService: enrollment
// (join token + CSR → node certificate), certificate renewal, and
// ConfigStream, which pushes the shared per-group config snapshots of
// controlplane/snapshot to the edges and records their ACKs, NACKs and
// status reports in a node registry that is flushed to the store in batches.
//
// Node identity comes only from the verified client certificate (its common
// name is the node id). Every stream runs on its own goroutine and shares
// nothing on its send path with other streams, so a slow or stuck edge
// delays only itself. gRPC status codes are attached here and nowhere below.
package nodeapi

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mcpgw/mcpgw/controlplane/pki"
	"github.com/mcpgw/mcpgw/controlplane/snapshot"
	"github.com/mcpgw/mcpgw/controlplane/store"
	mcpgwv1 "github.com/mcpgw/mcpgw/gen/mcpgw/v1"
)

// CA signs node certificates; *pki.CA is the installation's.
type CA interface {
	// SignNodeCSR issues a client certificate naming nodeID for the key of
	// a PKCS#10 CSR (PEM or DER).
	SignNodeCSR(csr []byte, nodeID string, lifetime time.Duration) (pki.NodeCertificate, error)
	// CertPEM returns the CA certificate edges must trust, PEM.
	CertPEM() []byte
}

// Store is the node registry the server enrolls into and reports to:
// *store.NodeStore on Postgres, *sqlitestore.Store embedded.
type Store interface {
	// EnrollNode consumes a join token and creates the node, atomically.
	EnrollNode(ctx context.Context, p store.EnrollParams) (store.EnrolledNode, error)
	// NodeIdentity returns a node's registry entry, or store.ErrNodeNotFound.
	NodeIdentity(ctx context.Context, id uuid.UUID) (store.NodeIdentity, error)
	// RecordNodeCertificate records a renewed certificate.
	RecordNodeCertificate(ctx context.Context, id uuid.UUID, serial, fingerprint string, notAfter time.Time) error
	// RevokedNodes returns those of ids that are revoked.
	RevokedNodes(ctx context.Context, ids []uuid.UUID) ([]uuid.UUID, error)
	// FlushNodeStatus writes a batch of status updates made by replica.
	FlushNodeStatus(ctx context.Context, replica string, updates []store.NodeStatusUpdate) error
	// ReleaseReplicaNodes clears the connection of nodes held by replica.
	ReleaseReplicaNodes(ctx context.Context, replica string) error
}

// Config configures a Server. Store, Cache and CA are required.
type Config struct {
	Store Store
	Cache *snapshot.Cache
	CA    CA
	// Replica names this control plane replica in the node registry
	// (nodes.connected_replica). Required.
	Replica string
	// CertTTL is the lifetime of node certificates. Default 24h; edges renew
	// at two thirds of it.
	CertTTL time.Duration
	// FlushInterval is how often the node registry writes what changed.
	// Default 150ms.
	FlushInterval time.Duration
	// RevocationInterval is how often the nodes connected here are checked
	// for revocation by any replica. Default 2s.
	RevocationInterval time.Duration
	// SeenInterval is how often connected nodes get last_seen refreshed even
	// when they say nothing. Default 30s.
	SeenInterval time.Duration
	// HelloTimeout bounds the wait for a stream's first message. Default 10s.
	HelloTimeout time.Duration
	// MaxConnectionAge is how long an edge's connection may live before the
	// replica asks it (GOAWAY) to reconnect, which spreads edges over
	// replicas added since; MaxConnectionAgeGrace is how long its streams
	// get to finish after that. Defaults 30m and 30s.
	MaxConnectionAge, MaxConnectionAgeGrace time.Duration
	// Registerer receives the Prometheus metrics; nil = not exported.
	Registerer prometheus.Registerer
	Logger     *slog.Logger
	// AuditStream serves NodeService.AuditStream (controlplane/ingest). It
	// is called only for an enrolled, unrevoked node, with the node id taken
	// from the verified client certificate. It returns the RPC's status
	// error. nil = Unimplemented.
	AuditStream func(nodeID uuid.UUID, stream grpc.BidiStreamingServer[mcpgwv1.AuditStreamRequest, mcpgwv1.AuditStreamResponse]) error
	// OnAck, when set, is called on every ACK with the node and revision.
	// For benchmarks and tests; it runs on the stream's goroutine.
	OnAck func(node uuid.UUID, revision int64)
}

// Server implements mcpgwv1.NodeServiceServer.
type Server struct {
	mcpgwv1.UnimplementedNodeServiceServer
	cfg     Config
	reg     *registry
	metrics *metrics
	// rawSends is true when the gRPC server was built with ServerOptions,
	// whose codec lets streams send the shared snapshot bytes uncopied.
	rawSends atomic.Bool
	// header is sent on every accepted ConfigStream; gRPC copies it.
	header metadata.MD
	// Counters for tests; the Prometheus series carry the same numbers.
	streamsOpened    atomic.Int64
	snapshotsSent    atomic.Int64
	payloadBytesSent atomic.Int64
}

// New validates cfg and returns a Server. Run must be running for status to
// reach the store.
func New(cfg Config) (*Server, error) {
	if cfg.Store == nil || cfg.Cache == nil || cfg.CA == nil {
		return nil, errors.New("nodeapi: Store, Cache and CA are required")
	}
	if cfg.Replica == "" {
		return nil, errors.New("nodeapi: Replica is required")
	}
	if cfg.CertTTL <= 0 {
		cfg.CertTTL = 24 * time.Hour
	}
	if cfg.FlushInterval <= 0 {
		cfg.FlushInterval = 150 * time.Millisecond
	}
	if cfg.RevocationInterval <= 0 {
		cfg.RevocationInterval = 2 * time.Second
	}
	if cfg.SeenInterval <= 0 {
		cfg.SeenInterval = 30 * time.Second
	}
	if cfg.HelloTimeout <= 0 {
		cfg.HelloTimeout = 10 * time.Second
	}
	if cfg.MaxConnectionAge <= 0 {
		cfg.MaxConnectionAge = 30 * time.Minute
	}
	if cfg.MaxConnectionAgeGrace <= 0 {
		cfg.MaxConnectionAgeGrace = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Server{cfg: cfg, reg: newRegistry(), header: metadata.Pairs(ReplicaHeader, cfg.Replica)}
	m, err := newMetrics(cfg.Registerer, func() float64 { return float64(s.reg.connected()) }, cfg.Cache)
	if err != nil {
		return nil, fmt.Errorf("nodeapi: registering metrics: %w", err)
	}
	s.metrics = m
	return s, nil
}

// ServerOptions returns the options the node listener's gRPC server should
// be built with: keepalive enforcement, a maximum connection age so that
// edges spread over replicas as replicas come and go, small per-connection
// buffers (a thousand idle edges must not cost a thousand 64 KiB buffer
// pairs), and the codec that sends shared snapshot bytes without copying.
// Pass the server's TLS credentials (ServerTLSConfig) separately.
func (s *Server) ServerOptions() []grpc.ServerOption {
	s.rawSends.Store(true)
	return []grpc.ServerOption{
		grpc.ForceServerCodecV2(newSnapshotCodec()),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			// gRPC adds ±10% jitter, so reconnects do not come in waves.
			MaxConnectionAge:      s.cfg.MaxConnectionAge,
			MaxConnectionAgeGrace: s.cfg.MaxConnectionAgeGrace,
			Time:                  30 * time.Second,
			Timeout:               10 * time.Second,
		}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
			MinTime:             10 * time.Second,
			PermitWithoutStream: true,
		}),
		// The write buffer is returned to a pool after each flush instead of
		// being held by every idle connection. Reads go straight to the TLS
		// connection, which buffers whole records itself: a bufio reader on
		// top would cost every edge a buffer for nothing.
		grpc.SharedWriteBuffer(true),
		grpc.WriteBufferSize(16 << 10),
		grpc.ReadBufferSize(0),
		grpc.MaxRecvMsgSize(4 << 20),
	}
}

// Run flushes the node registry, refreshes last_seen of connected nodes and
// closes the streams of nodes revoked through any replica, until ctx ends;
// then it makes a last flush and marks this replica's nodes disconnected.
func (s *Server) Run(ctx context.Context) error {
	// A previous incarnation of this replica may have died with nodes
	// recorded as connected to it.
	if err := s.cfg.Store.ReleaseReplicaNodes(ctx, s.cfg.Replica); err != nil {
		s.cfg.Logger.Warn("releasing nodes of a previous run of this replica", "err", err)
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		t := time.NewTicker(s.cfg.FlushInterval)
		defer t.Stop()
		for {
			select {
			case <-gctx.Done():
				return nil
			case <-t.C:
				s.flush(gctx)
			}
		}
	})
	g.Go(func() error {
		t := time.NewTicker(s.cfg.RevocationInterval)
		defer t.Stop()
		for {
			select {
			case <-gctx.Done():
				return nil
			case <-t.C:
				s.closeRevoked(gctx)
			}
		}
	})
	g.Go(func() error {
		t := time.NewTicker(s.cfg.SeenInterval)
		defer t.Stop()
		for {
			select {
			case <-gctx.Done():
				return nil
			case <-t.C:
				s.reg.touchAll()
			}
		}
	})
	err := g.Wait()
	final, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	s.flush(final)
	if rerr := s.cfg.Store.ReleaseReplicaNodes(final, s.cfg.Replica); rerr != nil {
		s.cfg.Logger.Warn("marking this replica's nodes disconnected", "err", rerr)
	}
	return err
}

func (s *Server) flush(ctx context.Context) {
	updates := s.reg.take()
	if len(updates) == 0 {
		return
	}
	if err := s.cfg.Store.FlushNodeStatus(ctx, s.cfg.Replica, updates); err != nil {
		s.metrics.flushErrors.Inc()
		s.reg.giveBack(updates)
		if ctx.Err() == nil {
			s.cfg.Logger.Warn("flushing node registry failed; will retry", "nodes", len(updates), "err", err)
		}
	}
}

func (s *Server) closeRevoked(ctx context.Context) {
	ids := s.reg.streamIDs()
	if len(ids) == 0 {
		return
	}
	revoked, err := s.cfg.Store.RevokedNodes(ctx, ids)
	if err != nil {
		if ctx.Err() == nil {
			s.cfg.Logger.Warn("checking connected nodes for revocation", "err", err)
		}
		return
	}
	for _, id := range revoked {
		s.cfg.Logger.Info("closing stream of revoked node", "node", id)
		s.reg.kick(id, errRevoked)
	}
}

// Enroll implements NodeService.Enroll.
func (s *Server) Enroll(ctx context.Context, req *mcpgwv1.EnrollRequest) (*mcpgwv1.EnrollResponse, error) {
	if req.GetJoinToken() == "" {
		return nil, status.Error(codes.InvalidArgument, "join_token is required")
	}
	if _, err := parseCSR(req.GetCsr()); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	id, err := uuid.NewV7()
	if err != nil {
		return nil, status.Errorf(codes.Internal, "minting node id: %v", err)
	}
	cert, err := s.cfg.CA.SignNodeCSR(req.GetCsr(), id.String(), s.cfg.CertTTL)
	if err != nil {
		s.cfg.Logger.Error("signing node certificate", "node", id, "err", err)
		return nil, status.Error(codes.Internal, "signing the node certificate failed")
	}
	sum := sha256.Sum256([]byte(req.GetJoinToken()))
	node, err := s.cfg.Store.EnrollNode(ctx, store.EnrollParams{
		JoinTokenSHA256: hex.EncodeToString(sum[:]),
		ID:              id,
		Name:            req.GetName(),
		Version:         req.GetVersion(),
		Labels:          req.GetLabels(),
		CertSerial:      cert.Serial,
		CertFingerprint: cert.Fingerprint,
		CertNotAfter:    cert.NotAfter,
	})
	if errors.Is(err, store.ErrJoinTokenRefused) {
		return nil, status.Error(codes.PermissionDenied, "join token refused: unknown, used, revoked or expired")
	}
	if err != nil {
		s.cfg.Logger.Error("enrolling node", "err", err)
		return nil, status.Error(codes.Unavailable, "enrollment failed: the control plane cannot reach its store")
	}
	s.cfg.Logger.Info("node enrolled", "node", id, "group", node.NodeGroup, "name", req.GetName())
	return &mcpgwv1.EnrollResponse{
		NodeId:           id.String(),
		CertificateChain: cert.ChainPEM,
		CaBundle:         s.cfg.CA.CertPEM(),
		RenewTime:        timestamppb.New(cert.RenewAt),
		NodeGroup:        node.NodeGroup,
	}, nil
}

// RenewCertificate implements NodeService.RenewCertificate.
func (s *Server) RenewCertificate(ctx context.Context, req *mcpgwv1.RenewCertificateRequest) (*mcpgwv1.RenewCertificateResponse, error) {
	id, err := peerNodeID(ctx)
	if err != nil {
		return nil, err
	}
	if _, err := s.checkNode(ctx, id); err != nil {
		return nil, err
	}
	if _, err := parseCSR(req.GetCsr()); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	cert, err := s.cfg.CA.SignNodeCSR(req.GetCsr(), id.String(), s.cfg.CertTTL)
	if err != nil {
		s.cfg.Logger.Error("signing node certificate", "node", id, "err", err)
		return nil, status.Error(codes.Internal, "signing the node certificate failed")
	}
	if err := s.cfg.Store.RecordNodeCertificate(ctx, id, cert.Serial, cert.Fingerprint, cert.NotAfter); err != nil {
		if errors.Is(err, store.ErrNodeNotFound) {
			return nil, status.Error(codes.PermissionDenied, "node revoked or unknown")
		}
		s.cfg.Logger.Error("recording renewed certificate", "node", id, "err", err)
		return nil, status.Error(codes.Unavailable, "renewal failed: the control plane cannot reach its store")
	}
	return &mcpgwv1.RenewCertificateResponse{
		CertificateChain: cert.ChainPEM,
		CaBundle:         s.cfg.CA.CertPEM(),
		RenewTime:        timestamppb.New(cert.RenewAt),
	}, nil
}

// AuditStream implements NodeService.AuditStream by handing the stream to
// the configured audit ingest.
func (s *Server) AuditStream(stream grpc.BidiStreamingServer[mcpgwv1.AuditStreamRequest, mcpgwv1.AuditStreamResponse]) error {
	if s.cfg.AuditStream == nil {
		return status.Error(codes.Unimplemented, "audit ingest is not configured on this control plane")
	}
	id, err := peerNodeID(stream.Context())
	if err != nil {
		return err
	}
	if _, err := s.checkNode(stream.Context(), id); err != nil {
		return err
	}
	return s.cfg.AuditStream(id, stream)
}

// checkNode refuses unknown and revoked nodes.
func (s *Server) checkNode(ctx context.Context, id uuid.UUID) (store.NodeIdentity, error) {
	n, err := s.cfg.Store.NodeIdentity(ctx, id)
	if errors.Is(err, store.ErrNodeNotFound) {
		return n, status.Error(codes.PermissionDenied, "unknown node")
	}
	if err != nil {
		s.cfg.Logger.Error("looking up node", "node", id, "err", err)
		return n, status.Error(codes.Unavailable, "the control plane cannot reach its store")
	}
	if n.RevokedAt != nil {
		return n, status.Error(codes.PermissionDenied, "node revoked")
	}
	return n, nil
}

// parseCSR accepts PEM or DER and checks the signature and key type.
func parseCSR(b []byte) (*x509.CertificateRequest, error) {
	if len(b) == 0 {
		return nil, errors.New("csr is required")
	}
	der := b
	if blk, _ := pem.Decode(b); blk != nil {
		if blk.Type != "CERTIFICATE REQUEST" && blk.Type != "NEW CERTIFICATE REQUEST" {
			return nil, fmt.Errorf("csr: PEM block is %q, want CERTIFICATE REQUEST", blk.Type)
		}
		der = blk.Bytes
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, fmt.Errorf("csr: %w", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("csr: bad signature: %w", err)
	}
	switch csr.PublicKeyAlgorithm {
	case x509.ECDSA, x509.Ed25519:
	default:
		return nil, fmt.Errorf("csr: key algorithm %v not accepted (use ECDSA P-256 or Ed25519)", csr.PublicKeyAlgorithm)
	}
	return csr, nil
}

// peerNodeID returns the node id from the verified client certificate of
// the call: the only source of node identity.
func peerNodeID(ctx context.Context) (uuid.UUID, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return uuid.Nil, status.Error(codes.Unauthenticated, "no peer")
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.VerifiedChains) == 0 || len(info.State.VerifiedChains[0]) == 0 {
		return uuid.Nil, status.Error(codes.Unauthenticated, "a client certificate issued by the installation CA is required")
	}
	name, err := pki.NodeID(info.State.VerifiedChains[0][0])
	if err != nil {
		return uuid.Nil, status.Error(codes.Unauthenticated, "client certificate is not a node certificate")
	}
	id, err := uuid.Parse(name)
	if err != nil {
		return uuid.Nil, status.Error(codes.Unauthenticated, "client certificate does not name a node")
	}
	return id, nil
}
