package policy

// Request is what a decision is about. Backend is the backend's name (not its
// prefix); Name is the item's exposed name ("github__create_issue") or, for a
// resource, its URI (or URI template when filtering resources/templates/list).
type Request struct {
	Method  string
	Backend string
	Kind    ItemKind
	Name    string
}

// Decision is the outcome of Decide. Rule is the id of the deciding rule,
// empty for housekeeping and default deny; Revision is the policy revision
// that decided, which the audit event records.
type Decision struct {
	Allow    bool
	Rule     string
	Revision int64
	Reason   string
}

// Reasons that are not tied to a rule. They are constants so a decision never
// formats a string.
const (
	ReasonNoPolicy     = "no policy is loaded: everything is denied"
	ReasonHousekeeping = "protocol housekeeping is open to every authenticated principal"
	ReasonUnbound      = "no role is bound to this principal (default deny)"
	ReasonDefaultDeny  = "no rule allows this request (default deny)"
)

// Revision returns the policy revision, 0 for a nil policy.
func (p *Policy) Revision() int64 {
	if p == nil {
		return 0
	}
	return p.revision
}

// Decide decides req for principal. Housekeeping methods are allowed to any
// principal; otherwise a matching deny rule wins, then a matching allow rule,
// and anything unmatched is denied. A nil policy denies everything. Decide
// does not allocate.
func (p *Policy) Decide(principal string, req Request) Decision {
	if p == nil {
		return Decision{Reason: ReasonNoPolicy}
	}
	if IsHousekeeping(req.Method) {
		return Decision{Allow: true, Revision: p.revision, Reason: ReasonHousekeeping}
	}
	e := p.principals[principal]
	if e == nil || e.rs == nil {
		return Decision{Revision: p.revision, Reason: ReasonUnbound}
	}
	m := matcher{methodID: methodID(req.Method), method: req.Method, backend: req.Backend}
	e.rs.decide(&m, req.Kind, req.Name)
	switch {
	case m.deny != nil:
		return Decision{Rule: m.deny.id, Revision: p.revision, Reason: m.deny.reason}
	case m.allow != nil:
		return Decision{Allow: true, Rule: m.allow.id, Revision: p.revision, Reason: m.allow.reason}
	}
	return Decision{Revision: p.revision, Reason: ReasonDefaultDeny}
}

// Visible reports whether an item of kind belongs in principal's list result
// (tools/list, prompts/list, resources/list, resources/templates/list). It is
// exactly the decision of the call the item stands for (CallMethod), so a
// caller never sees an item it cannot use, nor misses one it can.
func (p *Policy) Visible(principal string, kind ItemKind, backend, name string) bool {
	method := CallMethod(kind)
	if method == "" {
		return false
	}
	return p.Decide(principal, Request{Method: method, Backend: backend, Kind: kind, Name: name}).Allow
}

// HasPrincipal reports whether principal is listed in the spec or named by a
// binding or key.
func (p *Policy) HasPrincipal(principal string) bool {
	if p == nil {
		return false
	}
	if _, ok := p.principals[principal]; ok {
		return true
	}
	for _, k := range p.keys {
		if k.principal == principal {
			return true
		}
	}
	return false
}
