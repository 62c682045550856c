package document

import (
	"github.com/mcpgw/mcpgw/internal/policy"
)

// Document is the declarative configuration shared by `mcpctl apply -f` and a
// standalone edge's `--config` (DESIGN §5.1, docs/configuration.md). Several
// YAML documents merge into one Document; see Parse.
type Document struct {
	Backends   []Backend          `yaml:"backends,omitempty" json:"backends,omitempty"`
	Roles      []policy.Role      `yaml:"roles,omitempty" json:"roles,omitempty"`
	Bindings   []policy.Binding   `yaml:"bindings,omitempty" json:"bindings,omitempty"`
	Principals []policy.Principal `yaml:"principals,omitempty" json:"principals,omitempty"`
	// Auth and Audit apply to standalone edges only; the control plane refuses them.
	Auth  *Auth  `yaml:"auth,omitempty" json:"auth,omitempty"`
	Audit *Audit `yaml:"audit,omitempty" json:"audit,omitempty"`
}

// Backend is one upstream MCP server. Exactly one of Stdio and HTTP is set.
type Backend struct {
	// Name identifies the backend: [a-z0-9][a-z0-9_-]{0,31}. It is also the
	// default prefix of its tools and prompts: "<name>__<tool>".
	Name string `yaml:"name" json:"name"`
	// Prefix overrides the exposed-name prefix. nil means Name; a pointer to ""
	// exposes names unprefixed (collisions are rejected at load time).
	Prefix *string         `yaml:"prefix,omitempty" json:"prefix,omitempty"`
	Stdio  *StdioTransport `yaml:"stdio,omitempty" json:"stdio,omitempty"`
	HTTP   *HTTPTransport  `yaml:"http,omitempty" json:"http,omitempty"`
	// Timeout bounds one request to this backend (default 60s). Long tool
	// calls need a larger value; nothing in the edge uses a shorter hidden one.
	Timeout Duration `yaml:"timeout,omitempty" json:"timeout,omitempty"`
	// Sessions says how upstream sessions to a legacy (stateful) backend are
	// pooled for modern clients: "shared" (default) or "per_principal" for
	// backends that keep per-caller state.
	Sessions string `yaml:"sessions,omitempty" json:"sessions,omitempty"`
}

// StdioTransport runs the backend as a supervised child process.
type StdioTransport struct {
	// Command is argv; Command[0] is looked up in PATH.
	Command []string `yaml:"command" json:"command"`
	// Env adds variables to the child's environment. Values may reference the
	// edge's environment as "${env:NAME}" so secrets stay out of the file.
	Env map[string]string `yaml:"env,omitempty" json:"env,omitempty"`
	// Dir is the working directory (default: the edge's).
	Dir string `yaml:"dir,omitempty" json:"dir,omitempty"`
}

// HTTPTransport reaches the backend over MCP Streamable HTTP.
type HTTPTransport struct {
	URL string `yaml:"url" json:"url"`
	// Headers are sent on every upstream request; values may use "${env:NAME}".
	Headers map[string]string `yaml:"headers,omitempty" json:"headers,omitempty"`
}

// Auth configures how a standalone edge authenticates callers.
type Auth struct {
	// Anonymous, when set, maps requests that carry no credential at all to a
	// named principal. Off by default; a bad credential is never mapped.
	Anonymous *AnonymousAuth `yaml:"anonymous,omitempty" json:"anonymous,omitempty"`
}

// AnonymousAuth names the principal anonymous requests act as.
type AnonymousAuth struct {
	Principal string `yaml:"principal" json:"principal"`
}

// Audit configures a standalone edge's audit sinks (DESIGN §6).
type Audit struct {
	// File is a JSON-lines sink, rotated at MaxFileBytes.
	File         string `yaml:"file,omitempty" json:"file,omitempty"`
	MaxFileBytes int64  `yaml:"max_file_bytes,omitempty" json:"max_file_bytes,omitempty"`
	// PostgresURL sends events to audit_events through a local spool.
	PostgresURL string `yaml:"postgres_url,omitempty" json:"postgres_url,omitempty"`
	// Durability is "sync" (default) or "async".
	Durability string `yaml:"durability,omitempty" json:"durability,omitempty"`
	// OnFull is "refuse" (default) or "drop".
	OnFull string `yaml:"on_full,omitempty" json:"on_full,omitempty"`
	// Fsync is when the spool is flushed to the disk: "interval" (default,
	// every FsyncInterval), "always" (before a sync caller is released)
	// or "never" (left to the kernel).
	Fsync string `yaml:"fsync,omitempty" json:"fsync,omitempty"`
	// FsyncInterval is the longest a spool write stays unflushed under
	// fsync: interval (default 10ms).
	FsyncInterval Duration `yaml:"fsync_interval,omitempty" json:"fsync_interval,omitempty"`
	// SpoolDir holds events not yet written to their sink (default: next to File, or the state dir).
	SpoolDir string `yaml:"spool_dir,omitempty" json:"spool_dir,omitempty"`
	// SpoolMaxBytes caps the spool (default 1 GiB).
	SpoolMaxBytes int64 `yaml:"spool_max_bytes,omitempty" json:"spool_max_bytes,omitempty"`
}
