package store_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mcpgw/mcpgw/controlplane/store"
	"github.com/mcpgw/mcpgw/internal/document"
	"github.com/mcpgw/mcpgw/internal/pgtest"
	"github.com/mcpgw/mcpgw/internal/policy"
)

var meta = store.Meta{Actor: "test", Operation: "Test"}

func newStore(t *testing.T) (*store.Store, *pgxpool.Pool) {
	t.Helper()
	pool := pgtest.NewPool(t, pgtest.NewDatabase(t))
	return store.New(pool), pool
}

func httpBackend(name, url string) document.Backend {
	return document.Backend{Name: name, HTTP: &document.HTTPTransport{URL: url}}
}

func mustWrite(t *testing.T) func(store.Result, error) store.Result {
	return func(r store.Result, err error) store.Result {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
}

func TestCRUDRevisionsAndChangeLog(t *testing.T) {
	ctx := t.Context()
	s, pool := newStore(t)
	must := mustWrite(t)

	r := must(s.CreateBackend(ctx, meta, httpBackend("search", "http://127.0.0.1:9000/mcp"), store.WriteOptions{}))
	if !r.Committed || r.Revision != 1 || r.BaseRevision != 0 || len(r.Changes) != 1 || r.Changes[0].Action != store.ActionCreate {
		t.Fatalf("create: %+v", r)
	}
	b, err := s.GetBackend(ctx, "search")
	if err != nil || b.Revision != 1 || b.HTTP == nil || b.HTTP.URL != "http://127.0.0.1:9000/mcp" {
		t.Fatalf("get after create: %+v, %v", b, err)
	}
	if _, err := s.CreateBackend(ctx, meta, httpBackend("search", "http://x/mcp"), store.WriteOptions{}); !errors.Is(err, store.ErrAlreadyExists) {
		t.Fatalf("second create: %v, want ErrAlreadyExists", err)
	}

	upd := httpBackend("search", "http://127.0.0.1:9001/mcp")
	upd.Timeout = document.Duration(90 * time.Second)
	r = must(s.UpdateBackend(ctx, meta, upd, store.WriteOptions{ExpectedRevision: 1}))
	if r.Revision != 2 || !r.Committed {
		t.Fatalf("update: %+v", r)
	}
	if d := r.Changes[0].Description(); !strings.Contains(d, "http.url") || !strings.Contains(d, "timeout: + \"1m30s\"") {
		t.Errorf("update description %q lacks the url and timeout lines", d)
	}
	// The same content again changes nothing and takes no revision.
	r = must(s.UpdateBackend(ctx, meta, upd, store.WriteOptions{}))
	if r.Committed || r.Revision != 2 || len(r.Changes) != 0 {
		t.Fatalf("no-op update: %+v", r)
	}

	must(s.CreateRole(ctx, meta, policy.Role{Name: "dev", Rules: []policy.Rule{{Effect: "allow", Tools: []string{"search__*"}}}}, store.WriteOptions{}))
	must(s.CreateBinding(ctx, meta, policy.Binding{Role: "dev", Subjects: []string{"user:bob", "group:eng"}}, store.WriteOptions{}))
	must(s.CreatePrincipal(ctx, meta, policy.Principal{Name: "bob", Groups: []string{"eng"}}, store.WriteOptions{}))
	if _, err := s.DeleteRole(ctx, meta, "dev", store.WriteOptions{}); !errors.Is(err, store.ErrInUse) {
		t.Fatalf("deleting a bound role: %v, want ErrInUse", err)
	}
	bind, err := s.GetBinding(ctx, "dev")
	if err != nil || strings.Join(bind.Subjects, ",") != "group:eng,user:bob" || bind.Revision != 4 {
		t.Fatalf("binding: %+v, %v", bind, err)
	}
	r = must(s.DeleteBackend(ctx, meta, "search", store.WriteOptions{ExpectedRevision: 2}))
	if r.Revision != 6 {
		t.Fatalf("delete: %+v", r)
	}
	if _, err := s.GetBackend(ctx, "search"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("get after delete: %v", err)
	}

	// One revision per change, each with its header and change rows.
	var head int64
	if err := pool.QueryRow(ctx, `SELECT revision FROM config_head`).Scan(&head); err != nil || head != 6 {
		t.Fatalf("config_head.revision = %d, %v; want 6", head, err)
	}
	revs, err := s.ListRevisions(ctx, 0, 0)
	if err != nil || len(revs) != 6 {
		t.Fatalf("ListRevisions: %d entries, %v", len(revs), err)
	}
	for i, rv := range revs {
		if rv.Revision != int64(6-i) || rv.Actor != "test" || rv.Operation != "Test" || len(rv.Changes) != 1 {
			t.Errorf("revision entry %d: %+v", i, rv)
		}
	}
	if c := revs[0].Changes[0]; c.Kind != store.KindBackend || c.Action != store.ActionDelete || c.Before == nil || c.After != nil {
		t.Errorf("delete change: %+v", c)
	}
	page, err := s.ListRevisions(ctx, 4, 2)
	if err != nil || len(page) != 2 || page[0].Revision != 3 || page[1].Revision != 2 {
		t.Errorf("ListRevisions(before 4, 2): %+v, %v", page, err)
	}
}

func TestStaleExpectedRevisionRefused(t *testing.T) {
	ctx := t.Context()
	s, _ := newStore(t)
	must := mustWrite(t)
	must(s.CreatePrincipal(ctx, meta, policy.Principal{Name: "alice"}, store.WriteOptions{}))
	must(s.CreatePrincipal(ctx, meta, policy.Principal{Name: "carol"}, store.WriteOptions{}))
	// alice is at revision 1 although the installation is at 2: unrelated
	// edits do not conflict.
	must(s.UpdatePrincipal(ctx, meta, policy.Principal{Name: "alice", Groups: []string{"eng"}}, store.WriteOptions{ExpectedRevision: 1}))

	_, err := s.UpdatePrincipal(ctx, meta, policy.Principal{Name: "alice", Groups: []string{"ops"}}, store.WriteOptions{ExpectedRevision: 1})
	var mm *store.RevisionMismatchError
	if !errors.Is(err, store.ErrStaleRevision) || !errors.As(err, &mm) || mm.Expected != 1 || mm.Actual != 3 {
		t.Fatalf("stale update: %v", err)
	}
	if !strings.Contains(err.Error(), `principal "alice" is at revision 3, not the expected 1`) {
		t.Errorf("message %q", err)
	}
	_, err = s.ApplyDocument(ctx, meta, document.Document{}, store.ApplyOptions{ExpectedRevision: 2})
	if !errors.Is(err, store.ErrStaleRevision) {
		t.Fatalf("stale apply: %v", err)
	}
	p, _ := s.GetPrincipal(ctx, "alice")
	if strings.Join(p.Groups, ",") != "eng" {
		t.Errorf("stale write changed alice: %+v", p)
	}
}

func sampleDoc() document.Document {
	empty := ""
	return document.Document{
		Backends: []document.Backend{
			{Name: "github", Stdio: &document.StdioTransport{Command: []string{"github-mcp-server", "stdio"},
				Env: map[string]string{"GITHUB_TOKEN": "${env:GITHUB_TOKEN}"}}, Timeout: document.Duration(120 * time.Second)},
			{Name: "search", HTTP: &document.HTTPTransport{URL: "http://127.0.0.1:9000/mcp", Headers: map[string]string{"X-Team": "core"}}, Prefix: &empty},
		},
		Roles: []policy.Role{
			{Name: "developer", Rules: []policy.Rule{
				{Effect: "allow", Tools: []string{"github__*"}, Prompts: []string{"*"}, Resources: []string{"*"}},
				{Effect: "deny", Tools: []string{"github__delete_*"}},
			}},
			{Name: "readonly", Rules: []policy.Rule{{Effect: "allow", Backends: []string{"search"}, Tools: []string{"*"}}}},
		},
		Bindings: []policy.Binding{
			{Role: "developer", Subjects: []string{"user:alice", "group:eng"}},
			{Role: "readonly", Subjects: []string{"user:bob"}},
			{Role: "developer", Subjects: []string{"user:zed"}},
		},
		Principals: []policy.Principal{{Name: "alice", Groups: []string{"eng"}}, {Name: "bob"}},
	}
}

func TestApplyDocument(t *testing.T) {
	ctx := t.Context()
	s, pool := newStore(t)
	doc := sampleDoc()

	dry, err := s.ApplyDocument(ctx, meta, doc, store.ApplyOptions{DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if dry.Committed || dry.Revision != 0 || len(dry.Changes) != 8 {
		t.Fatalf("dry run: %+v", dry)
	}
	if rev, _ := s.CurrentRevision(ctx); rev != 0 {
		t.Fatalf("dry run committed revision %d", rev)
	}
	var n int
	if err := pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM backends) + (SELECT count(*) FROM config_changes)`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("dry run left %d rows, %v", n, err)
	}

	res, err := s.ApplyDocument(ctx, meta, doc, store.ApplyOptions{ExpectedRevision: dry.BaseRevision})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Committed || res.Revision != 1 || len(res.Changes) != 8 {
		t.Fatalf("apply: %+v", res)
	}
	wantOrder := []string{"backend/github", "backend/search", "role/developer", "role/readonly", "binding/developer", "binding/readonly", "principal/alice", "principal/bob"}
	for i, c := range res.Changes {
		if got := string(c.Kind) + "/" + c.Name; got != wantOrder[i] {
			t.Errorf("change %d = %s, want %s", i, got, wantOrder[i])
		}
	}

	// Export → apply is a no-op, as is applying the same document again.
	cfg, err := s.LoadConfig(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []document.Document{doc, cfg.Document()} {
		again, err := s.ApplyDocument(ctx, meta, d, store.ApplyOptions{Prune: true})
		if err != nil {
			t.Fatal(err)
		}
		if again.Committed || again.Revision != 1 || len(again.Changes) != 0 {
			t.Fatalf("second apply: %+v (changes %+v)", again, again.Changes)
		}
	}
	if b, _ := cfg.Binding("developer"); strings.Join(b.Subjects, ",") != "group:eng,user:alice,user:zed" {
		t.Errorf("merged binding subjects %v", b.Subjects)
	}
	if b, _ := cfg.Backend("search"); b.Prefix == nil || *b.Prefix != "" {
		t.Errorf("empty prefix lost: %+v", b.Prefix)
	}

	// Without prune nothing is deleted; with prune what is omitted goes.
	small := document.Document{Backends: doc.Backends[:1]}
	res, err = s.ApplyDocument(ctx, meta, small, store.ApplyOptions{})
	if err != nil || res.Committed || len(res.Changes) != 0 {
		t.Fatalf("subset apply without prune: %+v, %v", res, err)
	}
	res, err = s.ApplyDocument(ctx, meta, small, store.ApplyOptions{Prune: true, DryRun: true})
	if err != nil || res.Committed || len(res.Changes) != 7 {
		t.Fatalf("prune dry run: %+v, %v", res, err)
	}
	for _, c := range res.Changes {
		if c.Action != store.ActionDelete {
			t.Errorf("prune change %+v", c)
		}
	}
}

func TestApplyInvalidListsEveryError(t *testing.T) {
	ctx := t.Context()
	s, _ := newStore(t)
	doc := document.Document{
		Backends: []document.Backend{{Name: "Bad Name", HTTP: &document.HTTPTransport{URL: "ftp://x"}}},
		Roles:    []policy.Role{{Name: "r", Rules: []policy.Rule{{Effect: "permit"}}}},
		Bindings: []policy.Binding{{Role: "missing", Subjects: []string{"alice"}}},
	}
	_, err := s.ApplyDocument(ctx, meta, doc, store.ApplyOptions{})
	var inv *store.InvalidConfigError
	if !errors.As(err, &inv) || !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("got %v, want an InvalidConfigError", err)
	}
	// Every problem at once, located: the backends by the store, the policy
	// by the edges' own compiler.
	var fields []string
	for _, f := range inv.Errors {
		fields = append(fields, f.String())
	}
	all := strings.Join(fields, "\n")
	for _, want := range []string{`backends[0] "Bad Name"`, "http.url", "rules[0].effect", `"missing"`, "subjects[0]"} {
		if !strings.Contains(all, want) {
			t.Errorf("errors lack %s:\n%s", want, all)
		}
	}
	if rev, _ := s.CurrentRevision(ctx); rev != 0 {
		t.Errorf("invalid apply committed revision %d", rev)
	}
	// Exposed-name prefixes must not collide: github__x would be ambiguous.
	gh := "github"
	_, err = s.ApplyDocument(ctx, meta, document.Document{Backends: []document.Backend{
		httpBackend("github", "http://127.0.0.1:1/mcp"), {Name: "gh2", Prefix: &gh, HTTP: &document.HTTPTransport{URL: "http://127.0.0.1:2/mcp"}}}}, store.ApplyOptions{})
	if !errors.As(err, &inv) || !strings.Contains(err.Error(), `uses prefix "github", already used by backend "gh2"`) {
		t.Errorf("colliding prefixes: %v", err)
	}
	_, err = s.ApplyDocument(ctx, meta, document.Document{Principals: []policy.Principal{{Name: "a", APIKeySHA256: strings.Repeat("0", 64)}}}, store.ApplyOptions{})
	if !errors.Is(err, store.ErrInvalid) || !strings.Contains(err.Error(), "api_key_sha256") {
		t.Errorf("key hash in a fleet document: %v", err)
	}
}

func TestConcurrentWritersTakeConsecutiveRevisions(t *testing.T) {
	ctx := t.Context()
	s, _ := newStore(t)
	const n = 8
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			_, err := s.CreatePrincipal(ctx, meta, policy.Principal{Name: "p" + strconv.Itoa(i)}, store.WriteOptions{})
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	revs, err := s.ListRevisions(ctx, 0, 0)
	if err != nil || len(revs) != n || revs[0].Revision != n || revs[n-1].Revision != 1 {
		t.Fatalf("revisions %d, %v", len(revs), err)
	}
}

func TestCommitNotifiesRevision(t *testing.T) {
	ctx := t.Context()
	s, pool := newStore(t)
	conn, err := pgx.ConnectConfig(ctx, pool.Config().ConnConfig.Copy())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "LISTEN "+store.NotifyChannel); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreatePrincipal(ctx, meta, policy.Principal{Name: "a"}, store.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	n, err := conn.WaitForNotification(wctx)
	if err != nil || n.Channel != "mcpgw_config" || n.Payload != "1" {
		t.Fatalf("notification %+v, %v", n, err)
	}
}

func TestAPIKeysStoreOnlyHashes(t *testing.T) {
	ctx := t.Context()
	s, pool := newStore(t)
	secret := "mcpgw_k1_s3cr3tvalue"
	k, res, created, err := s.CreateAPIKey(ctx, meta, store.NewAPIKey{ID: "k1", Principal: "alice", SHA256: store.HashSecret(secret), Description: "ci"})
	if err != nil {
		t.Fatal(err)
	}
	if !created || !res.Committed || res.Revision != 1 || len(res.Changes) != 2 || k.CreatedAt.IsZero() {
		t.Fatalf("create: %+v %+v %v", k, res, created)
	}
	if _, err := s.GetPrincipal(ctx, "alice"); err != nil {
		t.Fatalf("principal not auto-created: %v", err)
	}
	var row string
	if err := pool.QueryRow(ctx, `SELECT row_to_json(k)::text FROM api_keys k`).Scan(&row); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(row, "s3cr3t") || !strings.Contains(row, store.HashSecret(secret)) {
		t.Fatalf("api_keys row %s: want only the hash", row)
	}
	var log string
	if err := pool.QueryRow(ctx, `SELECT string_agg(coalesce(after::text, ''), ' ') FROM config_changes`).Scan(&log); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(log, store.HashSecret(secret)) || strings.Contains(log, "s3cr3t") {
		t.Fatalf("change log leaks key material: %s", log)
	}
	cfg, _ := s.LoadConfig(ctx)
	if len(cfg.APIKeys) != 1 || cfg.APIKeys[0].SHA256 != store.HashSecret(secret) || cfg.APIKeys[0].Principal != "alice" {
		t.Fatalf("config keys %+v", cfg.APIKeys)
	}

	_, res, created, err = s.CreateAPIKey(ctx, meta, store.NewAPIKey{ID: "k2", Principal: "alice", SHA256: store.HashSecret("x")})
	if err != nil || created || len(res.Changes) != 1 {
		t.Fatalf("second key: %+v %v %v", res, created, err)
	}
	rk, res, err := s.RevokeAPIKey(ctx, meta, "k1")
	if err != nil || rk.RevokedAt.IsZero() || !res.Committed {
		t.Fatalf("revoke: %+v %+v %v", rk, res, err)
	}
	_, res, err = s.RevokeAPIKey(ctx, meta, "k1")
	if err != nil || res.Committed {
		t.Fatalf("second revoke: %+v %v", res, err)
	}
	active, err := s.ListAPIKeys(ctx, "", false, nil, 0)
	if err != nil || len(active) != 1 || active[0].ID != "k2" {
		t.Fatalf("active keys %+v %v", active, err)
	}
	all, err := s.ListAPIKeys(ctx, "alice", true, nil, 1)
	if err != nil || len(all) != 1 || all[0].ID != "k2" {
		t.Fatalf("first page %+v %v", all, err)
	}
	next, err := s.ListAPIKeys(ctx, "alice", true, &store.KeyCursor{CreatedAt: all[0].CreatedAt, ID: all[0].ID}, 1)
	if err != nil || len(next) != 1 || next[0].ID != "k1" {
		t.Fatalf("second page %+v %v", next, err)
	}

	// Prune never removes a principal that holds keys.
	res, err = s.ApplyDocument(ctx, meta, document.Document{}, store.ApplyOptions{Prune: true})
	if err != nil || res.Committed {
		t.Fatalf("prune with keys: %+v %v", res, err)
	}
	res, revoked, err := s.DeletePrincipal(ctx, meta, "alice", store.WriteOptions{})
	if err != nil || strings.Join(revoked, ",") != "k2" || len(res.Changes) != 3 {
		t.Fatalf("delete principal: %+v %v %v", res, revoked, err)
	}
	cfg, _ = s.LoadConfig(ctx)
	if len(cfg.APIKeys) != 0 {
		t.Fatalf("keys survive their principal: %+v", cfg.APIKeys)
	}
}

func TestAdminTokens(t *testing.T) {
	ctx := t.Context()
	s, _ := newStore(t)
	if ok, err := s.HasActiveAdminToken(ctx); err != nil || ok {
		t.Fatalf("fresh database has admin token: %v %v", ok, err)
	}
	first, err := s.EnsureBootstrapAdminToken(ctx, store.HashSecret("a"), false)
	if err != nil || !first {
		t.Fatalf("first bootstrap: %v %v", first, err)
	}
	second, err := s.EnsureBootstrapAdminToken(ctx, store.HashSecret("b"), false)
	if err != nil || second {
		t.Fatalf("second generated bootstrap must lose: %v %v", second, err)
	}
	if _, err := s.AuthenticateAdmin(ctx, store.HashSecret("b")); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("losing token authenticates: %v", err)
	}
	tok, err := s.AuthenticateAdmin(ctx, store.HashSecret("a"))
	if err != nil || tok.ID != store.BootstrapAdminTokenID {
		t.Fatalf("auth: %+v %v", tok, err)
	}
	if ok, err := s.EnsureBootstrapAdminToken(ctx, store.HashSecret("c"), true); err != nil || !ok {
		t.Fatalf("replace: %v %v", ok, err)
	}
	if _, err := s.AuthenticateAdmin(ctx, store.HashSecret("a")); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("replaced token still works: %v", err)
	}
}

func TestJoinTokensSingleUseAndExpiring(t *testing.T) {
	ctx := t.Context()
	s, pool := newStore(t)
	nodes := store.NewNodeStore(pool)
	enroll := func(secret string) error {
		_, err := nodes.EnrollNode(ctx, store.EnrollParams{JoinTokenSHA256: store.HashSecret(secret), ID: uuid.New(),
			CertSerial: "01", CertFingerprint: store.HashSecret(uuid.NewString()), CertNotAfter: time.Now().Add(time.Hour)})
		return err
	}
	mk := func(id string, ttl time.Duration) {
		t.Helper()
		if _, err := s.CreateJoinToken(ctx, store.NewJoinToken{ID: id, SHA256: store.HashSecret("tok-" + id),
			Labels: map[string]string{"zone": "a"}, ExpiresAt: time.Now().Add(ttl)}); err != nil {
			t.Fatal(err)
		}
	}
	mk("once", time.Hour)
	mk("old", -time.Second)
	mk("revoked", time.Hour)

	if err := enroll("tok-once"); err != nil {
		t.Fatalf("first use: %v", err)
	}
	if err := enroll("tok-once"); !errors.Is(err, store.ErrJoinTokenRefused) {
		t.Fatalf("second use: %v", err)
	}
	if err := enroll("tok-old"); !errors.Is(err, store.ErrJoinTokenRefused) {
		t.Fatalf("expired: %v", err)
	}
	if _, err := s.RevokeJoinToken(ctx, "revoked"); err != nil {
		t.Fatal(err)
	}
	if err := enroll("tok-revoked"); !errors.Is(err, store.ErrJoinTokenRefused) {
		t.Fatalf("revoked: %v", err)
	}
	if _, err := s.RevokeJoinToken(ctx, "once"); !errors.Is(err, store.ErrJoinTokenUsed) {
		t.Fatalf("revoking a used token: %v", err)
	}
	active, err := s.ListJoinTokens(ctx, false, nil, 0)
	if err != nil || len(active) != 0 {
		t.Fatalf("active tokens %+v %v", active, err)
	}
	all, err := s.ListJoinTokens(ctx, true, nil, 0)
	if err != nil || len(all) != 3 {
		t.Fatalf("all tokens %+v %v", all, err)
	}
	for _, tok := range all {
		if tok.ID == "once" && (tok.UsedAt.IsZero() || tok.UsedBy == uuid.Nil || tok.NodeGroup != "default") {
			t.Errorf("used token %+v", tok)
		}
	}

	ns, _, err := s.ListNodes(ctx, store.NodeFilter{})
	if err != nil || len(ns) != 1 || ns[0].Labels["zone"] != "a" {
		t.Fatalf("nodes %+v %v", ns, err)
	}
	if _, err := s.RevokeNode(ctx, ns[0].ID); err != nil {
		t.Fatal(err)
	}
	if ns, _, _ := s.ListNodes(ctx, store.NodeFilter{}); len(ns) != 0 {
		t.Errorf("revoked node listed without IncludeRevoked")
	}
	if _, err := s.RevokeNode(ctx, uuid.New()); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("revoking an unknown node: %v", err)
	}
}

// Lists page in byte order (COLLATE "C"), the order Go sorts in, whatever
// the database's collation: Config lookups binary-search that order.
func TestListsPageInByteOrder(t *testing.T) {
	ctx := t.Context()
	s, pool := newStore(t)
	// Give the column a linguistic collation (ICU ships with Postgres), so
	// ordering by the column's own collation would put "alice" before "Zed"
	// and this test would catch a missing COLLATE "C".
	if _, err := pool.Exec(ctx, `ALTER TABLE principals ALTER COLUMN name TYPE text COLLATE "und-x-icu"`); err != nil {
		t.Fatalf("giving principals.name a linguistic collation: %v", err)
	}
	names := []string{"bob", "Zed", "alice", "9lives", "Bob.x"}
	var doc document.Document
	for _, n := range names {
		doc.Principals = append(doc.Principals, policy.Principal{Name: n})
	}
	if _, err := s.ApplyDocument(ctx, meta, doc, store.ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	var got []string
	after := ""
	for {
		page, rev, err := s.ListPrincipals(ctx, after, 2)
		if err != nil || rev != 1 {
			t.Fatalf("page after %q: %v (revision %d)", after, err, rev)
		}
		for _, p := range page {
			got = append(got, p.Name)
		}
		if len(page) < 2 {
			break
		}
		after = page[len(page)-1].Name
	}
	want := []string{"9lives", "Bob.x", "Zed", "alice", "bob"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("paged order %v, want %v", got, want)
	}
	cfg, err := s.LoadConfig(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if _, ok := cfg.Principal(n); !ok {
			t.Errorf("Config.Principal(%q) not found", n)
		}
	}
}

// Diff descriptions never show header or env values (a credential pasted
// inline would otherwise end up in every dry run), except ${env:NAME}
// references, which are names.
func TestDescriptionsHideValues(t *testing.T) {
	ctx := t.Context()
	s, _ := newStore(t)
	b := document.Backend{Name: "api", HTTP: &document.HTTPTransport{URL: "https://api.example/mcp",
		Headers: map[string]string{"Authorization": "Bearer sekrit-123", "X-Token": "${env:API_TOKEN}"}}}
	res, err := s.ApplyDocument(ctx, meta, document.Document{Backends: []document.Backend{b}}, store.ApplyOptions{DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	d := res.Changes[0].Description()
	if strings.Contains(d, "sekrit") || !strings.Contains(d, "http.headers.Authorization: + (value hidden)") || !strings.Contains(d, `"${env:API_TOKEN}"`) {
		t.Fatalf("description:\n%s", d)
	}
}
