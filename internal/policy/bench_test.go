package policy

import (
	"fmt"
	"testing"
)

// benchSpec10 is a realistic small policy: ten rules over three roles, the
// principal bound to all of them through a user and a group subject.
func benchSpec10() Spec {
	return Spec{
		Principals: []Principal{{Name: "alice", Groups: []string{"eng", "oncall"}}},
		Roles: []Role{
			{Name: "developer", Rules: []Rule{
				{Effect: EffectAllow, Tools: []string{"github__*"}, Prompts: []string{"*"}, Resources: []string{"*"}},
				{Effect: EffectDeny, Tools: []string{"github__delete_*"}},
				{Effect: EffectDeny, Tools: []string{"*_admin"}},
				{Effect: EffectAllow, Backends: []string{"jira"}, Tools: []string{"jira__get_issue", "jira__search"}},
			}},
			{Name: "readonly", Rules: []Rule{
				{Effect: EffectAllow, Backends: []string{"search"}, Tools: []string{"*"}},
				{Effect: EffectAllow, Methods: []string{"resources/read"}, Resources: []string{"file:///docs/*"}},
				{Effect: EffectDeny, Methods: []string{"resources/subscribe"}},
			}},
			{Name: "oncall", Rules: []Rule{
				{Effect: EffectAllow, Backends: []string{"pager"}},
				{Effect: EffectAllow, Methods: []string{"tools/call"}, Backends: []string{"k8s-*"}, Tools: []string{"k8s__get_*", "k8s__describe_*"}},
				{Effect: EffectDeny, Backends: []string{"k8s-prod"}, Tools: []string{"*exec*"}},
			}},
		},
		Bindings: []Binding{
			{Role: "developer", Subjects: []string{"user:alice"}},
			{Role: "readonly", Subjects: []string{"group:eng"}},
			{Role: "oncall", Subjects: []string{"group:oncall"}},
		},
	}
}

// benchSpec10k is a large policy: 1,000 roles of ten rules (one per backend,
// with exact, prefix, suffix, infix and "*" patterns), all bound to one
// principal, so a decision has 10,000 rules to choose from and must rely on
// the index.
func benchSpec10k() Spec {
	spec := Spec{Principals: []Principal{{Name: "alice", Groups: []string{"eng"}}}}
	for i := range 1000 {
		b := fmt.Sprintf("b%d", i)
		role := Role{Name: fmt.Sprintf("role%d", i), Rules: []Rule{
			{Effect: EffectAllow, Backends: []string{b}, Tools: []string{b + "__read"}},
			{Effect: EffectAllow, Backends: []string{b}, Tools: []string{b + "__list_*"}},
			{Effect: EffectAllow, Backends: []string{b}, Tools: []string{"*_get_" + b}},
			{Effect: EffectDeny, Backends: []string{b}, Tools: []string{b + "__delete_*"}},
			{Effect: EffectDeny, Backends: []string{b}, Tools: []string{"*secret*"}},
			{Effect: EffectAllow, Backends: []string{b}, Methods: []string{"prompts/get"}, Prompts: []string{"*"}},
			{Effect: EffectAllow, Backends: []string{b}, Resources: []string{"file:///" + b + "/*"}},
			{Effect: EffectDeny, Backends: []string{b}, Methods: []string{"resources/subscribe"}},
			{Effect: EffectAllow, Tools: []string{fmt.Sprintf("tool%d_*", i)}},
			{Effect: EffectAllow, Methods: []string{"completion/complete"}, Backends: []string{b}},
		}}
		spec.Roles = append(spec.Roles, role)
		spec.Bindings = append(spec.Bindings, Binding{Role: role.Name, Subjects: []string{"group:eng"}})
	}
	return spec
}

func benchDecide(b *testing.B, spec Spec, req Request, wantAllow bool) {
	p := mustCompile(b, spec, 1)
	if d := p.Decide("alice", req); d.Allow != wantAllow {
		b.Fatalf("Decide(%+v) = %+v, want allow=%v", req, d, wantAllow)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		_ = p.Decide("alice", req)
	}
}

func BenchmarkDecide(b *testing.B) {
	b.Run("rules=10/allow", func(b *testing.B) {
		benchDecide(b, benchSpec10(), call("github", "github__create_issue"), true)
	})
	b.Run("rules=10/deny", func(b *testing.B) {
		benchDecide(b, benchSpec10(), call("github", "github__delete_repo"), false)
	})
	b.Run("rules=10/default-deny", func(b *testing.B) {
		benchDecide(b, benchSpec10(), call("k8s-prod", "k8s__exec"), false)
	})
	b.Run("rules=10000/allow", func(b *testing.B) {
		benchDecide(b, benchSpec10k(), call("b517", "b517__list_items"), true)
	})
	b.Run("rules=10000/deny", func(b *testing.B) {
		benchDecide(b, benchSpec10k(), call("b517", "b517__delete_all"), false)
	})
	b.Run("rules=10000/default-deny", func(b *testing.B) {
		benchDecide(b, benchSpec10k(), call("b517", "b517__write"), false)
	})
}

func BenchmarkCompile10k(b *testing.B) {
	spec := benchSpec10k()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Compile(spec, 1); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBaselineMapLookup is one string-keyed map lookup, the yardstick
// for Decide's figures on a noisy shared machine (record it in the same run).
func BenchmarkBaselineMapLookup(b *testing.B) {
	m := make(map[string]*principalEntry)
	for i := range 1000 {
		m[fmt.Sprintf("user%d", i)] = &principalEntry{}
	}
	m["alice"] = &principalEntry{}
	var sink *principalEntry
	for b.Loop() {
		sink = m["alice"]
	}
	_ = sink
}
