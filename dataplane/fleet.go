package dataplane

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mcpgw/mcpgw/dataplane/auditlog"
	"github.com/mcpgw/mcpgw/dataplane/auditship"
	"github.com/mcpgw/mcpgw/dataplane/cpclient"
	"github.com/mcpgw/mcpgw/dataplane/enforce"
	"github.com/mcpgw/mcpgw/dataplane/state"
	"github.com/mcpgw/mcpgw/dataplane/upstream"
	mcpgwv1 "github.com/mcpgw/mcpgw/gen/mcpgw/v1"
)

// fleet is a fleet edge's config source: the control-plane client, whose
// Applier makes each snapshot live as one transaction over backends and
// policy, and the audit shipper that sends the spool to the control plane
// on the client's connection.
type fleet struct {
	client  *cpclient.Client
	shipper *auditship.Shipper
	log     *auditlog.Log
	// spoolMax is the spool's cap, reported with its depth.
	spoolMax int64
	mgr      *state.Manager
	// applied counts snapshots made live (LKG included), for the metric
	// that shows a reconnect re-sent nothing.
	applied prometheus.Counter

	// startedMu guards started: when edgeStatus first saw each backend
	// that has not come up yet, to report it STARTING for a while rather
	// than UNHEALTHY.
	startedMu sync.Mutex
	started   map[*upstream.Backend]time.Time
}

// startingFor is how long a backend that has never been up since the edge
// first reported it counts as starting rather than unhealthy.
const startingFor = 30 * time.Second

// newFleet creates the control-plane client; nothing touches the network
// until enroll.
func newFleet(cfg Config, version string, holder *enforce.Holder, mgr *state.Manager) (*fleet, error) {
	f := &fleet{mgr: mgr, started: map[*upstream.Backend]time.Time{}, applied: prometheus.NewCounter(prometheus.CounterOpts{
		Name: "mcpgw_edge_config_applied_total",
		Help: "Control-plane configs made live (the last-known-good cache at start included).",
	})}
	applier := cpclient.ApplierFunc(func(ctx context.Context, u *cpclient.Update) error {
		warnings, err := holder.ApplyState(ctx, u.Document, state.Meta{Revision: u.Revision, Hash: u.Hash, Policy: u.Policy}, mgr)
		for _, w := range warnings {
			cfg.Logger.Warn("config: "+w, "revision", u.Revision)
		}
		if err != nil {
			return err
		}
		f.applied.Inc()
		return nil
	})
	client, err := cpclient.New(cpclient.Config{
		ControlPlane: cfg.ControlPlane,
		CAFile:       cfg.CAFile,
		JoinToken:    cfg.JoinToken,
		StateDir:     cfg.StateDir,
		Name:         cfg.NodeName,
		Labels:       cfg.Labels,
		Version:      version,
		Applier:      applier,
		Status:       f.edgeStatus,
		Logger:       cfg.Logger,
		DialOptions:  cfg.CPDialOptions,
	})
	if err != nil {
		return nil, err
	}
	f.client = client
	return f, nil
}

// enroll learns the node id, which enrolls the edge (with the join token,
// retrying while the control plane is unreachable) if its state dir holds
// no identity yet; an enrolled edge reads it from disk without the
// network. It returns false, nil when ctx ends while enrolling.
func (f *fleet) enroll(ctx context.Context) (bool, error) {
	if _, err := f.client.Identity(ctx); err != nil {
		if ctx.Err() != nil {
			return false, nil
		}
		return false, fmt.Errorf("control plane: %w", err)
	}
	return true, nil
}

// enrolling says, for /readyz, what an edge that is not wired yet waits
// for.
func (f *fleet) enrolling() string {
	s := "enrolling with " + f.client.ControlPlane()
	if err := f.client.EnrollError(); err != nil {
		s += " (last attempt: " + err.Error() + ")"
	}
	return s
}

// openAudit opens the spool in the state dir with the shipper as its only
// sink. Durability and limits come from the edge's own flags
// (cfg.FleetAudit), not from the pushed document: how much an edge may
// spool is a property of its disk, and a fleet document carries no audit
// section.
func (f *fleet) openAudit(cfg Config) (*auditlog.Log, error) {
	sh, err := auditship.New(auditship.Config{Connect: f.client.Conn, Logger: cfg.Logger})
	if err != nil {
		return nil, err
	}
	l, err := auditlog.Open(auditlog.Config{
		Dir:           filepath.Join(cfg.StateDir, "audit-spool"),
		MaxBytes:      cfg.FleetAudit.SpoolMaxBytes,
		Durability:    auditlog.Durability(cfg.FleetAudit.Durability),
		OnFull:        auditlog.OnFull(cfg.FleetAudit.OnFull),
		Fsync:         auditlog.FsyncPolicy(cfg.FleetAudit.Fsync),
		FsyncInterval: cfg.FleetAudit.FsyncInterval,
		Logger:        cfg.Logger,
	}, sh)
	if err != nil {
		return nil, fmt.Errorf("opening the audit spool: %w", err)
	}
	f.shipper, f.log = sh, l
	f.spoolMax = cfg.FleetAudit.SpoolMaxBytes
	if f.spoolMax == 0 {
		f.spoolMax = auditlog.DefaultMaxBytes
	}
	return l, nil
}

// start returns at once: the client applies the last-known-good config
// first thing in run, and until a config is live /readyz says so.
func (f *fleet) start(context.Context) error { return nil }

// run runs the client and the shipper until ctx ends.
func (f *fleet) run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return f.client.Run(gctx) })
	g.Go(func() error { return f.shipper.Run(gctx) })
	return g.Wait()
}

