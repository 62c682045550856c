package pki_test

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcpgw/mcpgw/controlplane/pki"
	"github.com/mcpgw/mcpgw/controlplane/store"
	"github.com/mcpgw/mcpgw/internal/pgtest"
)

func testKEK(t *testing.T) pki.KEK {
	t.Helper()
	k, _, _, err := pki.LoadKEK("", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestLoadKEK(t *testing.T) {
	dir := t.TempDir()
	k1, src, created, err := pki.LoadKEK("", dir)
	if err != nil || !created || src != filepath.Join(dir, "kek") {
		t.Fatalf("first load: %v %q %v", created, src, err)
	}
	fi, err := os.Stat(filepath.Join(dir, "kek"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("kek file mode %v, %v; want 0600", fi.Mode(), err)
	}
	k2, _, created, err := pki.LoadKEK("", dir)
	if err != nil || created || k2.ID() != k1.ID() {
		t.Fatalf("second load: %v %v", created, err)
	}
	raw := make([]byte, 32)
	env := base64.StdEncoding.EncodeToString(raw)
	k3, src, _, err := pki.LoadKEK(env, dir)
	if err != nil || src != "$MCPGW_KEK" || k3.ID() == k1.ID() {
		t.Fatalf("env kek: %q %v", src, err)
	}
	if _, _, _, err := pki.LoadKEK("c2hvcnQ=", dir); err == nil || !strings.Contains(err.Error(), "32 bytes") {
		t.Fatalf("short kek accepted: %v", err)
	}
}

// Two replicas starting together on one database create exactly one CA.
func TestInitRaceCreatesOneCA(t *testing.T) {
	ctx := t.Context()
	url := pgtest.NewDatabase(t)
	kek := testKEK(t)
	const replicas = 4
	cas := make([]*pki.CA, replicas)
	created := make([]bool, replicas)
	errs := make([]error, replicas)
	var wg sync.WaitGroup
	for i := range replicas {
		st := store.New(pgtest.NewPool(t, url)) // a pool per replica
		wg.Go(func() { cas[i], created[i], errs[i] = pki.Init(ctx, st, kek) })
	}
	wg.Wait()
	n := 0
	for i := range replicas {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if created[i] {
			n++
		}
		if string(cas[i].CertPEM()) != string(cas[0].CertPEM()) {
			t.Errorf("replica %d has a different CA", i)
		}
	}
	if n != 1 {
		t.Fatalf("%d replicas created a CA, want 1", n)
	}
	var rows int
	if err := pgtest.NewPool(t, url).QueryRow(ctx, `SELECT count(*) FROM pki`).Scan(&rows); err != nil || rows != 1 {
		t.Fatalf("pki rows %d, %v", rows, err)
	}
	var sealed []byte
	if err := pgtest.NewPool(t, url).QueryRow(ctx, `SELECT key_encrypted FROM pki`).Scan(&sealed); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(sealed), "PRIVATE KEY") || len(sealed) < 100 {
		t.Fatalf("CA key not sealed: %q", sealed)
	}

	// A replica with another KEK is refused with a message saying why.
	if _, _, err := pki.Init(ctx, store.New(pgtest.NewPool(t, url)), testKEK(t)); err == nil || !strings.Contains(err.Error(), "same $MCPGW_KEK") {
		t.Fatalf("wrong KEK: %v", err)
	}
}

func newCA(t *testing.T) *pki.CA {
	t.Helper()
	ca, _, err := pki.Init(t.Context(), store.New(pgtest.NewPool(t, pgtest.NewDatabase(t))), testKEK(t))
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func TestServerCertificateVerifiesWithSANs(t *testing.T) {
	ca := newCA(t)
	dir := t.TempDir()
	path, err := ca.WriteBundle(dir)
	if err != nil || path != filepath.Join(dir, "ca.crt") {
		t.Fatalf("bundle: %q %v", path, err)
	}
	bundle, _ := os.ReadFile(path)
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(bundle) {
		t.Fatal("ca.crt holds no certificate")
	}
	certs, err := pki.NewServerCerts(ca, []string{"127.0.0.1:7443", "[::1]:7444", "cp.example.com", "10.1.2.3"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := certs.GetCertificate(nil)
	for _, name := range []string{"127.0.0.1", "::1", "cp.example.com", "10.1.2.3"} {
		if _, err := c.Leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: name}); err != nil {
			t.Errorf("verify for %s: %v", name, err)
		}
	}
	if _, err := c.Leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: "other.example.com"}); err == nil {
		t.Errorf("certificate verifies for a name it does not carry")
	}
	// A real TLS handshake against the written bundle.
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{GetCertificate: certs.GetCertificate})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		conn, err := ln.Accept()
		if err == nil {
			_ = conn.(*tls.Conn).Handshake()
			conn.Close()
		}
	}()
	conn, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: roots, ServerName: "cp.example.com"})
	if err != nil {
		t.Fatalf("TLS handshake: %v", err)
	}
	conn.Close()

	wild, err := ca.ServerCertificate([]string{":7443"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if !containsIP(wild.Leaf.IPAddresses, "127.0.0.1") {
		t.Errorf("wildcard listen address: IPs %v lack loopback", wild.Leaf.IPAddresses)
	}
}

func containsIP(ips []net.IP, s string) bool {
	for _, ip := range ips {
		if ip.Equal(net.ParseIP(s)) {
			return true
		}
	}
	return false
}

func csrPEM(t *testing.T, key any) []byte {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "claims-to-be-admin"},
		DNSNames: []string{"evil.example"}}, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

