package policy

import (
	"errors"
	"strings"
	"testing"
)

// designSpec is DESIGN §5.1's example: alice (developer, also via group eng)
// may use every github__* tool except github__delete_*; bob is readonly.
func designSpec() Spec {
	return Spec{
		Principals: []Principal{
			{Name: "alice", Groups: []string{"eng"}},
			{Name: "bob"},
			{Name: "carol", Groups: []string{"eng"}},
			{Name: "dave"},
		},
		Roles: []Role{
			{Name: "developer", Rules: []Rule{
				{Effect: EffectAllow, Tools: []string{"github__*"}, Prompts: []string{"*"}, Resources: []string{"*"}},
				{Effect: EffectDeny, Tools: []string{"github__delete_*"}},
			}},
			{Name: "readonly", Rules: []Rule{
				{Effect: EffectAllow, Backends: []string{"search"}, Tools: []string{"*"}},
				{Effect: EffectAllow, Methods: []string{"resources/read"}, Resources: []string{"file:///docs/*"}},
			}},
		},
		Bindings: []Binding{
			{Role: "developer", Subjects: []string{"user:alice", "group:eng"}},
			{Role: "readonly", Subjects: []string{"user:bob"}},
		},
	}
}

func mustCompile(t testing.TB, spec Spec, rev int64) *Policy {
	t.Helper()
	p, err := Compile(spec, rev)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return p
}

func call(backend, tool string) Request {
	return Request{Method: "tools/call", Backend: backend, Kind: KindTool, Name: tool}
}

func TestDecideDesignExample(t *testing.T) {
	p := mustCompile(t, designSpec(), 7)
	tests := []struct {
		name      string
		principal string
		req       Request
		allow     bool
		rule      string
		reason    string
	}{
		{"alice calls a github tool", "alice", call("github", "github__create_issue"), true, "developer/0", `allowed by rule "developer/0" of role "developer"`},
		{"deny overrides allow", "alice", call("github", "github__delete_repo"), false, "developer/1", `denied by rule "developer/1" of role "developer"`},
		{"glob needs the prefix", "alice", call("search", "query"), false, "", ReasonDefaultDeny},
		{"glob is anchored", "alice", call("github", "xgithub__create_issue"), false, "", ReasonDefaultDeny},
		{"alice gets any prompt", "alice", Request{Method: "prompts/get", Backend: "search", Kind: KindPrompt, Name: "summarize"}, true, "developer/0", ""},
		{"alice reads any resource", "alice", Request{Method: "resources/read", Backend: "github", Kind: KindResource, Name: "repo://mcpgw/README.md"}, true, "developer/0", ""},
		{"rule without methods covers subscribe", "alice", Request{Method: "resources/subscribe", Backend: "github", Kind: KindResource, Name: "repo://x"}, true, "developer/0", ""},
		{"completion on a prompt", "alice", Request{Method: "completion/complete", Backend: "search", Kind: KindPrompt, Name: "summarize"}, true, "developer/0", ""},
		{"item rules need an item", "alice", Request{Method: "tools/call", Backend: "github"}, false, "", ReasonDefaultDeny},
		{"group binding", "carol", call("github", "github__create_issue"), true, "developer/0", ""},
		{"group binding deny", "carol", call("github", "github__delete_repo"), false, "developer/1", ""},
		{"bob on search", "bob", call("search", "query"), true, "readonly/0", `allowed by rule "readonly/0" of role "readonly"`},
		{"bob not on github", "bob", call("github", "github__create_issue"), false, "", ReasonDefaultDeny},
		{"bob reads docs", "bob", Request{Method: "resources/read", Backend: "github", Kind: KindResource, Name: "file:///docs/a/b.md"}, true, "readonly/1", ""},
		{"bob star crosses slashes only under docs", "bob", Request{Method: "resources/read", Backend: "github", Kind: KindResource, Name: "file:///etc/passwd"}, false, "", ReasonDefaultDeny},
		{"bob cannot subscribe", "bob", Request{Method: "resources/subscribe", Backend: "github", Kind: KindResource, Name: "file:///docs/a"}, false, "", ReasonDefaultDeny},
		{"bob has no prompts", "bob", Request{Method: "prompts/get", Backend: "search", Kind: KindPrompt, Name: "p"}, false, "", ReasonDefaultDeny},
		{"listed principal without binding", "dave", call("github", "github__create_issue"), false, "", ReasonUnbound},
		{"unknown principal", "mallory", call("github", "github__create_issue"), false, "", ReasonUnbound},
		{"empty principal", "", call("github", "github__create_issue"), false, "", ReasonUnbound},
		{"housekeeping for the unbound", "dave", Request{Method: "tools/list"}, true, "", ReasonHousekeeping},
		{"housekeeping for the unknown", "mallory", Request{Method: "initialize"}, true, "", ReasonHousekeeping},
		{"notifications are housekeeping", "bob", Request{Method: "notifications/cancelled"}, true, "", ReasonHousekeeping},
		{"unknown method", "alice", Request{Method: "frobnicate/now", Backend: "github", Kind: KindTool, Name: "github__x"}, true, "developer/0", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := p.Decide(tt.principal, tt.req)
			if d.Allow != tt.allow || d.Rule != tt.rule || d.Revision != 7 {
				t.Fatalf("Decide(%q, %+v) = %+v, want allow=%v rule=%q revision 7", tt.principal, tt.req, d, tt.allow, tt.rule)
			}
			if tt.reason != "" && d.Reason != tt.reason {
				t.Fatalf("reason = %q, want %q", d.Reason, tt.reason)
			}
			if d.Reason == "" {
				t.Fatal("empty reason")
			}
		})
	}
}

