// Package dataplane is the edge: it wires the front doors (gateway), the
// live state and its backends (state, upstream), identity, policy and audit
// (enforce, auditlog), the config source (a watched local file, or the
// control-plane client in fleet mode, with audit shipped over the same
// connection by auditship) and the ops endpoints under one errgroup. Run is
// the whole edge; `mcpgw edge` only turns flags into a Config.
package dataplane

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"

	"github.com/mcpgw/mcpgw/dataplane/auditlog"
	"github.com/mcpgw/mcpgw/dataplane/enforce"
	"github.com/mcpgw/mcpgw/dataplane/gateway"
	"github.com/mcpgw/mcpgw/dataplane/rpc"
	"github.com/mcpgw/mcpgw/dataplane/state"
	"github.com/mcpgw/mcpgw/dataplane/upstream"
	"github.com/mcpgw/mcpgw/internal/buildinfo"
	"github.com/mcpgw/mcpgw/internal/document"
)

// Config is everything an edge needs. Zero values take the defaults noted.
type Config struct {
	// ConfigFile is the declarative document (DESIGN §5.1): a file, or a
	// directory of *.yaml files. Exactly one of ConfigFile and
	// ControlPlane is required.
	ConfigFile string
	// ControlPlane is a control plane's node listener (HOST:PORT): the edge
	// enrolls with JoinToken the first time, then takes its config from the
	// control plane and ships its audit there (fleet mode).
	ControlPlane string
	// CAFile is the control plane's CA bundle (its DATA_DIR/ca.crt); needed
	// until enrollment stored it in StateDir.
	CAFile string
	// JoinToken enrolls a new edge; later starts use StateDir.
	JoinToken string
	// Labels are reported at enrollment (the join token's win on conflict).
	Labels map[string]string
	// StateDir holds what the edge keeps between starts: the audit spool
	// (unless the document's audit section says otherwise), and in fleet
	// mode the node identity and the last-known-good config. Default:
	// DefaultStateDir().
	StateDir string
	// FleetAudit sets a fleet edge's audit spool (durability, on_full and
	// spool_max_bytes; the sink is always the control plane). A standalone
	// edge takes these from its document's audit section instead, so
	// setting them without ControlPlane is an error. Zero values mean the
	// defaults: sync, refuse, 1 GiB.
	FleetAudit FleetAudit
	// NodeName names this edge: a standalone edge's node id is derived from
	// it (default: the host name), a fleet edge reports it at enrollment.
	NodeName string
	// Principal and APIKey are the stdio client's identity (--principal, or
	// a key from $MCPGW_API_KEY checked like a bearer key); at most one,
	// and only with Stdio.
	Principal, APIKey string
	// Listen is the MCP HTTP listener (default 127.0.0.1:8080); it also
	// serves /healthz, /readyz and /metrics unless OpsListen is set.
	Listen string
	// OpsListen, when set, serves the ops endpoints there instead.
	OpsListen string
	// Stdio serves MCP on Stdin/Stdout instead of HTTP (logs go to the
	// logger, which must not write to Stdout).
	Stdio  bool
	Stdin  io.Reader // default os.Stdin
	Stdout io.Writer // default os.Stdout
	// TLSCert and TLSKey serve HTTPS (both or neither).
	TLSCert, TLSKey string
	// AllowedHosts and AllowedOrigins: see gateway.Options. Default hosts:
	// localhost names when Listen is a loopback address, else any.
	AllowedHosts, AllowedOrigins []string
	// MaxBodyBytes bounds a request body (default 4 MiB).
	MaxBodyBytes int64
	// MaxParkedPerPrincipal bounds the era-bridged calls one principal may
	// keep parked waiting for its input (see gateway.Options; default 16,
	// negative: no limit).
	MaxParkedPerPrincipal int
	// ReloadInterval is how often the config file is checked (default 500ms).
	ReloadInterval time.Duration
	// PageSize bounds list pages (default 100).
	PageSize int
	// Concurrency sizes the upstream HTTP idle pool (default 256).
	Concurrency int
	// ShutdownGrace bounds draining in-flight HTTP requests (default 10s).
	ShutdownGrace time.Duration

	// The request chain's seams. The defaults are package enforce's, over
	// the live document's policy: API keys (and the document's anonymous
	// opt-in), deny by default, one audit event per request to the audit
	// log. Tests may replace them.
	Auth    gateway.Authenticator
	Decider gateway.Decider
	Record  gateway.Recorder

	// CPDialOptions are added to the control-plane client's gRPC dial
	// options (tests).
	CPDialOptions []grpc.DialOption

	Logger *slog.Logger
	// Registry receives the edge's metrics (default: a fresh registry).
	// /metrics serves it together with prometheus.DefaultGatherer, whose
	// Go and process collectors client_golang registers in its init: a
	// second pair here cost every edge about 50 KB of heap at start.
	Registry *prometheus.Registry
	// OnListen, if set, is called with each bound listener address (tests
	// use it with port 0).
	OnListen func(name string, addr net.Addr)
}

