package document

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/mcpgw/mcpgw/internal/policy"
)

// FieldError is one validation problem located by a path such as
// `backends[1] "search": http.url`; it is the policy package's type so the
// control plane handles document and policy errors alike.
type FieldError = policy.FieldError

// ValidationError lists every problem Validate found.
type ValidationError struct {
	Errors []FieldError
}

func (e *ValidationError) Error() string {
	switch len(e.Errors) {
	case 0:
		return "invalid document"
	case 1:
		return "invalid document: " + e.Errors[0].Error()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "invalid document (%d errors):", len(e.Errors))
	for _, fe := range e.Errors {
		b.WriteString("\n  ")
		b.WriteString(fe.Error())
	}
	return b.String()
}

// Allowed values of enumerated fields; "" means the default (the first).
const (
	SessionsShared       = "shared"
	SessionsPerPrincipal = "per_principal"
	DurabilitySync       = "sync"
	DurabilityAsync      = "async"
	OnFullRefuse         = "refuse"
	OnFullDrop           = "drop"
	FsyncInterval        = "interval"
	FsyncAlways          = "always"
	FsyncNever           = "never"
)

// The syntax of backend names and exposed-name prefixes, as patterns for
// messages; ValidBackendName and ValidPrefix check them.
const (
	BackendNameSyntax = `^[a-z0-9][a-z0-9_-]{0,31}$`
	PrefixSyntax      = `^[a-zA-Z0-9_-]{0,32}$`
)

// ValidBackendName reports whether s matches BackendNameSyntax. It is a
// loop rather than a regexp: the counted repetition compiles to a program
// 32 times the size, which every process linking a checker (the edge, the
// control plane) built in init whether it ever checked a name or not.
func ValidBackendName(s string) bool {
	if len(s) == 0 || len(s) > 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9':
		case (c == '_' || c == '-') && i > 0:
		default:
			return false
		}
	}
	return true
}

