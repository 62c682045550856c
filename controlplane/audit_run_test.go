package controlplane_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/mcpgw/mcpgw/controlplane"
	"github.com/mcpgw/mcpgw/dataplane/auditlog"
	"github.com/mcpgw/mcpgw/dataplane/auditship"
	mcpgwv1 "github.com/mcpgw/mcpgw/gen/mcpgw/v1"
	"github.com/mcpgw/mcpgw/internal/audit"
	"github.com/mcpgw/mcpgw/internal/pgtest"
)

// A replica started by Run ingests AuditStream: an edge enrolled through
// the real admin and node APIs ships spooled events with the real shipper,
// and QueryAudit and VerifyAudit on the same replica see every one of them.
func TestRunIngestsAuditStream(t *testing.T) {
	ctx := t.Context()
	token := "mcpgwadm_" + strings.Repeat("a", 32)
	r := start(t, controlplane.Config{DatabaseURL: pgtest.NewDatabase(t), DataDir: t.TempDir(), AdminToken: token,
		OpsListen: "127.0.0.1:0", AuditRetention: 7 * 24 * time.Hour})
	adminClient, serverTLS := adminOf(t, r, token)
	nodeID, nodeTLS := enrollEdge(t, adminClient, r, serverTLS, "edge-a")
	sh, l := shipAudit(t, dial(t, r.ready.NodeAddr, nodeTLS))

	const n = 250
	want := map[string]bool{}
	for i := range n {
		now := time.Now()
		ev := &audit.Event{ID: audit.NewID(now), TS: now, NodeID: nodeID, SessionID: "s1", Principal: "alice",
			Transport: audit.TransportHTTP, ProtocolVersion: "2025-11-25", Method: "tools/call", Backend: "github",
			Name: "github__create_issue", Decision: audit.DecisionAllow, Rule: "developer/0", PolicyRevision: int64(i),
			Status: audit.StatusOK, LatencyUS: 100}
		if err := l.Record(ctx, ev); err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		want[ev.ID.String()] = true
	}

	// QueryAudit on the replica returns every event once, with its node.
	got := waitAudit(t, adminClient, nodeID, n, 100, func(e *mcpgwv1.AuditEvent) {
		if e.GetPrincipal() != "alice" || e.GetNodeId() != nodeID {
			t.Fatalf("event %s: principal %q node %q", e.GetId(), e.GetPrincipal(), e.GetNodeId())
		}
	})
	for id := range want {
		if got[id] != 1 {
			t.Errorf("event %s returned %d times", id, got[id])
		}
	}
	if len(got) != n {
		t.Fatalf("QueryAudit returned %d distinct events, want %d", len(got), n)
	}

	v, err := adminClient.VerifyAudit(ctx, &mcpgwv1.VerifyAuditRequest{NodeId: nodeID})
	if err != nil {
		t.Fatal(err)
	}
	if !v.GetComplete() || len(v.GetReports()) != 1 || v.GetReports()[0].GetEpochs()[0].GetLedgerEvents() != n {
		t.Fatalf("VerifyAudit: %v", v)
	}
	if sh.Stats().Notices != 0 {
		t.Errorf("shipper got %d notices", sh.Stats().Notices)
	}
	// The ingest's series are on the replica's /metrics.
	resp, err := http.Get("http://" + r.ready.OpsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "mcpgw_cp_audit_events_ingested_total 250") || !strings.Contains(string(body), "mcpgw_cp_audit_streams 1") {
		t.Errorf("/metrics lacks the audit ingest series:\n%s", body)
	}
}

// adminOf returns an admin client of replica r, which trusts r's CA, and
// that TLS config for dialling r's other listeners.
func adminOf(t *testing.T, r *replica, token string) (mcpgwv1.AdminServiceClient, *tls.Config) {
	t.Helper()
	caPEM, err := os.ReadFile(r.ready.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	serverTLS := &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"}
	return mcpgwv1.NewAdminServiceClient(dial(t, r.ready.AdminAddr, serverTLS, grpc.WithPerRPCCredentials(bearer(token)))), serverTLS
}

// enrollEdge enrolls as an edge does (join token, CSR, node certificate)
// and returns the node id and a TLS config presenting its certificate.
func enrollEdge(t *testing.T, admin mcpgwv1.AdminServiceClient, r *replica, serverTLS *tls.Config, name string) (string, *tls.Config) {
	t.Helper()
	ctx := t.Context()
	jt, err := admin.CreateJoinToken(ctx, &mcpgwv1.CreateJoinTokenRequest{})
	if err != nil {
		t.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csrDER, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	enr, err := mcpgwv1.NewNodeServiceClient(dial(t, r.ready.NodeAddr, serverTLS)).Enroll(ctx, &mcpgwv1.EnrollRequest{
		JoinToken: jt.GetToken(), Csr: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csrDER}), Name: name})
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(key)
	cert, err := tls.X509KeyPair(enr.GetCertificateChain(), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}))
	if err != nil {
		t.Fatal(err)
	}
	nodeTLS := serverTLS.Clone()
	nodeTLS.Certificates = []tls.Certificate{cert}
	return enr.GetNodeId(), nodeTLS
}

