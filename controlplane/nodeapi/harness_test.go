package nodeapi_test

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"log/slog"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/mcpgw/mcpgw/controlplane/nodeapi"
	"github.com/mcpgw/mcpgw/controlplane/pki"
	"github.com/mcpgw/mcpgw/controlplane/snapshot"
	"github.com/mcpgw/mcpgw/controlplane/store"
	mcpgwv1 "github.com/mcpgw/mcpgw/gen/mcpgw/v1"
	"github.com/mcpgw/mcpgw/internal/pgtest"
)

// testDB is one migrated database with the installation CA, shared by the
// control plane replicas a test starts on it.
type testDB struct {
	url   string
	pool  *pgxpool.Pool
	st    *store.Store
	nodes *store.NodeStore
	ca    *pki.CA
}

func newTestDB(t testing.TB) *testDB {
	t.Helper()
	url := pgtest.NewDatabase(t)
	pool := pgtest.NewPool(t, url)
	st := store.New(pool)
	kek, _, _, err := pki.LoadKEK("", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ca, _, err := pki.Init(t.Context(), st, kek)
	if err != nil {
		t.Fatal(err)
	}
	return &testDB{url: url, pool: pool, st: st, nodes: store.NewNodeStore(pool), ca: ca}
}

// cp is one control plane replica: snapshot builder, node API and its gRPC
// server on a loopback port, all real.
type cp struct {
	db     *testDB
	cache  *snapshot.Cache
	srv    *nodeapi.Server
	gs     *grpc.Server
	addr   string
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
}

type cpOption func(*nodeapi.Config)

func startCP(t testing.TB, db *testDB, replica string, opts ...cpOption) *cp {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return startCPOn(t, db, replica, lis, opts...)
}

// startCPOnAddr starts a replica on addr, retrying while a replica that was
// just stopped there releases the port.
func startCPOnAddr(t testing.TB, db *testDB, replica, addr string, opts ...cpOption) *cp {
	t.Helper()
	var lis net.Listener
	waitFor(t, 5*time.Second, "the port is free", func() bool {
		var err error
		lis, err = net.Listen("tcp", addr)
		return err == nil
	})
	return startCPOn(t, db, replica, lis, opts...)
}

func startCPOn(t testing.TB, db *testDB, replica string, lis net.Listener, opts ...cpOption) *cp {
	t.Helper()
	log := testLogger()
	cache := snapshot.NewCache()
	builder := snapshot.NewBuilder(db.nodes, cache, snapshot.BuilderConfig{PollInterval: time.Second, Logger: log})
	cfg := nodeapi.Config{
		Store: db.nodes, Cache: cache, CA: db.ca, Replica: replica, Logger: log,
		RevocationInterval: 200 * time.Millisecond,
	}
	for _, o := range opts {
		o(&cfg)
	}
	srv, err := nodeapi.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	certs, err := pki.NewServerCerts(db.ca, []string{"127.0.0.1", "localhost"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(append(srv.ServerOptions(),
		grpc.Creds(credentials.NewTLS(nodeapi.TLSConfig(certs.GetCertificate, db.ca.Pool()))))...)
	mcpgwv1.RegisterNodeServiceServer(gs, srv)

	ctx, cancel := context.WithCancel(context.Background())
	c := &cp{db: db, cache: cache, srv: srv, gs: gs, addr: lis.Addr().String(), cancel: cancel, done: make(chan struct{})}
	var wg sync.WaitGroup
	wg.Go(func() { _ = builder.Run(ctx) })
	wg.Go(func() { _ = srv.Run(ctx) })
	wg.Go(func() { _ = gs.Serve(lis) })
	go func() { wg.Wait(); close(c.done) }()
	t.Cleanup(c.stop)
	waitFor(t, 10*time.Second, "snapshot cache loads", func() bool {
		rev, err := db.st.CurrentRevision(context.Background())
		return err == nil && (rev == 0 || cache.Revision() == rev)
	})
	return c
}

// stop ends the replica abruptly: streams are cut, as when a process dies.
func (c *cp) stop() {
	c.once.Do(func() {
		c.gs.Stop()
		c.cancel()
		<-c.done
	})
}

func testLogger() *slog.Logger {
	if os.Getenv("MCPGW_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// joinToken creates a join token and returns its secret.
func (db *testDB) joinToken(t testing.TB, id string, labels map[string]string, expires time.Time) string {
	t.Helper()
	secret := "mcpgwjt_" + id + "_secretsecretsecret"
	sum := sha256.Sum256([]byte(secret))
	if _, err := db.st.CreateJoinToken(t.Context(), store.NewJoinToken{
		ID: id, SHA256: hex.EncodeToString(sum[:]), Labels: labels, NodeGroup: "default", ExpiresAt: expires,
	}); err != nil {
		t.Fatal(err)
	}
	return secret
}

// clientTLS is TLS for a raw NodeService client trusting the CA.
func (db *testDB) clientTLS(cert *tls.Certificate) credentials.TransportCredentials {
	cfg := &tls.Config{RootCAs: db.ca.Pool(), ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
	if cert != nil {
		// Always present it: with Certificates, crypto/tls would quietly
		// withhold a certificate the server's CA list does not name.
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
	}
	return credentials.NewTLS(cfg)
}

func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting until %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

var errRejected = errors.New("rejected by the test applier")
