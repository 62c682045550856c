package storetest

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/mcpgw/mcpgw/controlplane/store"
	"github.com/mcpgw/mcpgw/internal/document"
	"github.com/mcpgw/mcpgw/internal/policy"
)

var meta = store.Meta{Actor: "contract", Operation: "Test"}

func httpBackend(name, url string) document.Backend {
	return document.Backend{Name: name, HTTP: &document.HTTPTransport{URL: url}}
}

// mustOK returns a checker for writes that must succeed.
func mustOK(t *testing.T) func(store.Result, error) store.Result {
	return func(r store.Result, err error) store.Result {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
}

func testRevisions(t *testing.T, s Store) {
	ctx := t.Context()
	must := mustOK(t)
	if rev, err := s.CurrentRevision(ctx); err != nil || rev != 0 {
		t.Fatalf("empty store at revision %d, %v; want 0", rev, err)
	}
	r := must(s.CreateBackend(ctx, meta, httpBackend("search", "http://127.0.0.1:9000/mcp"), store.WriteOptions{}))
	if !r.Committed || r.BaseRevision != 0 || r.Revision <= 0 || len(r.Changes) != 1 || r.Changes[0].Action != store.ActionCreate {
		t.Fatalf("create: %+v", r)
	}
	rev1 := r.Revision
	b, err := s.GetBackend(ctx, "search")
	if err != nil || b.Revision != rev1 || b.HTTP == nil || b.HTTP.URL != "http://127.0.0.1:9000/mcp" {
		t.Fatalf("get after create: %+v, %v", b, err)
	}
	if _, err := s.CreateBackend(ctx, meta, httpBackend("search", "http://x/mcp"), store.WriteOptions{}); !errors.Is(err, store.ErrAlreadyExists) {
		t.Fatalf("second create: %v, want ErrAlreadyExists", err)
	}

	upd := httpBackend("search", "http://127.0.0.1:9001/mcp")
	upd.Timeout = document.Duration(90 * time.Second)
	r = must(s.UpdateBackend(ctx, meta, upd, store.WriteOptions{ExpectedRevision: rev1}))
	if !r.Committed || r.Revision <= rev1 {
		t.Fatalf("update: %+v", r)
	}
	rev2 := r.Revision
	// A writer that read revision 1 is refused now, and nothing changes.
	_, err = s.UpdateBackend(ctx, meta, httpBackend("search", "http://stale/mcp"), store.WriteOptions{ExpectedRevision: rev1})
	var mm *store.RevisionMismatchError
	if !errors.Is(err, store.ErrStaleRevision) || !errors.As(err, &mm) || mm.Expected != rev1 || mm.Actual != rev2 {
		t.Fatalf("stale update: %v, want a RevisionMismatchError %d→%d", err, rev1, rev2)
	}
	if _, err := s.DeleteBackend(ctx, meta, "search", store.WriteOptions{ExpectedRevision: rev1}); !errors.Is(err, store.ErrStaleRevision) {
		t.Fatalf("stale delete: %v, want ErrStaleRevision", err)
	}
	// The same content again changes nothing and takes no revision.
	r = must(s.UpdateBackend(ctx, meta, upd, store.WriteOptions{}))
	if r.Committed || r.Revision != rev2 || len(r.Changes) != 0 {
		t.Fatalf("no-op update: %+v", r)
	}
	// A dry run diffs without committing.
	r = must(s.DeleteBackend(ctx, meta, "search", store.WriteOptions{DryRun: true}))
	if r.Committed || len(r.Changes) != 1 || r.Changes[0].Action != store.ActionDelete {
		t.Fatalf("dry-run delete: %+v", r)
	}
	if _, err := s.GetBackend(ctx, "search"); err != nil {
		t.Fatalf("dry run deleted the backend: %v", err)
	}
	// An invalid write is refused with every problem and commits nothing.
	_, err = s.CreateBackend(ctx, meta, document.Backend{Name: "Bad Name"}, store.WriteOptions{})
	var inv *store.InvalidConfigError
	if !errors.Is(err, store.ErrInvalid) || !errors.As(err, &inv) || len(inv.Errors) == 0 {
		t.Fatalf("invalid backend: %v, want an InvalidConfigError", err)
	}
	if rev, _ := s.CurrentRevision(ctx); rev != rev2 {
		t.Fatalf("revision %d after refused writes, want %d", rev, rev2)
	}
	if head, err := s.HeadRevision(ctx); err != nil || head != rev2 {
		t.Fatalf("HeadRevision %d, %v; want %d", head, err, rev2)
	}

	// The change log has both revisions, newest first, with before/after.
	revs, err := s.ListRevisions(ctx, 0, 0)
	if err != nil || len(revs) != 2 || revs[0].Revision != rev2 || revs[1].Revision != rev1 {
		t.Fatalf("ListRevisions: %+v, %v", revs, err)
	}
	got, err := s.GetRevision(ctx, rev2)
	if err != nil || got.Actor != "contract" || got.Operation != "Test" || len(got.Changes) != 1 ||
		got.Changes[0].Action != store.ActionUpdate || got.Changes[0].Before == nil || got.Changes[0].After == nil || got.Time.IsZero() {
		t.Fatalf("GetRevision(%d): %+v, %v", rev2, got, err)
	}
	if older, err := s.ListRevisions(ctx, rev2, 1); err != nil || len(older) != 1 || older[0].Revision != rev1 {
		t.Fatalf("ListRevisions(before %d, 1): %+v, %v", rev2, older, err)
	}
	if _, err := s.GetRevision(ctx, rev2+100); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown revision: %v, want ErrNotFound", err)
	}
}

