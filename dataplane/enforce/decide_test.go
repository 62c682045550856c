package enforce_test

import (
	"context"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/mcpgw/mcpgw/dataplane/catalog"
	"github.com/mcpgw/mcpgw/dataplane/enforce"
	"github.com/mcpgw/mcpgw/dataplane/gateway"
	"github.com/mcpgw/mcpgw/dataplane/state"
	"github.com/mcpgw/mcpgw/internal/policy"
)

var alice = gateway.Principal{Name: "alice"}

func TestDecide(t *testing.T) {
	_, sum := newKey(t)
	h := holderWith(t, sum, "")
	d := enforce.NewDecider(h)
	rev := strconv.FormatInt(h.Load().Revision, 10)
	ctx := context.Background()
	for _, tc := range []struct {
		p      gateway.Principal
		a      gateway.Action
		allow  bool
		rule   string
		reason string
	}{
		{alice, gateway.Action{Method: "tools/call", Backend: "github", Name: "github__create_issue"}, true, "dev-github", ""},
		{alice, gateway.Action{Method: "tools/call", Backend: "github", Name: "github__delete_repo"}, false, "dev-no-delete", `tool "github__delete_repo" is not permitted`},
		{alice, gateway.Action{Method: "prompts/get", Backend: "github", Name: "github__review"}, true, "dev-github", ""},
		{alice, gateway.Action{Method: "resources/read", Backend: "github", Name: "file:///docs/a"}, true, "dev-github", ""},
		{alice, gateway.Action{Method: "resources/read", Backend: "github", Name: "file:///etc/passwd"}, false, "", `resource "file:///etc/passwd" is not permitted`},
		// completion/complete: the kind follows the reference.
		{alice, gateway.Action{Method: "completion/complete", Backend: "github", Name: "github__review"}, true, "dev-github", ""},
		{alice, gateway.Action{Method: "completion/complete", Backend: "github", Name: "file:///etc/{x}"}, false, "", `resource "file:///etc/{x}" is not permitted`},
		// Housekeeping is open to everyone authenticated, even unbound.
		{gateway.Principal{Name: "bob"}, gateway.Action{Method: "tools/list"}, true, "", ""},
		{gateway.Principal{Name: "bob"}, gateway.Action{Method: "initialize"}, true, "", ""},
		{gateway.Principal{Name: "bob"}, gateway.Action{Method: "tools/call", Backend: "github", Name: "github__create_issue"}, false, "", `tool "github__create_issue" is not permitted`},
		{gateway.Principal{Name: "bob"}, gateway.Action{Method: "prompts/get", Backend: "github", Name: "github__review"}, false, "", `prompt "github__review" is not permitted`},
	} {
		got := d.Decide(ctx, nil, tc.p, tc.a)
		if got.Allow != tc.allow || got.Rule != tc.rule || got.Reason != tc.reason || got.Revision != rev {
			t.Errorf("%s %+v: %+v; want allow=%v rule=%q reason=%q revision %s", tc.p.Name, tc.a, got, tc.allow, tc.rule, tc.reason, rev)
		}
	}
}

func TestDecideWithoutPolicyDeniesEverything(t *testing.T) {
	d := enforce.NewDecider(enforce.NewHolder(nil, nil))
	for _, a := range []gateway.Action{{Method: "initialize"}, {Method: "tools/list"}, {Method: "tools/call", Backend: "b", Name: "b__t"}} {
		if got := d.Decide(context.Background(), nil, alice, a); got.Allow {
			t.Errorf("no policy allowed %+v", a)
		}
	}
}

// The request's snapshot decides, not whatever the Holder holds by then, so
// one request (and every item of one list) sees one policy.
func TestDecideUsesTheSnapshotsPolicy(t *testing.T) {
	_, sum := newKey(t)
	h := holderWith(t, sum, "")
	snap, err := policy.Compile(policy.Spec{Bindings: []policy.Binding{{Role: "r", Subjects: []string{"user:alice"}}}, Roles: []policy.Role{{Name: "r", Rules: []policy.Rule{{ID: "only-x", Effect: "allow", Tools: []string{"x"}}}}}}, 7)
	if err != nil {
		t.Fatal(err)
	}
	st := &state.State{Meta: state.Meta{Policy: snap}}
	d := enforce.NewDecider(h)
	got := d.Decide(context.Background(), st, alice, gateway.Action{Method: "tools/call", Backend: "b", Name: "x"})
	if !got.Allow || got.Rule != "only-x" || got.Revision != "7" {
		t.Errorf("snapshot decision %+v", got)
	}
	if got := d.Decide(context.Background(), st, alice, gateway.Action{Method: "tools/call", Backend: "github", Name: "github__create_issue"}); got.Allow {
		t.Errorf("the Holder's policy decided a request on a snapshot with its own: %+v", got)
	}
}

