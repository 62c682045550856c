// Package cpclient is the edge's control-plane client: it enrolls the edge
// once (join token + CSR; the private key never leaves the state dir), keeps
// one ConfigStream open, and turns every snapshot into a validated Update
// that an Applier makes live, ACKing only after the new state is swapped in
// and written to the last-known-good cache, NACKing anything it cannot
// apply while the previous state keeps serving. When the control plane is
// unreachable at start the cached config is applied at once, so an edge
// serves its last policy without waiting for the network.
//
// The package knows nothing about how the edge builds state: that is the
// Applier, which dataplane provides.
package cpclient

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	mcpgwv1 "github.com/mcpgw/mcpgw/gen/mcpgw/v1"
	"github.com/mcpgw/mcpgw/internal/policy"
	"github.com/mcpgw/mcpgw/internal/wait"
)

// Applier makes a validated config live: it builds the complete new state
// off to the side and swaps it in atomically, or returns an error and leaves
// the current state serving untouched (never a partial apply). An error that
// is or wraps a *ConfigError names the resources at fault in the NACK.
// Apply is never called concurrently with itself.
type Applier interface {
	Apply(ctx context.Context, u *Update) error
}

// ApplierFunc adapts a function to Applier.
type ApplierFunc func(ctx context.Context, u *Update) error

// Apply calls f.
func (f ApplierFunc) Apply(ctx context.Context, u *Update) error { return f(ctx, u) }

// Config configures a Client.
type Config struct {
	// ControlPlane is the node listener, HOST:PORT. Required.
	ControlPlane string
	// CAFile is a PEM bundle trusted for the control plane's certificate
	// (DATA_DIR/ca.crt of a replica). Optional once the state dir holds the
	// bundle from enrollment.
	CAFile string
	// JoinToken is needed only for the first start; later starts use the
	// identity in StateDir.
	JoinToken string
	// StateDir holds the node's key and certificate, the CA bundle, the node
	// id and the last-known-good config. Required; created 0700.
	StateDir string
	// Name is the display name reported at enrollment; "" = host name.
	Name string
	// Version is this edge's build version.
	Version string
	// Labels are reported at enrollment; the join token's win on conflict.
	Labels map[string]string
	// Applier makes configs live. Required.
	Applier Applier
	// Validate, when set, is an extra check run on every Update before
	// Apply (for example compiling policy); an error is a NACK.
	Validate func(*Update) error
	// Status, when set, is sent as an EdgeStatus every StatusInterval.
	Status         func() *mcpgwv1.EdgeStatus
	StatusInterval time.Duration
	// ServerName overrides the TLS server name (default: ControlPlane's host).
	ServerName string
	// MinBackoff and MaxBackoff bound reconnect delays (defaults 250ms, 30s).
	MinBackoff, MaxBackoff time.Duration
	Logger                 *slog.Logger
	// DialOptions are added to the gRPC dial options (tests, tuning).
	DialOptions []grpc.DialOption
}

// Client is the edge's control-plane client. Create it with New and run it
// with Run.
type Client struct {
	cfg        Config
	log        *slog.Logger
	roots      *x509.CertPool
	serverName string
	// id is the current key and certificate; renewal swaps it, and every new
	// TLS handshake reads it.
	id      atomic.Pointer[identity]
	nodeID  atomic.Pointer[string]
	applied atomic.Pointer[appliedState]

	snapshots    atomic.Int64
	payloadBytes atomic.Int64
	acks         atomic.Int64
	nacks        atomic.Int64

	// connected is true while a ConfigStream is accepted by a replica.
	connected atomic.Bool
	// refused holds the control plane's refusal of this node (revoked,
	// unknown) from the last attempt to open a stream; nil otherwise.
	refused atomic.Pointer[error]
	// conn is Run's connection to the control plane, shared with the audit
	// shipper (Conn); connReady is closed once it is set, runDone once Run
	// returned (the connection is closed then).
	conn      atomic.Pointer[grpc.ClientConn]
	connReady chan struct{}
	runDone   chan struct{}

	// idMu serializes Identity, which Run and the edge's wiring may both
	// call; it guards enrolled.
	idMu     sync.Mutex
	enrolled bool
	// enrollErr is why the last enrollment attempt failed, while the edge
	// retries (nil once enrolled or before the first attempt).
	enrollErr atomic.Pointer[error]
	// report asks the stream's status reporter for a report now.
	report chan struct{}
	// rejected is the last snapshot NACKed, until a config at least as new
	// is applied.
	rejected atomic.Pointer[Rejection]
}