func TestHousekeeping(t *testing.T) {
	for _, m := range []string{"initialize", "ping", "server/discover", "logging/setLevel",
		"tools/list", "prompts/list", "resources/list", "resources/templates/list",
		"subscriptions/listen", "notifications/initialized", "notifications/whatever"} {
		if !IsHousekeeping(m) {
			t.Errorf("IsHousekeeping(%q) = false", m)
		}
	}
	for _, m := range []string{"tools/call", "prompts/get", "resources/read", "resources/subscribe",
		"completion/complete", "", "notifications", "Initialize"} {
		if IsHousekeeping(m) {
			t.Errorf("IsHousekeeping(%q) = true", m)
		}
	}
}

func TestNilPolicyDeniesEverything(t *testing.T) {
	var p *Policy
	for _, req := range []Request{call("github", "github__create_issue"), {Method: "initialize"}, {Method: "tools/list"}} {
		d := p.Decide("alice", req)
		if d.Allow || d.Rule != "" || d.Reason != ReasonNoPolicy {
			t.Errorf("nil.Decide(%+v) = %+v", req, d)
		}
	}
	if p.Visible("alice", KindTool, "github", "github__x") {
		t.Error("nil policy shows an item")
	}
	if _, ok := p.Authenticate(HashKey("k"), timeZero); ok {
		t.Error("nil policy authenticates")
	}
	if p.Revision() != 0 || p.HasPrincipal("alice") {
		t.Error("nil policy has state")
	}
	x := p.Explain("alice", call("github", "github__x"))
	if x.Decision.Allow || !strings.Contains(x.String(), "deny") {
		t.Errorf("nil Explain = %s", x)
	}
}

