package auditship_test

// The harness runs both ends for real: Postgres (internal/pgtest, reached
// through a TCP proxy the test can cut), the control plane's ingest behind a
// gRPC server with the installation CA's mTLS on loopback, and edges made of
// an auditlog.Log spooling to disk with this package's Shipper as its sink.
// The test depends on the control plane's packages only to stand it up; the
// shipper itself talks to it only over the wire.

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/mcpgw/mcpgw/controlplane/ingest"
	"github.com/mcpgw/mcpgw/controlplane/nodeapi"
	"github.com/mcpgw/mcpgw/controlplane/pki"
	"github.com/mcpgw/mcpgw/controlplane/store"
	"github.com/mcpgw/mcpgw/dataplane/auditlog"
	"github.com/mcpgw/mcpgw/dataplane/auditship"
	mcpgwv1 "github.com/mcpgw/mcpgw/gen/mcpgw/v1"
	"github.com/mcpgw/mcpgw/internal/audit"
	"github.com/mcpgw/mcpgw/internal/auditdb"
	"github.com/mcpgw/mcpgw/internal/pgtest"
)

func testLogger() *slog.Logger {
	if os.Getenv("MCPGW_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// env is one installation: a database, its CA, and a direct pool for checks.
type env struct {
	t      *testing.T
	direct *pgxpool.Pool // straight to Postgres, for assertions
	proxy  *pgProxy      // what the control plane's pool goes through
	store  *auditdb.Store
	ca     *pki.CA
}

func newEnv(t *testing.T) *env {
	t.Helper()
	dbURL := pgtest.NewDatabase(t)
	direct := pgtest.NewPool(t, dbURL)
	kek, _, _, err := pki.LoadKEK("", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ca, _, err := pki.Init(t.Context(), store.New(direct), kek)
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	proxy := newPGProxy(t, u.Host)
	u.Host = proxy.addr
	cfg, err := pgxpool.ParseConfig(u.String())
	if err != nil {
		t.Fatal(err)
	}
	cfg.ConnConfig.ConnectTimeout = 2 * time.Second
	pool, err := pgxpool.NewWithConfig(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return &env{t: t, direct: direct, proxy: proxy, store: auditdb.New(pool, auditdb.Options{}), ca: ca}
}

// nodeService serves only AuditStream, as nodeapi.Config.AuditStream would
// hand it to the ingest.
type nodeService struct {
	mcpgwv1.UnimplementedNodeServiceServer
	ing *ingest.Server
}

func (n nodeService) AuditStream(s grpc.BidiStreamingServer[mcpgwv1.AuditStreamRequest, mcpgwv1.AuditStreamResponse]) error {
	return n.ing.AuditStream(s)
}

// cp is a control plane replica's audit side on a loopback port.
type cp struct {
	ing    *ingest.Server
	gs     *grpc.Server
	addr   string
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
}

func (e *env) startCP(addr string, tune func(*ingest.Config)) *cp {
	t := e.t
	t.Helper()
	cfg := ingest.Config{Store: e.store, RetryAfter: 200 * time.Millisecond, MaintenanceInterval: -1, Logger: testLogger()}
	if tune != nil {
		tune(&cfg)
	}
	ing, err := ingest.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var lis net.Listener
	deadline := time.Now().Add(5 * time.Second)
	for {
		lis, err = net.Listen("tcp", addr)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond) // the previous replica is releasing the port
	}
	certs, err := pki.NewServerCerts(e.ca, []string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(grpc.Creds(credentials.NewTLS(nodeapi.TLSConfig(certs.GetCertificate, e.ca.Pool()))))
	mcpgwv1.RegisterNodeServiceServer(gs, nodeService{ing: ing})
	ctx, cancel := context.WithCancel(context.Background())
	c := &cp{ing: ing, gs: gs, addr: lis.Addr().String(), cancel: cancel, done: make(chan struct{})}
	var wg sync.WaitGroup
	wg.Go(func() { _ = ing.Run(ctx) })
	wg.Go(func() { _ = gs.Serve(lis) })
	go func() { wg.Wait(); close(c.done) }()
	t.Cleanup(c.stop)
	return c
}

// stop ends the replica abruptly: streams are cut mid-flight.
func (c *cp) stop() {
	c.once.Do(func() {
		c.gs.Stop()
		c.cancel()
		<-c.done
	})
}

// nodeConn enrolls nothing: it mints a node certificate from the CA
// directly, as Enroll would, and dials the replica address with it.
func (e *env) nodeConn(node, addr string) *grpc.ClientConn {
	t := e.t
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := e.ca.SignNodeCSR(csr, node, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert := &tls.Certificate{Certificate: [][]byte{nc.Leaf.Raw}, PrivateKey: key, Leaf: nc.Leaf}
	creds := credentials.NewTLS(&tls.Config{
		RootCAs: e.ca.Pool(), ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil },
	})
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// edge is an edge's audit pipeline: a spool in dir shipping through a
// Shipper on conn.
type edge struct {
	node    string
	log     *auditlog.Log
	shipper *auditship.Shipper
	cancel  context.CancelFunc
	done    chan struct{}
	once    sync.Once
}

func startEdge(t *testing.T, node, dir string, conn grpc.ClientConnInterface) *edge {
	t.Helper()
	return startEdgeWith(t, node, dir, conn, nil)
}

// startEdgeWith is startEdge with the spool's config adjusted by tune.
func startEdgeWith(t *testing.T, node, dir string, conn grpc.ClientConnInterface, tune func(*auditlog.Config)) *edge {
	t.Helper()
	sh, err := auditship.New(auditship.Config{Conn: conn, BackoffMin: 50 * time.Millisecond, BackoffMax: 500 * time.Millisecond, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	cfg := auditlog.Config{Dir: dir, RetryMin: 50 * time.Millisecond, RetryMax: 500 * time.Millisecond,
		ShutdownDrain: 100 * time.Millisecond, Logger: testLogger()}
	if tune != nil {
		tune(&cfg)
	}
	l, err := auditlog.Open(cfg, sh)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	e := &edge{node: node, log: l, shipper: sh, cancel: cancel, done: make(chan struct{})}
	var wg sync.WaitGroup
	wg.Go(func() { _ = sh.Run(ctx) })
	wg.Go(func() {
		if err := l.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("audit log: %v", err)
		}
	})
	go func() { wg.Wait(); close(e.done) }()
	t.Cleanup(e.stop)
	return e
}

func (e *edge) stop() {
	e.once.Do(func() {
		e.cancel()
		<-e.done
	})
}

// record records n events and returns their ids.
func (e *edge) record(t *testing.T, n int) []uuid.UUID {
	t.Helper()
	ids := make([]uuid.UUID, n)
	for i := range n {
		now := time.Now()
		ev := &audit.Event{
			ID: audit.NewID(now), TS: now, NodeID: e.node, SessionID: "s1", Principal: "alice",
			Transport: audit.TransportHTTP, ProtocolVersion: "2025-11-25", Method: "tools/call",
			Backend: "github", Name: "github__create_issue", Decision: audit.DecisionAllow,
			Rule: "developer/0", PolicyRevision: int64(i), Status: audit.StatusOK, LatencyUS: 120,
		}
		if err := e.log.Record(t.Context(), ev); err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		ids[i] = ev.ID
	}
	return ids
}

// counts returns the rows and distinct ids of node in audit_events.
func (e *env) counts(node string) (rows, distinct int) {
	e.t.Helper()
	if err := e.direct.QueryRow(context.Background(),
		`SELECT count(*), count(DISTINCT id) FROM audit_events WHERE node_id = $1`, node).Scan(&rows, &distinct); err != nil {
		e.t.Fatal(err)
	}
	return rows, distinct
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting until %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// pgProxy forwards TCP to Postgres and can be cut: down closes every
// connection and refuses new ones, as a database that went away.
type pgProxy struct {
	addr   string
	target string
	lis    net.Listener

	// mu guards up and conns.
	mu    sync.Mutex
	up    bool
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

func newPGProxy(t *testing.T, target string) *pgProxy {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &pgProxy{addr: lis.Addr().String(), target: target, lis: lis, up: true, conns: map[net.Conn]struct{}{}}
	p.wg.Go(p.accept)
	t.Cleanup(func() {
		lis.Close()
		p.setUp(false)
		p.wg.Wait()
	})
	return p
}

func (p *pgProxy) accept() {
	for {
		c, err := p.lis.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if !p.up {
			p.mu.Unlock()
			c.Close()
			continue
		}
		up, err := net.DialTimeout("tcp", p.target, 2*time.Second)
		if err != nil {
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.conns[c], p.conns[up] = struct{}{}, struct{}{}
		p.mu.Unlock()
		pipe := func(dst, src net.Conn) {
			_, _ = io.Copy(dst, src)
			dst.Close()
			src.Close()
		}
		p.wg.Go(func() { pipe(up, c) })
		p.wg.Go(func() { pipe(c, up) })
	}
}

func (p *pgProxy) setUp(up bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.up = up
	if !up {
		for c := range p.conns {
			c.Close()
		}
		clear(p.conns)
	}
}
