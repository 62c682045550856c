package document

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/mcpgw/mcpgw/internal/policy"
)

func ptr[T any](v T) *T { return &v }

const designYAML = `
backends:
  - name: github                     # also the default tool prefix
    stdio:
      command: [github-mcp-server, stdio]
      env: {GITHUB_TOKEN: "${env:GITHUB_TOKEN}"}
    timeout: 120s
  - name: search
    http: {url: "http://127.0.0.1:9000/mcp", headers: {X-Team: core}}
    prefix: ""
roles:
  - name: developer
    rules:
      - {effect: allow, tools: ["github__*"], prompts: ["*"], resources: ["*"]}
      - {effect: deny,  tools: ["github__delete_*"]}
  - name: readonly
    rules:
      - {effect: allow, backends: [search], tools: ["*"]}
      - {effect: allow, methods: ["resources/read"], resources: ["file:///docs/*"]}
bindings:
  - {role: developer, subjects: ["user:alice", "group:eng"]}
  - {role: readonly,  subjects: ["user:bob"]}
principals:
  - {name: alice, groups: [eng], api_key_sha256: "8f4b9c6ad2a27379bcce549edc8e41ea07578ce453d495f1c1720d70282304de"}
audit:
  file: ./audit.jsonl
`

func designDoc() *Document {
	return &Document{
		Backends: []Backend{
			{Name: "github", Stdio: &StdioTransport{Command: []string{"github-mcp-server", "stdio"}, Env: map[string]string{"GITHUB_TOKEN": "${env:GITHUB_TOKEN}"}}, Timeout: Duration(120e9)},
			{Name: "search", HTTP: &HTTPTransport{URL: "http://127.0.0.1:9000/mcp", Headers: map[string]string{"X-Team": "core"}}, Prefix: ptr("")},
		},
		Roles: []policy.Role{
			{Name: "developer", Rules: []policy.Rule{
				{Effect: "allow", Tools: []string{"github__*"}, Prompts: []string{"*"}, Resources: []string{"*"}},
				{Effect: "deny", Tools: []string{"github__delete_*"}},
			}},
			{Name: "readonly", Rules: []policy.Rule{
				{Effect: "allow", Backends: []string{"search"}, Tools: []string{"*"}},
				{Effect: "allow", Methods: []string{"resources/read"}, Resources: []string{"file:///docs/*"}},
			}},
		},
		Bindings: []policy.Binding{
			{Role: "developer", Subjects: []string{"user:alice", "group:eng"}},
			{Role: "readonly", Subjects: []string{"user:bob"}},
		},
		Principals: []policy.Principal{{Name: "alice", Groups: []string{"eng"}, APIKeySHA256: "8f4b9c6ad2a27379bcce549edc8e41ea07578ce453d495f1c1720d70282304de"}},
		Audit:      &Audit{File: "./audit.jsonl"},
	}
}

func TestParseDesignExample(t *testing.T) {
	d, err := Parse(strings.NewReader(designYAML), "design.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if want := designDoc(); !reflect.DeepEqual(d, want) {
		t.Fatalf("Parse =\n%#v\nwant\n%#v", d, want)
	}
	if err := d.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	p, err := policy.Compile(d.PolicySpec(), 1)
	if err != nil {
		t.Fatal(err)
	}
	if !p.Decide("alice", policy.Request{Method: "tools/call", Backend: "github", Kind: policy.KindTool, Name: "github__create_issue"}).Allow {
		t.Error("alice cannot create issues")
	}
	if who, ok := p.Authenticate(policy.HashKey("mcpgw_alice01_exampleexampleexampleexample"), timeNow()); !ok || who != "alice" {
		t.Errorf("alice's key authenticates as %q %v", who, ok)
	}
}