// validHeaderName reports whether s is an RFC 9110 token, as header names
// are.
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// ValidPrefix reports whether s matches PrefixSyntax ("" is valid: names
// exposed unprefixed).
func ValidPrefix(s string) bool {
	if len(s) > 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

// Validate checks everything Parse cannot: names, transports, URLs, enums,
// ${env:NAME} syntax, and the policy (compiled at revision 0). It reports all
// problems at once as a *ValidationError.
func (d *Document) Validate() error {
	var errs []FieldError
	add := func(path, format string, args ...any) {
		errs = append(errs, FieldError{Path: path, Msg: fmt.Sprintf(format, args...)})
	}

	backendAt := make(map[string]int)
	for i, b := range d.Backends {
		path := fmt.Sprintf("backends[%d]", i)
		if b.Name != "" {
			path += " " + strconv.Quote(b.Name)
		}
		switch {
		case b.Name == "":
			add(path, "name is required")
		case !ValidBackendName(b.Name):
			add(path, "bad name %q: lowercase letters, digits, _ and -, at most 32, starting with a letter or digit", b.Name)
		}
		if j, dup := backendAt[b.Name]; dup && b.Name != "" {
			add(path, "duplicate backend %q (also backends[%d])", b.Name, j)
		} else {
			backendAt[b.Name] = i
		}
		if b.Prefix != nil && !ValidPrefix(*b.Prefix) {
			add(path+": prefix", "bad prefix %q: letters, digits, _ and -, at most 32 (\"\" exposes names unprefixed)", *b.Prefix)
		}
		switch {
		case b.Stdio == nil && b.HTTP == nil:
			add(path, "one of stdio or http is required")
		case b.Stdio != nil && b.HTTP != nil:
			add(path, "set only one of stdio and http")
		}
		if s := b.Stdio; s != nil {
			if len(s.Command) == 0 || s.Command[0] == "" {
				add(path+": stdio.command", "command is required: the program and its arguments, e.g. [github-mcp-server, stdio]")
			}
			for _, k := range sortedKeys(s.Env) {
				if !validEnvName(k) {
					add(path+": stdio.env", "bad variable name %q: letters, digits and _, not starting with a digit", k)
				}
				if _, err := EnvRefs(s.Env[k]); err != nil {
					add(path+": stdio.env."+k, "%v", err)
				}
			}
		}
		if h := b.HTTP; h != nil {
			if msg := checkURL(h.URL); msg != "" {
				add(path+": http.url", "%s", msg)
			}
			for _, k := range sortedKeys(h.Headers) {
				if !validHeaderName(k) {
					add(path+": http.headers", "bad header name %q", k)
				}
				if _, err := EnvRefs(h.Headers[k]); err != nil {
					add(path+": http.headers."+k, "%v", err)
				}
			}
		}
		if b.Timeout < 0 {
			add(path+": timeout", "must not be negative")
		}
		if !slices.Contains([]string{"", SessionsShared, SessionsPerPrincipal}, b.Sessions) {
			add(path+": sessions", "bad value %q: shared (default) or per_principal", b.Sessions)
		}
	}

	bindingAt := make(map[string]int)
	for i, b := range d.Bindings {
		if j, dup := bindingAt[b.Role]; dup && b.Role != "" {
			add(fmt.Sprintf("bindings[%d]", i), "role %q is already bound by bindings[%d]; list all its subjects in one binding", b.Role, j)
		} else {
			bindingAt[b.Role] = i
		}
	}

	if d.Auth != nil && d.Auth.Anonymous != nil {
		switch p := d.Auth.Anonymous.Principal; {
		case p == "":
			add("auth.anonymous.principal", "is required: the principal that requests without a key act as")
		case !policy.ValidPrincipalName(p):
			add("auth.anonymous.principal", "bad principal name %q", p)
		}
	}

	if a := d.Audit; a != nil {
		if !slices.Contains([]string{"", DurabilitySync, DurabilityAsync}, a.Durability) {
			add("audit.durability", "bad value %q: sync (default) or async", a.Durability)
		}
		if !slices.Contains([]string{"", OnFullRefuse, OnFullDrop}, a.OnFull) {
			add("audit.on_full", "bad value %q: refuse (default) or drop", a.OnFull)
		}
		if !slices.Contains([]string{"", FsyncInterval, FsyncAlways, FsyncNever}, a.Fsync) {
			add("audit.fsync", "bad value %q: interval (default), always or never", a.Fsync)
		}
		if a.FsyncInterval != 0 && a.Fsync != "" && a.Fsync != FsyncInterval {
			add("audit.fsync_interval", "applies only to fsync: interval")
		}
		if a.MaxFileBytes < 0 {
			add("audit.max_file_bytes", "must not be negative")
		}
		if a.SpoolMaxBytes < 0 {
			add("audit.spool_max_bytes", "must not be negative")
		}
		if a.PostgresURL != "" {
			if u, err := url.Parse(a.PostgresURL); err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
				// Never echo the URL: it usually carries a password.
				add("audit.postgres_url", "must be a postgres:// or postgresql:// URL")
			}
		}
	}

	if _, err := policy.Compile(d.PolicySpec(), 0); err != nil {
		var ce *policy.CompileError
		if !errors.As(err, &ce) {
			return fmt.Errorf("compiling policy: %w", err)
		}
		errs = append(errs, ce.Errors...)
	}
	if len(errs) > 0 {
		return &ValidationError{Errors: errs}
	}
	return nil
}

// PolicySpec returns the document's policy part for policy.Compile.
func (d *Document) PolicySpec() policy.Spec {
	return policy.Spec{Principals: d.Principals, Roles: d.Roles, Bindings: d.Bindings}
}

func checkURL(raw string) string {
	if raw == "" {
		return "url is required, e.g. http://127.0.0.1:9000/mcp"
	}
	u, err := url.Parse(raw)
	if err != nil {
		// url.Parse quotes the whole URL, which may hold a credential.
		return "not a valid URL"
	}
	if u.User != nil {
		return "URL must not carry credentials; use a header with ${env:NAME}"
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Sprintf("URL %q must be absolute http:// or https://", raw)
	}
	if u.Host == "" {
		return fmt.Sprintf("URL %q has no host", raw)
	}
	return ""
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
