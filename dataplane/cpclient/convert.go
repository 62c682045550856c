package cpclient

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	mcpgwv1 "github.com/mcpgw/mcpgw/gen/mcpgw/v1"
	"github.com/mcpgw/mcpgw/internal/docproto"
	"github.com/mcpgw/mcpgw/internal/document"
	"github.com/mcpgw/mcpgw/internal/policy"
)

// Update is one validated config the Applier is asked to make live.
type Update struct {
	// Revision is the control plane's config revision; it goes into every
	// decision and audit event made under this config.
	Revision int64
	// Hash is the snapshot hash (lowercase hex SHA-256 of the payload).
	Hash string
	// CommitTime is when the revision was committed at the control plane
	// (zero if unknown).
	CommitTime time.Time
	// NodeGroup is the group the snapshot was built for.
	NodeGroup string
	// Document holds backends, roles, bindings and principals. Principals
	// carry no key hashes: those are in Keys.
	Document *document.Document
	// Keys are the API keys that authenticate callers, as hashes.
	Keys []policy.Key
	// Policy is Document's policy and Keys compiled at Revision, by the
	// same compiler the control plane validated them with. The Applier may
	// use it as is instead of compiling again.
	Policy *policy.Policy
}

// ResourceError attributes a rejection to one resource; it becomes a
// ConfigNack.rejected entry.
type ResourceError struct {
	Kind mcpgwv1.ResourceKind
	Name string
	Err  string
}

// ConfigError is a rejected config with per-resource reasons. Appliers may
// return one (or wrap one) so that the NACK names the resources at fault.
type ConfigError struct {
	Resources []ResourceError
}

func (e *ConfigError) Error() string {
	var b strings.Builder
	for i, r := range e.Resources {
		if i > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "%s %q: %s", kindWord(r.Kind), r.Name, r.Err)
	}
	return b.String()
}

func kindWord(k mcpgwv1.ResourceKind) string {
	switch k {
	case mcpgwv1.ResourceKind_RESOURCE_KIND_BACKEND:
		return "backend"
	case mcpgwv1.ResourceKind_RESOURCE_KIND_ROLE:
		return "role"
	case mcpgwv1.ResourceKind_RESOURCE_KIND_BINDING:
		return "binding"
	case mcpgwv1.ResourceKind_RESOURCE_KIND_PRINCIPAL:
		return "principal"
	case mcpgwv1.ResourceKind_RESOURCE_KIND_API_KEY:
		return "api key"
	}
	return "resource"
}

// toUpdate converts snapshot resources into the edge's config types and
// checks everything that can be checked without building state: the
// document as internal/document validates it (backends and policy), then
// the policy with the key hashes compiled by internal/policy at revision.
// A config that fails here never reaches the Applier.
func toUpdate(res *mcpgwv1.SnapshotResources, revision int64) (*Update, error) {
	doc := &document.Document{}
	for _, p := range res.GetBackends() {
		doc.Backends = append(doc.Backends, docproto.BackendFromProto(p))
	}
	for _, p := range res.GetRoles() {
		doc.Roles = append(doc.Roles, docproto.RoleFromProto(p))
	}
	for _, p := range res.GetBindings() {
		doc.Bindings = append(doc.Bindings, docproto.BindingFromProto(p))
	}
	for _, p := range res.GetPrincipals() {
		doc.Principals = append(doc.Principals, docproto.PrincipalFromProto(p))
	}
	u := &Update{Revision: revision, NodeGroup: res.GetNodeGroup(), Document: doc}
	keyIDs := make([]string, 0, len(res.GetApiKeys()))
	for _, p := range res.GetApiKeys() {
		k := docproto.APIKeyHashFromProto(p)
		u.Keys = append(u.Keys, policy.Key{Principal: k.Principal, SHA256: k.SHA256, ExpiresAt: k.ExpiresAt})
		keyIDs = append(keyIDs, k.KeyID)
	}
	var fieldErrs []policy.FieldError
	err := doc.Validate()
	if err == nil {
		u.Policy, err = policy.Compile(policy.Spec{
			Principals: doc.Principals, Roles: doc.Roles, Bindings: doc.Bindings, Keys: u.Keys,
		}, revision)
	}
	var ve *document.ValidationError
	var ce *policy.CompileError
	switch {
	case err == nil:
		return u, nil
	case errors.As(err, &ve):
		fieldErrs = ve.Errors
	case errors.As(err, &ce):
		fieldErrs = ce.Errors
	default:
		return nil, err
	}
	errs := make([]ResourceError, 0, len(fieldErrs))
	for _, fe := range fieldErrs {
		kind, name := attribute(fe.Path, doc, keyIDs)
		errs = append(errs, ResourceError{Kind: kind, Name: name, Err: fe.Error()})
	}
	return nil, &ConfigError{Resources: errs}
}

// compilePath matches the resource part of a FieldError path, e.g.
// `roles[2] "developer": rules[1]`. It is compiled on the first rejected
// config, not at every edge's start.
var compilePath = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`^(backends|principals|keys|roles|bindings)\[(\d+)\]`)
})

// attribute names the resource a validation error is about.
func attribute(path string, doc *document.Document, keyIDs []string) (mcpgwv1.ResourceKind, string) {
	m := compilePath().FindStringSubmatch(path)
	if m == nil {
		return mcpgwv1.ResourceKind_RESOURCE_KIND_UNSPECIFIED, ""
	}
	i, _ := strconv.Atoi(m[2])
	switch m[1] {
	case "backends":
		if i < len(doc.Backends) {
			return mcpgwv1.ResourceKind_RESOURCE_KIND_BACKEND, doc.Backends[i].Name
		}
	case "principals":
		if i < len(doc.Principals) {
			return mcpgwv1.ResourceKind_RESOURCE_KIND_PRINCIPAL, doc.Principals[i].Name
		}
	case "keys":
		if i < len(keyIDs) {
			return mcpgwv1.ResourceKind_RESOURCE_KIND_API_KEY, keyIDs[i]
		}
	case "roles":
		if i < len(doc.Roles) {
			return mcpgwv1.ResourceKind_RESOURCE_KIND_ROLE, doc.Roles[i].Name
		}
	case "bindings":
		if i < len(doc.Bindings) {
			return mcpgwv1.ResourceKind_RESOURCE_KIND_BINDING, doc.Bindings[i].Role
		}
	}
	return mcpgwv1.ResourceKind_RESOURCE_KIND_UNSPECIFIED, ""
}

// nackFor turns an error into the NACK's summary and per-resource errors.
func nackFor(err error) (string, []*mcpgwv1.ResourceError) {
	var ce *ConfigError
	if !errors.As(err, &ce) {
		return err.Error(), nil
	}
	out := make([]*mcpgwv1.ResourceError, 0, len(ce.Resources))
	for _, r := range ce.Resources {
		out = append(out, &mcpgwv1.ResourceError{Kind: r.Kind, Name: r.Name, Error: r.Err})
	}
	return err.Error(), out
}
