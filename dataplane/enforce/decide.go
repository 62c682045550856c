package enforce

import (
	"context"
	"strings"

	"github.com/mcpgw/mcpgw/dataplane/gateway"
	"github.com/mcpgw/mcpgw/dataplane/state"
	"github.com/mcpgw/mcpgw/internal/policy"
)

// Decider implements gateway.Decider with internal/policy.
type Decider struct{ h *Holder }

var _ gateway.Decider = (*Decider)(nil)

// NewDecider returns a Decider over h.
func NewDecider(h *Holder) *Decider { return &Decider{h: h} }

// Decide implements gateway.Decider. The policy is the one st carries, so
// every decision of a request (list items included) comes from the same
// snapshot. An allowed decision does not allocate; a denied one allocates
// its reason, which names the item the caller asked for and nothing else
// (no other tool, no rule: rule ids go to the audit log only).
func (d *Decider) Decide(_ context.Context, st *state.State, p gateway.Principal, a gateway.Action) gateway.Decision {
	pol := d.h.policyFor(st)
	req := policy.Request{Method: a.Method, Backend: a.Backend, Kind: kindOf(a), Name: a.Name}
	dec := pol.Decide(p.Name, req)
	out := gateway.Decision{Allow: dec.Allow, Rule: dec.Rule, Revision: d.h.revisionOf(pol)}
	if !dec.Allow {
		out.Reason = denial(req)
	}
	return out
}

// kindOf is the item kind of a gateway action. completion/complete names a
// prompt or a resource template; policy cannot tell which from the method,
// but the gateway's Name can: exposed prompt names never contain ':'
// (^[a-zA-Z0-9_-]+$) while every URI has a scheme.
func kindOf(a gateway.Action) policy.ItemKind {
	k := policy.KindOf(a.Method)
	if k == policy.KindNone && a.Name != "" && a.Method == "completion/complete" {
		if strings.IndexByte(a.Name, ':') >= 0 {
			return policy.KindResource
		}
		return policy.KindPrompt
	}
	return k
}

// denial is what a denied caller is told. Plain concatenation (one
// allocation) rather than strconv.Quote: list filtering asks about every
// denied item, and the message is JSON-escaped where it is sent anyway.
func denial(req policy.Request) string {
	switch {
	case req.Name == "":
		return `method "` + req.Method + `" is not permitted`
	case req.Kind == policy.KindTool:
		return `tool "` + req.Name + `" is not permitted`
	case req.Kind == policy.KindPrompt:
		return `prompt "` + req.Name + `" is not permitted`
	default:
		return `resource "` + req.Name + `" is not permitted`
	}
}
