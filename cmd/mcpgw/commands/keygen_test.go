package commands

import (
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/mcpgw/mcpgw/cmd/internal/cli"
	"github.com/mcpgw/mcpgw/internal/document"
	"github.com/mcpgw/mcpgw/internal/policy"
)

func TestKeygen(t *testing.T) {
	code, out, errOut := run(t, "keygen", "--name", "alice", "--group", "eng")
	if code != cli.ExitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	key := strings.TrimSuffix(out, "\n")
	if strings.Contains(key, "\n") {
		t.Fatalf("stdout is not the key alone: %q", out)
	}
	if _, err := policy.ParseKey(key); err != nil {
		t.Fatalf("printed key %q: %v", key, err)
	}
	if strings.Contains(errOut, key) {
		t.Error("the key is printed twice")
	}
	if !strings.Contains(errOut, "only this once") {
		t.Errorf("no warning that the key is shown once:\n%s", errOut)
	}
	sum := policy.HashKey(key)
	var line string
	for _, l := range strings.Split(errOut, "\n") {
		if strings.Contains(l, "api_key_sha256") {
			line = strings.TrimSpace(l)
		}
	}
	if !strings.Contains(line, hex.EncodeToString(sum[:])) {
		t.Fatalf("principal line %q lacks the key's SHA-256", line)
	}
	// The pasted line makes a config whose edge authenticates the key.
	doc, err := document.Parse(strings.NewReader("principals:\n  "+line+"\n"), "pasted")
	if err != nil {
		t.Fatalf("the principal line does not parse: %v", err)
	}
	p, err := policy.Compile(doc.PolicySpec(), 1)
	if err != nil {
		t.Fatal(err)
	}
	if name, ok := p.Authenticate(sum, time.Now()); !ok || name != "alice" {
		t.Errorf("the pasted key authenticates as %q, %v", name, ok)
	}
	if len(doc.Principals) != 1 || len(doc.Principals[0].Groups) != 1 || doc.Principals[0].Groups[0] != "eng" {
		t.Errorf("pasted principal %+v", doc.Principals)
	}
	_, again, _ := run(t, "keygen", "--name", "alice")
	if again == out {
		t.Error("two keys are the same")
	}
}

func TestKeygenUsage(t *testing.T) {
	for _, args := range [][]string{{"keygen"}, {"keygen", "--name", "has space"}, {"keygen", "--name", "a", "extra"}} {
		if code, out, _ := run(t, args...); code != cli.ExitUsage || out != "" {
			t.Errorf("%v: exit %d, stdout %q; want %d and nothing", args, code, out, cli.ExitUsage)
		}
	}
}