func TestSignNodeCSR(t *testing.T) {
	ca := newCA(t)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	id := "0b7f6f3e-3c1a-4c55-9a61-4b8f1a2d3e4f"
	nc, err := ca.SignNodeCSR(csrPEM(t, key), id, pki.NodeCertLifetime)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := nc.Leaf.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatalf("node cert does not verify as a client cert: %v", err)
	}
	got, err := pki.NodeID(nc.Leaf)
	if err != nil || got != id || nc.Leaf.Subject.CommonName != id || len(nc.Leaf.DNSNames) != 0 {
		t.Fatalf("identity %q %v, cert %+v", got, err, nc.Leaf.Subject)
	}
	if _, err := pki.AdminName(nc.Leaf); err == nil {
		t.Errorf("a node certificate passes as an admin one")
	}
	if life := nc.NotAfter.Sub(nc.Leaf.NotBefore); life > 25*time.Hour || !nc.RenewAt.Before(nc.NotAfter) || !nc.RenewAt.After(time.Now()) {
		t.Errorf("lifetime %v renew %v", life, nc.RenewAt)
	}
	if blocks := strings.Count(string(nc.ChainPEM), "BEGIN CERTIFICATE"); blocks != 2 || len(nc.Fingerprint) != 64 {
		t.Errorf("chain has %d certificates, fingerprint %q", blocks, nc.Fingerprint)
	}

	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	if _, err := ca.SignNodeCSR(csrPEM(t, edKey), id, time.Hour); err != nil {
		t.Errorf("Ed25519 CSR: %v", err)
	}
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	if _, err := ca.SignNodeCSR(csrPEM(t, rsaKey), id, time.Hour); err == nil {
		t.Errorf("RSA CSR accepted")
	}
	bad := csrPEM(t, key)
	bad[len(bad)/2] ^= 1
	if _, err := ca.SignNodeCSR(bad, id, time.Hour); err == nil {
		t.Errorf("corrupt CSR accepted")
	}

	adm, err := ca.AdminCertificate("ops", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if name, err := pki.AdminName(adm.Leaf); err != nil || name != "ops" {
		t.Errorf("admin name %q %v", name, err)
	}
	if _, err := pki.NodeID(adm.Leaf); err == nil {
		t.Errorf("an admin certificate passes as a node one")
	}
}