// FleetAudit is the part of a document's audit section that applies to a
// fleet edge's spool.
type FleetAudit struct {
	Durability string // sync (default) or async
	OnFull     string // refuse (default) or drop
	// Fsync is interval (default), always or never; FsyncInterval is the
	// longest a spool write stays unflushed under interval (default 10ms).
	Fsync         string
	FsyncInterval time.Duration
	// SpoolMaxBytes caps the spool on disk; at the cap OnFull applies.
	SpoolMaxBytes int64
}

func (a FleetAudit) isZero() bool { return a == FleetAudit{} }

// DefaultStateDir is where an edge keeps its state when --state-dir is not
// given: $XDG_STATE_HOME/mcpgw/edge, else ~/.local/state/mcpgw/edge, else
// ./.mcpgw-edge. Two edges on one host need distinct state dirs (the audit
// spool is locked by the edge using it).
func DefaultStateDir() string {
	if d := os.Getenv("XDG_STATE_HOME"); filepath.IsAbs(d) {
		return filepath.Join(d, "mcpgw", "edge")
	}
	if home, err := os.UserHomeDir(); err == nil && home != "" {
		return filepath.Join(home, ".local", "state", "mcpgw", "edge")
	}
	return ".mcpgw-edge"
}

// Validate checks the config and fills defaults.
func (c *Config) Validate() error {
	var errs []error
	switch {
	case c.ConfigFile == "" && c.ControlPlane == "":
		errs = append(errs, errors.New("give --config FILE (standalone) or --control-plane HOST:PORT (fleet)"))
	case c.ConfigFile != "" && c.ControlPlane != "":
		errs = append(errs, errors.New("--config and --control-plane are mutually exclusive: a fleet edge takes its config from the control plane"))
	}
	if c.ControlPlane == "" {
		if c.CAFile != "" {
			errs = append(errs, errors.New("--ca-file needs --control-plane"))
		}
		if c.JoinToken != "" {
			errs = append(errs, errors.New("--join-token needs --control-plane"))
		}
		if len(c.Labels) > 0 {
			errs = append(errs, errors.New("--label needs --control-plane"))
		}
		if !c.FleetAudit.isZero() {
			errs = append(errs, errors.New("--audit-durability, --audit-on-full, --audit-fsync, --audit-fsync-interval and --audit-spool-max-bytes need --control-plane: a standalone edge takes them from its document's audit section"))
		}
	} else if _, _, err := net.SplitHostPort(c.ControlPlane); err != nil {
		errs = append(errs, fmt.Errorf("control plane address %q: want HOST:PORT: %w", c.ControlPlane, err))
	}
	switch c.FleetAudit.Durability {
	case "", string(auditlog.DurabilitySync), string(auditlog.DurabilityAsync):
	default:
		errs = append(errs, fmt.Errorf("audit durability %q: want sync (default) or async", c.FleetAudit.Durability))
	}
	switch c.FleetAudit.OnFull {
	case "", string(auditlog.OnFullRefuse), string(auditlog.OnFullDrop):
	default:
		errs = append(errs, fmt.Errorf("audit on_full %q: want refuse (default) or drop", c.FleetAudit.OnFull))
	}
	switch c.FleetAudit.Fsync {
	case "", string(auditlog.FsyncInterval), string(auditlog.FsyncAlways), string(auditlog.FsyncNever):
	default:
		errs = append(errs, fmt.Errorf("audit fsync %q: want interval (default), always or never", c.FleetAudit.Fsync))
	}
	if c.FleetAudit.FsyncInterval < 0 {
		errs = append(errs, fmt.Errorf("audit fsync interval %v: must not be negative", c.FleetAudit.FsyncInterval))
	}
	if c.FleetAudit.SpoolMaxBytes < 0 {
		errs = append(errs, fmt.Errorf("audit spool max bytes %d: must not be negative", c.FleetAudit.SpoolMaxBytes))
	}
	if c.Principal != "" && c.APIKey != "" {
		errs = append(errs, fmt.Errorf("--principal and $%s are mutually exclusive: the stdio client has one identity", enforce.EnvAPIKey))
	}
	if !c.Stdio && (c.Principal != "" || c.APIKey != "") {
		errs = append(errs, errors.New("--principal (or an API key for the stdio client) needs --stdio: HTTP clients present their own keys"))
	}
	if c.StateDir == "" {
		c.StateDir = DefaultStateDir()
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		errs = append(errs, errors.New("--tls-cert and --tls-key go together"))
	}
	if c.Stdio && c.TLSCert != "" {
		errs = append(errs, errors.New("--tls-cert makes no sense with --stdio"))
	}
	if c.Listen == "" {
		c.Listen = "127.0.0.1:8080"
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		errs = append(errs, fmt.Errorf("listen address %q: %w", c.Listen, err))
	}
	if c.OpsListen != "" {
		if _, _, err := net.SplitHostPort(c.OpsListen); err != nil {
			errs = append(errs, fmt.Errorf("ops listen address %q: %w", c.OpsListen, err))
		}
	}
	if c.ReloadInterval <= 0 {
		c.ReloadInterval = 500 * time.Millisecond
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 256
	}
	if c.ShutdownGrace <= 0 {
		c.ShutdownGrace = 10 * time.Second
	}
	if c.Stdin == nil {
		c.Stdin = os.Stdin
	}
	if c.Stdout == nil {
		c.Stdout = os.Stdout
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewJSONHandler(os.Stderr, nil))
	}
	if c.Registry == nil {
		c.Registry = prometheus.NewRegistry()
	}
	if len(c.AllowedHosts) == 0 && !isLoopback(c.Listen) {
		c.AllowedHosts = []string{"*"}
	}
	return errors.Join(errs...)
}

