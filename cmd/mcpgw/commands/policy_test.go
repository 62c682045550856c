package commands

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mcpgw/mcpgw/cmd/internal/cli"
)

func run(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = execute(t.Context(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

const exampleConfig = "../../../examples/mcpgw.yaml"
const exampleCases = "../../../examples/policy-cases.yaml"

func TestPolicyCheck(t *testing.T) {
	code, out, errOut := run(t, "policy", "check", "--config", exampleConfig, "--principal", "alice", "--method", "tools/call", "--name", "github__delete_repo")
	if code != cli.ExitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if !strings.HasPrefix(out, "deny\nrule:     dev-no-delete\nrevision: ") || !strings.Contains(out, "backend:  github\n") {
		t.Errorf("denied check printed:\n%s", out)
	}
	for _, want := range []string{"role:      developer via user:alice, group:eng", "dev-github", "matched"} {
		if !strings.Contains(out, want) {
			t.Errorf("explanation lacks %q:\n%s", want, out)
		}
	}
	code, out, _ = run(t, "policy", "check", "--config", exampleConfig, "--principal", "bob", "--tool", "web_search", "--backend", "search")
	if code != cli.ExitOK || !strings.HasPrefix(out, "allow\nrule:     readonly/0\n") {
		t.Errorf("allowed check: exit %d\n%s", code, out)
	}
	code, out, _ = run(t, "policy", "check", "--config", exampleConfig, "--principal", "mallory", "--method", "tools/list")
	if code != cli.ExitOK || !strings.HasPrefix(out, "allow\nrule:     (none: protocol housekeeping)\n") {
		t.Errorf("housekeeping check: exit %d\n%s", code, out)
	}
}

func TestPolicyCheckErrors(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("bindings:\n  - {role: nope, subjects: [\"user:a\"]}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		code int
	}{
		{[]string{"policy", "check", "--config", exampleConfig, "--method", "tools/call", "--name", "x"}, cli.ExitUsage},
		{[]string{"policy", "check", "--config", exampleConfig, "--principal", "a"}, cli.ExitUsage},
		{[]string{"policy", "check", "--principal", "a", "--tool", "github__x"}, cli.ExitUsage},
		{[]string{"policy", "check", "--config", exampleConfig, "--principal", "a", "--method", "tools/call"}, cli.ExitUsage},
		{[]string{"policy", "check", "--config", exampleConfig, "--principal", "a", "--tool", "unprefixed"}, cli.ExitUsage},
		{[]string{"policy", "check", "--config", bad, "--principal", "a", "--tool", "github__x"}, cli.ExitFailure},
		{[]string{"policy"}, cli.ExitUsage},
	} {
		if code, out, errOut := run(t, tc.args...); code != tc.code || out != "" || errOut == "" {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit %d and an error", tc.args, code, out, errOut, tc.code)
		}
	}
}

func TestPolicyTest(t *testing.T) {
	code, out, errOut := run(t, "policy", "test", "--config", exampleConfig, "--cases", exampleCases)
	if code != cli.ExitOK || !strings.Contains(out, "10 cases passed") || strings.Contains(out, "FAIL") {
		t.Fatalf("example cases: exit %d\n%s%s", code, out, errOut)
	}

	cases := filepath.Join(t.TempDir(), "cases.yaml")
	if err := os.WriteFile(cases, []byte(`cases:
  - {name: fine, principal: alice, tool: github__create_issue, expect: allow}
  - {name: wrong decision, principal: alice, tool: github__delete_repo, expect: allow}
  - {name: wrong rule, principal: alice, tool: github__create_issue, expect: allow, rule: dev-no-delete}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut = run(t, "policy", "test", "--config", exampleConfig, "--cases", cases)
	if code != cli.ExitFailure {
		t.Errorf("mismatches: exit %d, want %d", code, cli.ExitFailure)
	}
	for _, want := range []string{"ok    fine\n", "FAIL  wrong decision: expected allow, got deny", `FAIL  wrong rule: expected rule "dev-no-delete", got "dev-github"`} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(errOut, "2 of 3 cases failed") {
		t.Errorf("stderr: %q", errOut)
	}
	if code, _, _ := run(t, "policy", "test", "--config", exampleConfig); code != cli.ExitUsage {
		t.Errorf("no --cases: exit %d", code)
	}
}