// Rejection is a snapshot the edge refused (NACKed).
type Rejection struct {
	Revision int64
	Error    string
}

// appliedState is what the edge serves now.
type appliedState struct {
	update *Update
	// raw is the uncompressed payload, kept to rewrite the cache when only
	// the revision moves.
	raw []byte
}

// New checks cfg and returns a Client.
func New(cfg Config) (*Client, error) {
	if cfg.ControlPlane == "" {
		return nil, errors.New("cpclient: ControlPlane is required")
	}
	if cfg.StateDir == "" {
		return nil, errors.New("cpclient: StateDir is required")
	}
	if cfg.Applier == nil {
		return nil, errors.New("cpclient: Applier is required")
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = 250 * time.Millisecond
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 30 * time.Second
	}
	if cfg.StatusInterval <= 0 {
		cfg.StatusInterval = 20 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Name == "" {
		cfg.Name, _ = os.Hostname()
	}
	c := &Client{cfg: cfg, log: cfg.Logger, roots: x509.NewCertPool(), serverName: cfg.ServerName,
		connReady: make(chan struct{}), runDone: make(chan struct{}), report: make(chan struct{}, 1)}
	if c.serverName == "" {
		host, _, err := net.SplitHostPort(cfg.ControlPlane)
		if err != nil {
			return nil, fmt.Errorf("cpclient: control plane address %q: %w", cfg.ControlPlane, err)
		}
		c.serverName = host
	}
	return c, nil
}

// ControlPlane returns the control plane's address, as configured.
func (c *Client) ControlPlane() string { return c.cfg.ControlPlane }

// Applied returns the revision and hash the edge serves (0, "" for none).
func (c *Client) Applied() (int64, string) {
	if a := c.applied.Load(); a != nil {
		return a.update.Revision, a.update.Hash
	}
	return 0, ""
}

// NodeID returns the node id once enrolled ("" before).
func (c *Client) NodeID() string {
	if p := c.nodeID.Load(); p != nil {
		return *p
	}
	return ""
}

// Refused returns the control plane's refusal of this node (it was revoked,
// or is unknown to it) from the last attempt to open a ConfigStream, nil
// when the last attempt was not refused that way. The edge keeps serving
// its current config meanwhile.
func (c *Client) Refused() error {
	if p := c.refused.Load(); p != nil {
		return *p
	}
	return nil
}

// Connected reports whether a ConfigStream is open and accepted by a
// control-plane replica now.
func (c *Client) Connected() bool { return c.connected.Load() }

// Conn returns the mTLS connection to the control plane that Run opened,
// waiting until it exists (after enrollment) or Run has ended. Other node
// streams (the audit shipper's AuditStream) use it, so an edge has one
// HTTP/2 connection and one identity towards the control plane (DESIGN §3).
func (c *Client) Conn(ctx context.Context) (grpc.ClientConnInterface, error) {
	select {
	case <-c.connReady:
	case <-c.runDone:
		return nil, errors.New("the control-plane client has stopped")
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	select {
	case <-c.runDone:
		return nil, errors.New("the control-plane client has stopped")
	default:
	}
	return c.conn.Load(), nil
}

// Identity returns the node id, enrolling first (with the join token, with
// retries) when the state dir holds no identity yet. It touches the network
// only to enroll, so an enrolled edge learns its id at once even with the
// control plane down. Run calls it too; calling it first lets the edge tag
// its audit events with the node id before it serves anything. It returns
// "" and ctx's error when ctx ends while enrolling.
func (c *Client) Identity(ctx context.Context) (string, error) {
	c.idMu.Lock()
	defer c.idMu.Unlock()
	if c.enrolled {
		return c.NodeID(), nil
	}
	if err := os.MkdirAll(c.cfg.StateDir, 0o700); err != nil {
		return "", fmt.Errorf("creating state dir: %w", err)
	}
	if err := c.loadRoots(); err != nil {
		return "", err
	}
	id, info, err := loadIdentity(c.cfg.StateDir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if id, info, err = c.enrollWithRetry(ctx); err != nil {
			return "", err
		}
	case err != nil:
		return "", fmt.Errorf("reading the node identity in %s (remove it and enroll again with a new join token): %w", c.cfg.StateDir, err)
	}
	if id == nil { // ctx ended while enrolling
		return "", ctx.Err()
	}
	c.id.Store(id)
	c.nodeID.Store(&info.NodeID)
	c.log = c.log.With("node", info.NodeID)
	c.enrolled = true
	return info.NodeID, nil
}

// Rejected returns the last snapshot the edge NACKed, unless a config at
// least as new has been applied since; nil when there is none.
func (c *Client) Rejected() *Rejection { return c.rejected.Load() }

// ReportStatus asks for a status report (Config.Status) on the open
// ConfigStream now rather than at the next StatusInterval, or as soon as
// one opens; the client calls it itself after every applied config. It
// never blocks.
func (c *Client) ReportStatus() {
	select {
	case c.report <- struct{}{}:
	default: // a report is already due
	}
}

// EnrollError returns why the last enrollment attempt failed while a new
// edge keeps retrying (the control plane unreachable, say), nil otherwise.
func (c *Client) EnrollError() error {
	if p := c.enrollErr.Load(); p != nil {
		return *p
	}
	return nil
}

// Stats counts what the client received and answered since New.
type Stats struct {
	Snapshots    int64 // snapshot messages received
	PayloadBytes int64 // payload bytes received, as sent
	Acks, Nacks  int64
}

// Stats returns the client's counters.
func (c *Client) Stats() Stats {
	return Stats{Snapshots: c.snapshots.Load(), PayloadBytes: c.payloadBytes.Load(), Acks: c.acks.Load(), Nacks: c.nacks.Load()}
}

// Run applies the last-known-good config if there is one, enrolls if the
// state dir holds no identity, then keeps a ConfigStream to the control
// plane and applies what it sends, until ctx ends (then nil). It returns an
// error only for what retrying cannot fix: an unusable state dir, a refused
// join token, no join token for a new edge.
func (c *Client) Run(ctx context.Context) error {
	defer close(c.runDone)
	if err := os.MkdirAll(c.cfg.StateDir, 0o700); err != nil {
		return fmt.Errorf("creating state dir: %w", err)
	}
	c.applyLKG(ctx)

	if _, err := c.Identity(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}

	creds := credentials.NewTLS(&tls.Config{
		RootCAs:    c.roots,
		ServerName: c.serverName,
		MinVersion: tls.VersionTLS12,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return &c.id.Load().cert, nil
		},
	})
	opts := append([]grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 10 * time.Second, PermitWithoutStream: true}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxSnapshotBytes + 1<<20)),
	}, c.cfg.DialOptions...)
	conn, err := grpc.NewClient(c.cfg.ControlPlane, opts...)
	if err != nil {
		return fmt.Errorf("connecting to the control plane: %w", err)
	}
	defer conn.Close()
	c.conn.Store(conn)
	close(c.connReady)
	client := mcpgwv1.NewNodeServiceClient(conn)

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return c.streamLoop(gctx, client) })
	g.Go(func() error { return c.renewLoop(gctx, client) })
	return g.Wait()
}

