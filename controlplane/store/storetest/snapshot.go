package storetest

import (
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mcpgw/mcpgw/controlplane/store"
	mcpgwv1 "github.com/mcpgw/mcpgw/gen/mcpgw/v1"
	"github.com/mcpgw/mcpgw/internal/document"
	"github.com/mcpgw/mcpgw/internal/policy"
)

// testSnapshotResources pins what edges receive for one config, field by
// field, so both stores hand edges the same resources (and so the same
// snapshot hash) for the same writes.
func testSnapshotResources(t *testing.T, s Store) {
	ctx := t.Context()
	must := mustOK(t)
	prefix := "gh"
	doc := document.Document{
		Backends: []document.Backend{
			{Name: "github", Prefix: &prefix, HTTP: &document.HTTPTransport{URL: "https://mcp.example/gh", Headers: map[string]string{"Authorization": "${env:GH}"}},
				Timeout: document.Duration(1500 * time.Millisecond), Sessions: "per_principal"},
			{Name: "files", Stdio: &document.StdioTransport{Command: []string{"mcp-files", "/srv"}, Env: map[string]string{"A": "1"}, Dir: "/tmp"}},
		},
		Roles: []policy.Role{{Name: "dev", Description: "d", Rules: []policy.Rule{
			{ID: "r1", Effect: "allow", Methods: []string{"tools/call"}, Backends: []string{"github"}, Tools: []string{"gh__*"}},
			{Effect: "deny", Prompts: []string{"x"}, Resources: []string{"file:///etc/*"}},
		}}},
		Bindings:   []policy.Binding{{Role: "dev", Subjects: []string{"user:bob", "group:eng"}}},
		Principals: []policy.Principal{{Name: "bob", Groups: []string{"eng"}}, {Name: "amy"}},
	}
	must(s.ApplyDocument(ctx, meta, doc, store.ApplyOptions{}))
	exp := time.Date(2030, 1, 2, 3, 4, 5, 6000, time.UTC)
	if _, _, _, err := s.CreateAPIKey(ctx, meta, store.NewAPIKey{ID: "k1", Principal: "bob", SHA256: hash("k1"), ExpiresAt: exp}); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := s.CreateAPIKey(ctx, meta, store.NewAPIKey{ID: "k0", Principal: "amy", SHA256: hash("k0")}); err != nil {
		t.Fatal(err)
	}
	rev, _, got, err := s.LoadSnapshotResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if head, _ := s.HeadRevision(ctx); rev != head {
		t.Fatalf("snapshot at revision %d, head %d", rev, head)
	}
	want := &mcpgwv1.SnapshotResources{
		Backends: []*mcpgwv1.Backend{
			{Name: "files", Transport: &mcpgwv1.Backend_Stdio{Stdio: &mcpgwv1.StdioTransport{Command: []string{"mcp-files", "/srv"}, Env: map[string]string{"A": "1"}, Dir: "/tmp"}}},
			{Name: "github", Prefix: proto.String("gh"), Transport: &mcpgwv1.Backend_Http{Http: &mcpgwv1.HttpTransport{Url: "https://mcp.example/gh", Headers: map[string]string{"Authorization": "${env:GH}"}}},
				Timeout: durationpb.New(1500 * time.Millisecond), Sessions: "per_principal"},
		},
		Principals: []*mcpgwv1.Principal{{Name: "amy"}, {Name: "bob", Groups: []string{"eng"}}},
		Roles: []*mcpgwv1.Role{{Name: "dev", Description: "d", Rules: []*mcpgwv1.Rule{
			{Id: "r1", Effect: "allow", Methods: []string{"tools/call"}, Backends: []string{"github"}, Tools: []string{"gh__*"}},
			{Effect: "deny", Prompts: []string{"x"}, Resources: []string{"file:///etc/*"}},
		}}},
		Bindings: []*mcpgwv1.RoleBinding{{Role: "dev", Subjects: []string{"group:eng", "user:bob"}}},
		ApiKeys: []*mcpgwv1.ApiKeyHash{
			{KeyId: "k0", Principal: "amy", Sha256: hash("k0")},
			{KeyId: "k1", Principal: "bob", Sha256: hash("k1"), ExpireTime: timestamppb.New(exp)},
		},
	}
	if !proto.Equal(want, got) {
		t.Fatalf("snapshot resources:\n%s\nwant:\n%s", prototext.Format(got), prototext.Format(want))
	}
}
