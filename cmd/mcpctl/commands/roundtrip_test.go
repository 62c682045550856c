package commands

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mcpgw/mcpgw/internal/audit"
)

// A document using every field the fleet sections have, so the round trip
// covers optional and defaulted values (unset vs empty prefix, default
// timeout, rule ids, empty groups).
const fullYAML = `
backends:
  - name: github
    stdio:
      command: [github-mcp-server, stdio, "--read-only"]
      env: {GITHUB_TOKEN: "${env:GITHUB_TOKEN}", LOG: debug}
      dir: /srv/github
    timeout: 2m30s
    sessions: per_principal
  - name: files
    prefix: fs
    http: {url: "https://files.internal/mcp"}
  - name: search
    http: {url: "http://search.internal:9000/mcp", headers: {X-Team: core, Authorization: "${env:SEARCH_AUTH}"}}
    prefix: ""
roles:
  - name: developer
    description: Day-to-day engineering
    rules:
      - {id: dev-github, effect: allow, tools: ["github__*"], prompts: ["*"], resources: ["*"]}
      - {effect: deny, methods: [tools/call], backends: [github], tools: ["github__delete_*"]}
  - name: empty
    rules: []
bindings:
  - {role: developer, subjects: ["user:alice", "group:eng"]}
principals:
  - {name: alice, groups: [eng, oncall]}
  - {name: bob}
`

// TestGetYAMLApplyRoundTripIsNoop: what get -o yaml prints, apply -f takes
// back without creating a revision, for every config kind and for the whole
// policy (also with --prune, which would delete anything the export missed).
func TestGetYAMLApplyRoundTripIsNoop(t *testing.T) {
	cp := startControlPlane(t)
	c := cp.cliFor(t)
	src := writeFile(t, t.TempDir(), "full.yaml", fullYAML)
	if out := c.mustRun("apply", "-f", src); !strings.HasSuffix(out, "applied revision 1\n") {
		t.Fatalf("first apply:\n%s", out)
	}
	serverRevision := func() int64 {
		t.Helper()
		var v versionView
		if err := json.Unmarshal([]byte(c.mustRun("version", "-o", "json")), &v); err != nil || v.Server == nil {
			t.Fatalf("version -o json: %v %+v", err, v)
		}
		return v.Server.Revision
	}
	for _, tc := range []struct {
		kind  string
		extra []string
	}{
		{"backends", nil}, {"roles", nil}, {"bindings", nil}, {"principals", nil},
		{"policy", nil}, {"policy", []string{"--prune"}},
		{"backend", []string{"search"}}, {"role", []string{"developer"}},
	} {
		name := tc.kind + " " + strings.Join(tc.extra, " ")
		args := []string{"get", tc.kind}
		applyArgs := []string{"apply", "-f", "-"}
		if len(tc.extra) > 0 && strings.HasPrefix(tc.extra[0], "--") {
			applyArgs = append(applyArgs, tc.extra...)
		} else {
			args = append(args, tc.extra...)
		}
		exported := c.mustRun(append(args, "-o", "yaml")...)
		c.stdin = exported
		out := c.mustRun(applyArgs...)
		c.stdin = ""
		if out != "no changes (revision 1)\n" {
			t.Errorf("%s: applying the export changed something:\n%s\nexport:\n%s", name, out, exported)
		}
	}
	if rev := serverRevision(); rev != 1 {
		t.Fatalf("after the round trips the installation is at revision %d, want 1", rev)
	}

	// The check can fail: a real edit of the export is a change.
	exported := c.mustRun("get", "policy", "-o", "yaml")
	c.stdin = strings.Replace(exported, "oncall", "sre", 1)
	out := c.mustRun("apply", "-f", "-")
	if !strings.HasPrefix(out, "~ principal alice\n") || !strings.HasSuffix(out, "applied revision 2\n") {
		t.Fatalf("edited export:\n%s", out)
	}
	if rev := serverRevision(); rev != 2 {
		t.Fatalf("after an edit the installation is at revision %d, want 2", rev)
	}
}

// TestListsFollowPages: lists longer than the server's default page of 100
// come back whole, and -o yaml of them still round-trips.
func TestListsFollowPages(t *testing.T) {
	cp := startControlPlane(t)
	c := cp.cliFor(t)
	var doc strings.Builder
	doc.WriteString("principals:\n")
	for i := range 250 {
		fmt.Fprintf(&doc, "  - {name: user%03d, groups: [g%d]}\n", i, i%7)
	}
	c.mustRun("apply", "-f", writeFile(t, t.TempDir(), "many.yaml", doc.String()))
	var list struct {
		Principals []struct{ Name string } `json:"principals"`
	}
	if err := json.Unmarshal([]byte(c.mustRun("get", "principals", "-o", "json")), &list); err != nil {
		t.Fatal(err)
	}
	if len(list.Principals) != 250 || list.Principals[0].Name != "user000" || list.Principals[249].Name != "user249" {
		t.Fatalf("get principals returned %d principals", len(list.Principals))
	}
	if n := strings.Count(c.mustRun("get", "principals"), "\n"); n != 251 {
		t.Errorf("the table has %d lines, want a header and 250 rows", n)
	}
	c.stdin = c.mustRun("get", "principals", "-o", "yaml")
	if out := c.mustRun("apply", "-f", "-", "--dry-run"); out != "no changes (revision 1)\n" {
		t.Errorf("re-applying 250 exported principals:\n%s", out)
	}
	c.stdin = ""

	// Audit pages too: 250 events of one node, all of them or a limit.
	evs := auditEvents(nodeB, time.Now().UTC().Add(-time.Minute), 250)
	ingest(t, cp.audit, nodeB, [][]audit.Event{evs[:125], evs[125:]}, nil)
	if n := strings.Count(c.mustRun("audit", "query", "--node", nodeB, "--limit", "0", "-o", "jsonl"), "\n"); n != 250 {
		t.Errorf("audit query --limit 0 printed %d events, want 250", n)
	}
	if n := strings.Count(c.mustRun("audit", "query", "--node", nodeB, "--limit", "120", "-o", "jsonl"), "\n"); n != 120 {
		t.Errorf("audit query --limit 120 printed %d events", n)
	}
}
