package commands

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"strings"
	"testing"
	"time"
)

// selfSignedCA writes a CA certificate of some other installation.
func selfSignedCA(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "another installation"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return writeFile(t, t.TempDir(), "other-ca.crt", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
}

// TestConnectionAgainstRealControlPlane covers what goes wrong between
// mcpctl and a real control plane, and contexts used for real.
func TestConnectionAgainstRealControlPlane(t *testing.T) {
	cp := startControlPlane(t)

	t.Run("wrong token", func(t *testing.T) {
		c := cp.cliFor(t)
		c.env["MCPCTL_TOKEN"] = "mcpgwadm_not_the_token_0123456789abcdef"
		code, out, errOut := c.run("get", "backends")
		if code != exitFailure || out != "" || errOut != "mcpctl: the control plane refused the token; check --token or MCPCTL_TOKEN\n" {
			t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
		}
		if strings.Contains(errOut, "not_the_token") {
			t.Error("the error repeats the token")
		}
	})
	t.Run("no CA file", func(t *testing.T) {
		c := cp.cliFor(t)
		delete(c.env, "MCPCTL_CA_FILE")
		code, _, errOut := c.run("get", "backends")
		if code != exitFailure || !strings.Contains(errOut, "cannot reach the control plane at "+cp.addr) ||
			!strings.Contains(errOut, "certificate signed by unknown authority (pass --ca-file with the control plane's DATA_DIR/ca.crt)") {
			t.Fatalf("exit %d, stderr %q", code, errOut)
		}
		oneErrorLine(t, errOut)
	})
	t.Run("other installation's CA", func(t *testing.T) {
		c := cp.cliFor(t)
		other := selfSignedCA(t)
		code, _, errOut := c.run("get", "backends", "--ca-file", other)
		if code != exitFailure || !strings.Contains(errOut, "(is "+other+" the CA bundle of this control plane?)") {
			t.Fatalf("exit %d, stderr %q", code, errOut)
		}
	})
	t.Run("not a CA file", func(t *testing.T) {
		c := cp.cliFor(t)
		code, _, errOut := c.run("get", "backends", "--ca-file", writeFile(t, t.TempDir(), "x.crt", "hello"))
		if code != exitFailure || !strings.Contains(errOut, "holds no PEM certificate") {
			t.Fatalf("exit %d, stderr %q", code, errOut)
		}
	})
	t.Run("insecure skip verify", func(t *testing.T) {
		c := cp.cliFor(t)
		delete(c.env, "MCPCTL_CA_FILE")
		code, out, errOut := c.run("get", "backends", "--insecure-skip-tls-verify")
		if code != exitOK || !strings.Contains(errOut, "warning: TLS verification is off") {
			t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
		}
	})
	t.Run("contexts", func(t *testing.T) {
		c := newCLI(t) // no MCPCTL_* variables: everything from the file
		c.mustRun("config", "set-context", "lab", "--server", cp.addr, "--token", testAdminToken, "--ca-file", cp.caFile)
		c.mustRun("config", "set-context", "broken", "--server", cp.addr, "--token", "mcpgwadm_wrong_0123456789abcdef", "--ca-file", cp.caFile)
		if out := c.mustRun("version"); !strings.Contains(out, "server: mcpgw ") {
			t.Fatalf("version through the current context:\n%s", out)
		}
		if code, _, errOut := c.run("version", "--context", "broken"); code != exitOK || !strings.Contains(errOut, "refused the token") {
			t.Fatalf("version --context broken: exit %d, %q", code, errOut)
		}
		c.mustRun("config", "use-context", "broken")
		if code, _, errOut := c.run("get", "roles"); code != exitFailure || !strings.Contains(errOut, "refused the token") {
			t.Fatalf("get roles with the broken context: exit %d, %q", code, errOut)
		}
		// The environment overrides the context's token.
		c.env["MCPCTL_TOKEN"] = testAdminToken
		c.env["MCPCTL_CA_FILE"] = cp.caFile
		c.mustRun("get", "roles")
	})
}
