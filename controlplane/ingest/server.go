// Package ingest is the control plane's side of the audit pipeline (DESIGN
// §3, §6): it serves NodeService.AuditStream, verifies each batch an edge
// ships (CRC, hash chain), coalesces small batches from many streams into one
// exactly-once auditdb transaction, acknowledges cumulatively only after
// commit, pushes back with AuditFlowControl while Postgres is slow or down,
// and keeps the day partitions of audit_events created ahead and dropped
// after the retention period. docs/audit-pipeline.md describes the protocol
// as this package implements it.
package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/mcpgw/mcpgw/internal/auditdb"
)

// Defaults for Config.
const (
	// DefaultWindow: under sync durability a spool batch may hold one
	// event, and a window of batches is shipped per commit round trip; at
	// 8 a backlog of small batches drained at about 1,000 batches/s
	// (test/auditfault), at 64 it keeps up.
	DefaultWindow              = 64
	DefaultLinger              = 2 * time.Millisecond
	DefaultMaxEvents           = 16384
	DefaultMaxBatches          = 1024
	DefaultCommitters          = 2
	DefaultCommitTimeout       = 10 * time.Second
	DefaultSlowCommit          = 2 * time.Second
	DefaultRetryAfter          = time.Second
	DefaultHelloTimeout        = 10 * time.Second
	DefaultMaintenanceInterval = time.Hour
)

// Store is the audit store ingest commits to: *auditdb.Store on Postgres,
// *sqlitestore.Store embedded. Both record every batch exactly once by
// (node, epoch, seq).
type Store interface {
	// IngestAll commits batches of several nodes in one transaction.
	IngestAll(ctx context.Context, groups ...auditdb.NodeBatches) (auditdb.Result, error)
	// LedgerHeld reports which batches of an epoch are already committed.
	LedgerHeld(ctx context.Context, node string, epoch, start int64) (auditdb.Held, error)
	// LedgerRows returns what ingest recorded about batches from..to.
	LedgerRows(ctx context.Context, node string, epoch, from, to int64) ([]auditdb.LedgerRow, error)
	// MaintainPartitions prepares the days ahead and drops what retention
	// no longer keeps.
	MaintainPartitions(ctx context.Context, daysAhead int) (auditdb.Maintenance, error)
}

// Config configures a Server. Store is required; retention and the accepted
// time window are the Store's (auditdb.Options on Postgres).
type Config struct {
	Store Store
	// Window is the max_inflight the server announces when it lets an edge
	// send again after a pause (edges start with their own default).
	Window int
	// Linger is how long a committer waits for more streams' batches after
	// the first before it commits; MaxEvents and MaxBatches cap one
	// transaction.
	Linger                time.Duration
	MaxEvents, MaxBatches int
	// Committers is how many ingest transactions may run at once.
	Committers int
	// CommitTimeout bounds one ingest transaction. It must stay well below
	// auditdb.DefaultTailLag so TailAudit sees every commit.
	CommitTimeout time.Duration
	// SlowCommit: a commit slower than this narrows the edge's window to
	// one batch until commits are fast again.
	SlowCommit time.Duration
	// RetryAfter is the pause edges are told to wait while Postgres fails,
	// and how often a paused stream retries its pending batches.
	RetryAfter time.Duration
	// HelloTimeout bounds the wait for a stream's hello.
	HelloTimeout time.Duration
	// MaintenanceInterval is how often partitions are maintained (at Run's
	// start, then at this interval); DaysAhead how many days after today
	// are kept created. A negative interval disables maintenance.
	MaintenanceInterval time.Duration
	DaysAhead           int
	// Registerer receives the Prometheus metrics; nil = not exported.
	Registerer prometheus.Registerer
	Logger     *slog.Logger
	// OnCommit, when set, is called after every successful ingest
	// transaction with its latency and result. For benchmarks; it runs on
	// a committer goroutine.
	OnCommit func(latency time.Duration, res auditdb.Result)
}