// refusal: an edge its control plane refuses (revoked, or unknown to
// it) stops serving MCP. Revocation is how an operator retires or fences
// a node, and a refused node no longer receives policy changes such as a
// revoked API key, so serving on would enforce a policy nobody maintains.
// An unreachable control plane is not a refusal: the edge keeps serving
// its last config then. A later accepted stream lifts the refusal.
func (f *fleet) refusal() string {
	if err := f.client.Refused(); err != nil {
		return "its control plane refuses this node (revoked?): " + status.Convert(err).Message()
	}
	return ""
}

func (f *fleet) status() string {
	rev, hash := f.client.Applied()
	cp := "disconnected (serving the last config it sent)"
	switch {
	case f.client.Connected():
		cp = "connected"
	case f.client.Refused() != nil:
		cp = "refuses this node, revoked? (" + status.Convert(f.client.Refused()).Message() + "; not serving)"
	}
	var s string
	if rev == 0 {
		s = "control plane " + cp + ", no revision applied"
	} else {
		if len(hash) > 12 {
			hash = hash[:12]
		}
		s = fmt.Sprintf("control plane %s, revision %d (%s) applied", cp, rev, hash)
	}
	if r := f.client.Rejected(); r != nil {
		s += fmt.Sprintf(", revision %d rejected (%s)", r.Revision, r.Error)
	}
	return s
}

func (f *fleet) register(reg prometheus.Registerer) {
	reg.MustRegister(f.applied, f.shipper.Metrics(), cpCollector{f.client})
}

// edgeStatus is the EdgeStatus sent on the ConfigStream: backend health and
// the audit spool, which ListNodes shows.
func (f *fleet) edgeStatus() *mcpgwv1.EdgeStatus {
	st := &mcpgwv1.EdgeStatus{ReportTime: timestamppb.Now()}
	if s := f.mgr.Load(); s != nil {
		f.startedMu.Lock()
		seen := make(map[*upstream.Backend]time.Time, len(s.Backends))
		now := time.Now()
		for _, b := range s.Backends {
			h := &mcpgwv1.BackendHealth{Name: b.Name(), State: mcpgwv1.BackendState_BACKEND_STATE_HEALTHY}
			if !b.Healthy() {
				first, ok := f.started[b.Backend]
				if !ok {
					first = now
				}
				if first.IsZero() || now.Sub(first) >= startingFor {
					h.State = mcpgwv1.BackendState_BACKEND_STATE_UNHEALTHY
				} else {
					h.State = mcpgwv1.BackendState_BACKEND_STATE_STARTING
				}
				seen[b.Backend] = first
			} else {
				seen[b.Backend] = time.Time{} // has been up: down is unhealthy
			}
			st.Backends = append(st.Backends, h)
		}
		f.started = seen // forgets backends that are gone
		f.startedMu.Unlock()
	}
	if f.log != nil {
		as := f.log.Stats()
		spool := &mcpgwv1.AuditSpoolStatus{DepthBytes: as.SpoolBytes, DepthBatches: as.UnackedBatches, LimitBytes: f.spoolMax, Epoch: uint64(f.log.Epoch())}
		if as.OldestUnacked > 0 {
			spool.OldestUnackedAge = durationpb.New(as.OldestUnacked)
		}
		st.AuditSpool = spool
	}
	return st
}

// reportingNotifier passes the state manager's notices on to the front
// doors and asks for a status report when a backend comes up, so the
// control plane sees a new backend healthy without waiting for the next
// periodic report.
type reportingNotifier struct {
	state.Notifier
	client *cpclient.Client
}

func (n reportingNotifier) BackendUp(b *upstream.Backend) {
	n.Notifier.BackendUp(b)
	n.client.ReportStatus()
}

// cpCollector exports the control-plane client's state and counters.
type cpCollector struct{ c *cpclient.Client }

var (
	descCPConnected = prometheus.NewDesc("mcpgw_edge_control_plane_connected", "1 while a ConfigStream is open and accepted by a control-plane replica.", nil, nil)
	descCPRevision  = prometheus.NewDesc("mcpgw_edge_config_revision", "Control-plane config revision applied (0: none).", nil, nil)
	descCPSnapshots = prometheus.NewDesc("mcpgw_edge_config_snapshots_received_total", "Config snapshots received from the control plane.", nil, nil)
	descCPBytes     = prometheus.NewDesc("mcpgw_edge_config_payload_bytes_received_total", "Config payload bytes received from the control plane, as sent.", nil, nil)
	descCPAcks      = prometheus.NewDesc("mcpgw_edge_config_acks_total", "Snapshots acknowledged.", nil, nil)
	descCPNacks     = prometheus.NewDesc("mcpgw_edge_config_nacks_total", "Snapshots rejected (the previous config kept serving).", nil, nil)
)

func (c cpCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descCPConnected, descCPRevision, descCPSnapshots, descCPBytes, descCPAcks, descCPNacks} {
		ch <- d
	}
}

func (c cpCollector) Collect(ch chan<- prometheus.Metric) {
	connected := 0.0
	if c.c.Connected() {
		connected = 1
	}
	rev, _ := c.c.Applied()
	st := c.c.Stats()
	ch <- prometheus.MustNewConstMetric(descCPConnected, prometheus.GaugeValue, connected)
	ch <- prometheus.MustNewConstMetric(descCPRevision, prometheus.GaugeValue, float64(rev))
	ch <- prometheus.MustNewConstMetric(descCPSnapshots, prometheus.CounterValue, float64(st.Snapshots))
	ch <- prometheus.MustNewConstMetric(descCPBytes, prometheus.CounterValue, float64(st.PayloadBytes))
	ch <- prometheus.MustNewConstMetric(descCPAcks, prometheus.CounterValue, float64(st.Acks))
	ch <- prometheus.MustNewConstMetric(descCPNacks, prometheus.CounterValue, float64(st.Nacks))
}
