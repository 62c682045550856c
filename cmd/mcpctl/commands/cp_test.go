package commands

import (
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

	"github.com/mcpgw/mcpgw/controlplane/admin"
	"github.com/mcpgw/mcpgw/controlplane/pki"
	"github.com/mcpgw/mcpgw/controlplane/store"
	"github.com/mcpgw/mcpgw/internal/auditdb"
	"github.com/mcpgw/mcpgw/internal/pgtest"
)

// testAdminToken is the bootstrap admin token of the test control planes.
const testAdminToken = "mcpgwadm_mcpctltest_0123456789abcdef0123456789abcdef"

// controlPlane is a real AdminService on a fresh Postgres database, served
// over TLS on loopback with a certificate from a real installation CA.
type controlPlane struct {
	addr   string
	caFile string
	st     *store.Store
	audit  *auditdb.Store
}

type cpOptions struct {
	// withAudit serves QueryAudit/VerifyAudit from the database; without
	// it they are Unimplemented, as on a control plane built without them.
	withAudit bool
}

func startControlPlane(t *testing.T, o cpOptions) *controlPlane {
	t.Helper()
	ctx := t.Context()
	pool := pgtest.NewPool(t, pgtest.NewDatabase(t))
	st := store.New(pool)
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
	certs, err := pki.NewServerCerts(ca, []string{"127.0.0.1", "localhost"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	tlsCfg := &tls.Config{GetCertificate: certs.GetCertificate, MinVersion: tls.VersionTLS12}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv := grpc.NewServer(append([]grpc.ServerOption{grpc.Creds(credentials.NewTLS(tlsCfg))},
		admin.Interceptors(admin.NewAuthenticator(st), log)...)...)
	cp := &controlPlane{caFile: caFile, st: st}
	opts := admin.Options{Store: st, Replica: "replica-1", Logger: log, RolloutPoll: 20 * time.Millisecond}
	if o.withAudit {
		cp.audit = auditdb.New(pool, auditdb.Options{})
		opts.Audit = cp.audit
	}
	admin.New(opts).Register(srv)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cp.addr = ln.Addr().String()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Stop()
		if err := <-served; err != nil {
			t.Errorf("admin server: %v", err)
		}
	})
	return cp
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