func TestAllowedDecisionsDoNotAllocate(t *testing.T) {
	_, sum := newKey(t)
	h := holderWith(t, sum, "")
	d := enforce.NewDecider(h)
	st := &state.State{Meta: state.Meta{Policy: h.Load().Policy}}
	ctx := context.Background()
	allowed := gateway.Action{Method: "tools/call", Backend: "github", Name: "github__create_issue"}
	if n := testing.AllocsPerRun(1000, func() { d.Decide(ctx, st, alice, allowed) }); n != 0 {
		t.Errorf("an allowed decision allocates %v times", n)
	}
	// A snapshot whose policy the Holder has not committed yet (the
	// moment between the state swap and Commit) formats its revision once.
	other, err := policy.Compile(policy.Spec{}, 99)
	if err != nil {
		t.Fatal(err)
	}
	st2 := &state.State{Meta: state.Meta{Policy: other}}
	d.Decide(ctx, st2, alice, gateway.Action{Method: "ping"})
	if n := testing.AllocsPerRun(1000, func() { d.Decide(ctx, st2, alice, gateway.Action{Method: "ping"}) }); n != 0 {
		t.Errorf("a decision on an uncommitted snapshot allocates %v times", n)
	}
}

func BenchmarkDecide(b *testing.B) {
	h := enforce.NewHolder(slog.New(slog.DiscardHandler), nil)
	if err := h.Apply(parseDocB(b, strings.ReplaceAll(policyYAML, "ALICESUM", strings.Repeat("a", 64)))); err != nil {
		b.Fatal(err)
	}
	d := enforce.NewDecider(h)
	st := &state.State{Meta: state.Meta{Policy: h.Load().Policy}}
	ctx := context.Background()
	for _, bc := range []struct {
		name string
		a    gateway.Action
	}{
		{"allow", gateway.Action{Method: "tools/call", Backend: "github", Name: "github__create_issue"}},
		{"deny", gateway.Action{Method: "tools/call", Backend: "github", Name: "github__delete_repo"}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				d.Decide(ctx, st, alice, bc.a)
			}
		})
		// The policy alone, for what the adapter adds.
		req := policy.Request{Method: bc.a.Method, Backend: bc.a.Backend, Kind: policy.KindTool, Name: bc.a.Name}
		b.Run(bc.name+"/policy-only", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				st.Meta.Policy.Decide(alice.Name, req)
			}
		})
	}
}

type countNotifier struct{ n atomic.Int32 }

func (c *countNotifier) ListsChanged([]catalog.Kind) { c.n.Add(1) }

func TestHolderRevisionsAndNotifications(t *testing.T) {
	_, sum := newKey(t)
	doc := strings.ReplaceAll(policyYAML, "ALICESUM", sum)
	n := &countNotifier{}
	h := enforce.NewHolder(slog.New(slog.DiscardHandler), n)
	if err := h.Apply(parseDoc(t, doc)); err != nil {
		t.Fatal(err)
	}
	rev := h.Load().Revision
	if rev <= 0 || rev >= 1<<53 {
		t.Errorf("revision %d is not a positive 53-bit number", rev)
	}
	if n.n.Load() != 0 {
		t.Error("the first policy announced a list change")
	}
	// The same policy, with a backend added: same revision, no list change.
	withBackend := doc + "backends:\n  - {name: extra, http: {url: \"http://127.0.0.1:1/mcp\"}}\n"
	if err := h.Apply(parseDoc(t, withBackend)); err != nil {
		t.Fatal(err)
	}
	if got := h.Load().Revision; got != rev || n.n.Load() != 0 {
		t.Errorf("a backend-only change: revision %d (was %d), %d list changes", got, rev, n.n.Load())
	}
	// A policy edit: a new revision and a list change.
	if err := h.Apply(parseDoc(t, strings.Replace(doc, "github__delete_*", "github__drop_*", 1))); err != nil {
		t.Fatal(err)
	}
	if got := h.Load().Revision; got == rev || n.n.Load() != 1 {
		t.Errorf("a policy edit: revision %d (was %d), %d list changes", got, rev, n.n.Load())
	}
	// Turning anonymous access on changes who may do what: a new revision.
	before := h.Load().Revision
	if err := h.Apply(parseDoc(t, strings.Replace(doc, "github__delete_*", "github__drop_*", 1)+"auth: {anonymous: {principal: local}}\n")); err != nil {
		t.Fatal(err)
	}
	if h.Load().Revision == before {
		t.Error("enabling anonymous access kept the revision")
	}
	// The revision is the content's: a fresh holder gets the same one.
	h2 := enforce.NewHolder(slog.New(slog.DiscardHandler), nil)
	if err := h2.Apply(parseDoc(t, doc)); err != nil {
		t.Fatal(err)
	}
	if h2.Load().Revision != rev {
		t.Errorf("the same policy got revision %d, then %d", rev, h2.Load().Revision)
	}
}

func TestHolderRejectsBadPolicyWithoutSwapping(t *testing.T) {
	_, sum := newKey(t)
	h := holderWith(t, sum, "")
	before := h.Load()
	for _, bad := range []string{
		"roles:\n  - name: r\n    rules:\n      - {effect: permit}\nbindings:\n  - {role: r, subjects: [\"user:a\"]}\n",
		"bindings:\n  - {role: nope, subjects: [\"user:a\"]}\n",
		"auth: {anonymous: {principal: \"has space\"}}\n",
	} {
		doc, err := parseDocErr(bad)
		if err == nil {
			err = h.Apply(doc)
		}
		if err == nil {
			t.Errorf("accepted:\n%s", bad)
		}
		if h.Load() != before {
			t.Fatalf("a rejected policy went live:\n%s", bad)
		}
	}
	if _, err := enforce.Prepare(nil, state.Meta{}); err == nil {
		t.Error("Prepare(nil) succeeded")
	}
}
