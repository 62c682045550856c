package document

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mcpgw/mcpgw/internal/policy"
)

func TestExampleCasesPass(t *testing.T) {
	d, err := ParseFiles(filepath.Join("..", "..", "examples", "mcpgw.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := policy.Compile(d.PolicySpec(), 1)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(filepath.Join("..", "..", "examples", "policy-cases.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cases, err := ParseCases(f, "policy-cases.yaml")
	if err != nil {
		t.Fatal(err)
	}
	results, err := RunCases(d, p, cases)
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != len(cases) || len(cases) < 10 {
		t.Fatalf("%d results for %d cases", len(results), len(cases))
	}
	for _, r := range results {
		if r.Problem != "" {
			t.Errorf("%s: %s", r.Case.Name, r.Problem)
		}
	}

	// The same cases against a policy that lost its deny rule must fail
	// exactly the cases that depend on it.
	d.Roles[0].Rules = d.Roles[0].Rules[:1]
	p, err = policy.Compile(d.PolicySpec(), 2)
	if err != nil {
		t.Fatal(err)
	}
	results, _ = RunCases(d, p, cases)
	var failed []string
	for _, r := range results {
		if r.Problem != "" {
			failed = append(failed, r.Case.Name+": "+r.Problem)
		}
	}
	want := `deleting is denied even to developers: expected deny, got allow (allowed by rule "dev-github" of role "developer")`
	if len(failed) != 1 || failed[0] != want {
		t.Errorf("failures = %q, want [%q]", failed, want)
	}
}

func TestParseCasesErrors(t *testing.T) {
	in := `cases:
  - {principal: a, tool: x, expect: allow}
  - {principal: a, tool: x, prompt: y, expect: allow}
  - {tool: x, expect: deny}
  - {name: bad, principal: a, tool: x, expect: maybe}
  - {principal: a, expect: deny}
`
	_, err := ParseCases(strings.NewReader(in), "c.yaml")
	want := `4 errors:
  c.yaml:3: cases[1]: set at most one of tool, prompt and resource
  c.yaml:4: cases[2]: principal is required
  c.yaml:5: bad: expect must be allow or deny, not "maybe"
  c.yaml:6: cases[4]: set a method, or one of tool, prompt and resource`
	if err == nil || err.Error() != want {
		t.Errorf("err = %v\nwant %s", err, want)
	}
	if _, err := ParseCases(strings.NewReader("cases:\n  - {principal: a, tol: x}\n"), "c.yaml"); err == nil || err.Error() != `c.yaml:2: unknown field "tol" in a case` {
		t.Errorf("unknown field: %v", err)
	}
	if _, err := ParseCases(strings.NewReader(""), "c.yaml"); err == nil || err.Error() != "c.yaml: no cases" {
		t.Errorf("empty: %v", err)
	}
}

func TestCaseRequest(t *testing.T) {
	d := &Document{Backends: []Backend{
		{Name: "github"},
		{Name: "gh-enterprise", Prefix: ptr("github__ent")},
		{Name: "search", Prefix: ptr("")},
	}}
	tests := []struct {
		c    Case
		want policy.Request
		err  string
	}{
		{Case{Tool: "github__x"}, policy.Request{Method: "tools/call", Backend: "github", Kind: policy.KindTool, Name: "github__x"}, ""},
		{Case{Prompt: "github__ent__p"}, policy.Request{Method: "prompts/get", Backend: "gh-enterprise", Kind: policy.KindPrompt, Name: "github__ent__p"}, ""},
		{Case{Tool: "web", Backend: "search"}, policy.Request{Method: "tools/call", Backend: "search", Kind: policy.KindTool, Name: "web"}, ""},
		{Case{Method: "completion/complete", Backend: "github", Prompt: "github__p"}, policy.Request{Method: "completion/complete", Backend: "github", Kind: policy.KindPrompt, Name: "github__p"}, ""},
		{Case{Method: "ping"}, policy.Request{Method: "ping"}, ""},
		{Case{Name: "n", Tool: "web"}, policy.Request{}, `n: no backend's prefix matches "web"; set backend`},
		{Case{Name: "n", Resource: "file:///x"}, policy.Request{}, "n: set backend"},
	}
	for _, tt := range tests {
		got, err := tt.c.Request(d)
		if tt.err != "" {
			if err == nil || err.Error() != tt.err {
				t.Errorf("Request(%+v) err = %v, want %q", tt.c, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("Request(%+v) = %+v, %v; want %+v", tt.c, got, err, tt.want)
		}
	}
}