func TestVisibleMatchesCall(t *testing.T) {
	p := mustCompile(t, designSpec(), 1)
	items := []struct {
		kind          ItemKind
		backend, name string
	}{
		{KindTool, "github", "github__create_issue"},
		{KindTool, "github", "github__delete_repo"},
		{KindTool, "search", "query"},
		{KindPrompt, "search", "summarize"},
		{KindResource, "github", "file:///docs/x"},
		{KindResource, "github", "file:///etc/x"},
	}
	for _, who := range []string{"alice", "bob", "carol", "dave", "mallory"} {
		for _, it := range items {
			want := p.Decide(who, Request{Method: CallMethod(it.kind), Backend: it.backend, Kind: it.kind, Name: it.name}).Allow
			if got := p.Visible(who, it.kind, it.backend, it.name); got != want {
				t.Errorf("Visible(%s, %v, %s, %s) = %v, call decision %v", who, it.kind, it.backend, it.name, got, want)
			}
		}
	}
	// The concrete sets the edge will list.
	var alice, bob []string
	for _, it := range items {
		if p.Visible("alice", it.kind, it.backend, it.name) {
			alice = append(alice, it.name)
		}
		if p.Visible("bob", it.kind, it.backend, it.name) {
			bob = append(bob, it.name)
		}
	}
	if got, want := strings.Join(alice, " "), "github__create_issue summarize file:///docs/x file:///etc/x"; got != want {
		t.Errorf("alice sees %q, want %q", got, want)
	}
	if got, want := strings.Join(bob, " "), "query file:///docs/x"; got != want {
		t.Errorf("bob sees %q, want %q", got, want)
	}
	if p.Visible("alice", KindNone, "github", "x") {
		t.Error("KindNone is visible")
	}
}

func TestRuleFields(t *testing.T) {
	spec := Spec{
		Roles: []Role{{Name: "r", Rules: []Rule{
			{ID: "everything-on-db", Effect: EffectAllow, Backends: []string{"db"}},
			{ID: "calls-on-db-star", Effect: EffectAllow, Methods: []string{"tools/*"}, Backends: []string{"db-*"}},
			{ID: "no-exec", Effect: EffectDeny, Backends: []string{"db", "db-*"}, Tools: []string{"*exec*"}},
			{ID: "suffix", Effect: EffectAllow, Tools: []string{"*_read"}},
			{ID: "one-char", Effect: EffectAllow, Prompts: []string{"p?"}},
			{ID: "exact", Effect: EffectAllow, Methods: []string{"prompts/get"}, Prompts: []string{"hello"}},
		}}},
		Bindings: []Binding{{Role: "r", Subjects: []string{"user:u"}}},
	}
	p := mustCompile(t, spec, 3)
	tests := []struct {
		req   Request
		allow bool
		rule  string
	}{
		{call("db", "query"), true, "everything-on-db"},
		{Request{Method: "tasks/frob", Backend: "db"}, true, "everything-on-db"},
		{Request{Method: "completion/complete", Backend: "db", Kind: KindPrompt, Name: "x"}, true, "everything-on-db"},
		{call("db", "sql_exec_raw"), false, "no-exec"},
		{call("db-eu", "sql_exec"), false, "no-exec"},
		{call("db-eu", "query"), true, "calls-on-db-star"},
		{Request{Method: "prompts/get", Backend: "db-eu", Kind: KindPrompt, Name: "q"}, false, ""},
		{call("dbx", "query"), false, ""},
		{call("other", "file_read"), true, "suffix"},
		{call("other", "_read"), true, "suffix"},
		{call("other", "read"), false, ""},
		{Request{Method: "prompts/get", Backend: "other", Kind: KindPrompt, Name: "pé"}, true, "one-char"},
		{Request{Method: "prompts/get", Backend: "other", Kind: KindPrompt, Name: "p"}, false, ""},
		{Request{Method: "prompts/get", Backend: "other", Kind: KindPrompt, Name: "hello"}, true, "exact"},
		{Request{Method: "completion/complete", Backend: "other", Kind: KindPrompt, Name: "hello"}, false, ""},
	}
	for _, tt := range tests {
		d := p.Decide("u", tt.req)
		if d.Allow != tt.allow || d.Rule != tt.rule {
			t.Errorf("Decide(%+v) = %+v, want allow=%v rule=%q", tt.req, d, tt.allow, tt.rule)
		}
	}
}

