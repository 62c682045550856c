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
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/mcpgw/mcpgw/controlplane"
	"github.com/mcpgw/mcpgw/controlplane/store/sqlitestore"
	mcpgwv1 "github.com/mcpgw/mcpgw/gen/mcpgw/v1"
	"github.com/mcpgw/mcpgw/internal/audit"
	"github.com/mcpgw/mcpgw/internal/auditdb"
)

// The whole control plane on the embedded store, no Postgres: admin apply,
// the snapshot an enrolled edge receives and acknowledges, audit queries,
// the refusal of a second control plane on the same file, and a restart
// that keeps everything.
func TestRunOnEmbeddedStore(t *testing.T) {
	ctx := t.Context()
	dataDir := t.TempDir()
	path := controlplane.EmbeddedStorePath(dataDir)
	r := start(t, controlplane.Config{EmbeddedPath: path, DataDir: dataDir, OpsListen: "127.0.0.1:0"})

	m := tokenLine.FindStringSubmatch(r.notices.String())
	if m == nil {
		t.Fatalf("notices lack the generated admin token:\n%s", r.notices.String())
	}
	token := m[1]
	caPEM, err := os.ReadFile(r.ready.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	tlsCfg := &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"}
	adminClient := mcpgwv1.NewAdminServiceClient(dial(t, r.ready.AdminAddr, tlsCfg, grpc.WithPerRPCCredentials(bearer(token))))

	// Admin: a policy makes revision 1; a stale write is refused.
	ap, err := adminClient.ApplyPolicy(ctx, &mcpgwv1.ApplyPolicyRequest{Document: &mcpgwv1.PolicyDocument{
		Principals: []*mcpgwv1.Principal{{Name: "alice", Groups: []string{"eng"}}}}})
	if err != nil || ap.GetRevision() != 1 {
		t.Fatalf("ApplyPolicy: %v %v", ap, err)
	}
	if _, err := adminClient.ApplyPolicy(ctx, &mcpgwv1.ApplyPolicyRequest{ExpectedRevision: 7, Document: &mcpgwv1.PolicyDocument{}}); err == nil {
		t.Fatal("an apply with a stale expected revision was accepted")
	}

	// An edge enrolls with a join token and receives revision 1.
	jt, err := adminClient.CreateJoinToken(ctx, &mcpgwv1.CreateJoinTokenRequest{})
	if err != nil {
		t.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csrDER, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	node := mcpgwv1.NewNodeServiceClient(dial(t, r.ready.NodeAddr, tlsCfg))
	enr, err := node.Enroll(ctx, &mcpgwv1.EnrollRequest{JoinToken: jt.GetToken(), Csr: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csrDER}), Name: "edge-a"})
	if err != nil {
		t.Fatalf("enroll: %v", err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(key)
	cert, err := tls.X509KeyPair(enr.GetCertificateChain(), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}))
	if err != nil {
		t.Fatal(err)
	}
	edge := mcpgwv1.NewNodeServiceClient(dial(t, r.ready.NodeAddr, &tls.Config{RootCAs: roots, ServerName: "127.0.0.1", Certificates: []tls.Certificate{cert}}))
	sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	stream, err := edge.ConfigStream(sctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&mcpgwv1.ConfigStreamRequest{Msg: &mcpgwv1.ConfigStreamRequest_Hello{Hello: &mcpgwv1.ConfigHello{Version: "test"}}}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil || resp.GetSnapshot().GetRevision() != 1 {
		t.Fatalf("first snapshot: %v %v", resp, err)
	}
	snap := resp.GetSnapshot()
	if err := stream.Send(&mcpgwv1.ConfigStreamRequest{Msg: &mcpgwv1.ConfigStreamRequest_Ack{Ack: &mcpgwv1.ConfigAck{Nonce: snap.GetNonce(), Revision: 1, Hash: snap.GetHash()}}}); err != nil {
		t.Fatal(err)
	}
	// The registry records the ack (batched flush) and the connection.
	deadline := time.Now().Add(10 * time.Second)
	for {
		ln, err := adminClient.ListNodes(ctx, &mcpgwv1.ListNodesRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if n := ln.GetNodes(); len(n) == 1 && n[0].GetName() == "edge-a" && n[0].GetAppliedRevision() == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ListNodes never showed edge-a at revision 1: %v", ln)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// A later change reaches the open stream without Postgres's NOTIFY.
	if _, err := adminClient.ApplyPolicy(ctx, &mcpgwv1.ApplyPolicyRequest{Document: &mcpgwv1.PolicyDocument{
		Principals: []*mcpgwv1.Principal{{Name: "alice", Groups: []string{"eng"}}, {Name: "bob"}}}}); err != nil {
		t.Fatal(err)
	}
	if resp, err := stream.Recv(); err != nil || resp.GetSnapshot().GetRevision() != 2 {
		t.Fatalf("pushed snapshot: %v %v", resp, err)
	}

	// Audit queries answer from the embedded store.
	if q, err := adminClient.QueryAudit(ctx, &mcpgwv1.QueryAuditRequest{}); err != nil || len(q.GetEvents()) != 0 {
		t.Fatalf("QueryAudit on an empty log: %v %v", q, err)
	}
	if v, err := adminClient.VerifyAudit(ctx, &mcpgwv1.VerifyAuditRequest{}); err != nil || !v.GetComplete() {
		t.Fatalf("VerifyAudit on an empty log: %v %v", v, err)
	}
	resp2, err := http.Get("http://" + r.ready.OpsAddr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp2.Body)
	resp2.Body.Close()
	if resp2.StatusCode != 200 || !strings.Contains(string(body), "ready") {
		t.Fatalf("/readyz: %d %s", resp2.StatusCode, body)
	}

	// A second control plane on the same file is refused, clearly.
	second := controlplane.Config{EmbeddedPath: path, DataDir: t.TempDir(), NodeListen: "127.0.0.1:0", AdminListen: "127.0.0.1:0",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Notices: io.Discard}
	if err := second.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := controlplane.Run(ctx, second); err == nil || !strings.Contains(err.Error(), "another mcpgw control plane is using "+path) {
		t.Fatalf("second control plane on %s: %v", path, err)
	}

	cancel()
	if err := r.stop(); err != nil {
		t.Fatalf("graceful stop: %v", err)
	}
	// With the control plane stopped the file is free: record audit for the
	// enrolled node straight into the store, as ingest would.
	st, err := sqlitestore.Open(ctx, path, sqlitestore.Options{})
	if err != nil {
		t.Fatalf("opening the store after the control plane stopped: %v", err)
	}
	batch := auditdb.Batch{Epoch: 1, Seq: 1}
	for i := range 3 {
		at := time.Now().Add(time.Duration(i-10) * time.Second)
		e := audit.Event{ID: audit.NewID(at), TS: at, NodeID: enr.GetNodeId(), Principal: "alice", Transport: audit.TransportHTTP,
			Method: "tools/call", Backend: "github", Name: "github__create_issue", Decision: audit.DecisionAllow, Status: audit.StatusOK}
		batch.Lines = append(e.AppendJSON(batch.Lines), '\n')
		batch.Count++
	}
	batch.CRC = auditdb.CRC32C(batch.Lines)
	if res, err := st.IngestAll(ctx, auditdb.NodeBatches{Node: enr.GetNodeId(), Batches: []auditdb.Batch{batch}}); err != nil || res.Events != 3 {
		t.Fatalf("ingest: %+v %v", res, err)
	}
	st.Close()

	// A restart keeps the CA, the token and the config, and serves the audit.
	r2 := start(t, controlplane.Config{EmbeddedPath: path, DataDir: dataDir})
	if tokenLine.MatchString(r2.notices.String()) {
		t.Errorf("restart printed a new admin token:\n%s", r2.notices.String())
	}
	caPEM2, _ := os.ReadFile(r2.ready.CAFile)
	if !bytes.Equal(caPEM, caPEM2) {
		t.Error("CA changed across restarts")
	}
	c2 := mcpgwv1.NewAdminServiceClient(dial(t, r2.ready.AdminAddr, tlsCfg, grpc.WithPerRPCCredentials(bearer(token))))
	if info, err := c2.GetServerInfo(ctx, &mcpgwv1.GetServerInfoRequest{}); err != nil || info.GetRevision() != 2 {
		t.Fatalf("after restart: %v %v", info, err)
	}
	q, err := c2.QueryAudit(ctx, &mcpgwv1.QueryAuditRequest{Filter: &mcpgwv1.AuditFilter{NodeId: enr.GetNodeId(), Principal: "alice"}, PageSize: 2})
	if err != nil || len(q.GetEvents()) != 2 || q.GetNextPageToken() == "" || q.GetEvents()[0].GetName() != "github__create_issue" {
		t.Fatalf("QueryAudit page 1: %v %v", q, err)
	}
	q2, err := c2.QueryAudit(ctx, &mcpgwv1.QueryAuditRequest{Filter: &mcpgwv1.AuditFilter{NodeId: enr.GetNodeId()}, PageSize: 2, PageToken: q.GetNextPageToken()})
	if err != nil || len(q2.GetEvents()) != 1 || q2.GetNextPageToken() != "" {
		t.Fatalf("QueryAudit page 2: %v %v", q2, err)
	}
	if v, err := c2.VerifyAudit(ctx, &mcpgwv1.VerifyAuditRequest{NodeId: enr.GetNodeId()}); err != nil || !v.GetComplete() || v.GetReports()[0].GetEpochs()[0].GetLedgerEvents() != 3 {
		t.Fatalf("VerifyAudit: %v %v", v, err)
	}
}

func TestValidateStoreChoice(t *testing.T) {
	for name, tc := range map[string]struct {
		cfg  controlplane.Config
		want string
	}{
		"both":       {controlplane.Config{DatabaseURL: "postgres://x/y", EmbeddedPath: "/d/mcpgw.db", DataDir: "/d"}, "choose Postgres"},
		"none":       {controlplane.Config{DataDir: "/d"}, "--store sqlite:PATH"},
		"no-migrate": {controlplane.Config{EmbeddedPath: "/d/mcpgw.db", DataDir: "/d", NoMigrate: true}, "Postgres only"},
	} {
		if err := tc.cfg.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", name, err, tc.want)
		}
	}
	ok := controlplane.Config{EmbeddedPath: controlplane.EmbeddedStorePath("/d"), DataDir: "/d"}
	if err := ok.Validate(); err != nil || ok.EmbeddedPath != "/d/mcpgw.db" {
		t.Errorf("embedded: %+v %v", ok, err)
	}
}

// Edges' audit reaches the embedded store through AuditStream: the real
// spool and shipper of an enrolled edge, ingest committing into SQLite, and
// QueryAudit and VerifyAudit on the same replica seeing every event once.
func TestRunOnEmbeddedStoreIngestsAuditStream(t *testing.T) {
	ctx := t.Context()
	dataDir := t.TempDir()
	token := "mcpgwadm_" + strings.Repeat("e", 32)
	r := start(t, controlplane.Config{EmbeddedPath: controlplane.EmbeddedStorePath(dataDir), DataDir: dataDir, AdminToken: token})
	adminClient, serverTLS := adminOf(t, r, token)
	nodeID, nodeTLS := enrollEdge(t, adminClient, r, serverTLS, "edge-a")
	_, l := shipAudit(t, dial(t, r.ready.NodeAddr, nodeTLS))

	const n = 300
	for i := range n {
		now := time.Now()
		ev := &audit.Event{ID: audit.NewID(now), TS: now, NodeID: nodeID, SessionID: "s1", Principal: []string{"alice", "bob"}[i%2],
			Transport: audit.TransportHTTP, Method: "tools/call", Backend: "github", Name: "github__create_issue",
			Decision: audit.DecisionAllow, Status: audit.StatusOK, LatencyUS: 100}
		if err := l.Record(ctx, ev); err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
	}
	got := waitAudit(t, adminClient, nodeID, n, 128, nil)
	for id, c := range got {
		if c != 1 {
			t.Errorf("event %s returned %d times", id, c)
		}
	}
	if len(got) != n {
		t.Fatalf("QueryAudit returned %d distinct events, want %d", len(got), n)
	}
	bob, err := adminClient.QueryAudit(ctx, &mcpgwv1.QueryAuditRequest{Filter: &mcpgwv1.AuditFilter{Principal: "bob"}, PageSize: 1000})
	if err != nil || len(bob.GetEvents()) != n/2 {
		t.Fatalf("bob's events: %d, %v", len(bob.GetEvents()), err)
	}
	v, err := adminClient.VerifyAudit(ctx, &mcpgwv1.VerifyAuditRequest{NodeId: nodeID})
	if err != nil || !v.GetComplete() || v.GetReports()[0].GetEpochs()[0].GetLedgerEvents() != n {
		t.Fatalf("VerifyAudit: %v %v", v, err)
	}
}
