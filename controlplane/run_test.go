package controlplane_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/mcpgw/mcpgw/controlplane"
	"github.com/mcpgw/mcpgw/controlplane/pki"
	mcpgwv1 "github.com/mcpgw/mcpgw/gen/mcpgw/v1"
	"github.com/mcpgw/mcpgw/internal/pgtest"
)

// syncBuffer collects Notices written by Run's goroutine.
type syncBuffer struct {
	mu  sync.Mutex // guards buf
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type replica struct {
	ready   controlplane.Ready
	notices *syncBuffer
	stop    func() error
}

// start runs a replica in the background until the test ends.
func start(t *testing.T, cfg controlplane.Config) *replica {
	t.Helper()
	r := &replica{notices: &syncBuffer{}}
	cfg.Notices = r.notices
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	if cfg.NodeListen == "" {
		cfg.NodeListen = "127.0.0.1:0"
	}
	if cfg.AdminListen == "" {
		cfg.AdminListen = "127.0.0.1:0"
	}
	readyc := make(chan controlplane.Ready, 1)
	cfg.OnReady = func(rd controlplane.Ready) { readyc <- rd }
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- controlplane.Run(ctx, cfg) }()
	select {
	case r.ready = <-readyc:
	case err := <-done:
		cancel()
		t.Fatalf("Run ended before it was ready: %v", err)
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatal("Run not ready after 30s")
	}
	var once sync.Once
	var stopErr error
	r.stop = func() error {
		once.Do(func() { cancel(); stopErr = <-done })
		return stopErr
	}
	t.Cleanup(func() {
		if err := r.stop(); err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return r
}

type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}
func (bearer) RequireTransportSecurity() bool { return true }

func dial(t *testing.T, addr string, cfg *tls.Config, opts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, append([]grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(cfg))}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

var tokenLine = regexp.MustCompile(`(?m)^\s+(mcpgwadm_[A-Za-z0-9_-]+)$`)

func TestRunServesAdminAndNodeListeners(t *testing.T) {
	ctx := t.Context()
	dbURL := pgtest.NewDatabase(t, pgtest.Unmigrated())
	dataDir := t.TempDir()
	r := start(t, controlplane.Config{DatabaseURL: dbURL, DataDir: dataDir, OpsListen: "127.0.0.1:0", TLSSANs: []string{"cp.example.test"}})

	// The generated admin token is shown once, with the CA file's path.
	m := tokenLine.FindStringSubmatch(r.notices.String())
	if m == nil || !strings.Contains(r.notices.String(), filepath.Join(dataDir, "ca.crt")) {
		t.Fatalf("notices lack the admin token or the CA path:\n%s", r.notices.String())
	}
	token := m[1]
	caPEM, err := os.ReadFile(r.ready.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		t.Fatal("ca.crt holds no certificate")
	}
	if fi, err := os.Stat(filepath.Join(dataDir, "kek")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("kek file: %v %v", fi, err)
	}

	// Admin: TLS verified against ca.crt, token required.
	tlsCfg := &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"}
	adminClient := mcpgwv1.NewAdminServiceClient(dial(t, r.ready.AdminAddr, tlsCfg, grpc.WithPerRPCCredentials(bearer(token))))
	info, err := adminClient.GetServerInfo(ctx, &mcpgwv1.GetServerInfoRequest{})
	if err != nil {
		t.Fatalf("GetServerInfo with the generated token: %v", err)
	}
	if info.GetRevision() != 0 {
		t.Errorf("fresh installation at revision %d", info.GetRevision())
	}
	anon := mcpgwv1.NewAdminServiceClient(dial(t, r.ready.AdminAddr, tlsCfg))
	if _, err := anon.GetServerInfo(ctx, &mcpgwv1.GetServerInfoRequest{}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("without a token: %v", err)
	}
	// The server certificate also carries the extra SAN.
	sanCfg := &tls.Config{RootCAs: roots, ServerName: "cp.example.test"}
	hc := grpc_health_v1.NewHealthClient(dial(t, r.ready.AdminAddr, sanCfg))
	if h, err := hc.Check(ctx, &grpc_health_v1.HealthCheckRequest{}); err != nil || h.GetStatus() != grpc_health_v1.HealthCheckResponse_SERVING {
		t.Fatalf("admin health (no token needed): %v %v", h, err)
	}

	// Node listener: TLS without a client certificate reaches Enroll, which
	// accepts a join token minted through the admin API, once.
	nodeConn := dial(t, r.ready.NodeAddr, tlsCfg)
	if h, err := grpc_health_v1.NewHealthClient(nodeConn).Check(ctx, &grpc_health_v1.HealthCheckRequest{Service: mcpgwv1.NodeService_ServiceDesc.ServiceName}); err != nil || h.GetStatus() != grpc_health_v1.HealthCheckResponse_SERVING {
		t.Fatalf("node health: %v %v", h, err)
	}
	jt, err := adminClient.CreateJoinToken(ctx, &mcpgwv1.CreateJoinTokenRequest{})
	if err != nil {
		t.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csrDER, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	csr := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csrDER})
	node := mcpgwv1.NewNodeServiceClient(nodeConn)
	enr, err := node.Enroll(ctx, &mcpgwv1.EnrollRequest{JoinToken: jt.GetToken(), Csr: csr, Name: "edge-a"})
	if err != nil {
		t.Fatalf("enroll: %v", err)
	}
	block, _ := pem.Decode(enr.GetCertificateChain())
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if id, err := pki.NodeID(leaf); err != nil || id != enr.GetNodeId() {
		t.Fatalf("node cert identity %q %v, want %s", id, err, enr.GetNodeId())
	}
	if _, err := node.Enroll(ctx, &mcpgwv1.EnrollRequest{JoinToken: jt.GetToken(), Csr: csr}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("second enrollment with one token: %v", err)
	}
	ln, err := adminClient.ListNodes(ctx, &mcpgwv1.ListNodesRequest{})
	if err != nil || len(ln.GetNodes()) != 1 || ln.GetNodes()[0].GetName() != "edge-a" {
		t.Fatalf("ListNodes after enrollment: %v %v", ln, err)
	}

	// Ops: healthz at once, readyz once the snapshot is loaded, metrics.
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + r.ready.OpsAddr + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Errorf("/healthz %d", code)
	}
	if code, body := get("/readyz"); code != 200 || !strings.Contains(body, "revision none") {
		t.Errorf("/readyz before any config: %d %s", code, body)
	}
	// A policy change reaches this replica's snapshots (pg_notify path).
	if _, err := adminClient.ApplyPolicy(ctx, &mcpgwv1.ApplyPolicyRequest{Document: &mcpgwv1.PolicyDocument{
		Principals: []*mcpgwv1.Principal{{Name: "alice"}}}}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		code, body := get("/readyz")
		if code == 200 && strings.Contains(body, "revision 1") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz never reported revision 1: %d %s", code, body)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code, body := get("/metrics"); code != 200 || !strings.Contains(body, "go_goroutines") ||
		!strings.Contains(body, "mcpgw_cp_config_revision 1") || !strings.Contains(body, "mcpgw_cp_connected_edges") {
		t.Errorf("/metrics %d:\n%s", code, body)
	}

	if err := r.stop(); err != nil {
		t.Fatalf("graceful stop: %v", err)
	}

	// A second start on the same database and data dir keeps the CA and
	// shows no new token.
	r2 := start(t, controlplane.Config{DatabaseURL: dbURL, DataDir: dataDir})
	if tokenLine.MatchString(r2.notices.String()) {
		t.Errorf("second start printed a token again:\n%s", r2.notices.String())
	}
	caPEM2, _ := os.ReadFile(r2.ready.CAFile)
	if !bytes.Equal(caPEM, caPEM2) {
		t.Errorf("CA changed across restarts")
	}
}