func testApplyDocument(t *testing.T, s Store) {
	ctx := t.Context()
	must := mustOK(t)
	doc := document.Document{
		Backends:   []document.Backend{httpBackend("github", "http://127.0.0.1:9100/mcp"), {Name: "files", Stdio: &document.StdioTransport{Command: []string{"mcp-files", "--root", "/srv"}, Env: map[string]string{"TOKEN": "${env:FILES_TOKEN}"}}}},
		Roles:      []policy.Role{{Name: "dev", Rules: []policy.Rule{{Effect: "allow", Tools: []string{"github__*"}}}}},
		Bindings:   []policy.Binding{{Role: "dev", Subjects: []string{"user:alice"}}, {Role: "dev", Subjects: []string{"group:eng"}}},
		Principals: []policy.Principal{{Name: "alice", Groups: []string{"eng"}}},
	}
	r := must(s.ApplyDocument(ctx, meta, doc, store.ApplyOptions{}))
	if !r.Committed || len(r.Changes) != 5 {
		t.Fatalf("apply: %+v", r)
	}
	// Kind order, then name.
	var kinds []store.Kind
	for _, c := range r.Changes {
		kinds = append(kinds, c.Kind)
	}
	if want := []store.Kind{store.KindBackend, store.KindBackend, store.KindRole, store.KindBinding, store.KindPrincipal}; !slices.Equal(kinds, want) || r.Changes[0].Name != "files" {
		t.Fatalf("change order %v (first %q), want %v starting with files", kinds, r.Changes[0].Name, want)
	}
	cfg, err := s.LoadConfig(ctx)
	if err != nil || cfg.Revision != r.Revision || len(cfg.Backends) != 2 || len(cfg.Bindings) != 1 {
		t.Fatalf("LoadConfig: %+v, %v", cfg, err)
	}
	if b, _ := cfg.Binding("dev"); !slices.Equal(b.Subjects, []string{"group:eng", "user:alice"}) {
		t.Fatalf("merged binding subjects %v", b.Subjects)
	}
	if f, _ := cfg.Backend("files"); f.Stdio == nil || f.Stdio.Env["TOKEN"] != "${env:FILES_TOKEN}" || !slices.Equal(f.Stdio.Command, []string{"mcp-files", "--root", "/srv"}) {
		t.Fatalf("stdio backend read back as %+v", f)
	}
	// The same document again is a no-op.
	if r2 := must(s.ApplyDocument(ctx, meta, doc, store.ApplyOptions{})); r2.Committed || len(r2.Changes) != 0 {
		t.Fatalf("re-apply: %+v", r2)
	}
	// A stale expected revision is refused; the right one passes, and
	// prune removes what the document omits.
	small := document.Document{Backends: doc.Backends[:1]}
	if _, err := s.ApplyDocument(ctx, meta, small, store.ApplyOptions{Prune: true, ExpectedRevision: r.Revision + 1}); !errors.Is(err, store.ErrStaleRevision) {
		t.Fatalf("stale apply: %v, want ErrStaleRevision", err)
	}
	pr := must(s.ApplyDocument(ctx, meta, small, store.ApplyOptions{Prune: true, ExpectedRevision: r.Revision}))
	if !pr.Committed || len(pr.Changes) != 4 {
		t.Fatalf("prune: %+v", pr)
	}
	cfg, _ = s.LoadConfig(ctx)
	if len(cfg.Backends) != 1 || cfg.Backends[0].Name != "github" || len(cfg.Roles) != 0 || len(cfg.Principals) != 0 {
		t.Fatalf("after prune: %+v", cfg)
	}
	// Edge-local sections are refused.
	if _, err := s.ApplyDocument(ctx, meta, document.Document{Principals: []policy.Principal{{Name: "x", APIKeySHA256: "ab"}}}, store.ApplyOptions{}); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("key hash in a document: %v, want ErrInvalid", err)
	}
}

