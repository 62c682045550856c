package store

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"unicode"

	"github.com/mcpgw/mcpgw/internal/document"
)

// validateConfig checks a whole config a write would produce and reports
// every problem at once, so nothing the edges would refuse (and nothing the
// schema would refuse with a less readable message) is ever committed.
//
// The document goes through internal/document's Validate, which is what a
// standalone edge runs on its file and which compiles the policy with
// internal/policy, the compiler every edge runs. The store's own checks
// (exposed-name prefixes that collide, what the tables rely on) and a compile
// with the stored key hashes follow only when that passes, so each problem
// is reported once.
func validateConfig(c *Config) error {
	doc := c.Document()
	var errs []FieldError
	if err := doc.Validate(); err != nil {
		var ve *document.ValidationError
		if !errors.As(err, &ve) {
			return fmt.Errorf("validating config: %w", err)
		}
		for _, fe := range ve.Errors {
			errs = append(errs, FieldError{Field: fe.Path, Message: fe.Msg})
		}
		return &InvalidConfigError{Errors: errs}
	}
	errs = append(errs, backendErrors(c)...)
	errs = append(errs, policyErrors(c)...)
	if len(errs) == 0 {
		errs = compileErrors(c)
	}
	if len(errs) > 0 {
		return &InvalidConfigError{Errors: errs}
	}
	return nil
}

// backendErrors check the backends; the field paths index the sorted list,
// with the resource key in the message.
func backendErrors(c *Config) []FieldError {
	var errs []FieldError
	add := func(field, format string, args ...any) {
		errs = append(errs, FieldError{Field: field, Message: fmt.Sprintf(format, args...)})
	}
	prefixes := map[string]string{}
	for i, b := range c.Backends {
		f := fmt.Sprintf("backends[%d]", i)
		if !document.ValidBackendName(b.Name) {
			add(f+".name", "backend name %q must match %s", b.Name, document.BackendNameSyntax)
		}
		switch {
		case b.Stdio == nil && b.HTTP == nil:
			add(f, "backend %q needs a transport: stdio or http", b.Name)
		case b.Stdio != nil && b.HTTP != nil:
			add(f, "backend %q sets both stdio and http; choose one", b.Name)
		case b.Stdio != nil:
			if len(b.Stdio.Command) == 0 || b.Stdio.Command[0] == "" {
				add(f+".stdio.command", "backend %q: command must name a program", b.Name)
			}
		case b.HTTP != nil:
			u, err := url.Parse(b.HTTP.URL)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				add(f+".http.url", "backend %q: url %q must be an absolute http or https URL", b.Name, b.HTTP.URL)
			}
		}
		if b.Timeout < 0 {
			add(f+".timeout", "backend %q: timeout must be positive", b.Name)
		}
		switch b.Sessions {
		case "", "shared", "per_principal":
		default:
			add(f+".sessions", "backend %q: sessions must be \"shared\" or \"per_principal\", not %q", b.Name, b.Sessions)
		}
		prefix := b.Name
		if b.Prefix != nil {
			prefix = *b.Prefix
		}
		if other, ok := prefixes[prefix]; ok && prefix != "" {
			add(f+".prefix", "backend %q uses prefix %q, already used by backend %q", b.Name, prefix, other)
		}
		prefixes[prefix] = b.Name
	}
	return errs
}

// policyErrors are the checks of roles, bindings and principals the tables
// rely on.
func policyErrors(c *Config) []FieldError {
	var errs []FieldError
	add := func(field, format string, args ...any) {
		errs = append(errs, FieldError{Field: field, Message: fmt.Sprintf(format, args...)})
	}
	ruleIDs := map[string]string{}
	for i, r := range c.Roles {
		f := fmt.Sprintf("roles[%d]", i)
		if r.Name == "" {
			add(f+".name", "role name is required")
		}
		for j, rule := range r.Rules {
			rf := fmt.Sprintf("%s.rules[%d]", f, j)
			if rule.Effect != "allow" && rule.Effect != "deny" {
				add(rf+".effect", "role %q: effect must be \"allow\" or \"deny\", not %q", r.Name, rule.Effect)
			}
			id := rule.ID
			if id == "" {
				id = fmt.Sprintf("%s/%d", r.Name, j)
			}
			if other, ok := ruleIDs[id]; ok {
				add(rf+".id", "rule id %q is also used in role %q", id, other)
			}
			ruleIDs[id] = r.Name
		}
	}
	for i, b := range c.Bindings {
		f := fmt.Sprintf("bindings[%d]", i)
		if _, ok := c.Role(b.Role); !ok {
			add(f+".role", "binding names role %q, which does not exist", b.Role)
		}
		if len(b.Subjects) == 0 {
			add(f+".subjects", "binding of role %q needs at least one subject", b.Role)
		}
		seen := map[string]bool{}
		for j, s := range b.Subjects {
			kind, name, ok := strings.Cut(s, ":")
			if !ok || (kind != "user" && kind != "group") || name == "" {
				add(fmt.Sprintf("%s.subjects[%d]", f, j), "subject %q must be \"user:<principal>\" or \"group:<group>\"", s)
			}
			if seen[s] {
				add(fmt.Sprintf("%s.subjects[%d]", f, j), "duplicate subject %q", s)
			}
			seen[s] = true
		}
	}
	for i, p := range c.Principals {
		f := fmt.Sprintf("principals[%d]", i)
		if p.Name == "" || strings.ContainsFunc(p.Name, func(r rune) bool { return r == ':' || unicode.IsSpace(r) }) {
			add(f+".name", "principal name %q must be non-empty without ':' or whitespace", p.Name)
		}
		if p.APIKeySHA256 != "" {
			add(f+".api_key_sha256", "principal %q: API keys are not part of the config in fleet mode", p.Name)
		}
		seen := map[string]bool{}
		for j, g := range p.Groups {
			if g == "" || seen[g] {
				add(fmt.Sprintf("%s.groups[%d]", f, j), "principal %q: empty or duplicate group %q", p.Name, g)
			}
			seen[g] = true
		}
	}
	return errs
}