func isLoopback(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Run runs the edge until ctx ends or a part fails, then shuts down: stop
// accepting, drain in-flight requests, flush the audit log, stop the
// control-plane client and the backends, in that order.
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("edge config: %w", err)
	}
	log := cfg.Logger
	version := buildinfo.Get()
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return fmt.Errorf("creating the state dir: %w", err)
	}
	upstreamHTTP := upstream.NewTransport(cfg.Concurrency)
	mgr := state.NewManager(upstream.Options{
		Logger:     log,
		Client:     &http.Client{Transport: upstreamHTTP},
		ClientInfo: []byte(`{"name":"mcpgw","version":` + string(rpc.Quote(version)) + `}`),
	}, nil)
	holder := enforce.NewHolder(log, nil)

	var fl *fleet
	waiting := func() string { return "loading " + cfg.ConfigFile }
	if cfg.ControlPlane != "" {
		var err error
		if fl, err = newFleet(cfg, version, holder, mgr); err != nil {
			return err
		}
		waiting = fl.enrolling
	}

	// A fleet edge opens its front doors first: while it is still
	// enrolling (with the control plane unreachable that can take a while)
	// or has no config yet, it answers /healthz, says on /readyz what it
	// waits for, and refuses MCP requests with a JSON-RPC error. What they
	// serve switches to the wired edge once it is. A standalone edge opens
	// them once its file is applied, so listening means serving.
	var live atomic.Pointer[liveEdge]
	ops := http.NewServeMux()
	ops.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	ops.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		e := live.Load()
		if e == nil {
			http.Error(w, "not ready: "+waiting(), http.StatusServiceUnavailable)
			return
		}
		serveReady(w, mgr.Load(), e.src, e.alog)
	})
	ops.Handle("/metrics", promhttp.HandlerFor(prometheus.Gatherers{prometheus.DefaultGatherer, cfg.Registry}, promhttp.HandlerOpts{}))
	mcpHandler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e := live.Load()
		if e != nil && mgr.Load() != nil {
			if why := e.src.refusal(); why != "" {
				writeRefused(w, why)
				return
			}
			e.gw.ServeHTTP(w, r)
			return
		}
		why := waiting()
		if e != nil {
			why = e.src.status()
		}
		writeNoConfig(w, why)
	})
	doorCtx, stopDoors := context.WithCancel(ctx)
	defer stopDoors()
	doors, doorCtx := errgroup.WithContext(doorCtx)
	closeDoors := func() error {
		stopDoors()
		return doors.Wait()
	}
	defer func() { _ = closeDoors() }() // until the shutdown below takes over
	open := func(name, addr string, h http.Handler, useTLS bool) error {
		l, err := listen(cfg, name, addr, useTLS)
		if err != nil {
			return err
		}
		doors.Go(func() error { return serveHTTP(doorCtx, cfg, name, l, h) })
		return nil
	}
	openDoors := func() error {
		if !cfg.Stdio {
			mux := http.NewServeMux()
			mux.Handle("/mcp", mcpHandler)
			if cfg.OpsListen == "" {
				mux.Handle("/healthz", ops)
				mux.Handle("/readyz", ops)
				mux.Handle("/metrics", ops)
			}
			if err := open("mcp", cfg.Listen, mux, cfg.TLSCert != ""); err != nil {
				return err
			}
		}
		if cfg.OpsListen != "" {
			return open("ops", cfg.OpsListen, ops, false)
		}
		return nil
	}
	if fl != nil {
		if err := openDoors(); err != nil {
			return err
		}
	}

	// Where config comes from decides the node id and the audit sink, which
	// the recorder needs before anything is served.
	var (
		src    configSource
		nodeID string
		alog   *auditlog.Log
		closeA func()
	)
	if fl != nil {
		ok, err := fl.enroll(doorCtx)
		if err != nil {
			return err
		}
		if !ok { // ctx ended (or a front door failed) while enrolling
			return closeDoors()
		}
		src, nodeID = fl, fl.client.NodeID()
		if alog, err = fl.openAudit(cfg); err != nil {
			return err
		}
		closeA = func() {}
	} else {
		// Stamped before it is read, so an edit racing the start is seen.
		stamp, err := fileStamp(cfg.ConfigFile)
		if err != nil {
			return fmt.Errorf("reading %s: %w", cfg.ConfigFile, err)
		}
		doc, err := loadDocument(cfg.ConfigFile)
		if err != nil {
			return fmt.Errorf("loading %s: %w", cfg.ConfigFile, err)
		}
		if nodeID, err = enforce.StandaloneNodeID(cfg.NodeName); err != nil {
			return err
		}
		a := defaultAudit(doc, cfg.StateDir, log)
		if alog, closeA, err = auditlog.OpenDocument(ctx, a, cfg.StateDir, nodeID, log); err != nil {
			return err
		}
		src = &fileSource{doc: doc, interval: cfg.ReloadInterval, w: &watcher{path: cfg.ConfigFile, mgr: mgr, holder: holder, log: log, audit: doc.Audit, stamp: stamp}}
	}
	// The audit log runs from here on; everything below that can fail
	// returns through its shutdown, so the spool lock is always released.
	auditCtx, stopAudit := context.WithCancel(context.WithoutCancel(ctx))
	auditDone := make(chan struct{})
	var auditErr error
	go func() {
		defer close(auditDone)
		defer closeA()
		auditErr = alog.Run(auditCtx)
	}()
	// Backends outlive the front doors so in-flight calls can finish.
	backendCtx, stopBackends := context.WithCancel(context.WithoutCancel(ctx))
	mgrDone := make(chan error, 1)
	go func() { mgrDone <- mgr.Run(backendCtx) }()
	// The config source (the control-plane client) outlives the front doors
	// too: the audit shipper uses its connection while the log flushes.
	srcCtx, stopSource := context.WithCancel(context.WithoutCancel(ctx))
	srcDone := make(chan struct{})
	var srcErr error
	srcStarted := false
	defer func() {
		// Order matters: the front doors stop accepting and drain, so the
		// last events are queued; flush them to the spool and give sinks
		// their drain time, then stop the config source and its
		// connection, then the backends.
		if err := closeDoors(); err != nil {
			log.Warn("front doors", "err", err)
		}
		stopAudit()
		<-auditDone
		stopSource()
		if srcStarted {
			<-srcDone
		}
		stopBackends()
		<-mgrDone
		log.Info("edge stopped")
	}()

	auth := cfg.Auth
	if auth == nil {
		a, err := enforce.NewAuthenticator(holder, enforce.AuthOptions{StdioPrincipal: cfg.Principal, StdioKey: cfg.APIKey})
		if err != nil {
			return err
		}
		auth = a
	}
	decider := cfg.Decider
	if decider == nil {
		decider = enforce.NewDecider(holder)
	}
	record := cfg.Record
	if record == nil {
		r, err := enforce.NewRecorder(enforce.RecorderOptions{Log: alog, NodeID: nodeID, Holder: holder})
		if err != nil {
			return err
		}
		record = r
	}
	gw := gateway.New(mgr, gateway.Options{
		Logger:         log,
		Auth:           auth,
		Decider:        decider,
		Record:         record,
		Metrics:        gateway.NewMetrics(cfg.Registry),
		ServerName:     "mcpgw",
		ServerVersion:  version,
		PageSize:       cfg.PageSize,
		MaxBodyBytes:   cfg.MaxBodyBytes,
		AllowedHosts:   cfg.AllowedHosts,
		AllowedOrigins: cfg.AllowedOrigins,

		MaxParkedPerPrincipal: cfg.MaxParkedPerPrincipal,
	})
	if fl != nil {
		mgr.SetNotifier(reportingNotifier{Notifier: gw, client: fl.client})
	} else {
		mgr.SetNotifier(gw)
	}
	// A policy change that alters what sessions may see sends them
	// list_changed, as a catalog change does.
	holder.SetNotifier(gw)
	cfg.Registry.MustRegister(alog.Metrics())
	src.register(cfg.Registry)

	g, ctx := errgroup.WithContext(ctx)
	if err := src.start(ctx); err != nil {
		return err
	}
	live.Store(&liveEdge{gw: gw, src: src, alog: alog})
	if fl == nil {
		if err := openDoors(); err != nil {
			return err
		}
	}
	srcStarted = true
	go func() {
		defer close(srcDone)
		srcErr = src.run(srcCtx)
	}()
	// The parts that outlive the front doors still fail the edge when they
	// stop on their own.
	g.Go(func() error {
		select {
		case <-ctx.Done():
			return nil
		case <-auditDone:
			return fmt.Errorf("audit log stopped: %w", errors.Join(auditErr, errors.New("no further events could be recorded")))
		}
	})
	g.Go(func() error {
		select {
		case <-ctx.Done():
			return nil
		case <-srcDone:
			if srcErr != nil {
				return srcErr
			}
			if ctx.Err() == nil {
				return errors.New("config source stopped")
			}
			return nil
		}
	})
	// The front doors were serving since the start: a failing one fails
	// the edge.
	g.Go(func() error {
		select {
		case <-ctx.Done():
			return nil
		case <-doorCtx.Done():
			return doors.Wait()
		}
	})
	g.Go(func() error { return gw.Run(ctx) })
	g.Go(func() error { upstream.PruneIdle(ctx, upstreamHTTP, 30*time.Second); return nil })

	if cfg.Stdio {
		g.Go(func() error {
			// A desktop client lists tools right after initialize and may
			// not wait for list_changed: give backends a moment to start.
			if !mgr.WaitListed(ctx, 5*time.Second) {
				log.Warn("serving stdio before every backend is up; clients get list_changed when they are")
			}
			err := gw.ServeStdio(ctx, cfg.Stdin, cfg.Stdout)
			if err == nil && ctx.Err() == nil {
				// The client closed stdin: the edge's work is done.
				return errStdinClosed
			}
			return err
		})
	}
	err := g.Wait()
	if errors.Is(err, errStdinClosed) {
		err = nil
	}
	return err
}

