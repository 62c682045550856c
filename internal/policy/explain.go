package policy

import (
	"fmt"
	"strconv"
	"strings"
)

// Explanation is a decision with its working shown, for `mcpctl check` and
// `mcpgw policy check`. It is built by a slow path that evaluates every rule
// of the principal's roles one by one; its Decision always equals Decide's.
type Explanation struct {
	Principal    string
	Request      Request
	Subjects     []string    // user:NAME and group:NAME the principal holds
	Roles        []RoleTrace // bound roles, in spec order
	Rules        []RuleTrace // every rule of the bound roles, in spec order
	Housekeeping bool
	Decision     Decision
}

// RoleTrace names a bound role and the subjects that bind it.
type RoleTrace struct {
	Role string
	Via  []string
}

// RuleTrace says what one rule made of the request.
type RuleTrace struct {
	Role    string
	RuleID  string
	Effect  string
	Matched bool
	// Why is "matched" or the first field that did not match, e.g.
	// `method tools/call not in [prompts/get]`.
	Why string
}

// Explain evaluates req for principal like Decide and records every rule it
// considered.
func (p *Policy) Explain(principal string, req Request) Explanation {
	x := Explanation{Principal: principal, Request: req, Decision: p.Decide(principal, req)}
	if p == nil {
		return x
	}
	x.Housekeeping = IsHousekeeping(req.Method)
	e := p.principals[principal]
	if e == nil {
		x.Subjects = []string{"user:" + principal}
		return x
	}
	x.Subjects = append([]string(nil), e.subjects...)
	mid := methodID(req.Method)
	for _, br := range e.roles {
		x.Roles = append(x.Roles, RoleTrace{Role: br.role.name, Via: append([]string(nil), br.via...)})
		for _, r := range br.role.rules {
			t := RuleTrace{Role: r.role, RuleID: r.id, Effect: r.src.Effect}
			switch {
			case !r.matchMethod(mid, req.Method):
				t.Why = fmt.Sprintf("method %s not in %s", req.Method, list(r.src.Methods))
			case !r.matchBackend(req.Backend):
				t.Why = fmt.Sprintf("backend %q not in %s", req.Backend, list(r.src.Backends))
			case !r.matchItem(req.Kind, req.Name):
				t.Why = itemMismatch(r, req)
			default:
				t.Matched = true
				t.Why = "matched"
			}
			x.Rules = append(x.Rules, t)
		}
	}
	return x
}

func itemMismatch(r *crule, req Request) string {
	if req.Kind == KindNone || req.Kind >= numKinds {
		return "the request names no item and the rule only covers the items it lists"
	}
	pats := r.items[req.Kind]
	if len(pats) == 0 {
		return fmt.Sprintf("the rule lists no %ss", req.Kind)
	}
	return fmt.Sprintf("%s %q matches none of %s", req.Kind, req.Name, list(pats))
}

func list(items []string) string {
	if len(items) == 0 {
		return "[any]"
	}
	return "[" + strings.Join(items, ", ") + "]"
}

// Lines renders the explanation for a terminal, one fact per line, decision
// first.
func (x Explanation) Lines() []string {
	verdict := "deny"
	if x.Decision.Allow {
		verdict = "allow"
	}
	head := verdict
	if x.Decision.Rule != "" {
		head += " (rule " + x.Decision.Rule + ")"
	}
	head += ": " + x.Decision.Reason
	out := []string{
		head,
		"principal: " + x.Principal + " " + list(x.Subjects),
		"request:   " + describeRequest(x.Request),
		"revision:  " + strconv.FormatInt(x.Decision.Revision, 10),
	}
	if x.Housekeeping {
		return append(out, "rules:     not consulted (protocol housekeeping)")
	}
	if len(x.Roles) == 0 {
		return append(out, "roles:     none bound")
	}
	for _, r := range x.Roles {
		out = append(out, "role:      "+r.Role+" via "+strings.Join(r.Via, ", "))
	}
	for _, t := range x.Rules {
		mark := "  "
		if t.Matched {
			mark = "✔ "
		}
		out = append(out, fmt.Sprintf("  %s%-5s %-24s %s", mark, t.Effect, t.RuleID, t.Why))
	}
	return out
}

// String is Lines joined with newlines.
func (x Explanation) String() string { return strings.Join(x.Lines(), "\n") }

func describeRequest(r Request) string {
	s := r.Method
	if r.Backend != "" {
		s += " backend=" + r.Backend
	}
	if r.Kind != KindNone {
		s += " " + r.Kind.String() + "=" + strconv.Quote(r.Name)
	}
	return s
}
