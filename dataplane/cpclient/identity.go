package cpclient

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	mcpgwv1 "github.com/mcpgw/mcpgw/gen/mcpgw/v1"
	"github.com/mcpgw/mcpgw/internal/wait"
)

// State dir files. The key and its certificate share one file so that a
// crash during renewal can never leave a key next to another key's
// certificate.
const (
	identityFile = "node.pem" // private key (PKCS#8) + certificate chain, 0600
	caFile       = "ca.crt"   // CA bundle from enrollment/renewal
	nodeFile     = "node.json"
)

// nodeInfo is node.json.
type nodeInfo struct {
	NodeID    string `json:"node_id"`
	NodeGroup string `json:"node_group"`
}

// identity is the node's credentials, swapped whole on renewal.
type identity struct {
	cert tls.Certificate
	leaf *x509.Certificate
	// obtained is when this process received the certificate (zero when it
	// was read from the state dir).
	obtained time.Time
}

// renewAt is two thirds into the certificate's lifetime, as the control
// plane suggests, so a renewal has a third of the lifetime to succeed. A
// certificate received just now is kept for at least half of what is left
// of it: NotBefore is backdated for clock skew, which for a short lifetime
// would otherwise put the renewal time in the past and renew in a loop.
func (id *identity) renewAt() time.Time {
	t := id.leaf.NotBefore.Add(id.leaf.NotAfter.Sub(id.leaf.NotBefore) * 2 / 3)
	if !id.obtained.IsZero() {
		if floor := id.obtained.Add(id.leaf.NotAfter.Sub(id.obtained) / 2); floor.After(t) {
			t = floor
		}
	}
	return t
}

// loadIdentity reads the node's key and certificate. The node id is the
// certificate's common name, so the identity file alone is the identity;
// node.json (id and group, for people and tools) is read when present.
func loadIdentity(dir string) (*identity, nodeInfo, error) {
	var info nodeInfo
	pemBytes, err := os.ReadFile(filepath.Join(dir, identityFile))
	if err != nil {
		return nil, info, err
	}
	id, err := parseIdentity(pemBytes)
	if err != nil {
		return nil, info, fmt.Errorf("reading %s: %w", identityFile, err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, nodeFile)); err == nil {
		_ = json.Unmarshal(b, &info) // informational only
	}
	info.NodeID = id.leaf.Subject.CommonName
	if info.NodeID == "" {
		return nil, info, fmt.Errorf("reading %s: the certificate names no node", identityFile)
	}
	return id, info, nil
}

func parseIdentity(pemBytes []byte) (*identity, error) {
	cert, err := tls.X509KeyPair(pemBytes, pemBytes)
	if err != nil {
		return nil, err
	}
	// Present only the leaf: the control plane has the CA, and every
	// certificate sent is parsed and kept per connection on its side.
	cert.Certificate = cert.Certificate[:1]
	return &identity{cert: cert, leaf: cert.Leaf}, nil
}

// newKeyAndCSR makes a fresh P-256 key and a CSR for it. The subject is a
// placeholder: the CA names the certificate after the node id it assigns.
func newKeyAndCSR() (*ecdsa.PrivateKey, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generating node key: %w", err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: "mcpgw-edge"},
	}, key)
	if err != nil {
		return nil, nil, fmt.Errorf("creating CSR: %w", err)
	}
	return key, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), nil
}

// saveIdentity checks that chainPEM is a certificate for key naming node,
// writes both atomically and returns the parsed pair.
func saveIdentity(dir string, key *ecdsa.PrivateKey, chainPEM []byte, node string) (*identity, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encoding node key: %w", err)
	}
	var buf bytes.Buffer
	_ = pem.Encode(&buf, &pem.Block{Type: "PRIVATE KEY", Bytes: der})
	buf.Write(chainPEM)
	id, err := parseIdentity(buf.Bytes())
	if err != nil {
		return nil, fmt.Errorf("control plane returned a certificate that does not match the key: %w", err)
	}
	if cn := id.leaf.Subject.CommonName; cn != node {
		return nil, fmt.Errorf("control plane issued a certificate for node %q, not %q", cn, node)
	}
	id.obtained = time.Now()
	if err := writeFileAtomic(dir, identityFile, buf.Bytes(), 0o600); err != nil {
		return nil, fmt.Errorf("saving node identity: %w", err)
	}
	return id, nil
}