func TestEnvAdminTokenAndNoMigrate(t *testing.T) {
	ctx := t.Context()
	// --no-migrate on an empty database refuses, saying what to do.
	bare := pgtest.NewDatabase(t, pgtest.Unmigrated())
	cfg := controlplane.Config{DatabaseURL: bare, DataDir: t.TempDir(), NoMigrate: true, NodeListen: "127.0.0.1:0", AdminListen: "127.0.0.1:0",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Notices: io.Discard}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	err := controlplane.Run(ctx, cfg)
	if err == nil || !strings.Contains(err.Error(), "mcpgw migrate") || !strings.Contains(err.Error(), "0001_config") {
		t.Fatalf("no-migrate on an empty schema: %v", err)
	}

	// A migrated database with --no-migrate and a token from the env.
	token := "mcpgwadm_" + strings.Repeat("x", 32)
	r := start(t, controlplane.Config{DatabaseURL: pgtest.NewDatabase(t), DataDir: t.TempDir(), NoMigrate: true, AdminToken: token})
	if strings.Contains(r.notices.String(), token) {
		t.Errorf("an operator-supplied token was echoed")
	}
	caPEM, _ := os.ReadFile(r.ready.CAFile)
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	c := mcpgwv1.NewAdminServiceClient(dial(t, r.ready.AdminAddr, &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"}, grpc.WithPerRPCCredentials(bearer(token))))
	if _, err := c.GetServerInfo(ctx, &mcpgwv1.GetServerInfoRequest{}); err != nil {
		t.Fatalf("env token: %v", err)
	}
}

func TestValidate(t *testing.T) {
	for name, tc := range map[string]struct {
		cfg  controlplane.Config
		want string
	}{
		"no database": {controlplane.Config{DataDir: "/d"}, "database URL is required"},
		"bad url":     {controlplane.Config{DatabaseURL: "mysql://x", DataDir: "/d"}, "postgres://"},
		"no data dir": {controlplane.Config{DatabaseURL: "postgres://x/y"}, "data directory"},
		"same ports":  {controlplane.Config{DatabaseURL: "postgres://x/y", DataDir: "/d", NodeListen: ":7000", AdminListen: ":7000"}, "must differ"},
		"bad addr":    {controlplane.Config{DatabaseURL: "postgres://x/y", DataDir: "/d", OpsListen: "nope"}, "ops listen"},
		"short token": {controlplane.Config{DatabaseURL: "postgres://x/y", DataDir: "/d", AdminToken: "mcpgwadm_x"}, "MCPGW_ADMIN_TOKEN"},
		"api key tok": {controlplane.Config{DatabaseURL: "postgres://x/y", DataDir: "/d", AdminToken: "mcpgw_" + strings.Repeat("a", 40)}, "mcpgwadm_"},
		"bad tls san": {controlplane.Config{DatabaseURL: "postgres://x/y", DataDir: "/d", TLSSANs: []string{"a b"}}, "TLS SAN"},
		"retention":   {controlplane.Config{DatabaseURL: "postgres://x/y", DataDir: "/d", AuditRetention: time.Hour}, "at least 2 days"},
	} {
		err := tc.cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", name, err, tc.want)
		}
	}
	ok := controlplane.Config{DatabaseURL: "postgres://x/y", DataDir: "/d"}
	if err := ok.Validate(); err != nil || ok.NodeListen != controlplane.DefaultNodeListen || ok.AdminListen != controlplane.DefaultAdminListen || ok.Replica == "" ||
		ok.AuditRetention != controlplane.DefaultAuditRetention {
		t.Errorf("defaults: %+v %v", ok, err)
	}
}

// Two replicas on one database share one CA (with one KEK), and a change
// made through one reaches the other's snapshots through pg_notify.
func TestTwoReplicasShareCAAndConfig(t *testing.T) {
	ctx := t.Context()
	dbURL := pgtest.NewDatabase(t)
	kek := "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=" // 32 bytes
	token := "mcpgwadm_" + strings.Repeat("t", 32)
	r1 := start(t, controlplane.Config{DatabaseURL: dbURL, DataDir: t.TempDir(), KEK: kek, AdminToken: token, OpsListen: "127.0.0.1:0", Replica: "one"})
	r2 := start(t, controlplane.Config{DatabaseURL: dbURL, DataDir: t.TempDir(), KEK: kek, AdminToken: token, OpsListen: "127.0.0.1:0", Replica: "two"})
	ca1, _ := os.ReadFile(r1.ready.CAFile)
	ca2, _ := os.ReadFile(r2.ready.CAFile)
	if len(ca1) == 0 || !bytes.Equal(ca1, ca2) {
		t.Fatalf("replicas wrote different CA bundles")
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca1)
	c1 := mcpgwv1.NewAdminServiceClient(dial(t, r1.ready.AdminAddr, &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"}, grpc.WithPerRPCCredentials(bearer(token))))
	c2 := mcpgwv1.NewAdminServiceClient(dial(t, r2.ready.AdminAddr, &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"}, grpc.WithPerRPCCredentials(bearer(token))))
	if _, err := c1.ApplyPolicy(ctx, &mcpgwv1.ApplyPolicyRequest{Document: &mcpgwv1.PolicyDocument{Principals: []*mcpgwv1.Principal{{Name: "alice"}}}}); err != nil {
		t.Fatal(err)
	}
	if info, err := c2.GetServerInfo(ctx, &mcpgwv1.GetServerInfoRequest{}); err != nil || info.GetRevision() != 1 || info.GetReplica() != "two" {
		t.Fatalf("replica two: %v %v", info, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err := http.Get("http://" + r2.ready.OpsAddr + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if strings.Contains(string(b), "revision 1") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica two never served revision 1: %s", b)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
