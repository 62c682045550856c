// Package pki is the installation's certificate authority: one ECDSA P-256
// CA per installation, kept in Postgres with its private key sealed by a
// key-encryption key (KEK) that every control-plane replica holds, and the
// certificates the control plane issues from it: the replicas' server
// certificates and the edges' client certificates.
//
// Node identity. A node certificate carries the node id (a UUID) as its
// subject common name and as the URI SAN "spiffe://mcpgw/node/<uuid>"; the
// node listener takes the identity only from a chain it verified against the
// CA, through NodeID. Admin client certificates carry
// "spiffe://mcpgw/admin/<name>" instead, so one kind can never pass for the
// other.
package pki

import (
	"context"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/mcpgw/mcpgw/controlplane/store"
)

// EnvKEK names the environment variable holding the key-encryption key,
// base64 (standard encoding) of 32 random bytes.
const EnvKEK = "MCPGW_KEK"

// KEKFile is the file in the data directory holding the KEK (base64 text)
// when EnvKEK is unset. It is created, mode 0600, on first start.
const KEKFile = "kek"

// CAFile is the file in the data directory to which every replica writes the
// CA bundle that edges and mcpctl trust.
const CAFile = "ca.crt"

// Lifetimes of what the CA issues.
const (
	CALifetime         = 10 * 365 * 24 * time.Hour
	NodeCertLifetime   = 24 * time.Hour
	ServerCertLifetime = 7 * 24 * time.Hour
	// backdate covers clock skew between replicas and edges.
	backdate = 5 * time.Minute
)

// URI SAN prefixes naming the two kinds of client identity.
const (
	NodeURIPrefix  = "spiffe://mcpgw/node/"
	AdminURIPrefix = "spiffe://mcpgw/admin/"
)

// keyEncryption names the sealing scheme in the pki table.
const keyEncryption = "aes-256-gcm"

// KEK is the key-encryption key that seals the CA's private key at rest.
type KEK struct {
	key [32]byte
}

// ID identifies the KEK without revealing it, so a replica configured with
// a different KEK fails with a clear message instead of a decryption error.
func (k KEK) ID() string {
	sum := sha256.Sum256(append([]byte("mcpgw kek id\x00"), k.key[:]...))
	return hex.EncodeToString(sum[:8])
}

// ParseKEK decodes a base64 KEK of exactly 32 bytes.
func ParseKEK(s string) (KEK, error) {
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil {
		return KEK{}, fmt.Errorf("key-encryption key is not base64: %w", err)
	}
	if len(b) != 32 {
		return KEK{}, fmt.Errorf("key-encryption key must be 32 bytes, got %d", len(b))
	}
	var k KEK
	copy(k.key[:], b)
	return k, nil
}

// LoadKEK returns the KEK from env (the value of EnvKEK, "" if unset) or
// else from dataDir/kek, creating that file with a fresh key if it does not
// exist. created reports a new key: the caller should say that every other
// replica needs the same one.
func LoadKEK(env, dataDir string) (k KEK, source string, created bool, err error) {
	if env != "" {
		k, err = ParseKEK(env)
		if err != nil {
			return KEK{}, "", false, fmt.Errorf("%s: %w", EnvKEK, err)
		}
		return k, "$" + EnvKEK, false, nil
	}
	path := filepath.Join(dataDir, KEKFile)
	b, err := os.ReadFile(path)
	if err == nil {
		k, err = ParseKEK(string(b))
		if err != nil {
			return KEK{}, "", false, fmt.Errorf("%s: %w", path, err)
		}
		return k, path, false, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return KEK{}, "", false, fmt.Errorf("reading key-encryption key: %w", err)
	}
	if _, err := rand.Read(k.key[:]); err != nil {
		return KEK{}, "", false, fmt.Errorf("generating key-encryption key: %w", err)
	}
	// O_EXCL: two processes sharing a data dir must not each write a key.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return LoadKEK("", dataDir)
	}
	if err != nil {
		return KEK{}, "", false, fmt.Errorf("creating %s: %w", path, err)
	}
	_, werr := f.WriteString(base64.StdEncoding.EncodeToString(k.key[:]) + "\n")
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		return KEK{}, "", false, fmt.Errorf("writing %s: %w", path, err)
	}
	return k, path, true, nil
}

