// Package dataplane is the edge: it wires the front doors (gateway), the
// live state and its backends (state, upstream), the config source (a
// watched local file today; the control-plane client later) and the ops
// endpoints under one errgroup. Run is the whole edge; `mcpgw edge` only
// turns flags into a Config.
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
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"

	"github.com/mcpgw/mcpgw/dataplane/gateway"
	"github.com/mcpgw/mcpgw/dataplane/rpc"
	"github.com/mcpgw/mcpgw/dataplane/state"
	"github.com/mcpgw/mcpgw/dataplane/upstream"
	"github.com/mcpgw/mcpgw/internal/buildinfo"
)

// Config is everything an edge needs. Zero values take the defaults noted.
type Config struct {
	// ConfigFile is the declarative document (DESIGN §5.1). Required.
	ConfigFile string
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
	// ReloadInterval is how often the config file is checked (default 1s).
	ReloadInterval time.Duration
	// PageSize bounds list pages (default 100).
	PageSize int
	// Concurrency sizes the upstream HTTP idle pool (default 256).
	Concurrency int
	// ShutdownGrace bounds draining in-flight HTTP requests (default 10s).
	ShutdownGrace time.Duration

	// The request chain's seams (defaults: anonymous, allow all, discard).
	Auth    gateway.Authenticator
	Decider gateway.Decider
	Record  gateway.Recorder

	Logger *slog.Logger
	// Registry receives the metrics (default: a fresh registry).
	Registry *prometheus.Registry
	// OnListen, if set, is called with each bound listener address (tests
	// use it with port 0).
	OnListen func(name string, addr net.Addr)
}

// Validate checks the config and fills defaults.
func (c *Config) Validate() error {
	var errs []error
	if c.ConfigFile == "" {
		errs = append(errs, errors.New("a config file is required (--config)"))
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
		c.ReloadInterval = time.Second
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
		c.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
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
// accepting, drain in-flight requests, stop backends.
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("edge config: %w", err)
	}
	log := cfg.Logger
	version := buildinfo.Get()
	mgr := state.NewManager(upstream.Options{
		Logger:     log,
		Client:     &http.Client{Transport: upstream.NewTransport(cfg.Concurrency)},
		ClientInfo: []byte(`{"name":"mcpgw","version":` + string(rpc.Quote(version)) + `}`),
	}, nil)
	gw := gateway.New(mgr, gateway.Options{
		Logger:         log,
		Auth:           cfg.Auth,
		Decider:        cfg.Decider,
		Record:         cfg.Record,
		Metrics:        gateway.NewMetrics(cfg.Registry),
		ServerName:     "mcpgw",
		ServerVersion:  version,
		PageSize:       cfg.PageSize,
		MaxBodyBytes:   cfg.MaxBodyBytes,
		AllowedHosts:   cfg.AllowedHosts,
		AllowedOrigins: cfg.AllowedOrigins,
	})
	mgr.SetNotifier(gw)
	reloads := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mcpgw_edge_config_reloads_total",
		Help: "Config file loads, by result (applied, rejected).",
	}, []string{"result"})
	cfg.Registry.MustRegister(reloads)

	g, ctx := errgroup.WithContext(ctx)
	// Backends outlive the front doors so in-flight calls can finish.
	backendCtx, stopBackends := context.WithCancel(context.WithoutCancel(ctx))
	mgrDone := make(chan error, 1)
	go func() { mgrDone <- mgr.Run(backendCtx) }()
	defer func() {
		stopBackends()
		<-mgrDone
		log.Info("edge stopped")
	}()

	w := &watcher{path: cfg.ConfigFile, mgr: mgr, log: log, reloads: reloads}
	if err := w.load(ctx); err != nil {
		return fmt.Errorf("loading %s: %w", cfg.ConfigFile, err)
	}
	g.Go(func() error { return w.run(ctx, cfg.ReloadInterval) })
	g.Go(func() error { return gw.Run(ctx) })

	ops := http.NewServeMux()
	ops.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	ops.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		st := mgr.Load()
		if st == nil {
			http.Error(w, "no config yet", http.StatusServiceUnavailable)
			return
		}
		var down []string
		for _, b := range st.Backends {
			if !b.Healthy() {
				down = append(down, b.Name())
			}
		}
		// Ready means "has a config" (DESIGN §9); down backends are reported,
		// not fatal, because the others keep serving.
		fmt.Fprintf(w, "ready: %d backends, %d down %s\n", len(st.Backends), len(down), strings.Join(down, ","))
	})
	ops.Handle("/metrics", promhttp.HandlerFor(cfg.Registry, promhttp.HandlerOpts{}))

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
		if cfg.OpsListen != "" {
			g.Go(func() error { return serveHTTP(ctx, cfg, "ops", cfg.OpsListen, ops, false) })
		}
	} else {
		mux := http.NewServeMux()
		mux.Handle("/mcp", gw)
		if cfg.OpsListen == "" {
			mux.Handle("/healthz", ops)
			mux.Handle("/readyz", ops)
			mux.Handle("/metrics", ops)
		} else {
			g.Go(func() error { return serveHTTP(ctx, cfg, "ops", cfg.OpsListen, ops, false) })
		}
		g.Go(func() error { return serveHTTP(ctx, cfg, "mcp", cfg.Listen, mux, cfg.TLSCert != "") })
	}
	err := g.Wait()
	if errors.Is(err, errStdinClosed) {
		err = nil
	}
	return err
}

var errStdinClosed = errors.New("stdin closed")

// serveHTTP serves h on addr until ctx ends, then shuts down gracefully.
func serveHTTP(ctx context.Context, cfg Config, name, addr string, h http.Handler, useTLS bool) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		// No WriteTimeout: tool calls and GET streams may run long; the
		// per-backend timeout bounds calls instead.
		MaxHeaderBytes: 64 << 10,
		ErrorLog:       slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelWarn),
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listening for %s on %s: %w", name, addr, err)
	}
	if useTLS {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			l.Close()
			return fmt.Errorf("loading TLS key pair: %w", err)
		}
		l = tls.NewListener(l, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}})
	}
	cfg.Logger.Info("listening", "listener", name, "addr", l.Addr().String(), "tls", useTLS)
	if cfg.OnListen != nil {
		cfg.OnListen(name, l.Addr())
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
