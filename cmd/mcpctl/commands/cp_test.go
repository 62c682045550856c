package commands

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/mcpgw/mcpgw/controlplane"
	"github.com/mcpgw/mcpgw/controlplane/admin"
	"github.com/mcpgw/mcpgw/controlplane/pki"
	"github.com/mcpgw/mcpgw/controlplane/store"
	"github.com/mcpgw/mcpgw/internal/auditdb"
	"github.com/mcpgw/mcpgw/internal/pgtest"
)

// testAdminToken is the bootstrap admin token of the test control planes.
const testAdminToken = "mcpgwadm_mcpctltest_0123456789abcdef0123456789abcdef"

// controlPlane is a real control-plane replica (controlplane.Run: admin and
// node listeners over TLS on loopback, the installation CA, Postgres) on a
// fresh database.
type controlPlane struct {
	addr     string // admin listener
	nodeAddr string // node listener, for edges
	caFile   string
	// audit writes to the same database, to feed audit queries the way
	// the AuditStream ingest does.
	audit *auditdb.Store
}

func startControlPlane(t *testing.T) *controlPlane {
	t.Helper()
	dbURL := pgtest.NewDatabase(t)
	readyc := make(chan controlplane.Ready, 1)
	cfg := controlplane.Config{
		DatabaseURL: dbURL, DataDir: t.TempDir(), AdminToken: testAdminToken,
		NodeListen: "127.0.0.1:0", AdminListen: "127.0.0.1:0", Replica: "replica-1",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Notices: io.Discard,
		OnReady: func(r controlplane.Ready) { readyc <- r },
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- controlplane.Run(ctx, cfg) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("control plane: %v", err)
		}
	})
	var ready controlplane.Ready
	select {
	case ready = <-readyc:
	case err := <-done:
		t.Fatalf("control plane ended before it was ready: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("control plane not ready after 30s")
	}
	return &controlPlane{
		addr: ready.AdminAddr, nodeAddr: ready.NodeAddr, caFile: ready.CAFile,
		audit: auditdb.New(pgtest.NewPool(t, dbURL), auditdb.Options{}),
	}
}

// startAdminWithoutAudit serves only the AdminService, built without its
// audit store, as a control plane that predates audit queries answers.
func startAdminWithoutAudit(t *testing.T) *controlPlane {
	t.Helper()
	ctx := t.Context()
	st := store.New(pgtest.NewPool(t, pgtest.NewDatabase(t)))
	dataDir := t.TempDir()
	kek, _, _, err := pki.LoadKEK("", dataDir)
	if err != nil {
		t.Fatal(err)
	}
	ca, _, err := pki.Init(ctx, st, kek)
	if err != nil {
		t.Fatal(err)
	}
	caFile, err := ca.WriteBundle(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.EnsureBootstrapAdminToken(ctx, store.HashSecret(testAdminToken), true); err != nil {
		t.Fatal(err)
	}
	certs, err := pki.NewServerCerts(ca, []string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv := grpc.NewServer(append([]grpc.ServerOption{grpc.Creds(credentials.NewTLS(&tls.Config{GetCertificate: certs.GetCertificate, MinVersion: tls.VersionTLS12}))},
		admin.Interceptors(admin.NewAuthenticator(st), log)...)...)
	admin.New(admin.Options{Store: st, Replica: "replica-1", Logger: log}).Register(srv)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Stop()
		if err := <-served; err != nil {
			t.Errorf("admin server: %v", err)
		}
	})
	return &controlPlane{addr: ln.Addr().String(), caFile: caFile}
}

// cliFor returns a CLI whose environment points at cp, the way an operator
// would set it up: MCPCTL_SERVER, MCPCTL_TOKEN and MCPCTL_CA_FILE.
func (cp *controlPlane) cliFor(t *testing.T) *cli {
	c := newCLI(t)
	c.env["MCPCTL_SERVER"] = cp.addr
	c.env["MCPCTL_TOKEN"] = testAdminToken
	c.env["MCPCTL_CA_FILE"] = cp.caFile
	return c
}

// writeFile writes a test input file and returns its path.
func writeFile(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