func (c Config) withDefaults() (Config, error) {
	if c.Store == nil {
		return c, errors.New("audit ingest: Store is required")
	}
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	defDur := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	def(&c.Window, DefaultWindow)
	def(&c.MaxEvents, DefaultMaxEvents)
	def(&c.MaxBatches, DefaultMaxBatches)
	def(&c.Committers, DefaultCommitters)
	defDur(&c.Linger, DefaultLinger)
	defDur(&c.CommitTimeout, DefaultCommitTimeout)
	defDur(&c.SlowCommit, DefaultSlowCommit)
	defDur(&c.RetryAfter, DefaultRetryAfter)
	defDur(&c.HelloTimeout, DefaultHelloTimeout)
	defDur(&c.MaintenanceInterval, DefaultMaintenanceInterval)
	if c.DaysAhead <= 0 {
		c.DaysAhead = auditdb.DefaultDaysAhead
	}
	if c.CommitTimeout >= auditdb.DefaultTailLag {
		return c, fmt.Errorf("audit ingest: CommitTimeout %v must be below the tail lag %v", c.CommitTimeout, auditdb.DefaultTailLag)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c, nil
}

// Server serves AuditStream and commits what edges ship. Run must be
// running for batches to be committed; streams opened before wait.
type Server struct {
	cfg     Config
	metrics *metrics
	reqs    chan *commitReq

	// mu guards streams: the live stream of each node, so that a node's
	// reconnect replaces its old stream instead of racing it.
	mu      sync.Mutex
	streams map[string]*streamSlot

	stats counters
}

// counters mirror the Prometheus series for tests and benchmarks.
type counters struct {
	batches, duplicates, events, chainBreaks, crcFailures, rejected atomic.Int64
	commits, commitErrors, pauses                                   atomic.Int64
}

// Stats is a snapshot of the server's counters.
type Stats struct {
	Batches, Duplicates, Events, ChainBreaks, CRCFailures, Rejected int64
	Commits, CommitErrors, Pauses                                   int64
	Streams                                                         int
}

// New validates cfg and returns a Server.
func New(cfg Config) (*Server, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, reqs: make(chan *commitReq), streams: map[string]*streamSlot{}}
	s.metrics, err = newMetrics(cfg.Registerer, func() float64 { return float64(s.streamCount()) })
	if err != nil {
		return nil, fmt.Errorf("audit ingest: registering metrics: %w", err)
	}
	return s, nil
}

// Stats returns the counters.
func (s *Server) Stats() Stats {
	return Stats{
		Batches: s.stats.batches.Load(), Duplicates: s.stats.duplicates.Load(), Events: s.stats.events.Load(),
		ChainBreaks: s.stats.chainBreaks.Load(), CRCFailures: s.stats.crcFailures.Load(), Rejected: s.stats.rejected.Load(),
		Commits: s.stats.commits.Load(), CommitErrors: s.stats.commitErrors.Load(), Pauses: s.stats.pauses.Load(),
		Streams: s.streamCount(),
	}
}

func (s *Server) streamCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.streams)
}

// Run commits batches and maintains partitions until ctx ends.
func (s *Server) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	for range s.cfg.Committers {
		g.Go(func() error { return s.commitLoop(ctx) })
	}
	if s.cfg.MaintenanceInterval > 0 {
		g.Go(func() error { return s.maintainLoop(ctx) })
	}
	return g.Wait()
}

// maintainLoop keeps partitions created ahead and drops expired ones. A
// failure is logged and retried at the next tick: ingest creates the day it
// needs on demand anyway, so a missed run only delays retention.
func (s *Server) maintainLoop(ctx context.Context) error {
	t := time.NewTicker(s.cfg.MaintenanceInterval)
	defer t.Stop()
	for {
		m, err := s.cfg.Store.MaintainPartitions(ctx, s.cfg.DaysAhead)
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			// Pruning commits chunk by chunk: what it did before failing stays done.
			s.metrics.ledgerPruned.Add(float64(m.Pruned))
			s.cfg.Logger.Error("audit partition maintenance failed; retrying at the next interval", "err", err)
		case m.Locked:
			s.metrics.partitionsCreated.Add(float64(m.Created))
			s.metrics.partitionsDropped.Add(float64(len(m.Dropped)))
			s.metrics.ledgerPruned.Add(float64(m.Pruned))
			if m.Created > 0 || len(m.Dropped) > 0 || m.Pruned > 0 {
				s.cfg.Logger.Info("audit partitions maintained", "created", m.Created, "dropped", m.Dropped, "ledger_rows_pruned", m.Pruned)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
