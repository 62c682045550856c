package policy

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

func TestExplain(t *testing.T) {
	p := mustCompile(t, designSpec(), 9)
	x := p.Explain("alice", call("github", "github__delete_repo"))
	if x.Decision != p.Decide("alice", call("github", "github__delete_repo")) {
		t.Fatalf("Explain decision %+v differs from Decide", x.Decision)
	}
	want := []RuleTrace{
		{Role: "developer", RuleID: "developer/0", Effect: "allow", Matched: true, Why: "matched"},
		{Role: "developer", RuleID: "developer/1", Effect: "deny", Matched: true, Why: "matched"},
	}
	if fmt.Sprint(x.Rules) != fmt.Sprint(want) {
		t.Errorf("rules = %+v\nwant %+v", x.Rules, want)
	}
	if fmt.Sprint(x.Roles) != "[{developer [user:alice group:eng]}]" {
		t.Errorf("roles = %v", x.Roles)
	}
	s := x.String()
	for _, frag := range []string{"deny (rule developer/1)", "principal: alice [user:alice, group:eng]", "revision:  9", "role:      developer via user:alice, group:eng"} {
		if !strings.Contains(s, frag) {
			t.Errorf("explanation lacks %q:\n%s", frag, s)
		}
	}

	x = p.Explain("bob", Request{Method: "prompts/get", Backend: "github", Kind: KindPrompt, Name: "p"})
	whys := []string{
		`backend "github" not in [search]`,
		`method prompts/get not in [resources/read]`,
	}
	for i, w := range whys {
		if x.Rules[i].Matched || x.Rules[i].Why != w {
			t.Errorf("rule %d: %+v, want why %q", i, x.Rules[i], w)
		}
	}
	x = p.Explain("bob", Request{Method: "resources/read", Backend: "search", Kind: KindResource, Name: "file:///etc"})
	if got := x.Rules[0].Why; got != "the rule lists no resources" {
		t.Errorf("why = %q", got)
	}
	if got := x.Rules[1].Why; got != `resource "file:///etc" matches none of [file:///docs/*]` {
		t.Errorf("why = %q", got)
	}
	if s := p.Explain("mallory", call("github", "x")).String(); !strings.Contains(s, "roles:     none bound") {
		t.Errorf("unbound explanation:\n%s", s)
	}
	if s := p.Explain("mallory", Request{Method: "ping"}).String(); !strings.Contains(s, "not consulted") || !strings.HasPrefix(s, "allow") {
		t.Errorf("housekeeping explanation:\n%s", s)
	}
}

// TestIndexAgreesWithLinearScan checks the indexed decision against the
// rule-by-rule evaluation of Explain on random policies and requests: the
// first matching deny in spec order, else the first matching allow.
func TestIndexAgreesWithLinearScan(t *testing.T) {
	defer func(n int) { smallBucket = n }(smallBucket)
	for _, limit := range []int{0, 2, 8} {
		smallBucket = limit
		t.Run(fmt.Sprintf("smallBucket=%d", limit), testIndexAgreesWithLinearScan)
	}
}

func testIndexAgreesWithLinearScan(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	pick := func(opts []string, max int) []string {
		n := rng.IntN(max + 1)
		var out []string
		for range n {
			out = append(out, opts[rng.IntN(len(opts))])
		}
		return out
	}
	methods := []string{"tools/call", "prompts/get", "resources/read", "resources/*", "*", "completion/complete", "tools/c?ll"}
	backends := []string{"a", "b", "c", "a*", "?", "*"}
	names := []string{"x", "xy", "x*", "*y", "*", "?y", "x*y", "y", "xyz", "*x*"}
	reqNames := []string{"", "x", "xy", "y", "xyz", "zz", "yx", "xxy"}
	reqMethods := []string{"tools/call", "prompts/get", "resources/read", "resources/subscribe", "completion/complete", "other/thing"}
	reqBackends := []string{"a", "b", "c", "ab", "", "zz"}
	for iter := range 120 {
		var spec Spec
		for r := range 1 + rng.IntN(4) {
			role := Role{Name: fmt.Sprintf("r%d", r)}
			for range rng.IntN(6) {
				rule := Rule{Effect: []string{EffectAllow, EffectDeny}[rng.IntN(2)]}
				rule.Methods = pick(methods, 2)
				rule.Backends = pick(backends, 2)
				if rng.IntN(3) > 0 {
					rule.Tools = pick(names, 3)
					rule.Prompts = pick(names, 2)
					rule.Resources = pick(names, 2)
				}
				role.Rules = append(role.Rules, rule)
			}
			spec.Roles = append(spec.Roles, role)
			if rng.IntN(4) > 0 {
				spec.Bindings = append(spec.Bindings, Binding{Role: role.Name, Subjects: []string{"user:u"}})
			}
		}
		p, err := Compile(spec, 1)
		if err != nil {
			t.Fatalf("iter %d: %v", iter, err)
		}
		for range 40 {
			req := Request{
				Method:  reqMethods[rng.IntN(len(reqMethods))],
				Backend: reqBackends[rng.IntN(len(reqBackends))],
				Kind:    ItemKind(rng.IntN(int(numKinds))),
				Name:    reqNames[rng.IntN(len(reqNames))],
			}
			x := p.Explain("u", req)
			var firstDeny, firstAllow string
			for _, rt := range x.Rules {
				if !rt.Matched {
					continue
				}
				if rt.Effect == EffectDeny && firstDeny == "" {
					firstDeny = rt.RuleID
				}
				if rt.Effect == EffectAllow && firstAllow == "" {
					firstAllow = rt.RuleID
				}
			}
			want := Decision{Allow: firstDeny == "" && firstAllow != "", Rule: firstDeny}
			if want.Rule == "" {
				want.Rule = firstAllow
			}
			d := p.Decide("u", req)
			if d.Allow != want.Allow || d.Rule != want.Rule {
				t.Fatalf("iter %d: spec %+v\nreq %+v\nDecide = %+v, linear scan says allow=%v rule=%q\n%s", iter, spec, req, d, want.Allow, want.Rule, x)
			}
		}
	}
}