func testCRUD(t *testing.T, s Store) {
	ctx := t.Context()
	must := mustOK(t)
	must(s.CreateBackend(ctx, meta, httpBackend("search", "http://127.0.0.1:9000/mcp"), store.WriteOptions{}))
	r := must(s.CreateRole(ctx, meta, policy.Role{Name: "dev", Description: "developers", Rules: []policy.Rule{{ID: "r1", Effect: "allow", Tools: []string{"search__*"}}, {Effect: "deny", Tools: []string{"search__drop"}}}}, store.WriteOptions{}))
	role, err := s.GetRole(ctx, "dev")
	if err != nil || role.Revision != r.Revision || role.Description != "developers" || len(role.Rules) != 2 || role.Rules[0].ID != "r1" || role.Rules[1].Effect != "deny" {
		t.Fatalf("GetRole: %+v, %v", role, err)
	}
	must(s.UpdateRole(ctx, meta, policy.Role{Name: "dev", Rules: []policy.Rule{{Effect: "allow", Tools: []string{"*"}}}}, store.WriteOptions{ExpectedRevision: r.Revision}))
	if role, _ = s.GetRole(ctx, "dev"); len(role.Rules) != 1 || role.Description != "" {
		t.Fatalf("role after update: %+v", role)
	}
	br := must(s.CreateBinding(ctx, meta, policy.Binding{Role: "dev", Subjects: []string{"user:bob", "group:eng"}}, store.WriteOptions{}))
	if b, err := s.GetBinding(ctx, "dev"); err != nil || !slices.Equal(b.Subjects, []string{"group:eng", "user:bob"}) || b.Revision != br.Revision {
		t.Fatalf("GetBinding: %+v, %v", b, err)
	}
	if _, err := s.CreateBinding(ctx, meta, policy.Binding{Role: "nope", Subjects: []string{"user:x"}}, store.WriteOptions{}); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("binding of an unknown role: %v, want ErrInvalid", err)
	}
	must(s.UpdateBinding(ctx, meta, policy.Binding{Role: "dev", Subjects: []string{"user:carol"}}, store.WriteOptions{}))
	must(s.CreatePrincipal(ctx, meta, policy.Principal{Name: "bob", Groups: []string{"eng"}}, store.WriteOptions{}))
	must(s.UpdatePrincipal(ctx, meta, policy.Principal{Name: "bob", Groups: []string{"eng", "ops"}}, store.WriteOptions{}))
	if p, err := s.GetPrincipal(ctx, "bob"); err != nil || !slices.Equal(p.Groups, []string{"eng", "ops"}) {
		t.Fatalf("GetPrincipal: %+v, %v", p, err)
	}

	if _, err := s.DeleteRole(ctx, meta, "dev", store.WriteOptions{}); !errors.Is(err, store.ErrInUse) {
		t.Fatalf("deleting a bound role: %v, want ErrInUse", err)
	}
	must(s.DeleteBinding(ctx, meta, "dev", store.WriteOptions{}))
	must(s.DeleteRole(ctx, meta, "dev", store.WriteOptions{}))
	must(s.DeleteBackend(ctx, meta, "search", store.WriteOptions{}))
	if _, _, err := s.DeletePrincipal(ctx, meta, "bob", store.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	for name, err := range map[string]error{
		"backend":   errOf(s.GetBackend(ctx, "search")),
		"role":      errOf(s.GetRole(ctx, "dev")),
		"binding":   errOf(s.GetBinding(ctx, "dev")),
		"principal": errOf(s.GetPrincipal(ctx, "bob")),
		"update":    errOf(s.UpdateBackend(ctx, meta, httpBackend("search", "http://x/mcp"), store.WriteOptions{})),
		"delete":    errOf(s.DeleteRole(ctx, meta, "dev", store.WriteOptions{})),
	} {
		if !errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s after delete: %v, want ErrNotFound", name, err)
		}
	}
	cfg, err := s.LoadConfig(ctx)
	if err != nil || len(cfg.Backends)+len(cfg.Roles)+len(cfg.Bindings)+len(cfg.Principals) != 0 {
		t.Fatalf("config after deleting everything: %+v, %v", cfg, err)
	}
}

