package controlplane

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	"google.golang.org/grpc/health/grpc_health_v1"

	"github.com/mcpgw/mcpgw/controlplane/admin"
	"github.com/mcpgw/mcpgw/controlplane/ingest"
	"github.com/mcpgw/mcpgw/controlplane/nodeapi"
	"github.com/mcpgw/mcpgw/controlplane/pki"
	"github.com/mcpgw/mcpgw/controlplane/snapshot"
	"github.com/mcpgw/mcpgw/controlplane/store"
	mcpgwv1 "github.com/mcpgw/mcpgw/gen/mcpgw/v1"
	"github.com/mcpgw/mcpgw/internal/auditdb"
)

// Run runs one replica until ctx ends, then shuts down gracefully: health
// turns NOT_SERVING, listeners stop accepting, in-flight RPCs get
// ShutdownGrace to finish, the node registry makes its last flush. It
// returns nil after a clean shutdown and the first failure otherwise. cfg
// must have passed Validate.
func Run(ctx context.Context, cfg Config) error {
	log := cfg.Logger
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("creating data directory: %w", err)
	}

	stores, err := openStores(ctx, cfg, auditdb.Options{Retention: cfg.AuditRetention})
	if err != nil {
		return err
	}
	defer stores.close()
	st := stores.config

	kek, kekSource, kekCreated, err := pki.LoadKEK(cfg.KEK, cfg.DataDir)
	if err != nil {
		return err
	}
	ca, caCreated, err := pki.Init(ctx, st, kek)
	if err != nil {
		return fmt.Errorf("loading the installation CA: %w", err)
	}
	if kekCreated {
		fmt.Fprintf(cfg.Notices, "mcpgw cp: created a new key-encryption key in %s. Every replica of this installation needs the same key: copy that file to their data directories or set $%s on all of them.\n", kekSource, EnvKEK)
	}
	caFile, err := ca.WriteBundle(cfg.DataDir)
	if err != nil {
		return err
	}
	log.Info("installation CA ready", "created", caCreated, "ca_file", caFile, "kek", kekSource, "kek_id", kek.ID())
	fmt.Fprintf(cfg.Notices, "mcpgw cp: CA bundle for edges and mcpctl written to %s\n", caFile)

	if err := bootstrapAdminToken(ctx, cfg, st); err != nil {
		return err
	}

	// Bind every listener before serving any, so a taken port fails the
	// start instead of leaving a half-running replica.
	nodeLn, err := net.Listen("tcp", cfg.NodeListen)
	if err != nil {
		return fmt.Errorf("node listener: %w", err)
	}
	defer nodeLn.Close()
	adminLn, err := net.Listen("tcp", cfg.AdminListen)
	if err != nil {
		return fmt.Errorf("admin listener: %w", err)
	}
	defer adminLn.Close()
	var opsLn net.Listener
	if cfg.OpsListen != "" {
		if opsLn, err = net.Listen("tcp", cfg.OpsListen); err != nil {
			return fmt.Errorf("ops listener: %w", err)
		}
		defer opsLn.Close()
	}

	hosts := append([]string{cfg.NodeListen, cfg.AdminListen, nodeLn.Addr().String(), adminLn.Addr().String()}, cfg.TLSSANs...)
	certs, err := pki.NewServerCerts(ca, hosts, pki.ServerCertLifetime)
	if err != nil {
		return err
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	nodeStore := stores.nodes
	cache := snapshot.NewCache()
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "mcpgw_cp_config_revision",
		Help: "Config revision of the snapshots this replica serves to edges (0 before any config).",
	}, func() float64 { return float64(cache.Revision()) }))
	builder := snapshot.NewBuilder(nodeStore, cache, snapshot.BuilderConfig{Logger: log.With("component", "snapshot")})
	// One audit store serves ingest and the admin API's audit reads; its
	// retention bounds both what ingest accepts and what maintenance drops.
	auditStore := stores.audit
	ing, err := ingest.New(ingest.Config{Store: auditStore, Registerer: reg, Logger: log.With("component", "ingest")})
	if err != nil {
		return err
	}
	nodeSrv, err := nodeapi.New(nodeapi.Config{
		Store: nodeStore, Cache: cache, CA: ca, Replica: cfg.Replica, CertTTL: cfg.NodeCertTTL,
		Registerer: reg, Logger: log.With("component", "nodeapi"),
		// nodeapi has refused unknown and revoked nodes already; ingest
		// takes the node from the same verified certificate.
		AuditStream: func(_ uuid.UUID, s ingest.AuditStreamServer) error { return ing.AuditStream(s) },
	})
	if err != nil {
		return err
	}

	healthSrv := health.NewServer()
	nodeOpts := append(nodeSrv.ServerOptions(), grpc.Creds(credentials.NewTLS(nodeapi.TLSConfig(certs.GetCertificate, ca.Pool()))))
	nodeGRPC := grpc.NewServer(nodeOpts...)
	mcpgwv1.RegisterNodeServiceServer(nodeGRPC, nodeSrv)
	grpc_health_v1.RegisterHealthServer(nodeGRPC, healthSrv)

	adminTLS := &tls.Config{
		GetCertificate: certs.GetCertificate,
		// An admin client certificate is an alternative to the token; the
		// auth interceptor accepts only verified ones naming an admin.
		ClientAuth: tls.VerifyClientCertIfGiven,
		ClientCAs:  ca.Pool(),
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"h2"},
	}
	adminLog := log.With("component", "admin")
	adminGRPC := grpc.NewServer(append([]grpc.ServerOption{grpc.Creds(credentials.NewTLS(adminTLS))},
		admin.Interceptors(admin.NewAuthenticator(st), adminLog)...)...)
	admin.New(admin.Options{Store: st, Audit: auditStore, Replica: cfg.Replica, Logger: adminLog}).Register(adminGRPC)
	grpc_health_v1.RegisterHealthServer(adminGRPC, healthSrv)

	var opsSrv *http.Server
	if opsLn != nil {
		opsSrv = &http.Server{Handler: opsHandler(reg, st, cache), ReadHeaderTimeout: 5 * time.Second}
	}

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return builder.Run(gctx) })
	g.Go(func() error { return nodeSrv.Run(gctx) })
	// Audit committers, and partition maintenance: every replica runs it,
	// the advisory lock lets one at a time do the work.
	g.Go(func() error { return ing.Run(gctx) })
	g.Go(func() error { return serveGRPC(nodeGRPC, nodeLn, "node") })
	g.Go(func() error { return serveGRPC(adminGRPC, adminLn, "admin") })
	if opsSrv != nil {
		g.Go(func() error {
			if err := opsSrv.Serve(opsLn); !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("ops listener: %w", err)
			}
			return nil
		})
	}
	// The shutdown goroutine: it stops everything above when ctx ends or
	// when any of them fails (gctx ends either way).
	g.Go(func() error {
		<-gctx.Done()
		healthSrv.Shutdown()
		grace, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownGrace)
		defer cancel()
		stopGracefully(grace, nodeGRPC)
		stopGracefully(grace, adminGRPC)
		if opsSrv != nil {
			_ = opsSrv.Shutdown(grace)
		}
		return nil
	})

	healthSrv.SetServingStatus("", grpc_health_v1.HealthCheckResponse_SERVING)
	healthSrv.SetServingStatus(mcpgwv1.AdminService_ServiceDesc.ServiceName, grpc_health_v1.HealthCheckResponse_SERVING)
	healthSrv.SetServingStatus(mcpgwv1.NodeService_ServiceDesc.ServiceName, grpc_health_v1.HealthCheckResponse_SERVING)
	ready := Ready{NodeAddr: nodeLn.Addr().String(), AdminAddr: adminLn.Addr().String(), CAFile: caFile}
	if opsLn != nil {
		ready.OpsAddr = opsLn.Addr().String()
	}
	log.Info("control plane replica serving", "replica", cfg.Replica, "node", ready.NodeAddr, "admin", ready.AdminAddr, "ops", ready.OpsAddr)
	if cfg.OnReady != nil {
		cfg.OnReady(ready)
	}
	err = g.Wait()
	log.Info("control plane replica stopped", "err", err)
	return err
}

