package docproto_test

import (
	"reflect"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	mcpgwv1 "github.com/mcpgw/mcpgw/gen/mcpgw/v1"
	"github.com/mcpgw/mcpgw/internal/docproto"
	"github.com/mcpgw/mcpgw/internal/document"
	"github.com/mcpgw/mcpgw/internal/policy"
)

func fleetDoc() document.Document {
	empty := ""
	return document.Document{
		Backends: []document.Backend{
			{Name: "github", Stdio: &document.StdioTransport{Command: []string{"github-mcp-server", "stdio"},
				Env: map[string]string{"GITHUB_TOKEN": "${env:GITHUB_TOKEN}"}, Dir: "/srv"}, Timeout: document.Duration(2 * time.Minute)},
			{Name: "search", Prefix: &empty, HTTP: &document.HTTPTransport{URL: "http://127.0.0.1:9000/mcp",
				Headers: map[string]string{"X-Team": "core"}}, Sessions: "per_principal"},
			{Name: "plain", HTTP: &document.HTTPTransport{URL: "https://x.example/mcp"}},
		},
		Roles: []policy.Role{
			{Name: "developer", Description: "devs", Rules: []policy.Rule{
				{Effect: "allow", Tools: []string{"github__*"}, Prompts: []string{"*"}, Resources: []string{"*"}},
				{ID: "no-delete", Effect: "deny", Methods: []string{"tools/call"}, Backends: []string{"github"}, Tools: []string{"github__delete_*"}},
			}},
			{Name: "empty"},
		},
		Bindings:   []policy.Binding{{Role: "developer", Subjects: []string{"user:alice", "group:eng"}}},
		Principals: []policy.Principal{{Name: "alice", Groups: []string{"eng", "ops"}}, {Name: "bob"}},
	}
}

func TestDocumentRoundTrip(t *testing.T) {
	d := fleetDoc()
	p := docproto.DocumentToProto(d)
	if got := docproto.DocumentFromProto(p); !reflect.DeepEqual(got, d) {
		t.Fatalf("document → proto → document changed it:\n got %+v\nwant %+v", got, d)
	}
	// Through the wire encoding too: what mcpctl sends is what the CP reads.
	b, err := proto.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	var back mcpgwv1.PolicyDocument
	if err := proto.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if got := docproto.DocumentFromProto(&back); !reflect.DeepEqual(got, d) {
		t.Fatalf("after the wire: got %+v", got)
	}
	// Proto → document → proto is the identity as well.
	if again := docproto.DocumentToProto(docproto.DocumentFromProto(p)); !proto.Equal(again, p) {
		t.Fatalf("proto round trip: %v vs %v", again, p)
	}
}

func TestBackendDetails(t *testing.T) {
	d := fleetDoc()
	search := docproto.BackendToProto(d.Backends[1])
	if search.Prefix == nil || *search.Prefix != "" || search.GetHttp().GetUrl() != "http://127.0.0.1:9000/mcp" || search.Timeout != nil {
		t.Errorf("search backend: %v", search)
	}
	plain := docproto.BackendToProto(d.Backends[2])
	if plain.Prefix != nil {
		t.Errorf("unset prefix became %q", *plain.Prefix)
	}
	gh := docproto.BackendToProto(d.Backends[0])
	if gh.GetTimeout().AsDuration() != 2*time.Minute || gh.GetStdio().GetDir() != "/srv" {
		t.Errorf("github backend: %v", gh)
	}
	// The JSON form uses proto names, as docs/api.md says clients should.
	j, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(gh)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(docproto.BackendFromProto(gh), d.Backends[0]) || len(j) == 0 {
		t.Errorf("github backend round trip")
	}
	if b := docproto.BackendFromProto(&mcpgwv1.Backend{Name: "x"}); b.Stdio != nil || b.HTTP != nil {
		t.Errorf("no transport invented: %+v", b)
	}
}

func TestKeyHashesDropFromDocument(t *testing.T) {
	p := docproto.PrincipalToProto(policy.Principal{Name: "a", APIKeySHA256: "ab"})
	if got := docproto.PrincipalFromProto(p); got.APIKeySHA256 != "" || got.Name != "a" {
		t.Errorf("principal %+v", got)
	}
	exp := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, k := range []docproto.APIKeyHash{{KeyID: "k", Principal: "a", SHA256: "00"}, {KeyID: "k", Principal: "a", SHA256: "00", ExpiresAt: exp}} {
		if got := docproto.APIKeyHashFromProto(docproto.APIKeyHashToProto(k)); !got.ExpiresAt.Equal(k.ExpiresAt) || got.KeyID != k.KeyID || got.SHA256 != k.SHA256 {
			t.Errorf("key hash round trip %+v → %+v", k, got)
		}
	}
}
