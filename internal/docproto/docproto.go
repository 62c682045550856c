// Package docproto converts between the declarative document types
// (internal/document, internal/policy) and their wire form in
// gen/mcpgw/v1. The control plane stores the document types, mcpctl parses
// YAML into them, and edges compile them; the proto messages only carry them.
// Conversions are total and lossless for everything both sides can express:
// DocumentFromProto(DocumentToProto(d)) == d for a fleet document (one without
// the edge-local auth/audit sections and key hashes, which have no wire form).
//
// Output-only proto fields (revision) are left 0; callers that have them set
// them on the result.
package docproto

import (
	"maps"
	"slices"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	mcpgwv1 "github.com/mcpgw/mcpgw/gen/mcpgw/v1"
	"github.com/mcpgw/mcpgw/internal/document"
	"github.com/mcpgw/mcpgw/internal/policy"
)

// DocumentToProto converts the fleet sections of d. Auth, Audit and
// principals' key hashes have no wire form and are dropped.
func DocumentToProto(d document.Document) *mcpgwv1.PolicyDocument {
	out := &mcpgwv1.PolicyDocument{}
	for _, b := range d.Backends {
		out.Backends = append(out.Backends, BackendToProto(b))
	}
	for _, r := range d.Roles {
		out.Roles = append(out.Roles, RoleToProto(r))
	}
	for _, b := range d.Bindings {
		out.Bindings = append(out.Bindings, BindingToProto(b))
	}
	for _, p := range d.Principals {
		out.Principals = append(out.Principals, PrincipalToProto(p))
	}
	return out
}

// DocumentFromProto converts a wire document; nil is the empty document.
func DocumentFromProto(p *mcpgwv1.PolicyDocument) document.Document {
	var d document.Document
	for _, b := range p.GetBackends() {
		d.Backends = append(d.Backends, BackendFromProto(b))
	}
	for _, r := range p.GetRoles() {
		d.Roles = append(d.Roles, RoleFromProto(r))
	}
	for _, b := range p.GetBindings() {
		d.Bindings = append(d.Bindings, BindingFromProto(b))
	}
	for _, pr := range p.GetPrincipals() {
		d.Principals = append(d.Principals, PrincipalFromProto(pr))
	}
	return d
}

// BackendToProto converts a backend. A zero timeout (the default) is unset.
func BackendToProto(b document.Backend) *mcpgwv1.Backend {
	out := &mcpgwv1.Backend{Name: b.Name, Sessions: b.Sessions}
	if b.Prefix != nil {
		p := *b.Prefix
		out.Prefix = &p
	}
	switch {
	case b.Stdio != nil:
		out.Transport = &mcpgwv1.Backend_Stdio{Stdio: &mcpgwv1.StdioTransport{
			Command: slices.Clone(b.Stdio.Command), Env: maps.Clone(b.Stdio.Env), Dir: b.Stdio.Dir}}
	case b.HTTP != nil:
		out.Transport = &mcpgwv1.Backend_Http{Http: &mcpgwv1.HttpTransport{Url: b.HTTP.URL, Headers: maps.Clone(b.HTTP.Headers)}}
	}
	if b.Timeout != 0 {
		out.Timeout = durationpb.New(b.Timeout.D())
	}
	return out
}

// BackendFromProto converts a backend. A message without a transport yields
// a backend without one, which validation then reports by name; a message
// cannot carry both.
func BackendFromProto(p *mcpgwv1.Backend) document.Backend {
	b := document.Backend{Name: p.GetName(), Sessions: p.GetSessions()}
	if p.Prefix != nil {
		v := p.GetPrefix()
		b.Prefix = &v
	}
	if s := p.GetStdio(); s != nil {
		b.Stdio = &document.StdioTransport{Command: nilIfEmpty(s.GetCommand()), Env: nilMapIfEmpty(s.GetEnv()), Dir: s.GetDir()}
	}
	if h := p.GetHttp(); h != nil {
		b.HTTP = &document.HTTPTransport{URL: h.GetUrl(), Headers: nilMapIfEmpty(h.GetHeaders())}
	}
	if p.GetTimeout() != nil {
		b.Timeout = document.Duration(p.GetTimeout().AsDuration())
	}
	return b
}