// shipAudit runs an edge's audit pipeline (a spool and the real shipper)
// on nodeConn until the test ends.
func shipAudit(t *testing.T, nodeConn *grpc.ClientConn) (*auditship.Shipper, *auditlog.Log) {
	t.Helper()
	discard := slog.New(slog.NewTextHandler(io.Discard, nil))
	sh, err := auditship.New(auditship.Config{Conn: nodeConn, BackoffMin: 50 * time.Millisecond, BackoffMax: time.Second, Logger: discard})
	if err != nil {
		t.Fatal(err)
	}
	l, err := auditlog.Open(auditlog.Config{Dir: t.TempDir(), ShutdownDrain: 100 * time.Millisecond, Logger: discard}, sh)
	if err != nil {
		t.Fatal(err)
	}
	edgeCtx, stopEdge := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = sh.Run(edgeCtx) })
	wg.Go(func() {
		if err := l.Run(edgeCtx); err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("audit log: %v", err)
		}
	})
	t.Cleanup(func() { stopEdge(); wg.Wait() })
	return sh, l
}

// waitAudit pages through QueryAudit for nodeID until n distinct events
// are there or 30 s pass, and returns how often each id came back; check,
// if set, sees every event.
func waitAudit(t *testing.T, admin mcpgwv1.AdminServiceClient, nodeID string, n int, pageSize int32, check func(*mcpgwv1.AuditEvent)) map[string]int {
	t.Helper()
	got := map[string]int{}
	deadline := time.Now().Add(30 * time.Second)
	for {
		clear(got)
		for tok := ""; ; {
			resp, err := admin.QueryAudit(t.Context(), &mcpgwv1.QueryAuditRequest{
				Filter: &mcpgwv1.AuditFilter{NodeId: nodeID}, PageToken: tok, PageSize: pageSize})
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range resp.GetEvents() {
				got[e.GetId()]++
				if check != nil {
					check(e)
				}
			}
			if tok = resp.GetNextPageToken(); tok == "" {
				break
			}
		}
		if len(got) >= n || time.Now().After(deadline) {
			return got
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A replica maintains audit partitions under --audit-retention: at start
// it creates the days ahead and drops the days that ended before the
// retention period.
func TestRunMaintainsAuditPartitionsWithRetention(t *testing.T) {
	ctx := t.Context()
	dbURL := pgtest.NewDatabase(t)
	pool := pgtest.NewPool(t, dbURL)
	today := time.Now().UTC().Truncate(24 * time.Hour)
	old, kept := today.AddDate(0, 0, -10), today.AddDate(0, 0, -2)
	for _, d := range []time.Time{old, kept} {
		if _, err := pool.Exec(ctx, `SELECT mcpgw_ensure_audit_partitions($1::date, 1)`, d.Format(time.DateOnly)); err != nil {
			t.Fatal(err)
		}
	}
	exists := func(d time.Time) bool {
		var ok bool
		if err := pool.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, "audit_events_p"+d.Format("20060102")).Scan(&ok); err != nil {
			t.Fatal(err)
		}
		return ok
	}
	start(t, controlplane.Config{DatabaseURL: dbURL, DataDir: t.TempDir(), AuditRetention: 5 * 24 * time.Hour})
	deadline := time.Now().Add(30 * time.Second)
	for exists(old) {
		if time.Now().After(deadline) {
			t.Fatalf("the day %s, older than the 5-day retention, was not dropped", old.Format(time.DateOnly))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !exists(kept) {
		t.Errorf("the day %s, within the retention, was dropped", kept.Format(time.DateOnly))
	}
	if !exists(today.AddDate(0, 0, 7)) {
		t.Errorf("the partition a week ahead was not created")
	}
}