func (k KEK) aead() (cipher.AEAD, error) {
	block, err := aes.NewCipher(k.key[:])
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// seal encrypts plaintext as nonce ‖ ciphertext, binding it to label.
func (k KEK) seal(plaintext, label []byte) ([]byte, error) {
	g, err := k.aead()
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, g.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return g.Seal(nonce, nonce, plaintext, label), nil
}

func (k KEK) open(sealed, label []byte) ([]byte, error) {
	g, err := k.aead()
	if err != nil {
		return nil, err
	}
	if len(sealed) < g.NonceSize() {
		return nil, errors.New("sealed key too short")
	}
	return g.Open(nil, sealed[:g.NonceSize()], sealed[g.NonceSize():], label)
}

// caLabel is the AEAD associated data of the sealed CA key.
var caLabel = []byte("mcpgw ca key v1")

// CA is the installation's certificate authority, ready to sign.
type CA struct {
	cert    *x509.Certificate
	certPEM []byte
	key     *ecdsa.PrivateKey
	pool    *x509.CertPool
}

// CAStore keeps the installation CA's row: *store.Store on Postgres,
// *sqlitestore.Store embedded.
type CAStore interface {
	// LoadOrCreateCA returns the stored CA or stores the one create makes,
	// so that replicas starting together create exactly one.
	LoadOrCreateCA(ctx context.Context, create func() (store.CARecord, error)) (store.CARecord, bool, error)
}

// Init returns the installation CA, creating it if this is the first replica
// to start (under the store's PKI lock, so racing replicas create exactly
// one). It reports whether this call created it.
func Init(ctx context.Context, st CAStore, kek KEK) (*CA, bool, error) {
	rec, created, err := st.LoadOrCreateCA(ctx, func() (store.CARecord, error) { return newCA(kek) })
	if err != nil {
		return nil, false, err
	}
	if rec.KEKID != kek.ID() {
		return nil, false, fmt.Errorf("the installation CA was sealed with key-encryption key %s, but this replica has %s: give every replica the same $%s or data-dir %s file",
			rec.KEKID, kek.ID(), EnvKEK, KEKFile)
	}
	if rec.KeyEncryption != keyEncryption {
		return nil, false, fmt.Errorf("the installation CA key is sealed with %q, which this mcpgw does not know", rec.KeyEncryption)
	}
	ca, err := openCA(rec, kek)
	if err != nil {
		return nil, false, err
	}
	return ca, created, nil
}

func newCA(kek KEK) (store.CARecord, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return store.CARecord{}, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          randomSerial(),
		Subject:               pkix.Name{CommonName: "mcpgw installation CA", Organization: []string{"mcpgw"}},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(CALifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return store.CARecord{}, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return store.CARecord{}, err
	}
	sealed, err := kek.seal(keyDER, caLabel)
	if err != nil {
		return store.CARecord{}, err
	}
	return store.CARecord{
		CertPEM:       pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyEncrypted:  sealed,
		KeyEncryption: keyEncryption,
		KEKID:         kek.ID(),
		NotAfter:      tmpl.NotAfter,
	}, nil
}

func openCA(rec store.CARecord, kek KEK) (*CA, error) {
	block, _ := pem.Decode(rec.CertPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("stored CA certificate is not PEM")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parsing the CA certificate: %w", err)
	}
	keyDER, err := kek.open(rec.KeyEncrypted, caLabel)
	if err != nil {
		return nil, fmt.Errorf("unsealing the CA key (wrong key-encryption key?): %w", err)
	}
	k, err := x509.ParsePKCS8PrivateKey(keyDER)
	if err != nil {
		return nil, fmt.Errorf("parsing the CA key: %w", err)
	}
	key, ok := k.(*ecdsa.PrivateKey)
	if !ok || !key.PublicKey.Equal(cert.PublicKey) {
		return nil, errors.New("the CA key does not match the CA certificate")
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &CA{cert: cert, certPEM: rec.CertPEM, key: key, pool: pool}, nil
}

// CertPEM is the CA bundle (PEM) that edges and mcpctl trust.
func (ca *CA) CertPEM() []byte { return ca.certPEM }

// Certificate is the CA certificate.
func (ca *CA) Certificate() *x509.Certificate { return ca.cert }

// Pool is a cert pool holding only the CA, for verifying client chains.
func (ca *CA) Pool() *x509.CertPool { return ca.pool }

// WriteBundle writes the CA bundle to dataDir/ca.crt (atomically: temp file,
// fsync, rename) and returns its path.
func (ca *CA) WriteBundle(dataDir string) (string, error) {
	path := filepath.Join(dataDir, CAFile)
	f, err := os.CreateTemp(dataDir, ".ca.crt.*")
	if err != nil {
		return "", fmt.Errorf("writing %s: %w", path, err)
	}
	defer os.Remove(f.Name()) // no-op after the rename
	_, werr := f.Write(ca.certPEM)
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(werr, serr, cerr, os.Chmod(f.Name(), 0o644), os.Rename(f.Name(), path)); err != nil {
		return "", fmt.Errorf("writing %s: %w", path, err)
	}
	return path, nil
}

// ServerCertificate issues a TLS server certificate for hosts (DNS names or
// IP addresses; a host:port is accepted and its port dropped) with a fresh
// P-256 key. An empty or wildcard listen host ("", "0.0.0.0", "::") adds the
// machine's host name and loopback addresses, since clients cannot dial
// those.
func (ca *CA) ServerCertificate(hosts []string, lifetime time.Duration) (*tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: randomSerial(),
		Subject:      pkix.Name{CommonName: "mcpgw control plane", Organization: []string{"mcpgw"}},
		NotBefore:    now.Add(-backdate),
		NotAfter:     now.Add(lifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	seen := map[string]bool{}
	var add func(h string)
	add = func(h string) {
		if hh, _, err := net.SplitHostPort(h); err == nil {
			h = hh
		}
		h = strings.Trim(h, "[]")
		if seen[h] {
			return
		}
		seen[h] = true
		switch ip := net.ParseIP(h); {
		case h == "" || (ip != nil && ip.IsUnspecified()):
			if name, err := os.Hostname(); err == nil {
				add(name)
			}
			add("localhost")
			add("127.0.0.1")
			add("::1")
		case ip != nil:
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		default:
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	for _, h := range hosts {
		add(h)
	}
	return ca.issue(tmpl, key.Public(), key)
}

func (ca *CA) issue(tmpl *x509.Certificate, pub crypto.PublicKey, key crypto.PrivateKey) (*tls.Certificate, error) {
	if tmpl.NotAfter.After(ca.cert.NotAfter) {
		tmpl.NotAfter = ca.cert.NotAfter
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, pub, ca.key)
	if err != nil {
		return nil, fmt.Errorf("signing certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &tls.Certificate{Certificate: [][]byte{der, ca.cert.Raw}, PrivateKey: key, Leaf: leaf}, nil
}

// NodeCertificate is a certificate issued to a node.
type NodeCertificate struct {
	// ChainPEM is the leaf then the CA, PEM.
	ChainPEM []byte
	Leaf     *x509.Certificate
	// Serial is the leaf's serial number in lowercase hex; Fingerprint the
	// hex SHA-256 of its DER (the nodes table's cert_serial and
	// cert_fingerprint).
	Serial      string
	Fingerprint string
	NotAfter    time.Time
	// RenewAt is about two thirds into the lifetime.
	RenewAt time.Time
}

// SignNodeCSR issues a client certificate for node nodeID from a PKCS#10 CSR
// (PEM or DER). The CSR's signature is checked, its key must be ECDSA P-256
// or Ed25519, and its subject and SANs are ignored: the certificate names
// only nodeID, as CN and as the URI SAN NodeURIPrefix+nodeID.
func (ca *CA) SignNodeCSR(csr []byte, nodeID string, lifetime time.Duration) (NodeCertificate, error) {
	if block, _ := pem.Decode(csr); block != nil {
		if block.Type != "CERTIFICATE REQUEST" && block.Type != "NEW CERTIFICATE REQUEST" {
			return NodeCertificate{}, fmt.Errorf("CSR: PEM block is %q, not CERTIFICATE REQUEST", block.Type)
		}
		csr = block.Bytes
	}
	req, err := x509.ParseCertificateRequest(csr)
	if err != nil {
		return NodeCertificate{}, fmt.Errorf("CSR: %w", err)
	}
	if err := req.CheckSignature(); err != nil {
		return NodeCertificate{}, fmt.Errorf("CSR signature: %w", err)
	}
	switch k := req.PublicKey.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return NodeCertificate{}, errors.New("CSR: ECDSA keys must use P-256")
		}
	case ed25519.PublicKey:
	default:
		return NodeCertificate{}, fmt.Errorf("CSR: key type %s not accepted (use ECDSA P-256 or Ed25519)", req.PublicKeyAlgorithm)
	}
	u, err := url.Parse(NodeURIPrefix + nodeID)
	if err != nil || nodeID == "" || strings.ContainsAny(nodeID, "/?#") {
		return NodeCertificate{}, fmt.Errorf("bad node id %q", nodeID)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: randomSerial(),
		Subject:      pkix.Name{CommonName: nodeID, Organization: []string{"mcpgw node"}},
		NotBefore:    now.Add(-backdate),
		NotAfter:     now.Add(lifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		URIs:         []*url.URL{u},
	}
	c, err := ca.issue(tmpl, req.PublicKey, nil)
	if err != nil {
		return NodeCertificate{}, err
	}
	sum := sha256.Sum256(c.Leaf.Raw)
	return NodeCertificate{
		ChainPEM:    append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Leaf.Raw}), ca.certPEM...),
		Leaf:        c.Leaf,
		Serial:      c.Leaf.SerialNumber.Text(16),
		Fingerprint: hex.EncodeToString(sum[:]),
		NotAfter:    c.Leaf.NotAfter,
		RenewAt:     c.Leaf.NotBefore.Add(c.Leaf.NotAfter.Sub(c.Leaf.NotBefore) * 2 / 3),
	}, nil
}

// AdminCertificate issues a client certificate for an administrator (or a
// tool acting as one) named name, accepted by the admin listener in place of
// a bearer token.
func (ca *CA) AdminCertificate(name string, lifetime time.Duration) (*tls.Certificate, error) {
	if name == "" || strings.ContainsAny(name, "/?# ") {
		return nil, fmt.Errorf("bad admin name %q", name)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	u, _ := url.Parse(AdminURIPrefix + name)
	now := time.Now()
	return ca.issue(&x509.Certificate{
		SerialNumber: randomSerial(),
		Subject:      pkix.Name{CommonName: name, Organization: []string{"mcpgw admin"}},
		NotBefore:    now.Add(-backdate),
		NotAfter:     now.Add(lifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		URIs:         []*url.URL{u},
	}, key.Public(), key)
}

// NodeID returns the node id a verified client certificate names, or an
// error if it is not a node certificate. Callers must pass a leaf from a
// chain TLS verified against the CA (tls.ConnectionState.VerifiedChains).
func NodeID(leaf *x509.Certificate) (string, error) {
	return uriIdentity(leaf, NodeURIPrefix)
}

// AdminName returns the administrator a verified client certificate names,
// or an error if it is not an admin certificate.
func AdminName(leaf *x509.Certificate) (string, error) {
	return uriIdentity(leaf, AdminURIPrefix)
}

func uriIdentity(leaf *x509.Certificate, prefix string) (string, error) {
	if leaf == nil {
		return "", errors.New("no client certificate")
	}
	var found string
	for _, u := range leaf.URIs {
		if s := u.String(); strings.HasPrefix(s, prefix) {
			if found != "" {
				return "", errors.New("certificate names more than one identity")
			}
			found = strings.TrimPrefix(s, prefix)
		}
	}
	if found == "" {
		return "", fmt.Errorf("certificate has no %s identity", strings.TrimSuffix(prefix, "/"))
	}
	return found, nil
}

func randomSerial() *big.Int {
	// 128 random bits, positive: serials must be unique and unpredictable.
	b := make([]byte, 16)
	_, _ = rand.Read(b) // crypto/rand.Read never fails.
	b[0] &= 0x7f
	return new(big.Int).SetBytes(b)
}

// ServerCerts hands out a server certificate for a fixed set of hosts and
// replaces it before it expires, so a long-running replica never serves an
// expired certificate. Use GetCertificate as tls.Config.GetCertificate.
type ServerCerts struct {
	ca       *CA
	hosts    []string
	lifetime time.Duration

	mu sync.Mutex // guards cur
	// cur is the certificate being served; replaced once past two thirds of
	// its lifetime.
	cur *tls.Certificate
}

// NewServerCerts issues the first certificate at once, so a bad host list
// fails at start rather than at the first handshake.
func NewServerCerts(ca *CA, hosts []string, lifetime time.Duration) (*ServerCerts, error) {
	s := &ServerCerts{ca: ca, hosts: hosts, lifetime: lifetime}
	if _, err := s.GetCertificate(nil); err != nil {
		return nil, err
	}
	return s, nil
}

// GetCertificate returns the current certificate, issuing a new one when the
// current one is past two thirds of its lifetime.
func (s *ServerCerts) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur != nil {
		l := s.cur.Leaf
		if time.Now().Before(l.NotBefore.Add(l.NotAfter.Sub(l.NotBefore) * 2 / 3)) {
			return s.cur, nil
		}
	}
	c, err := s.ca.ServerCertificate(s.hosts, s.lifetime)
	if err != nil {
		return nil, fmt.Errorf("issuing server certificate: %w", err)
	}
	s.cur = c
	return c, nil
}
