package devmode

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/mcpgw/mcpgw/internal/document"
	"github.com/mcpgw/mcpgw/internal/policy"
)

func examplePath(name string) string { return filepath.Join("..", "..", "examples", name) }

// The default document must be valid and allow the demo principal
// everything the demo backend offers; the README's policy change must
// remove exactly echo; examples/dev-default.yaml must restore the role as
// mcpgw dev made it.
func TestDefaultDocumentAndExamples(t *testing.T) {
	def := defaultDocument("/usr/local/bin/mcpgw")
	if err := def.Validate(); err != nil {
		t.Fatalf("default document: %v", err)
	}
	compile := func(d document.Document) *policy.Policy {
		t.Helper()
		p, err := policy.Compile(d.PolicySpec(), 1)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	cases := func(echo string) []document.Case {
		return []document.Case{
			{Principal: DemoPrincipal, Tool: "demo__echo", Expect: echo},
			{Principal: DemoPrincipal, Tool: "demo__add", Expect: "allow"},
			{Principal: DemoPrincipal, Tool: "demo__time_now", Expect: "allow"},
			{Principal: DemoPrincipal, Prompt: "demo__summarize", Expect: "allow"},
			{Principal: DemoPrincipal, Backend: DemoBackend, Resource: "demo://readme", Expect: "allow"},
			{Principal: "someone-else", Tool: "demo__add", Expect: "deny"},
		}
	}
	check := func(name string, d document.Document, echo string) {
		t.Helper()
		res, err := document.RunCases(&d, compile(d), cases(echo))
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range res {
			if r.Problem != "" {
				t.Errorf("%s: %+v: %s", name, r.Case, r.Problem)
			}
		}
	}
	check("default", def, "allow")

	// The examples replace the role by name, as `mcpctl apply` upserts it.
	withRole := func(file string) document.Document {
		t.Helper()
		ex, err := document.ParseFiles(examplePath(file))
		if err != nil {
			t.Fatal(err)
		}
		if len(ex.Roles) != 1 || len(ex.Backends)+len(ex.Bindings)+len(ex.Principals) != 0 {
			t.Fatalf("%s should hold the role %q only", file, DemoRole)
		}
		d := defaultDocument("/usr/local/bin/mcpgw")
		d.Roles = ex.Roles
		return d
	}
	check("dev-no-echo.yaml", withRole("dev-no-echo.yaml"), "deny")
	restored := withRole("dev-default.yaml")
	check("dev-default.yaml", restored, "allow")
	if !reflect.DeepEqual(restored.Roles, def.Roles) {
		t.Errorf("examples/dev-default.yaml %+v differs from the role mcpgw dev creates %+v", restored.Roles, def.Roles)
	}
}

func TestCredentialsFile(t *testing.T) {
	dir := t.TempDir()
	c, err := loadCredentials(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(c.AdminToken, "mcpgwadm_") || len(c.AdminToken) < 40 || c.seeded() {
		t.Fatalf("fresh credentials %+v", c)
	}
	c.DemoKey, c.DemoKeyID, c.CAFingerprint = "mcpgw_abc_def", "abc", "ff"
	if err := c.save(dir); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dir, CredentialsFile))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("credentials file mode %v (%v), want 0600", st.Mode(), err)
	}
	again, err := loadCredentials(dir)
	if err != nil {
		t.Fatal(err)
	}
	if *again != *c || !strings.Contains(again.Warning, "dev mode only") {
		t.Errorf("reloaded %+v, saved %+v", again, c)
	}
	other, err := loadCredentials(t.TempDir())
	if err != nil || other.AdminToken == c.AdminToken {
		t.Errorf("two installations share an admin token: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, CredentialsFile), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := loadCredentials(dir); err == nil || !strings.Contains(err.Error(), "remove the data dir") {
		t.Errorf("damaged file: %v", err)
	}
}