func TestFirstMatchingRuleIsReported(t *testing.T) {
	spec := Spec{
		Roles: []Role{
			{Name: "a", Rules: []Rule{{Effect: EffectAllow, Tools: []string{"x*"}}, {Effect: EffectDeny, Tools: []string{"*"}}}},
			{Name: "b", Rules: []Rule{{Effect: EffectAllow, Tools: []string{"xy"}}, {Effect: EffectDeny, Tools: []string{"xy"}}}},
		},
		Bindings: []Binding{{Role: "b", Subjects: []string{"user:u"}}, {Role: "a", Subjects: []string{"user:u"}}},
	}
	p := mustCompile(t, spec, 1)
	if d := p.Decide("u", call("k", "xy")); d.Allow || d.Rule != "a/1" {
		t.Errorf("got %+v, want deny by a/1 (the first deny in spec order)", d)
	}
}

func TestCompileErrors(t *testing.T) {
	spec := Spec{
		Principals: []Principal{
			{Name: "alice"},
			{Name: "alice"},
			{Name: "bad name"},
			{Name: "bob", Groups: []string{"ok", "no:colon"}, APIKeySHA256: "ABC"},
		},
		Roles: []Role{
			{Name: "viewer", Rules: []Rule{{Effect: EffectAllow}}},
			{Name: "viewer"},
			{Name: "developer", Rules: []Rule{
				{Effect: "permit"},
				{Effect: EffectAllow, Tools: []string{"ok", "bad tool"}},
				{Effect: EffectDeny, Methods: []string{"tool/call", "tools/list", "notifications/*", "nothing/*", "tools/*"}},
				{Effect: EffectAllow, Backends: []string{"Bad"}, Resources: []string{""}},
				{ID: "viewer/0", Effect: EffectAllow},
				{Effect: ""},
			}},
		},
		Bindings: []Binding{
			{Role: "dev", Subjects: []string{"user:alice"}},
			{Role: "viewer", Subjects: []string{"alice", "team:x", "group:"}},
			{Role: "viewer"},
		},
		Keys: []Key{{Principal: "", SHA256: strings.Repeat("a", 64)}, {Principal: "x", SHA256: strings.Repeat("a", 64)}},
	}
	_, err := Compile(spec, 1)
	var ce *CompileError
	if !errors.As(err, &ce) {
		t.Fatalf("Compile error %T %v, want *CompileError", err, err)
	}
	want := []FieldError{
		{`principals[1] "alice"`, `duplicate principal "alice" (also principals[0])`},
		{`principals[2] "bad name"`, `bad name "bad name": use letters, digits and . _ @ + - (at most 128, starting with a letter or digit)`},
		{`principals[3] "bob": groups[1]`, `bad group name "no:colon": use letters, digits and . _ @ + -`},
		{`principals[3] "bob": api_key_sha256`, `must be 64 lowercase hex digits (the SHA-256 of the whole key), got 3 characters`},
		{`keys[0]`, `principal is required`},
		{`keys[1]: sha256`, `key hash already used by keys[0]`},
		{`roles[1] "viewer"`, `duplicate role "viewer" (also roles[0])`},
		{`roles[2] "developer": rules[0].effect`, `bad effect "permit": must be allow or deny`},
		{`roles[2] "developer": rules[1].tools[1]`, `bad glob "bad tool": use letters, digits, _ - . / and the wildcards * and ?`},
		{`roles[2] "developer": rules[2].methods[0]`, `unknown method "tool/call" (known: ` + strings.Join(ruleMethods(), ", ") + `)`},
		{`roles[2] "developer": rules[2].methods[1]`, `tools/list is protocol housekeeping, open to every principal; list results are filtered by the tools/call, prompts/get and resources/read decisions`},
		{`roles[2] "developer": rules[2].methods[2]`, `method glob "notifications/*" matches no method a rule can govern (known: ` + strings.Join(ruleMethods(), ", ") + `)`},
		{`roles[2] "developer": rules[2].methods[3]`, `method glob "nothing/*" matches no method a rule can govern (known: ` + strings.Join(ruleMethods(), ", ") + `)`},
		{`roles[2] "developer": rules[3].backends[0]`, `bad backend "Bad": a backend name (a-z 0-9 _ -) or a glob of one`},
		{`roles[2] "developer": rules[3].resources[0]`, `bad glob "": a URI or URI glob without spaces or control characters`},
		{`roles[2] "developer": rules[4]`, `duplicate rule id "viewer/0" (also roles[0] "viewer": rules[0])`},
		{`roles[2] "developer": rules[5].effect`, `effect is required: allow or deny`},
		{`bindings[0]`, `unknown role "dev"`},
		{`bindings[1]: subjects[0]`, `bad subject "alice": must be "user:NAME" or "group:NAME"`},
		{`bindings[1]: subjects[1]`, `bad subject "team:x": must be "user:NAME" or "group:NAME"`},
		{`bindings[1]: subjects[2]`, `bad subject "group:": must be "user:NAME" or "group:NAME"`},
		{`bindings[2]`, `subjects is empty: bind at least one "user:NAME" or "group:NAME"`},
	}
	if len(ce.Errors) != len(want) {
		t.Errorf("got %d errors, want %d:\n%v", len(ce.Errors), len(want), err)
	}
	for i := range min(len(want), len(ce.Errors)) {
		if ce.Errors[i] != want[i] {
			t.Errorf("error %d:\n got  %s\n want %s", i, ce.Errors[i], want[i])
		}
	}
	if !strings.HasPrefix(err.Error(), "invalid policy (22 errors):\n  principals[1]") {
		t.Errorf("Error() = %q", err.Error())
	}
}