func (c *Client) loadRoots() error {
	found := false
	for _, f := range []string{c.cfg.CAFile, filepath.Join(c.cfg.StateDir, caFile)} {
		if f == "" {
			continue
		}
		b, err := os.ReadFile(f)
		if errors.Is(err, fs.ErrNotExist) && f != c.cfg.CAFile {
			continue
		}
		if err != nil {
			return fmt.Errorf("reading CA bundle: %w", err)
		}
		if !c.roots.AppendCertsFromPEM(b) {
			return fmt.Errorf("CA bundle %s holds no certificates", f)
		}
		found = true
	}
	if !found {
		return errors.New("no CA bundle to trust the control plane with: pass the control plane's ca.crt (--ca-file)")
	}
	return nil
}

// applyLKG serves the cached config, if any, before anything touches the
// network. A cache that is missing or unusable is only logged.
func (c *Client) applyLKG(ctx context.Context) {
	start := time.Now()
	s, err := readLKG(c.cfg.StateDir)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			c.log.Warn("ignoring last-known-good config", "err", err)
		}
		return
	}
	if _, err := c.apply(ctx, s, false); err != nil {
		c.log.Warn("last-known-good config could not be applied", "revision", s.GetRevision(), "err", err)
		return
	}
	c.log.Info("serving last-known-good config", "revision", s.GetRevision(), "took", time.Since(start))
}