func TestParseMergesDocuments(t *testing.T) {
	in := `---
# only a comment
---
backends:
  - {name: a, http: {url: "http://a/mcp"}}
---
---
backends:
  - {name: b, http: {url: "http://b/mcp"}}
roles:
  - {name: r, rules: [{effect: allow}]}
---
bindings: [{role: r, subjects: ["user:x"]}]
auth: {anonymous: {principal: local}}
...
`
	d, err := Parse(strings.NewReader(in), "stdin")
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Backends) != 2 || d.Backends[0].Name != "a" || d.Backends[1].Name != "b" || len(d.Roles) != 1 || len(d.Bindings) != 1 || d.Auth == nil {
		t.Fatalf("merged = %+v", d)
	}
	for _, empty := range []string{"", "---\n", "---\n---\n# nothing\n", "~\n"} {
		d, err := Parse(strings.NewReader(empty), "e")
		if err != nil || !reflect.DeepEqual(d, &Document{}) {
			t.Errorf("Parse(%q) = %+v, %v; want an empty document", empty, d, err)
		}
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, in string
		want     []string
	}{
		{"unknown field", "backends:\n  - name: a\n    comand: [x]\n", []string{`f.yaml:3: unknown field "comand" in a backend`}},
		{"unknown top-level field", "backend: []\n", []string{`f.yaml:1: unknown field "backend" in the document (known: backends, roles, bindings, principals, auth, audit)`}},
		{"unknown rule field across documents", "roles: []\n---\nroles:\n  - name: r\n    rules:\n      - {effect: allow, tool: [x]}\n", []string{`f.yaml:6: unknown field "tool" in a rule`}},
		{"case variant field", "backends:\n  - Name: a\n", []string{`f.yaml:2: unknown field "Name" in a backend`}},
		{"duplicate key", "roles:\n  - name: r\n    name: s\n", []string{`f.yaml:3: mapping key "name" already defined at line 2`}},
		{"duplicate top-level key", "roles: []\nroles: []\n", []string{`f.yaml:2: mapping key "roles" already defined at line 1`}},
		{"wrong type", "backends:\n  - name: [a]\n", []string{"f.yaml:2: cannot unmarshal !!seq into string"}},
		{"bad duration", "backends:\n  - name: a\n    timeout: 10\n", []string{`f.yaml:3: bad duration "10" (use e.g. "30s", "2m")`}},
		{"not a mapping", "- a\n", []string{"f.yaml:1: a document must be a mapping of backends, roles, bindings, principals, auth and audit"}},
		{"syntax", "roles: [\n", []string{"f.yaml:1: did not find expected node content"}},
		{"duplicate backend across documents", "backends:\n  - {name: a, http: {url: \"http://a\"}}\n---\nbackends:\n  - {name: b, http: {url: \"http://b\"}}\n  - {name: a, http: {url: \"http://c\"}}\n",
			[]string{`f.yaml:6: backend "a" is already defined at f.yaml:2`}},
		{"duplicate role principal binding audit", "roles: [{name: r}, {name: r}]\nprincipals: [{name: p}]\nbindings: [{role: r, subjects: [\"user:p\"]}]\naudit: {}\n---\nprincipals:\n  - name: p\nbindings:\n  - {role: r, subjects: [\"user:q\"]}\naudit: {file: x}\n",
			[]string{
				`f.yaml:1: role "r" is already defined at f.yaml:1`,
				`f.yaml:9: binding of role "r" is already defined at f.yaml:3`,
				`f.yaml:7: principal "p" is already defined at f.yaml:2`,
				`f.yaml:10: section "audit" is already defined at f.yaml:4`,
			}},
		{"errors after a bad value", "backends:\n  - name: a\n    timeout: 5\n---\nroles: [{name: r, rule: []}]\n", []string{
			`f.yaml:3: bad duration "5" (use e.g. "30s", "2m")`,
			`f.yaml:5: unknown field "rule" in a role`,
		}},
		{"errors in two documents", "backends: [{nme: a}]\n---\nroles: [{name: r, rule: []}]\n", []string{
			`f.yaml:1: unknown field "nme" in a backend`,
			`f.yaml:3: unknown field "rule" in a role`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(strings.NewReader(tt.in), "f.yaml")
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("err = %T %v, want *ParseError", err, err)
			}
			if !reflect.DeepEqual(pe.Errors, tt.want) {
				t.Fatalf("errors:\n got  %q\n want %q", pe.Errors, tt.want)
			}
		})
	}
}