func TestCompileEmptyAndSingleError(t *testing.T) {
	p, err := Compile(Spec{}, 5)
	if err != nil {
		t.Fatal(err)
	}
	if d := p.Decide("anyone", call("b", "t")); d.Allow || d.Revision != 5 {
		t.Errorf("empty spec decided %+v", d)
	}
	_, err = Compile(Spec{Bindings: []Binding{{Role: "dev", Subjects: []string{"user:a"}}}}, 1)
	if err == nil || err.Error() != `invalid policy: bindings[0]: unknown role "dev"` {
		t.Errorf("err = %v", err)
	}
}

func TestUnlistedPrincipalBoundByUserSubject(t *testing.T) {
	// Fleet mode: keys create principals that the spec need not list.
	spec := designSpec()
	spec.Bindings = append(spec.Bindings, Binding{Role: "readonly", Subjects: []string{"user:ci-bot"}})
	p := mustCompile(t, spec, 1)
	if d := p.Decide("ci-bot", call("search", "query")); !d.Allow || d.Rule != "readonly/0" {
		t.Errorf("ci-bot: %+v", d)
	}
	// Being in group eng takes being listed with that group: the bare
	// subject user:ci-bot does not inherit group bindings.
	if d := p.Decide("ci-bot", call("github", "github__create_issue")); d.Allow {
		t.Errorf("ci-bot got developer rights: %+v", d)
	}
}

func TestDecideDoesNotAllocate(t *testing.T) {
	p := mustCompile(t, designSpec(), 1)
	reqs := []Request{
		call("github", "github__create_issue"),
		call("github", "github__delete_repo"),
		{Method: "resources/read", Backend: "github", Kind: KindResource, Name: "file:///docs/x"},
		{Method: "frob/x", Backend: "github", Kind: KindTool, Name: "github__x"},
		{Method: "ping"},
	}
	for _, who := range []string{"alice", "bob", "mallory"} {
		for _, req := range reqs {
			if n := testing.AllocsPerRun(100, func() { _ = p.Decide(who, req) }); n != 0 {
				t.Errorf("Decide(%s, %+v) allocates %v times", who, req, n)
			}
		}
	}
}

func TestMethodID(t *testing.T) {
	for i, m := range knownMethods {
		if got := methodID(m); got != i || int(methodIDs[m]) != i {
			t.Errorf("methodID(%q) = %d, map %d, want %d", m, got, methodIDs[m], i)
		}
	}
	if methodID("tools/cal") != -1 || methodID("") != -1 {
		t.Error("methodID knows an unknown method")
	}
}