// liveEdge is what the front doors serve once the edge is wired.
type liveEdge struct {
	gw   *gateway.Gateway
	src  configSource
	alog *auditlog.Log
}

// writeNoConfig answers an MCP request that arrives before any config is
// live: 503 with a JSON-RPC error saying why, which clients show, and a
// Retry-After. Nothing is audited: the edge has no policy to decide by yet.
func writeNoConfig(w http.ResponseWriter, why string) {
	body := rpc.AppendErrorResponse(nil, nil, rpc.Errorf(rpc.CodeInternalError, "mcpgw: this edge has no configuration yet: %s", why))
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Retry-After", "1")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusServiceUnavailable)
	_, _ = w.Write(body)
}

// writeRefused answers an MCP request on an edge that must not serve
// although it has a config: its control plane revoked it. Nothing is
// audited: a revoked node's audit can no longer reach the control plane.
func writeRefused(w http.ResponseWriter, why string) {
	body := rpc.AppendErrorResponse(nil, nil, rpc.Errorf(rpc.CodeInternalError, "mcpgw: this edge does not serve: %s", why))
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusServiceUnavailable)
	_, _ = w.Write(body)
}

// serveReady answers /readyz. Ready means "has a config" (DESIGN §9) and
// can record what it serves: a full audit spool under on_full: refuse turns
// calls away, so it is not ready. Down backends and a degraded audit sink
// (a database that is away while events wait in the spool) are reported,
// not fatal, because the edge keeps serving.
func serveReady(w http.ResponseWriter, st *state.State, src configSource, alog *auditlog.Log) {
	if st == nil {
		http.Error(w, "not ready: no config yet ("+src.status()+")", http.StatusServiceUnavailable)
		return
	}
	if why := src.refusal(); why != "" {
		http.Error(w, "not ready: "+why+" ("+src.status()+")", http.StatusServiceUnavailable)
		return
	}
	if err := alog.Available(); err != nil {
		http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	var down []string
	for _, b := range st.Backends {
		if !b.Healthy() {
			down = append(down, b.Name())
		}
	}
	auditState := "ok"
	if ok, msg := alog.Healthy(); !ok {
		auditState = "degraded (" + msg + "; events wait in the spool)"
	}
	fmt.Fprintf(w, "ready: %s; %d backends, %d down %s; audit %s\n",
		src.status(), len(st.Backends), len(down), strings.Join(down, ","), auditState)
}

// configSource is where the edge's config comes from: a watched file or
// the control plane.
type configSource interface {
	// start applies the first config where that must happen before the
	// front doors open (a local file); a failure ends Run.
	start(ctx context.Context) error
	// run follows changes until ctx ends.
	run(ctx context.Context) error
	// status says, for /readyz, what is applied and from where.
	status() string
	// refusal says why the edge must not serve MCP although it has a
	// config ("" when it may serve).
	refusal() string
	register(reg prometheus.Registerer)
}

// fileSource is a standalone edge's config: one file (or directory),
// polled for changes.
type fileSource struct {
	doc      *document.Document
	w        *watcher
	interval time.Duration
}

func (f *fileSource) start(ctx context.Context) error {
	if _, err := f.w.apply(ctx, f.doc); err != nil {
		return fmt.Errorf("applying %s: %w", f.w.path, err)
	}
	f.doc = nil
	return nil
}

func (f *fileSource) run(ctx context.Context) error { return f.w.run(ctx, f.interval) }

// refusal: a local file never revokes its edge.
func (f *fileSource) refusal() string { return "" }

func (f *fileSource) status() string {
	if g := f.w.holder.Load(); g != nil {
		return fmt.Sprintf("config file %s, policy revision %d", f.w.path, g.Revision)
	}
	return "config file " + f.w.path
}

func (f *fileSource) register(reg prometheus.Registerer) {
	f.w.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mcpgw_edge_config_reloads_total",
		Help: "Config file loads, by result (applied, rejected).",
	}, []string{"result"})
	reg.MustRegister(f.w.reloads)
}