func TestParseTooLarge(t *testing.T) {
	big := strings.NewReader("# " + strings.Repeat("x", MaxSize))
	if _, err := Parse(big, "big.yaml"); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("err = %v", err)
	}
}

func TestParseFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("conf/20-b.yml", "backends: [{name: b, http: {url: \"http://b\"}}]\n")
	write("conf/10-a.yaml", "backends: [{name: a, http: {url: \"http://a\"}}]\n")
	write("conf/notes.txt", "not yaml: [")
	write("conf/sub/30-c.yaml", "backends: [{name: c, http: {url: \"http://c\"}}]\n")
	extra := write("extra.yaml", "roles: [{name: r}]\n")
	d, err := ParseFilesWithStdin(strings.NewReader("principals: [{name: p}]\n"), filepath.Join(dir, "conf"), "-", extra)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, b := range d.Backends {
		names = append(names, b.Name)
	}
	if strings.Join(names, ",") != "a,b" || len(d.Principals) != 1 || len(d.Roles) != 1 {
		t.Fatalf("got backends %v, %d principals, %d roles", names, len(d.Principals), len(d.Roles))
	}

	dupe := write("dupe.yaml", "\nbackends: [{name: a, http: {url: \"http://x\"}}]\n")
	_, err = ParseFiles(filepath.Join(dir, "conf"), dupe)
	if want := dupe + `:2: backend "a" is already defined at ` + filepath.Join(dir, "conf", "10-a.yaml") + ":1"; err == nil || err.Error() != want {
		t.Fatalf("err = %v\nwant %s", err, want)
	}
	if _, err := ParseFiles(filepath.Join(dir, "missing.yaml")); err == nil || !strings.Contains(err.Error(), "missing.yaml") {
		t.Fatalf("missing file: %v", err)
	}
	if _, err := ParseFiles(filepath.Join(dir, "conf", "sub", "..", "..", "empty-dir-does-not-exist")); err == nil {
		t.Fatal("no error for a missing directory")
	}
	empty := filepath.Join(dir, "empty")
	if err := os.Mkdir(empty, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := ParseFiles(empty); err == nil || !strings.Contains(err.Error(), "has no *.yaml or *.yml files") {
		t.Fatalf("empty dir: %v", err)
	}
	if _, err := ParseFiles(); err == nil {
		t.Fatal("no error without paths")
	}
}

func TestExampleFileIsValid(t *testing.T) {
	d, err := ParseFiles(filepath.Join("..", "..", "examples", "mcpgw.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Validate(); err != nil {
		t.Fatal(err)
	}
	if len(d.Backends) != 2 || d.Backends[0].Stdio == nil || d.Backends[1].HTTP == nil || d.Auth == nil || d.Audit == nil {
		t.Fatalf("example lacks a section: %+v", d)
	}
	p, err := policy.Compile(d.PolicySpec(), 1)
	if err != nil {
		t.Fatal(err)
	}
	call := func(who, backend, tool string) bool {
		return p.Decide(who, policy.Request{Method: "tools/call", Backend: backend, Kind: policy.KindTool, Name: tool}).Allow
	}
	if !call("alice", "github", "github__create_issue") || call("alice", "github", "github__delete_repo") ||
		!call("carol", "github", "github__create_issue") || !call("bob", "search", "web_search") || call("bob", "github", "github__create_issue") {
		t.Error("the example's policy does not say what its comments say")
	}
	if who, ok := p.Authenticate(policy.HashKey("mcpgw_alice01_exampleexampleexampleexample"), timeNow()); !ok || who != "alice" {
		t.Errorf("the example key in the comment does not match: %q %v", who, ok)
	}
}
