package policy

import (
	"strings"
	"testing"
)

// FuzzCompile feeds arbitrary names, patterns and subjects to Compile: it must
// never panic, and whatever compiles must decide like the rule-by-rule scan.
func FuzzCompile(f *testing.F) {
	f.Add("developer", "allow", "tools/call", "github", "github__*", "file:///docs/*", "user:alice", "tools/call", "github", "github__create_issue")
	f.Add("r", "deny", "*", "a*", "*x*", "?", "group:eng", "resources/read", "ab", "x")
	f.Add("", "permit", "tool/call", "B", "bad glob", "", "alice", "", "", "")
	f.Fuzz(func(t *testing.T, role, effect, method, backend, tool, resource, subject, reqMethod, reqBackend, reqName string) {
		split := func(s string) []string {
			if s == "" {
				return nil
			}
			return strings.Split(s, ",")
		}
		spec := Spec{
			Principals: []Principal{{Name: "alice", Groups: []string{"eng"}}},
			Roles: []Role{{Name: role, Rules: []Rule{
				{Effect: effect, Methods: split(method), Backends: split(backend), Tools: split(tool), Resources: split(resource)},
				{Effect: EffectDeny, Tools: split(tool + "x")},
			}}},
			Bindings: []Binding{{Role: role, Subjects: split(subject)}},
		}
		p, err := Compile(spec, 1)
		if err != nil {
			if _, ok := err.(*CompileError); !ok {
				t.Fatalf("Compile returned %T, want *CompileError", err)
			}
			return
		}
		for _, kind := range []ItemKind{KindNone, KindTool, KindPrompt, KindResource} {
			req := Request{Method: reqMethod, Backend: reqBackend, Kind: kind, Name: reqName}
			d := p.Decide("alice", req)
			x := p.Explain("alice", req)
			if x.Decision != d {
				t.Fatalf("Explain decision %+v != Decide %+v", x.Decision, d)
			}
			if x.Housekeeping {
				continue
			}
			allow, rule := false, ""
			for _, rt := range x.Rules {
				if rt.Matched && rt.Effect == EffectDeny {
					allow, rule = false, rt.RuleID
					break
				}
				if rt.Matched && rule == "" {
					allow, rule = true, rt.RuleID
				}
			}
			if d.Allow != allow || d.Rule != rule {
				t.Fatalf("req %+v: Decide %+v, scan allow=%v rule=%q\n%s", req, d, allow, rule, x)
			}
		}
	})
}
