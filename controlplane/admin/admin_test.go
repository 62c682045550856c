package admin_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/mcpgw/mcpgw/controlplane/admin"
	"github.com/mcpgw/mcpgw/controlplane/pki"
	"github.com/mcpgw/mcpgw/controlplane/store"
	mcpgwv1 "github.com/mcpgw/mcpgw/gen/mcpgw/v1"
	"github.com/mcpgw/mcpgw/internal/auditdb"
	"github.com/mcpgw/mcpgw/internal/pgtest"
)

const adminToken = "mcpgwadm_test_0123456789abcdef0123456789abcdef"

// logBuffer collects the server's logs, written from its goroutines.
type logBuffer struct {
	mu sync.Mutex // guards b
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

type env struct {
	logs   *logBuffer
	pool   *pgxpool.Pool
	st     *store.Store
	ca     *pki.CA
	addr   string
	client mcpgwv1.AdminServiceClient
}

// bearer sends an admin token; it insists on TLS like production clients.
type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}
func (bearer) RequireTransportSecurity() bool { return true }

// newEnv starts a real AdminService over TLS on loopback, backed by a fresh
// Postgres database and a real installation CA.
func newEnv(t *testing.T) *env {
	t.Helper()
	ctx := t.Context()
	pool := pgtest.NewPool(t, pgtest.NewDatabase(t))
	st := store.New(pool)
	kek, _, _, err := pki.LoadKEK("", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ca, _, err := pki.Init(ctx, st, kek)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.EnsureBootstrapAdminToken(ctx, store.HashSecret(adminToken), true); err != nil {
		t.Fatal(err)
	}
	certs, err := pki.NewServerCerts(ca, []string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	tlsCfg := &tls.Config{GetCertificate: certs.GetCertificate, ClientAuth: tls.VerifyClientCertIfGiven, ClientCAs: ca.Pool(), MinVersion: tls.VersionTLS12}
	logs := &logBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	opts := append([]grpc.ServerOption{grpc.Creds(credentials.NewTLS(tlsCfg))}, admin.Interceptors(admin.NewAuthenticator(st), log)...)
	srv := grpc.NewServer(opts...)
	admin.New(admin.Options{Store: st, Audit: auditdb.New(pool, auditdb.Options{}), Replica: "test-replica", Logger: log, RolloutPoll: 20 * time.Millisecond}).Register(srv)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Stop()
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	e := &env{logs: logs, pool: pool, st: st, ca: ca, addr: ln.Addr().String()}
	e.client = e.dial(t, grpc.WithPerRPCCredentials(bearer(adminToken)))
	return e
}

func (e *env) dial(t *testing.T, opts ...grpc.DialOption) mcpgwv1.AdminServiceClient {
	return e.dialTLS(t, &tls.Config{RootCAs: e.ca.Pool(), ServerName: "127.0.0.1"}, opts...)
}

func (e *env) dialTLS(t *testing.T, cfg *tls.Config, opts ...grpc.DialOption) mcpgwv1.AdminServiceClient {
	t.Helper()
	conn, err := grpc.NewClient(e.addr, append([]grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(cfg))}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return mcpgwv1.NewAdminServiceClient(conn)
}

func wantCode(t *testing.T, err error, code codes.Code, what string) {
	t.Helper()
	if status.Code(err) != code {
		t.Fatalf("%s: got %v, want %s", what, err, code)
	}
}

func TestAuthentication(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	for name, c := range map[string]mcpgwv1.AdminServiceClient{
		"no token":      e.dial(t),
		"wrong token":   e.dial(t, grpc.WithPerRPCCredentials(bearer("mcpgwadm_wrong"))),
		"api key shape": e.dial(t, grpc.WithPerRPCCredentials(bearer("mcpgw_abc_0123456789abcdef0123"))),
	} {
		_, err := c.GetServerInfo(ctx, &mcpgwv1.GetServerInfoRequest{})
		wantCode(t, err, codes.Unauthenticated, name)
		if !strings.Contains(status.Convert(err).Message(), "Bearer mcpgwadm_") {
			t.Errorf("%s: message %q does not say what to send", name, status.Convert(err).Message())
		}
		_, err = c.ApplyPolicy(ctx, &mcpgwv1.ApplyPolicyRequest{Document: &mcpgwv1.PolicyDocument{}})
		wantCode(t, err, codes.Unauthenticated, name+" (write)")
		stream, err := c.WatchRollout(ctx, &mcpgwv1.WatchRolloutRequest{})
		if err == nil {
			_, err = stream.Recv()
		}
		wantCode(t, err, codes.Unauthenticated, name+" (stream)")
	}

	info, err := e.client.GetServerInfo(ctx, &mcpgwv1.GetServerInfoRequest{})
	if err != nil || info.GetReplica() != "test-replica" || info.GetVersion() == "" {
		t.Fatalf("with the token: %v %v", info, err)
	}
	// Refusals are logged with where they came from, never with what was
	// presented; successful calls carry the actor.
	logs := e.logs.String()
	if !strings.Contains(logs, "admin call refused") || !strings.Contains(logs, `"actor":"admin-token:bootstrap"`) {
		t.Errorf("logs lack the refusal or the actor:\n%s", logs)
	}
	if strings.Contains(logs, "mcpgwadm_wrong") || strings.Contains(logs, adminToken) {
		t.Errorf("logs contain a token:\n%s", logs)
	}

	// A client certificate from the installation CA naming an administrator
	// works without a token; a node certificate does not.
	adm, err := e.ca.AdminCertificate("ops", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c := e.dialTLS(t, &tls.Config{RootCAs: e.ca.Pool(), ServerName: "127.0.0.1", Certificates: []tls.Certificate{*adm}})
	if _, err := c.ApplyPolicy(ctx, &mcpgwv1.ApplyPolicyRequest{Document: &mcpgwv1.PolicyDocument{
		Principals: []*mcpgwv1.Principal{{Name: "viacert"}}}}); err != nil {
		t.Fatalf("admin cert: %v", err)
	}
	rev, err := e.client.GetRevision(ctx, &mcpgwv1.GetRevisionRequest{Revision: 1})
	if err != nil || rev.GetRevision().GetActor() != "admin-cert:ops" || rev.GetRevision().GetOperation() != "ApplyPolicy" {
		t.Fatalf("actor of a cert-authenticated change: %v %v", rev, err)
	}
}

func httpBackend(name, url string) *mcpgwv1.Backend {
	return &mcpgwv1.Backend{Name: name, Transport: &mcpgwv1.Backend_Http{Http: &mcpgwv1.HttpTransport{Url: url}}}
}

func TestCRUD(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	c := e.client

	cb, err := c.CreateBackend(ctx, &mcpgwv1.CreateBackendRequest{Backend: httpBackend("search", "http://127.0.0.1:9000/mcp")})
	if err != nil || cb.GetRevision() != 1 || cb.GetBackend().GetRevision() != 1 {
		t.Fatalf("create backend: %v %v", cb, err)
	}
	_, err = c.CreateBackend(ctx, &mcpgwv1.CreateBackendRequest{Backend: httpBackend("search", "http://127.0.0.1:9000/mcp")})
	wantCode(t, err, codes.AlreadyExists, "duplicate backend")
	dry, err := c.CreateBackend(ctx, &mcpgwv1.CreateBackendRequest{Backend: httpBackend("other", "http://127.0.0.1:9001/mcp"), DryRun: true})
	if err != nil || dry.GetRevision() != 1 {
		t.Fatalf("dry-run create: %v %v", dry, err)
	}
	if _, err := c.GetBackend(ctx, &mcpgwv1.GetBackendRequest{Name: "other"}); status.Code(err) != codes.NotFound {
		t.Fatalf("dry run created a backend: %v", err)
	}
	_, err = c.CreateBackend(ctx, &mcpgwv1.CreateBackendRequest{Backend: &mcpgwv1.Backend{Name: "notransport"}})
	wantCode(t, err, codes.InvalidArgument, "backend without transport")
	_, err = c.GetBackend(ctx, &mcpgwv1.GetBackendRequest{})
	wantCode(t, err, codes.InvalidArgument, "get without a name")

	ub, err := c.UpdateBackend(ctx, &mcpgwv1.UpdateBackendRequest{Backend: httpBackend("search", "http://127.0.0.1:9002/mcp"), ExpectedRevision: 1})
	if err != nil || ub.GetRevision() != 2 || ub.GetBackend().GetHttp().GetUrl() != "http://127.0.0.1:9002/mcp" {
		t.Fatalf("update: %v %v", ub, err)
	}
	_, err = c.UpdateBackend(ctx, &mcpgwv1.UpdateBackendRequest{Backend: httpBackend("search", "http://127.0.0.1:9003/mcp"), ExpectedRevision: 1})
	wantCode(t, err, codes.Aborted, "stale update")
	if msg := status.Convert(err).Message(); !strings.Contains(msg, "revision 2, not the expected 1") {
		t.Errorf("stale message %q", msg)
	}

	role := &mcpgwv1.Role{Name: "dev", Rules: []*mcpgwv1.Rule{{Effect: "allow", Tools: []string{"search__*"}}, {Id: "no-drop", Effect: "deny", Tools: []string{"search__drop*"}}}}
	if _, err := c.CreateRole(ctx, &mcpgwv1.CreateRoleRequest{Role: role}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateBinding(ctx, &mcpgwv1.CreateBindingRequest{Binding: &mcpgwv1.RoleBinding{Role: "dev", Subjects: []string{"user:alice"}}}); err != nil {
		t.Fatal(err)
	}
	_, err = c.CreateBinding(ctx, &mcpgwv1.CreateBindingRequest{Binding: &mcpgwv1.RoleBinding{Role: "ghost", Subjects: []string{"user:alice"}}})
	wantCode(t, err, codes.InvalidArgument, "binding of a missing role")
	_, err = c.DeleteRole(ctx, &mcpgwv1.DeleteRoleRequest{Name: "dev"})
	wantCode(t, err, codes.FailedPrecondition, "deleting a bound role")
	for _, name := range []string{"alice", "bob", "carol"} {
		if _, err := c.CreatePrincipal(ctx, &mcpgwv1.CreatePrincipalRequest{Principal: &mcpgwv1.Principal{Name: name, Groups: []string{"eng"}}}); err != nil {
			t.Fatal(err)
		}
	}
	gr, err := c.GetRole(ctx, &mcpgwv1.GetRoleRequest{Name: "dev"})
	if err != nil || len(gr.GetRole().GetRules()) != 2 || gr.GetRole().GetRules()[1].GetId() != "no-drop" || gr.GetRole().GetRevision() != 3 {
		t.Fatalf("get role: %v %v", gr, err)
	}

	// Paging: one at a time through the principals, in name order.
	var names []string
	tok := ""
	for {
		lp, err := c.ListPrincipals(ctx, &mcpgwv1.ListPrincipalsRequest{PageSize: 1, PageToken: tok})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range lp.GetPrincipals() {
			names = append(names, p.GetName())
		}
		if lp.GetRevision() != 7 {
			t.Errorf("list revision %d, want 7", lp.GetRevision())
		}
		if tok = lp.GetNextPageToken(); tok == "" {
			break
		}
	}
	if strings.Join(names, ",") != "alice,bob,carol" {
		t.Fatalf("paged principals %v", names)
	}
	_, err = c.ListRoles(ctx, &mcpgwv1.ListRolesRequest{PageToken: "garbage!"})
	wantCode(t, err, codes.InvalidArgument, "bad page token")

	up, err := c.UpdatePrincipal(ctx, &mcpgwv1.UpdatePrincipalRequest{Principal: &mcpgwv1.Principal{Name: "bob", Groups: []string{"ops"}}, ExpectedRevision: 6})
	if err != nil || up.GetRevision() != 8 || up.GetPrincipal().GetGroups()[0] != "ops" {
		t.Fatalf("update principal: %v %v", up, err)
	}
	if _, err := c.DeleteBinding(ctx, &mcpgwv1.DeleteBindingRequest{Role: "dev", ExpectedRevision: 4}); err != nil {
		t.Fatal(err)
	}
	if d, err := c.DeleteRole(ctx, &mcpgwv1.DeleteRoleRequest{Name: "dev"}); err != nil || d.GetRevision() != 10 {
		t.Fatalf("delete role: %v %v", d, err)
	}
	if d, err := c.DeleteBackend(ctx, &mcpgwv1.DeleteBackendRequest{Name: "search", ExpectedRevision: 2}); err != nil || d.GetRevision() != 11 {
		t.Fatalf("delete backend: %v %v", d, err)
	}
	_, err = c.DeletePrincipal(ctx, &mcpgwv1.DeletePrincipalRequest{Name: "nobody"})
	wantCode(t, err, codes.NotFound, "delete missing principal")

	lr, err := c.ListRevisions(ctx, &mcpgwv1.ListRevisionsRequest{PageSize: 3})
	if err != nil || len(lr.GetRevisions()) != 3 || lr.GetRevisions()[0].GetRevision() != 11 || lr.GetNextPageToken() == "" {
		t.Fatalf("list revisions: %v %v", lr, err)
	}
	r0 := lr.GetRevisions()[0]
	if r0.GetActor() != "admin-token:bootstrap" || r0.GetOperation() != "DeleteBackend" ||
		r0.GetChanges()[0].GetAction() != mcpgwv1.ChangeAction_CHANGE_ACTION_DELETE || r0.GetChanges()[0].GetKind() != mcpgwv1.ResourceKind_RESOURCE_KIND_BACKEND {
		t.Errorf("newest revision %v", r0)
	}
	lr2, err := c.ListRevisions(ctx, &mcpgwv1.ListRevisionsRequest{PageSize: 3, PageToken: lr.GetNextPageToken()})
	if err != nil || lr2.GetRevisions()[0].GetRevision() != 8 {
		t.Fatalf("second page of revisions: %v %v", lr2, err)
	}
}

func sampleDoc() *mcpgwv1.PolicyDocument {
	empty := ""
	return &mcpgwv1.PolicyDocument{
		Backends: []*mcpgwv1.Backend{
			{Name: "github", Transport: &mcpgwv1.Backend_Stdio{Stdio: &mcpgwv1.StdioTransport{Command: []string{"github-mcp-server", "stdio"},
				Env: map[string]string{"GITHUB_TOKEN": "${env:GITHUB_TOKEN}"}}}, Timeout: durationpb.New(2 * time.Minute)},
			{Name: "search", Prefix: &empty, Transport: &mcpgwv1.Backend_Http{Http: &mcpgwv1.HttpTransport{Url: "http://127.0.0.1:9000/mcp"}}},
		},
		Roles: []*mcpgwv1.Role{
			{Name: "developer", Rules: []*mcpgwv1.Rule{
				{Effect: "allow", Tools: []string{"github__*"}},
				{Id: "no-delete", Effect: "deny", Tools: []string{"github__delete_*"}},
			}},
		},
		Bindings:   []*mcpgwv1.RoleBinding{{Role: "developer", Subjects: []string{"user:alice", "group:eng"}}},
		Principals: []*mcpgwv1.Principal{{Name: "alice"}, {Name: "bob", Groups: []string{"eng"}}},
	}
}

func TestApplyPolicy(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	c := e.client

	dry, err := c.ApplyPolicy(ctx, &mcpgwv1.ApplyPolicyRequest{Document: sampleDoc(), DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if dry.GetCommitted() || dry.GetRevision() != 0 || len(dry.GetChanges()) != 6 {
		t.Fatalf("dry run: %v", dry)
	}
	if d := dry.GetChanges()[0].GetDescription(); !strings.Contains(d, `stdio.command[0]: + "github-mcp-server"`) {
		t.Errorf("diff line for github: %q", d)
	}
	if info, _ := c.GetServerInfo(ctx, &mcpgwv1.GetServerInfoRequest{}); info.GetRevision() != 0 {
		t.Fatalf("dry run committed: revision %d", info.GetRevision())
	}

	res, err := c.ApplyPolicy(ctx, &mcpgwv1.ApplyPolicyRequest{Document: sampleDoc(), ExpectedRevision: dry.GetBaseRevision()})
	if err != nil || !res.GetCommitted() || res.GetRevision() != 1 || len(res.GetChanges()) != 6 {
		t.Fatalf("apply: %v %v", res, err)
	}
	again, err := c.ApplyPolicy(ctx, &mcpgwv1.ApplyPolicyRequest{Document: sampleDoc()})
	if err != nil || again.GetCommitted() || again.GetRevision() != 1 || len(again.GetChanges()) != 0 {
		t.Fatalf("second apply: %v %v", again, err)
	}
	// Export → apply (with prune) is a no-op.
	got, err := c.GetPolicy(ctx, &mcpgwv1.GetPolicyRequest{})
	if err != nil || got.GetRevision() != 1 || len(got.GetDocument().GetBackends()) != 2 || got.GetDocument().GetBackends()[0].GetRevision() != 1 {
		t.Fatalf("get policy: %v %v", got, err)
	}
	exp, err := c.ApplyPolicy(ctx, &mcpgwv1.ApplyPolicyRequest{Document: got.GetDocument(), Prune: true})
	if err != nil || exp.GetCommitted() || len(exp.GetChanges()) != 0 {
		t.Fatalf("export → apply: %v %v", exp, err)
	}
	_, err = c.ApplyPolicy(ctx, &mcpgwv1.ApplyPolicyRequest{Document: sampleDoc(), ExpectedRevision: 7})
	wantCode(t, err, codes.Aborted, "stale apply")

	// A bad document: InvalidArgument listing every problem, nothing stored.
	bad := sampleDoc()
	bad.Roles[0].Rules[0].Effect = "maybe"
	bad.Bindings = append(bad.Bindings, &mcpgwv1.RoleBinding{Role: "nope", Subjects: []string{"user:x"}})
	bad.Backends[1].Transport = &mcpgwv1.Backend_Http{Http: &mcpgwv1.HttpTransport{Url: "not a url"}}
	_, err = c.ApplyPolicy(ctx, &mcpgwv1.ApplyPolicyRequest{Document: bad})
	wantCode(t, err, codes.InvalidArgument, "invalid policy")
	st := status.Convert(err)
	var fields []string
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.GetFieldViolations() {
				fields = append(fields, v.GetField()+": "+v.GetDescription())
			}
		}
	}
	all := strings.Join(fields, "\n")
	if len(fields) < 3 || !strings.Contains(all, "effect") || !strings.Contains(all, `"nope"`) || !strings.Contains(all, "http.url") {
		t.Fatalf("field violations:\n%s\nmessage: %s", all, st.Message())
	}
	if !strings.Contains(st.Message(), "effect") || !strings.Contains(st.Message(), "http.url") {
		t.Errorf("message does not list the errors: %s", st.Message())
	}
	if info, _ := c.GetServerInfo(ctx, &mcpgwv1.GetServerInfoRequest{}); info.GetRevision() != 1 {
		t.Fatalf("invalid apply committed: revision %d", info.GetRevision())
	}

	// Prune removes what the document omits, in one revision.
	small := &mcpgwv1.PolicyDocument{Backends: sampleDoc().Backends[:1]}
	pr, err := c.ApplyPolicy(ctx, &mcpgwv1.ApplyPolicyRequest{Document: small, Prune: true})
	if err != nil || pr.GetRevision() != 2 || len(pr.GetChanges()) != 5 {
		t.Fatalf("prune: %v %v", pr, err)
	}
	rv, err := c.GetRevision(ctx, &mcpgwv1.GetRevisionRequest{Revision: 2})
	if err != nil || len(rv.GetRevision().GetChanges()) != 5 || rv.GetRevision().GetOperation() != "ApplyPolicy" {
		t.Fatalf("revision 2: %v %v", rv, err)
	}
	_, err = c.GetRevision(ctx, &mcpgwv1.GetRevisionRequest{Revision: 99})
	wantCode(t, err, codes.NotFound, "missing revision")
}

func TestCheck(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	c := e.client
	if _, err := c.ApplyPolicy(ctx, &mcpgwv1.ApplyPolicyRequest{Document: sampleDoc()}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		principal, name, decision, rule string
	}{
		{"alice", "github__create_issue", "allow", "developer/0"},
		{"alice", "github__delete_repo", "deny", "no-delete"},
		{"bob", "github__create_issue", "allow", "developer/0"}, // via group:eng
	} {
		r, err := c.Check(ctx, &mcpgwv1.CheckRequest{Principal: tc.principal, Method: "tools/call", Name: tc.name})
		if err != nil {
			t.Fatal(err)
		}
		if r.GetDecision() != tc.decision || r.GetRule() != tc.rule || r.GetRevision() != 1 || r.GetBackend() != "github" || len(r.GetExplanation()) == 0 {
			t.Errorf("check %s %s: %v", tc.principal, tc.name, r)
		}
	}
	_, err := c.Check(ctx, &mcpgwv1.CheckRequest{Principal: "mallory", Method: "tools/call", Name: "github__x"})
	wantCode(t, err, codes.NotFound, "unknown principal")
	_, err = c.Check(ctx, &mcpgwv1.CheckRequest{Principal: "alice", Method: "tools/call", ArgumentsJson: "[1]"})
	wantCode(t, err, codes.InvalidArgument, "arguments not an object")
}

var keyShape = regexp.MustCompile(`^mcpgw_([a-z0-9]+)_[A-Za-z0-9_-]{43}$`)

func TestAPIKeys(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	c := e.client
	r, err := c.CreateApiKey(ctx, &mcpgwv1.CreateApiKeyRequest{Principal: "ci-bot", Description: "CI", Ttl: durationpb.New(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	m := keyShape.FindStringSubmatch(r.GetKey())
	if m == nil || m[1] != r.GetApiKey().GetId() || !r.GetPrincipalCreated() || r.GetRevision() != 1 || r.GetApiKey().GetExpireTime() == nil {
		t.Fatalf("create: %v", r)
	}
	// Only the hash is stored, nowhere the secret.
	var dump string
	if err := e.pool.QueryRow(ctx, `SELECT (SELECT string_agg(row_to_json(k)::text, '') FROM api_keys k) ||
		(SELECT string_agg(coalesce(after::text, ''), '') FROM config_changes)`).Scan(&dump); err != nil {
		t.Fatal(err)
	}
	secret := strings.TrimPrefix(r.GetKey(), "mcpgw_"+m[1]+"_")
	if strings.Contains(dump, secret) || !strings.Contains(dump, store.HashSecret(r.GetKey())) {
		t.Fatalf("stored key material: %s", dump)
	}
	g, err := c.GetApiKey(ctx, &mcpgwv1.GetApiKeyRequest{Id: r.GetApiKey().GetId()})
	if err != nil || g.GetApiKey().GetPrincipal() != "ci-bot" || strings.Contains(g.String(), secret) {
		t.Fatalf("get key: %v %v", g, err)
	}
	r2, err := c.CreateApiKey(ctx, &mcpgwv1.CreateApiKeyRequest{Principal: "ci-bot"})
	if err != nil || r2.GetPrincipalCreated() || r2.GetKey() == r.GetKey() {
		t.Fatalf("second key: %v %v", r2, err)
	}
	l, err := c.ListApiKeys(ctx, &mcpgwv1.ListApiKeysRequest{PageSize: 1})
	if err != nil || len(l.GetApiKeys()) != 1 || l.GetApiKeys()[0].GetId() != r2.GetApiKey().GetId() || l.GetNextPageToken() == "" {
		t.Fatalf("list keys (newest first): %v %v", l, err)
	}
	l2, err := c.ListApiKeys(ctx, &mcpgwv1.ListApiKeysRequest{PageSize: 1, PageToken: l.GetNextPageToken()})
	if err != nil || len(l2.GetApiKeys()) != 1 || l2.GetApiKeys()[0].GetId() != r.GetApiKey().GetId() {
		t.Fatalf("second page of keys: %v %v", l2, err)
	}
	rv, err := c.RevokeApiKey(ctx, &mcpgwv1.RevokeApiKeyRequest{Id: r.GetApiKey().GetId()})
	if err != nil || rv.GetApiKey().GetRevokeTime() == nil || rv.GetRevision() != 3 {
		t.Fatalf("revoke: %v %v", rv, err)
	}
	rv, err = c.RevokeApiKey(ctx, &mcpgwv1.RevokeApiKeyRequest{Id: r.GetApiKey().GetId()})
	if err != nil || rv.GetRevision() != 3 {
		t.Fatalf("second revoke must be a no-op: %v %v", rv, err)
	}
	cfg, err := e.st.LoadConfig(ctx)
	if err != nil || len(cfg.APIKeys) != 1 || cfg.APIKeys[0].KeyID != r2.GetApiKey().GetId() {
		t.Fatalf("key hashes for edges: %+v %v", cfg.APIKeys, err)
	}
	_, err = c.CreateApiKey(ctx, &mcpgwv1.CreateApiKeyRequest{Principal: "x", Ttl: durationpb.New(-time.Second)})
	wantCode(t, err, codes.InvalidArgument, "negative ttl")
	if logs := e.logs.String(); strings.Contains(logs, secret) || strings.Contains(logs, store.HashSecret(r.GetKey())) {
		t.Errorf("logs contain key material:\n%s", logs)
	}
	dp, err := c.DeletePrincipal(ctx, &mcpgwv1.DeletePrincipalRequest{Name: "ci-bot"})
	if err != nil || len(dp.GetRevokedApiKeyIds()) != 1 || dp.GetRevokedApiKeyIds()[0] != r2.GetApiKey().GetId() {
		t.Fatalf("delete principal: %v %v", dp, err)
	}
}

func TestJoinTokensAndNodes(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	c := e.client
	jt, err := c.CreateJoinToken(ctx, &mcpgwv1.CreateJoinTokenRequest{Labels: map[string]string{"zone": "eu"}, NodeGroup: "edge", Ttl: durationpb.New(time.Minute)})
	if err != nil || !strings.HasPrefix(jt.GetToken(), admin.JoinTokenPrefix) || jt.GetJoinToken().GetNodeGroup() != "edge" {
		t.Fatalf("create join token: %v %v", jt, err)
	}
	var n int
	if err := e.pool.QueryRow(ctx, `SELECT count(*) FROM join_tokens WHERE sha256 = $1`, store.HashSecret(jt.GetToken())).Scan(&n); err != nil || n != 1 {
		t.Fatalf("token hash stored %d times, %v", n, err)
	}
	_, err = c.CreateJoinToken(ctx, &mcpgwv1.CreateJoinTokenRequest{Ttl: durationpb.New(8 * 24 * time.Hour)})
	wantCode(t, err, codes.InvalidArgument, "ttl over 7 days")

	// Enrollment (NODE's store code) consumes it once.
	nodes := store.NewNodeStore(e.pool)
	enroll := func() error {
		_, err := nodes.EnrollNode(ctx, store.EnrollParams{JoinTokenSHA256: store.HashSecret(jt.GetToken()), ID: uuid.New(), Name: "edge-1",
			CertSerial: "01", CertFingerprint: store.HashSecret(uuid.NewString()), CertNotAfter: time.Now().Add(time.Hour)})
		return err
	}
	if err := enroll(); err != nil {
		t.Fatal(err)
	}
	if err := enroll(); !errors.Is(err, store.ErrJoinTokenRefused) {
		t.Fatalf("second enrollment with one token: %v", err)
	}
	lt, err := c.ListJoinTokens(ctx, &mcpgwv1.ListJoinTokensRequest{IncludeInactive: true})
	if err != nil || len(lt.GetJoinTokens()) != 1 || lt.GetJoinTokens()[0].GetUseTime() == nil || lt.GetJoinTokens()[0].GetUsedByNodeId() == "" {
		t.Fatalf("list tokens: %v %v", lt, err)
	}
	_, err = c.RevokeJoinToken(ctx, &mcpgwv1.RevokeJoinTokenRequest{Id: jt.GetJoinToken().GetId()})
	wantCode(t, err, codes.FailedPrecondition, "revoking a used token")

	ln, err := c.ListNodes(ctx, &mcpgwv1.ListNodesRequest{})
	if err != nil || len(ln.GetNodes()) != 1 {
		t.Fatalf("list nodes: %v %v", ln, err)
	}
	node := ln.GetNodes()[0]
	if node.GetName() != "edge-1" || node.GetNodeGroup() != "edge" || node.GetLabels()["zone"] != "eu" || node.GetConnected() {
		t.Errorf("node %v", node)
	}
	id := uuid.MustParse(node.GetId())
	if err := nodes.FlushNodeStatus(ctx, "r1", []store.NodeStatusUpdate{{ID: id, LastSeen: time.Now(), ConnectionChanged: true, Connected: true,
		Nack: &store.NodeNack{Revision: 5, Error: "backend github: command not found", At: time.Now(),
			RejectedJSON: []byte(`[{"kind":"RESOURCE_KIND_BACKEND","name":"github","error":"command not found"}]`)}}}); err != nil {
		t.Fatal(err)
	}
	gn, err := c.GetNode(ctx, &mcpgwv1.GetNodeRequest{NodeId: node.GetId()})
	if err != nil || !gn.GetNode().GetConnected() || gn.GetNode().GetLastNack().GetError() != "backend github: command not found" ||
		len(gn.GetNode().GetLastNack().GetRejected()) != 1 || gn.GetNode().GetLastNack().GetRejected()[0].GetName() != "github" {
		t.Fatalf("get node: %v %v", gn, err)
	}
	_, err = c.GetNode(ctx, &mcpgwv1.GetNodeRequest{NodeId: "not-a-uuid"})
	wantCode(t, err, codes.InvalidArgument, "bad node id")
	rn, err := c.RevokeNode(ctx, &mcpgwv1.RevokeNodeRequest{NodeId: node.GetId()})
	if err != nil || rn.GetNode().GetRevokeTime() == nil {
		t.Fatalf("revoke node: %v %v", rn, err)
	}
	if ln, _ := c.ListNodes(ctx, &mcpgwv1.ListNodesRequest{}); len(ln.GetNodes()) != 0 {
		t.Errorf("revoked node listed")
	}
	if ln, _ := c.ListNodes(ctx, &mcpgwv1.ListNodesRequest{IncludeRevoked: true}); len(ln.GetNodes()) != 1 {
		t.Errorf("revoked node missing with include_revoked")
	}
}

func TestWatchRollout(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	c := e.client
	nodes := store.NewNodeStore(e.pool)
	var ids []uuid.UUID
	for i := range 3 {
		jt, err := c.CreateJoinToken(ctx, &mcpgwv1.CreateJoinTokenRequest{})
		if err != nil {
			t.Fatal(err)
		}
		id := uuid.New()
		if _, err := nodes.EnrollNode(ctx, store.EnrollParams{JoinTokenSHA256: store.HashSecret(jt.GetToken()), ID: id,
			CertSerial: "0" + string(rune('1'+i)), CertFingerprint: store.HashSecret(id.String()), CertNotAfter: time.Now().Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	// Two connected, one not.
	if err := nodes.FlushNodeStatus(ctx, "r1", []store.NodeStatusUpdate{
		{ID: ids[0], ConnectionChanged: true, Connected: true}, {ID: ids[1], ConnectionChanged: true, Connected: true}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ApplyPolicy(ctx, &mcpgwv1.ApplyPolicyRequest{Document: sampleDoc()}); err != nil {
		t.Fatal(err)
	}
	bad, err := c.WatchRollout(ctx, &mcpgwv1.WatchRolloutRequest{Revision: -1})
	if err == nil {
		_, err = bad.Recv()
	}
	wantCode(t, err, codes.InvalidArgument, "negative revision on a stream")
	stream, err := c.WatchRollout(ctx, &mcpgwv1.WatchRolloutRequest{})
	if err != nil {
		t.Fatal(err)
	}
	first, err := stream.Recv()
	if err != nil || first.GetRevision() != 1 || first.GetTotal() != 2 || first.GetPending() != 2 || first.GetDisconnected() != 1 || first.GetDone() {
		t.Fatalf("first message: %v %v", first, err)
	}
	// One acks, the other nacks, as NODE's flusher records them.
	if err := nodes.FlushNodeStatus(ctx, "r1", []store.NodeStatusUpdate{{ID: ids[0], Applied: true, AppliedRevision: 1, AppliedHash: "h"}}); err != nil {
		t.Fatal(err)
	}
	if err := nodes.FlushNodeStatus(ctx, "r1", []store.NodeStatusUpdate{{ID: ids[1], Nack: &store.NodeNack{Revision: 1, Error: "bad", At: time.Now()}}}); err != nil {
		t.Fatal(err)
	}
	var last *mcpgwv1.WatchRolloutResponse
	for {
		m, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		last = m
	}
	if last == nil || !last.GetDone() || last.GetAcked() != 1 || last.GetNacked() != 1 || last.GetPending() != 0 ||
		len(last.GetRejections()) != 1 || last.GetRejections()[0].GetRejection().GetError() != "bad" || last.GetRejections()[0].GetNodeId() != ids[1].String() {
		t.Fatalf("last message: %v", last)
	}
}
