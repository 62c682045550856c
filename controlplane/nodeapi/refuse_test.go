package nodeapi_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/url"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/mcpgw/mcpgw/controlplane/nodeapi"
	"github.com/mcpgw/mcpgw/controlplane/pki"
	mcpgwv1 "github.com/mcpgw/mcpgw/gen/mcpgw/v1"
)

func newCSR(t testing.TB) (*ecdsa.PrivateKey, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "x"}}, key)
	if err != nil {
		t.Fatal(err)
	}
	return key, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

func (c *cp) client(t testing.TB, cert *tls.Certificate) mcpgwv1.NodeServiceClient {
	t.Helper()
	conn, err := grpc.NewClient(c.addr, grpc.WithTransportCredentials(c.db.clientTLS(cert)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return mcpgwv1.NewNodeServiceClient(conn)
}

// enroll enrolls over a raw client and returns the node's TLS certificate.
func (c *cp) enroll(t testing.TB, token string) (*mcpgwv1.EnrollResponse, *tls.Certificate) {
	t.Helper()
	key, csr := newCSR(t)
	resp, err := c.client(t, nil).Enroll(t.Context(), &mcpgwv1.EnrollRequest{JoinToken: token, Csr: csr, Version: "v", Name: "raw"})
	if err != nil {
		t.Fatalf("Enroll: %v", err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	cert, err := tls.X509KeyPair(resp.CertificateChain, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	if err != nil {
		t.Fatalf("enrollment returned an unusable certificate: %v", err)
	}
	return resp, &cert
}

// streamCode opens a ConfigStream, says hello and returns the status code
// the stream ends with (OK if it is still open after a while).
func streamCode(t testing.TB, client mcpgwv1.NodeServiceClient) codes.Code {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
	defer cancel()
	stream, err := client.ConfigStream(ctx)
	if err != nil {
		return status.Code(err)
	}
	_ = stream.Send(&mcpgwv1.ConfigStreamRequest{Msg: &mcpgwv1.ConfigStreamRequest_Hello{Hello: &mcpgwv1.ConfigHello{}}})
	_, err = stream.Recv()
	if status.Code(err) == codes.DeadlineExceeded {
		return codes.OK
	}
	return status.Code(err)
}

func TestEnrollment(t *testing.T) {
	db := newTestDB(t)
	c := startCP(t, db, "replica-1")
	token := db.joinToken(t, "good", map[string]string{"site": "lab"}, time.Now().Add(time.Hour))

	resp, cert := c.enroll(t, token)
	id, err := uuid.Parse(resp.NodeId)
	if err != nil {
		t.Fatalf("node id %q is not a UUID", resp.NodeId)
	}
	if got, _ := pki.NodeID(cert.Leaf); got != resp.NodeId {
		t.Errorf("certificate names node %q, want %q", got, resp.NodeId)
	}
	if resp.NodeGroup != "default" || len(resp.CaBundle) == 0 || !resp.RenewTime.AsTime().Before(cert.Leaf.NotAfter) {
		t.Errorf("enroll response: group %q, bundle %d bytes, renew %v, expiry %v", resp.NodeGroup, len(resp.CaBundle), resp.RenewTime.AsTime(), cert.Leaf.NotAfter)
	}
	n := db.node(t, resp.NodeId)
	if n.Name != "raw" || n.Labels["site"] != "lab" || !n.CertNotAfter.Equal(cert.Leaf.NotAfter.Truncate(time.Microsecond)) {
		t.Errorf("registry: name %q labels %v cert expiry %v (want %v)", n.Name, n.Labels, n.CertNotAfter, cert.Leaf.NotAfter)
	}
	var usedBy uuid.UUID
	if err := db.pool.QueryRow(t.Context(), `SELECT used_by_node FROM join_tokens WHERE id = 'good'`).Scan(&usedBy); err != nil || usedBy != id {
		t.Errorf("join token used_by_node = %v (%v), want %v", usedBy, err, id)
	}
	if code := streamCode(t, c.client(t, cert)); code != codes.OK {
		t.Errorf("ConfigStream with the enrolled certificate ended with %v", code)
	}

	// Renewal: identity from the certificate, new key, new fingerprint.
	_, csr := newCSR(t)
	ren, err := c.client(t, cert).RenewCertificate(t.Context(), &mcpgwv1.RenewCertificateRequest{Csr: csr})
	if err != nil {
		t.Fatalf("RenewCertificate: %v", err)
	}
	blk, _ := pem.Decode(ren.CertificateChain)
	leaf, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := pki.NodeID(leaf); got != resp.NodeId || leaf.SerialNumber.Cmp(cert.Leaf.SerialNumber) == 0 {
		t.Errorf("renewed certificate names %q serial %v", got, leaf.SerialNumber)
	}
	if _, err := c.client(t, nil).RenewCertificate(t.Context(), &mcpgwv1.RenewCertificateRequest{Csr: csr}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("RenewCertificate without a client certificate: %v, want Unauthenticated", err)
	}

	refused := func(name, token string, csr []byte, want codes.Code) {
		t.Helper()
		_, err := c.client(t, nil).Enroll(t.Context(), &mcpgwv1.EnrollRequest{JoinToken: token, Csr: csr})
		if status.Code(err) != want {
			t.Errorf("%s: Enroll = %v, want %v", name, err, want)
		}
	}
	_, good := newCSR(t)
	refused("used token", token, good, codes.PermissionDenied)
	refused("unknown token", "mcpgwjt_nope_nope", good, codes.PermissionDenied)
	expired := db.joinToken(t, "expired", nil, time.Now().Add(time.Hour))
	if _, err := db.pool.Exec(t.Context(), `UPDATE join_tokens SET expires_at = now() - interval '1 second' WHERE id = 'expired'`); err != nil {
		t.Fatal(err)
	}
	refused("expired token", expired, good, codes.PermissionDenied)
	revoked := db.joinToken(t, "revoked", nil, time.Now().Add(time.Hour))
	if _, err := db.st.RevokeJoinToken(t.Context(), "revoked"); err != nil {
		t.Fatal(err)
	}
	refused("revoked token", revoked, good, codes.PermissionDenied)
	fresh := db.joinToken(t, "fresh", nil, time.Now().Add(time.Hour))
	refused("garbage CSR", fresh, []byte("not a csr"), codes.InvalidArgument)
	// A refused CSR must not burn the token.
	c.enroll(t, fresh)

	var nodes int
	if err := db.pool.QueryRow(t.Context(), `SELECT count(*) FROM nodes`).Scan(&nodes); err != nil || nodes != 2 {
		t.Errorf("%d nodes enrolled (%v), want 2", nodes, err)
	}
}

// Two edges racing with one token: exactly one gets in.
func TestJoinTokenIsSingleUseUnderRace(t *testing.T) {
	db := newTestDB(t)
	c := startCP(t, db, "replica-1")
	token := db.joinToken(t, "race", nil, time.Now().Add(time.Hour))
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			_, csr := newCSR(t)
			_, err := c.client(t, nil).Enroll(context.Background(), &mcpgwv1.EnrollRequest{JoinToken: token, Csr: csr})
			errs <- err
		}()
	}
	ok := 0
	for range 4 {
		err := <-errs
		switch status.Code(err) {
		case codes.OK:
			ok++
		case codes.PermissionDenied:
		default:
			t.Errorf("racing Enroll: %v", err)
		}
	}
	if ok != 1 {
		t.Errorf("%d enrollments succeeded with one token, want exactly 1", ok)
	}
}

// foreignCert is a node-shaped client certificate from a CA the control
// plane has never seen.
func foreignCert(t testing.TB, nodeID string) *tls.Certificate {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "other CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	u, _ := url.Parse(pki.NodeURIPrefix + nodeID)
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: nodeID},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), URIs: []*url.URL{u},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}, caCert, key.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func TestConfigStreamRefusals(t *testing.T) {
	db := newTestDB(t)
	db.apply(t, testDoc("github__*"))
	c := startCP(t, db, "replica-1")
	resp, cert := c.enroll(t, db.joinToken(t, "t1", nil, time.Now().Add(time.Hour)))

	if code := streamCode(t, c.client(t, nil)); code != codes.Unauthenticated {
		t.Errorf("no client certificate: %v, want Unauthenticated", code)
	}
	// Another CA's certificate naming a real node fails the handshake.
	if code := streamCode(t, c.client(t, foreignCert(t, resp.NodeId))); code != codes.Unavailable {
		t.Errorf("certificate from another CA: %v, want Unavailable (handshake refused)", code)
	}
	// A genuine certificate for a node that does not exist (deleted).
	key, csr := newCSR(t)
	ghost, err := db.ca.SignNodeCSR(csr, uuid.NewString(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	ghostCert, err := tls.X509KeyPair(ghost.ChainPEM, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	if err != nil {
		t.Fatal(err)
	}
	if code := streamCode(t, c.client(t, &ghostCert)); code != codes.PermissionDenied {
		t.Errorf("unknown node: %v, want PermissionDenied", code)
	}

	// Revoked while connected: the open stream is closed, and new ones
	// and renewals are refused.
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	stream, err := c.client(t, cert).ConfigStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&mcpgwv1.ConfigStreamRequest{Msg: &mcpgwv1.ConfigStreamRequest_Hello{Hello: &mcpgwv1.ConfigHello{}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatalf("first snapshot: %v", err)
	}
	if _, err := db.st.RevokeNode(t.Context(), uuid.MustParse(resp.NodeId)); err != nil {
		t.Fatal(err)
	}
	ended := make(chan error, 1)
	go func() {
		_, err := stream.Recv()
		ended <- err
	}()
	select {
	case err := <-ended:
		if status.Code(err) != codes.PermissionDenied {
			t.Errorf("open stream of a revoked node ended with %v, want PermissionDenied", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("open stream of a revoked node was not closed")
	}
	if code := streamCode(t, c.client(t, cert)); code != codes.PermissionDenied {
		t.Errorf("revoked node: %v, want PermissionDenied", code)
	}
	if _, err := c.client(t, cert).RenewCertificate(t.Context(), &mcpgwv1.RenewCertificateRequest{Csr: csr}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("revoked node renewing: %v, want PermissionDenied", err)
	}
}

// AuditStream is handed to the ingest hook with the node id from the
// verified certificate, and refused for unknown callers and revoked nodes.
func TestAuditStreamHook(t *testing.T) {
	db := newTestDB(t)
	got := make(chan uuid.UUID, 1)
	c := startCP(t, db, "replica-1", func(cfg *nodeapi.Config) {
		cfg.AuditStream = func(id uuid.UUID, stream grpc.BidiStreamingServer[mcpgwv1.AuditStreamRequest, mcpgwv1.AuditStreamResponse]) error {
			got <- id
			return status.Error(codes.Unavailable, "test ingest")
		}
	})
	resp, cert := c.enroll(t, db.joinToken(t, "t1", nil, time.Now().Add(time.Hour)))
	call := func(cert *tls.Certificate) error {
		stream, err := c.client(t, cert).AuditStream(t.Context())
		if err != nil {
			return err
		}
		_, err = stream.Recv()
		return err
	}
	if err := call(cert); status.Code(err) != codes.Unavailable {
		t.Fatalf("AuditStream: %v, want the hook's Unavailable", err)
	}
	if id := <-got; id.String() != resp.NodeId {
		t.Errorf("hook got node %s, want %s", id, resp.NodeId)
	}
	if err := call(nil); status.Code(err) != codes.Unauthenticated {
		t.Errorf("AuditStream without a certificate: %v", err)
	}
	if _, err := db.st.RevokeNode(t.Context(), uuid.MustParse(resp.NodeId)); err != nil {
		t.Fatal(err)
	}
	if err := call(cert); status.Code(err) != codes.PermissionDenied {
		t.Errorf("AuditStream of a revoked node: %v", err)
	}
	if len(got) != 0 {
		t.Error("the hook ran for a refused caller")
	}
}