// serveGRPC serves until the server is stopped; stopping is not an error.
func serveGRPC(s *grpc.Server, ln net.Listener, name string) error {
	if err := s.Serve(ln); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("%s listener: %w", name, err)
	}
	return nil
}

// stopGracefully drains in-flight RPCs until ctx ends, then cuts the rest
// (long-lived ConfigStreams and WatchRollouts never end on their own).
func stopGracefully(ctx context.Context, s *grpc.Server) {
	done := make(chan struct{})
	go func() { s.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		s.Stop()
		<-done
	}
}

// bootstrapAdminToken makes sure someone can log in: with AdminToken it is
// (re)stored as the bootstrap token; otherwise, if no admin token exists, a
// new one is generated and shown once on Notices. When replicas start
// together on an empty database, only the one whose token was stored shows
// it.
func bootstrapAdminToken(ctx context.Context, cfg Config, st configBackend) error {
	if cfg.AdminToken != "" {
		if _, err := st.EnsureBootstrapAdminToken(ctx, store.HashSecret(cfg.AdminToken), true); err != nil {
			return err
		}
		cfg.Logger.Info("bootstrap admin token taken from $" + EnvAdminToken)
		return nil
	}
	ok, err := st.HasActiveAdminToken(ctx)
	if err != nil || ok {
		return err
	}
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return fmt.Errorf("generating an admin token: %w", err)
	}
	tok := admin.AdminTokenPrefix + base64.RawURLEncoding.EncodeToString(b[:])
	stored, err := st.EnsureBootstrapAdminToken(ctx, store.HashSecret(tok), false)
	if err != nil {
		return err
	}
	if !stored {
		cfg.Logger.Info("another replica generated the bootstrap admin token; see its output")
		return nil
	}
	fmt.Fprintf(cfg.Notices, `mcpgw cp: generated the bootstrap admin token. It is shown this once and stored only as a hash; keep it somewhere safe:

    %s

Use it with: mcpctl --token <token> ... (or set $%s on every replica to choose your own)
`, tok, EnvAdminToken)
	cfg.Logger.Info("generated the bootstrap admin token (printed once on stderr, never logged)")
	return nil
}

// opsHandler serves /metrics, /healthz (the process is up) and /readyz (the
// database answers, so the replica can serve admin calls and enrollments;
// the body says which config revision edges are being served, "none" on an
// installation that has no config yet).
func opsHandler(reg *prometheus.Registry, st configBackend, cache *snapshot.Cache) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := st.Ping(ctx); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("not ready: database unreachable\n"))
			return
		}
		if rev := cache.Revision(); rev > 0 {
			_, _ = fmt.Fprintf(w, "ready: serving config revision %d\n", rev)
			return
		}
		_, _ = w.Write([]byte("ready: serving config revision none (nothing configured yet)\n"))
	})
	return mux
}