// defaultAudit is the document's audit section, or, when it has none, a
// JSON-lines file in the state dir: an edge never serves without
// recording what it served.
func defaultAudit(doc *document.Document, stateDir string, log *slog.Logger) document.Audit {
	if doc.Audit != nil {
		return *doc.Audit
	}
	file := filepath.Join(stateDir, "audit.jsonl")
	log.Info("config has no audit section; writing audit events to the state dir", "file", file)
	return document.Audit{File: file}
}

var errStdinClosed = errors.New("stdin closed")

// listen binds a front door's address, with TLS when useTLS.
func listen(cfg Config, name, addr string, useTLS bool) (net.Listener, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listening for %s on %s: %w", name, addr, err)
	}
	if useTLS {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			l.Close()
			return nil, fmt.Errorf("loading TLS key pair: %w", err)
		}
		l = tls.NewListener(l, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}})
	}
	cfg.Logger.Info("listening", "listener", name, "addr", l.Addr().String(), "tls", useTLS)
	if cfg.OnListen != nil {
		cfg.OnListen(name, l.Addr())
	}
	return l, nil
}

// serveHTTP serves h on l until ctx ends, then shuts down gracefully.
func serveHTTP(ctx context.Context, cfg Config, name string, l net.Listener, h http.Handler) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		// No WriteTimeout: tool calls and GET streams may run long; the
		// per-backend timeout bounds calls instead.
		MaxHeaderBytes: 64 << 10,
		ErrorLog:       slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serving %s: %w", name, err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownGrace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		// Long-lived GET streams do not end by themselves.
		srv.Close()
	}
	<-errc
	return nil
}