func TestLockDataDir(t *testing.T) {
	dir := t.TempDir()
	unlock, err := lockDataDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lockDataDir(dir); err == nil || !strings.Contains(err.Error(), "another mcpgw dev is running") {
		t.Fatalf("second lock: %v", err)
	}
	unlock()
	unlock2, err := lockDataDir(dir)
	if err != nil {
		t.Fatalf("lock after unlock: %v", err)
	}
	unlock2()
}

func TestValidate(t *testing.T) {
	c := Config{}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Listen != DefaultListen || c.NodeListen != DefaultNodeListen || c.AdminListen != DefaultAdminListen || !filepath.IsAbs(c.DataDir) || c.Executable == "" {
		t.Errorf("defaults not filled: %+v", c)
	}
	bad := Config{Listen: "8080", AdminListen: "localhost"}
	err := bad.Validate()
	if err == nil || !strings.Contains(err.Error(), "--listen") || !strings.Contains(err.Error(), "--admin-listen") {
		t.Errorf("bad addresses: %v", err)
	}
}

// The mcpctl line must survive a shell even when paths have spaces or
// quotes in them.
func TestMcpctlLineQuoting(t *testing.T) {
	r := Ready{AdminAddr: "127.0.0.1:7444", AdminToken: "mcpgwadm_abc-DEF_123", CAFile: "/tmp/it's a dir/ca.crt"}
	line := McpctlLine(r)
	out, err := exec.Command("sh", "-c", "printf '%s\\n' "+strings.TrimPrefix(strings.Split(line, " && ")[0], "mcpctl ")).Output()
	if err != nil {
		t.Fatal(err)
	}
	want := "config\nset-context\nmcpgw-dev\n--server\n127.0.0.1:7444\n--token\nmcpgwadm_abc-DEF_123\n--ca-file\n/tmp/it's a dir/ca.crt\n"
	if string(out) != want {
		t.Errorf("the shell splits %q into\n%s\nwant\n%s", line, out, want)
	}
}

func TestRetireExpiredEdge(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	notAfter := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "node"}, NotBefore: notAfter.Add(-24 * time.Hour), NotAfter: notAfter}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	identity := append(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)

	dir := filepath.Join(t.TempDir(), "edge")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "node.pem"), identity, 0o600); err != nil {
		t.Fatal(err)
	}
	var notices strings.Builder
	// Still valid: kept.
	if err := retireExpiredEdge(dir, notAfter.Add(-time.Minute), &notices); err != nil || !enrolled(dir) || notices.Len() != 0 {
		t.Fatalf("a valid identity was touched: %v %q", err, notices.String())
	}
	// Expired: moved aside, so the edge enrolls again.
	if err := retireExpiredEdge(dir, notAfter.Add(time.Minute), &notices); err != nil {
		t.Fatal(err)
	}
	if enrolled(dir) {
		t.Fatal("an expired identity is still in place")
	}
	old := dir + ".expired-20260102T030505Z"
	if _, err := os.Stat(filepath.Join(old, "node.pem")); err != nil || !strings.Contains(notices.String(), old) {
		t.Errorf("old state not kept at %s: %v; notice %q", old, err, notices.String())
	}
	// No identity: nothing to do.
	if err := retireExpiredEdge(filepath.Join(t.TempDir(), "none"), time.Now(), &notices); err != nil {
		t.Error(err)
	}
}

func TestDialable(t *testing.T) {
	for in, want := range map[string]string{"127.0.0.1:8080": "127.0.0.1:8080", "0.0.0.0:8080": "127.0.0.1:8080", "[::]:9000": "127.0.0.1:9000", "[::1]:7": "[::1]:7"} {
		a, err := net.ResolveTCPAddr("tcp", in)
		if err != nil {
			t.Fatal(err)
		}
		if got := dialable(a); got != want {
			t.Errorf("dialable(%s) = %s, want %s", in, got, want)
		}
	}
}