func (c *Client) enrollWithRetry(ctx context.Context) (*identity, nodeInfo, error) {
	backoff := c.cfg.MinBackoff
	for {
		id, info, err := c.enroll(ctx)
		if err == nil {
			c.enrollErr.Store(nil)
			c.log.Info("enrolled", "node", info.NodeID, "group", info.NodeGroup)
			return id, info, nil
		}
		c.enrollErr.Store(&err)
		switch status.Code(err) {
		case codes.PermissionDenied, codes.InvalidArgument, codes.Unauthenticated:
			return nil, nodeInfo{}, err
		}
		if c.cfg.JoinToken == "" {
			return nil, nodeInfo{}, err
		}
		c.log.Warn("enrollment failed; retrying", "err", err, "retry_in", backoff)
		if !wait.For(ctx, jitter(backoff)) {
			return nil, nodeInfo{}, nil
		}
		backoff = min(2*backoff, c.cfg.MaxBackoff)
	}
}

// streamLoop keeps a ConfigStream open. A stream that was up and then ended
// (GOAWAY from a replica reaching its maximum connection age, a replica
// shutting down) is reopened at once, on whichever replica the connection
// lands; failures to get a stream up back off, capped and jittered.
func (c *Client) streamLoop(ctx context.Context, client mcpgwv1.NodeServiceClient) error {
	backoff := c.cfg.MinBackoff
	for {
		up, err := c.runStream(ctx, client)
		if ctx.Err() != nil {
			return nil
		}
		if up {
			backoff = c.cfg.MinBackoff
			c.log.Info("config stream ended; reconnecting", "err", err)
			continue
		}
		if status.Code(err) == codes.PermissionDenied {
			c.refused.Store(&err)
			c.log.Error("control plane refuses this node (revoked?); serving the current config", "err", err)
			backoff = c.cfg.MaxBackoff
		} else {
			c.log.Warn("config stream failed; serving the current config", "err", err, "retry_in", backoff)
		}
		if !wait.For(ctx, jitter(backoff)) {
			return nil
		}
		backoff = min(2*backoff, c.cfg.MaxBackoff)
	}
}

// runStream runs one ConfigStream until it fails; up reports whether the
// control plane had accepted it.
func (c *Client) runStream(ctx context.Context, client mcpgwv1.NodeServiceClient) (up bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := client.ConfigStream(ctx)
	if err != nil {
		return false, err
	}
	// sendMu guards stream.Send, which the answer path and the status
	// reporter share (gRPC allows one sender at a time).
	var sendMu sync.Mutex
	send := func(m *mcpgwv1.ConfigStreamRequest) error {
		sendMu.Lock()
		defer sendMu.Unlock()
		return stream.Send(m)
	}
	rev, hash := c.Applied()
	if err := send(&mcpgwv1.ConfigStreamRequest{Msg: &mcpgwv1.ConfigStreamRequest_Hello{Hello: &mcpgwv1.ConfigHello{
		AppliedRevision: rev,
		AppliedHash:     hash,
		Version:         c.cfg.Version,
		Capabilities:    []string{"gzip"},
	}}}); err != nil {
		_, rerr := stream.Recv() // the real reason is in the status
		return false, rerr
	}
	// The control plane sends headers once it has accepted this node and
	// its hello; a refusal comes without them.
	if md, err := stream.Header(); err != nil || md == nil {
		_, rerr := stream.Recv()
		return false, rerr
	} else if r := md.Get("mcpgw-replica"); len(r) > 0 {
		c.log.Debug("config stream open", "replica", r[0])
	}
	up = true
	c.refused.Store(nil)
	c.connected.Store(true)
	defer c.connected.Store(false)

	var wg sync.WaitGroup
	defer wg.Wait() // after cancel (deferred earlier, runs later)
	defer cancel()
	if c.cfg.Status != nil {
		wg.Go(func() {
			t := time.NewTicker(c.cfg.StatusInterval)
			defer t.Stop()
			for {
				st := c.cfg.Status()
				if st != nil {
					if st.ReportTime == nil {
						st.ReportTime = timestamppb.Now()
					}
					if err := send(&mcpgwv1.ConfigStreamRequest{Msg: &mcpgwv1.ConfigStreamRequest_Status{Status: st}}); err != nil {
						return
					}
				}
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				case <-c.report:
					t.Reset(c.cfg.StatusInterval)
				}
			}
		})
	}

	for {
		m, err := stream.Recv()
		if err != nil {
			return up, err
		}
		snap := m.GetSnapshot()
		if snap == nil {
			continue // a message kind this edge does not know
		}
		c.snapshots.Add(1)
		c.payloadBytes.Add(int64(len(snap.GetPayload())))
		answer := c.handle(ctx, snap)
		if err := send(answer); err != nil {
			return up, err
		}
		if answer.GetAck() != nil {
			// What the edge runs changed: a new edge's first report, sent
			// when the stream opened, predates its first config and lists
			// no backends.
			c.ReportStatus()
		}
	}
}