// RoleToProto converts a role and its rules, in order.
func RoleToProto(r policy.Role) *mcpgwv1.Role {
	out := &mcpgwv1.Role{Name: r.Name, Description: r.Description}
	for _, rule := range r.Rules {
		out.Rules = append(out.Rules, RuleToProto(rule))
	}
	return out
}

// RoleFromProto converts a role and its rules, in order.
func RoleFromProto(p *mcpgwv1.Role) policy.Role {
	r := policy.Role{Name: p.GetName(), Description: p.GetDescription()}
	for _, rule := range p.GetRules() {
		r.Rules = append(r.Rules, RuleFromProto(rule))
	}
	return r
}

// RuleToProto converts one rule.
func RuleToProto(r policy.Rule) *mcpgwv1.Rule {
	return &mcpgwv1.Rule{Id: r.ID, Effect: r.Effect, Methods: slices.Clone(r.Methods), Backends: slices.Clone(r.Backends),
		Tools: slices.Clone(r.Tools), Prompts: slices.Clone(r.Prompts), Resources: slices.Clone(r.Resources)}
}

// RuleFromProto converts one rule; empty lists become nil ("absent").
func RuleFromProto(p *mcpgwv1.Rule) policy.Rule {
	return policy.Rule{ID: p.GetId(), Effect: p.GetEffect(), Methods: nilIfEmpty(p.GetMethods()), Backends: nilIfEmpty(p.GetBackends()),
		Tools: nilIfEmpty(p.GetTools()), Prompts: nilIfEmpty(p.GetPrompts()), Resources: nilIfEmpty(p.GetResources())}
}

// BindingToProto converts a binding.
func BindingToProto(b policy.Binding) *mcpgwv1.RoleBinding {
	return &mcpgwv1.RoleBinding{Role: b.Role, Subjects: slices.Clone(b.Subjects)}
}

// BindingFromProto converts a binding.
func BindingFromProto(p *mcpgwv1.RoleBinding) policy.Binding {
	return policy.Binding{Role: p.GetRole(), Subjects: nilIfEmpty(p.GetSubjects())}
}

// PrincipalToProto converts a principal; its key hash (standalone documents
// only) has no wire form and is dropped.
func PrincipalToProto(p policy.Principal) *mcpgwv1.Principal {
	return &mcpgwv1.Principal{Name: p.Name, Groups: slices.Clone(p.Groups)}
}

// PrincipalFromProto converts a principal.
func PrincipalFromProto(p *mcpgwv1.Principal) policy.Principal {
	return policy.Principal{Name: p.GetName(), Groups: nilIfEmpty(p.GetGroups())}
}

// APIKeyHash is what an edge needs to authenticate one API key (the same
// fields as controlplane/store.APIKeyHash, repeated here so the edge need not
// import the control plane).
type APIKeyHash struct {
	KeyID     string
	Principal string
	SHA256    string
	// ExpiresAt zero means never.
	ExpiresAt time.Time
}

// APIKeyHashToProto converts a key hash entry.
func APIKeyHashToProto(k APIKeyHash) *mcpgwv1.ApiKeyHash {
	out := &mcpgwv1.ApiKeyHash{KeyId: k.KeyID, Principal: k.Principal, Sha256: k.SHA256}
	if !k.ExpiresAt.IsZero() {
		out.ExpireTime = timestamppb.New(k.ExpiresAt)
	}
	return out
}

// APIKeyHashFromProto converts a key hash entry.
func APIKeyHashFromProto(p *mcpgwv1.ApiKeyHash) APIKeyHash {
	k := APIKeyHash{KeyID: p.GetKeyId(), Principal: p.GetPrincipal(), SHA256: p.GetSha256()}
	if p.GetExpireTime() != nil {
		k.ExpiresAt = p.GetExpireTime().AsTime()
	}
	return k
}

func nilIfEmpty(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return slices.Clone(s)
}

func nilMapIfEmpty(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	return maps.Clone(m)
}