// enroll exchanges the join token and a CSR for the node's identity, over a
// connection of its own that presents no client certificate.
func (c *Client) enroll(ctx context.Context) (*identity, nodeInfo, error) {
	if c.cfg.JoinToken == "" {
		return nil, nodeInfo{}, errors.New("this edge is not enrolled (no identity in the state dir) and no join token was given")
	}
	key, csr, err := newKeyAndCSR()
	if err != nil {
		return nil, nodeInfo{}, err
	}
	creds := credentials.NewTLS(&tls.Config{RootCAs: c.roots, ServerName: c.serverName, MinVersion: tls.VersionTLS12})
	conn, err := grpc.NewClient(c.cfg.ControlPlane, append([]grpc.DialOption{grpc.WithTransportCredentials(creds)}, c.cfg.DialOptions...)...)
	if err != nil {
		return nil, nodeInfo{}, fmt.Errorf("connecting to the control plane: %w", err)
	}
	defer conn.Close()
	resp, err := mcpgwv1.NewNodeServiceClient(conn).Enroll(ctx, &mcpgwv1.EnrollRequest{
		JoinToken: c.cfg.JoinToken,
		Csr:       csr,
		Version:   c.cfg.Version,
		Labels:    c.cfg.Labels,
		Name:      c.cfg.Name,
	})
	if err != nil {
		return nil, nodeInfo{}, fmt.Errorf("enrolling: %w", err)
	}
	if err := c.saveCABundle(resp.GetCaBundle(), true); err != nil {
		return nil, nodeInfo{}, err
	}
	// node.json first: the identity file is what marks the edge enrolled.
	info := nodeInfo{NodeID: resp.GetNodeId(), NodeGroup: resp.GetNodeGroup()}
	b, _ := json.Marshal(info)
	if err := writeFileAtomic(c.cfg.StateDir, nodeFile, b, 0o600); err != nil {
		return nil, nodeInfo{}, fmt.Errorf("saving %s: %w", nodeFile, err)
	}
	id, err := saveIdentity(c.cfg.StateDir, key, resp.GetCertificateChain(), info.NodeID)
	if err != nil {
		return nil, nodeInfo{}, err
	}
	return id, info, nil
}

// saveCABundle stores the CA bundle the control plane handed out. With
// trust set it is also added to the roots this client trusts, which is only
// safe before the long-lived connection exists (a CertPool must not change
// while handshakes read it); a bundle renewed later is trusted from the next
// start on.
func (c *Client) saveCABundle(bundle []byte, trust bool) error {
	if len(bundle) == 0 {
		return nil
	}
	if _, err := parseBundle(bundle); err != nil {
		return fmt.Errorf("control plane sent a bad CA bundle: %w", err)
	}
	if trust {
		c.roots.AppendCertsFromPEM(bundle)
	}
	if err := writeFileAtomic(c.cfg.StateDir, caFile, bundle, 0o644); err != nil {
		return fmt.Errorf("saving CA bundle: %w", err)
	}
	return nil
}

// renewLoop renews the certificate from its renew time on, until ctx ends.
// Failures are retried with backoff; the current certificate stays in use
// until a new one is saved.
func (c *Client) renewLoop(ctx context.Context, client mcpgwv1.NodeServiceClient) error {
	retry := time.Second
	for {
		id := c.id.Load()
		if !wait.For(ctx, time.Until(id.renewAt())) {
			return nil
		}
		if err := c.renew(ctx, client); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			// Retry well before expiry, never in a tight loop.
			d := min(retry, max(time.Until(id.leaf.NotAfter)/10, time.Second))
			c.log.Warn("certificate renewal failed", "err", err, "retry_in", d, "expires", id.leaf.NotAfter)
			if !wait.For(ctx, d) {
				return nil
			}
			retry = min(2*retry, 5*time.Minute)
			continue
		}
		retry = time.Second
	}
}

func (c *Client) renew(ctx context.Context, client mcpgwv1.NodeServiceClient) error {
	key, csr, err := newKeyAndCSR()
	if err != nil {
		return err
	}
	resp, err := client.RenewCertificate(ctx, &mcpgwv1.RenewCertificateRequest{Csr: csr})
	if err != nil {
		return fmt.Errorf("renewing certificate: %w", err)
	}
	if err := c.saveCABundle(resp.GetCaBundle(), false); err != nil {
		return err
	}
	id, err := saveIdentity(c.cfg.StateDir, key, resp.GetCertificateChain(), c.NodeID())
	if err != nil {
		return err
	}
	c.id.Store(id)
	c.log.Info("certificate renewed", "expires", id.leaf.NotAfter)
	return nil
}

// parseBundle parses a PEM bundle that must hold at least one certificate.
func parseBundle(b []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("no certificates in PEM bundle")
	}
	return out, nil
}