// handle applies one snapshot and returns the ack or nack for it.
func (c *Client) handle(ctx context.Context, s *mcpgwv1.Snapshot) *mcpgwv1.ConfigStreamRequest {
	u, err := c.apply(ctx, s, true)
	if err != nil {
		c.nacks.Add(1)
		msg, rejected := nackFor(err)
		c.rejected.Store(&Rejection{Revision: s.GetRevision(), Error: msg})
		c.log.Warn("rejected config; still serving the previous one", "revision", s.GetRevision(), "err", msg)
		return &mcpgwv1.ConfigStreamRequest{Msg: &mcpgwv1.ConfigStreamRequest_Nack{Nack: &mcpgwv1.ConfigNack{
			Nonce: s.GetNonce(), Revision: s.GetRevision(), Error: msg, Rejected: rejected,
		}}}
	}
	c.acks.Add(1)
	c.log.Info("applied config", "revision", u.Revision, "hash", u.Hash)
	return &mcpgwv1.ConfigStreamRequest{Msg: &mcpgwv1.ConfigStreamRequest_Ack{Ack: &mcpgwv1.ConfigAck{
		Nonce: s.GetNonce(), Revision: u.Revision, Hash: u.Hash,
	}}}
}

// apply validates s completely, has the Applier swap it in, records it as
// applied and (with cache set) writes the cache. Any error leaves the
// previous state.
func (c *Client) apply(ctx context.Context, s *mcpgwv1.Snapshot, cache bool) (*Update, error) {
	var raw []byte
	var u *Update
	cur := c.applied.Load()
	if len(s.GetPayload()) == 0 {
		// Same content under a newer revision: nothing to decode.
		if cur == nil || s.GetHash() != cur.update.Hash {
			return nil, errors.New("snapshot has no payload but its hash is not the applied config's")
		}
		if !s.GetFullState() {
			return nil, errors.New("snapshot is not full_state; this edge applies only full snapshots")
		}
		raw = cur.raw
		next := *cur.update
		u = &next
		// Decisions carry the revision, so the policy is compiled anew
		// for it; it compiled before, so an error here is not expected.
		d := u.Document
		pol, err := policy.Compile(policy.Spec{Principals: d.Principals, Roles: d.Roles, Bindings: d.Bindings, Keys: u.Keys}, s.GetRevision())
		if err != nil {
			return nil, err
		}
		u.Policy = pol
	} else {
		var err error
		if raw, err = decodePayload(s); err != nil {
			return nil, err
		}
		if u, err = decodeResources(raw, s.GetRevision()); err != nil {
			return nil, err
		}
	}
	u.Revision, u.Hash = s.GetRevision(), s.GetHash()
	u.CommitTime = time.Time{}
	if s.GetCommitTime() != nil {
		u.CommitTime = s.GetCommitTime().AsTime()
	}
	if c.cfg.Validate != nil {
		if err := c.cfg.Validate(u); err != nil {
			return nil, err
		}
	}
	if err := c.cfg.Applier.Apply(ctx, u); err != nil {
		return nil, err
	}
	// A rejection this config supersedes is cleared first, so whoever sees
	// the new revision applied does not see it still rejected.
	if r := c.rejected.Load(); r != nil && r.Revision <= u.Revision {
		c.rejected.CompareAndSwap(r, nil)
	}
	c.applied.Store(&appliedState{update: u, raw: raw})
	if !cache {
		return u, nil
	}
	// The new state is live whatever happens to the cache: a failed write
	// costs only the cold-start shortcut, so it is logged, not NACKed.
	lkg := &mcpgwv1.Snapshot{
		Revision:        u.Revision,
		Hash:            u.Hash,
		CommitTime:      s.GetCommitTime(),
		FullState:       true,
		PayloadEncoding: mcpgwv1.PayloadEncoding_PAYLOAD_ENCODING_PROTO,
		Payload:         raw,
		PayloadSize:     uint64(len(raw)),
	}
	if err := writeLKG(c.cfg.StateDir, lkg); err != nil {
		c.log.Error("config applied but not cached; a restart without the control plane would not have it", "revision", u.Revision, "err", err)
	}
	return u, nil
}

// jitter spreads d over [d/2, d) so that a fleet does not reconnect in step.
func jitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d/2)
}
