package commands

import (
	"regexp"
	"strings"
	"testing"
)

// The policy of the operator guide (docs/operator-guide.md), split over two
// files the way people keep them.
const (
	backendsYAML = `# backends.yaml
backends:
  - name: github
    stdio:
      command: [github-mcp-server, stdio]
      env: {GITHUB_TOKEN: "${env:GITHUB_TOKEN}"}
    timeout: 120s
  - name: search
    http: {url: "http://search.internal:9000/mcp", headers: {X-Team: core}}
    prefix: ""
`
	policyYAML = `# policy.yaml
roles:
  - name: developer
    description: Day-to-day engineering
    rules:
      - {effect: allow, tools: ["github__*"], prompts: ["*"], resources: ["*"]}
      - {effect: deny, tools: ["github__delete_*"]}
  - name: readonly
    rules:
      - {effect: allow, backends: [search], tools: ["*"]}
      - {effect: allow, methods: ["resources/read"], resources: ["file:///docs/*"]}
---
# empty documents are ignored
---
bindings:
  - {role: developer, subjects: ["user:alice", "group:eng"]}
  - {role: readonly, subjects: ["user:bob"]}
principals:
  - {name: alice, groups: [eng]}
  - {name: bob}
`
)

func TestGoldenConfig(t *testing.T) {
	cp := startControlPlane(t)
	c := cp.cliFor(t)
	dir := t.TempDir()
	tr := newTranscript(c, mask{re: regexp.MustCompile(regexp.QuoteMeta(dir)), with: "<DIR>"})
	backends := writeFile(t, dir, "backends.yaml", backendsYAML)
	policy := writeFile(t, dir, "policy.yaml", policyYAML)

	tr.ok("version")
	tr.ok("version", "-o", "json")
	tr.ok("apply", "-f", backends, "-f", policy, "--dry-run")
	tr.ok("apply", "-f", dir)
	tr.ok("apply", "-f", dir) // unchanged: no new revision

	for _, kind := range []string{"backends", "roles", "bindings", "principals"} {
		for _, format := range []string{"table", "wide", "json", "yaml"} {
			tr.ok("get", kind, "-o", format)
		}
	}
	tr.ok("get", "backend", "github", "-o", "json")
	tr.ok("get", "role", "developer")
	tr.ok("get", "policy")
	tr.ok("get", "policy", "-o", "yaml")
	for _, args := range [][]string{{"backend", "github"}, {"backend", "search"}, {"role", "developer"}, {"binding", "developer"}, {"principal", "alice"}} {
		tr.ok(append([]string{"describe"}, args...)...)
	}

	// Decisions and their explanations.
	tr.ok("check", "--principal", "alice", "--tool", "github__create_issue")
	tr.ok("check", "--principal", "alice", "--method", "tools/call", "--name", "github__delete_repo")
	tr.ok("check", "--principal", "bob", "--tool", "github__create_issue", "-o", "json")
	tr.ok("check", "--principal", "bob", "--method", "resources/read", "--name", "file:///docs/intro.md")
	tr.ok("check", "--principal", "alice", "--tool", "github__create_issue", "--args", `{"repo": "mcpgw/mcpgw", "title": "x"}`, "-o", "yaml")

	// A change shows as ~, a removal with --prune as -.
	changed := strings.Replace(policyYAML, "Day-to-day engineering", "Engineers", 1)
	changed = strings.Replace(changed, "  - {role: readonly, subjects: [\"user:bob\"]}\n", "", 1)
	writeFile(t, dir, "policy.yaml", changed)
	tr.ok("apply", "-f", dir, "--dry-run", "--prune")
	tr.ok("apply", "-f", dir, "--dry-run", "--prune", "-o", "json")
	tr.ok("apply", "-f", dir, "--prune")
	tr.ok("get", "bindings")

	// Deleting with a stale expected revision is refused; with the right
	// one (the REVISION column) it works.
	// readonly last changed at revision 1; the installation is at 2.
	tr.run("delete", "role", "readonly", "--expected-revision", "2")
	tr.ok("delete", "role", "readonly", "--dry-run")
	tr.ok("delete", "role", "readonly", "--expected-revision", "1")
	tr.run("describe", "role", "readonly")
	tr.run("delete", "role", "developer")

	// Mistakes: local ones name the file and line, server ones the field.
	bad := writeFile(t, t.TempDir(), "bad.yaml", "backends:\n  - name: x\n    stdoi: {command: [x]}\n")
	tr.run("apply", "-f", bad)
	standalone := writeFile(t, t.TempDir(), "edge.yaml", "audit:\n  file: ./audit.jsonl\nroles: []\n")
	tr.run("apply", "-f", standalone)
	withHash := writeFile(t, t.TempDir(), "keys.yaml", "principals:\n  - {name: carol, api_key_sha256: \"00\"}\n")
	tr.run("apply", "-f", withHash)
	invalid := writeFile(t, t.TempDir(), "invalid.yaml", "roles:\n  - name: broken\n    rules:\n      - {effect: maybe}\n")
	tr.run("apply", "-f", invalid)
	tr.run("apply", "-f", dir, "--expected-revision", "1")
	tr.run("check", "--principal", "nobody", "--tool", "x")
	tr.run("get", "backend", "nope")

	// The change log: who changed what.
	tr.ok("history")
	tr.ok("history", "2")
	tr.ok("history", "3", "-o", "json")
	tr.run("history", "99")

	tr.check("config")
}