func errOf[T any](_ T, err error) error { return err }

func testListPagination(t *testing.T, s Store) {
	ctx := t.Context()
	must := mustOK(t)
	names := []string{"b", "a", "c_1", "c-2", "d"}
	for _, n := range names {
		must(s.CreateBackend(ctx, meta, httpBackend(n, "http://127.0.0.1:9000/"+n), store.WriteOptions{}))
	}
	var got []string
	after := ""
	for range 10 {
		page, rev, err := s.ListBackends(ctx, after, 2)
		if err != nil || rev != int64(len(names)) && rev <= 0 {
			t.Fatalf("ListBackends: %v (rev %d)", err, rev)
		}
		if len(page) == 0 {
			break
		}
		for _, b := range page {
			got = append(got, b.Name)
		}
		after = page[len(page)-1].Name
	}
	// Byte order: '-' < '_'.
	if want := []string{"a", "b", "c-2", "c_1", "d"}; !slices.Equal(got, want) {
		t.Fatalf("paged names %v, want %v", got, want)
	}
	for _, p := range []string{"zed", "amy"} {
		must(s.CreatePrincipal(ctx, meta, policy.Principal{Name: p}, store.WriteOptions{}))
	}
	if ps, _, err := s.ListPrincipals(ctx, "amy", 0); err != nil || len(ps) != 1 || ps[0].Name != "zed" {
		t.Fatalf("ListPrincipals after amy: %+v, %v", ps, err)
	}
	if rs, _, err := s.ListRoles(ctx, "", 0); err != nil || len(rs) != 0 {
		t.Fatalf("ListRoles on none: %+v, %v", rs, err)
	}
	if bs, _, err := s.ListBindings(ctx, "", 0); err != nil || len(bs) != 0 {
		t.Fatalf("ListBindings on none: %+v, %v", bs, err)
	}
}
