package commands

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestGoldenKeysAndTokens(t *testing.T) {
	cp := startControlPlane(t)
	c := cp.cliFor(t)
	tr := newTranscript(c)
	c.mustRun("apply", "-f", writeFile(t, t.TempDir(), "p.yaml", "principals:\n  - {name: alice, groups: [eng]}\n"))

	// Text mode: the key alone on stdout, the rest on stderr.
	key1 := strings.TrimSpace(tr.ok("keys", "create", "--principal", "alice", "--expires", "90d", "--description", "laptop"))
	if !strings.HasPrefix(key1, "mcpgw_") || strings.Count(key1, "\n") != 0 {
		t.Fatalf("keys create printed %q, want the key alone", key1)
	}
	var created createdKey
	if err := json.Unmarshal([]byte(tr.ok("keys", "create", "--principal", "ci-bot", "-o", "json")), &created); err != nil {
		t.Fatal(err)
	}
	if created.Principal != "ci-bot" || !strings.HasPrefix(created.Key, "mcpgw_"+created.ID+"_") || !created.PrincipalCreated {
		t.Fatalf("keys create -o json = %+v", created)
	}
	id1 := strings.SplitN(strings.TrimPrefix(key1, "mcpgw_"), "_", 2)[0]
	tr.learn(id1, "<k1>")
	tr.learn(created.ID, "<k2>")

	tr.ok("get", "keys")
	tr.ok("get", "keys", "--principal", "alice", "-o", "wide")
	tr.ok("get", "keys", "-o", "json")
	tr.ok("get", "key", id1, "-o", "yaml")
	tr.ok("describe", "key", id1)
	tr.ok("describe", "principal", "alice")
	tr.ok("get", "principals") // ci-bot was created by keys create
	tr.ok("keys", "revoke", id1)
	tr.ok("keys", "revoke", id1) // revoking again is a no-op
	tr.ok("get", "keys")
	tr.ok("get", "keys", "--all")
	tr.ok("delete", "key", created.ID)
	tr.run("keys", "revoke", "nosuchkey")

	// Join tokens: the token and the exact edge command.
	tr.ok("join-token", "create", "--ttl", "2h", "--labels", "region=eu,tier=web", "--description", "first edge")
	var tok createdToken
	if err := json.Unmarshal([]byte(tr.ok("join-token", "create", "--node-group", "canary", "--control-plane", "cp.example.com:7443", "--state-dir", "/var/lib/my edge", "-o", "json")), &tok); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(tok.Token, "mcpgwjoin_"+tok.ID+"_") || tok.NodeGroup != "canary" ||
		tok.Command != "mcpgw edge --control-plane cp.example.com:7443 --ca-file "+cp.caFile+" --join-token "+tok.Token+" --state-dir '/var/lib/my edge'" {
		t.Fatalf("join-token create -o json = %+v", tok)
	}
	tr.learn(tok.ID, "<t2>")
	var list struct {
		JoinTokens []struct{ ID string } `json:"join_tokens"`
	}
	if err := json.Unmarshal([]byte(tr.ok("get", "tokens", "-o", "json")), &list); err != nil || len(list.JoinTokens) != 2 {
		t.Fatalf("get tokens -o json: %v %+v", err, list)
	}
	first := list.JoinTokens[1].ID // newest first
	tr.learn(first, "<t1>")
	tr.learnPath(cp.caFile, "<CA-FILE>")
	tr.ok("get", "tokens")
	tr.ok("get", "tokens", "-o", "wide")
	tr.ok("describe", "token", first)
	tr.ok("join-token", "revoke", first)
	tr.ok("get", "tokens")
	tr.ok("get", "tokens", "--all")
	tr.ok("get", "token", first)
	tr.run("get", "token", "nope")

	tr.check("keys")
}
