package policy

import "time"

// The input model. These types are what a declarative document's `principals:`,
// `roles:` and `bindings:` sections decode into (see internal/document) and what
// the control plane stores; Compile turns them into an immutable Policy.

// Principal is a caller identity with its group memberships. In a standalone
// document it may carry the hex SHA-256 of its API key; in fleet mode key
// hashes come from the control plane's key store instead.
type Principal struct {
	Name         string   `yaml:"name" json:"name"`
	Groups       []string `yaml:"groups,omitempty" json:"groups,omitempty"`
	APIKeySHA256 string   `yaml:"api_key_sha256,omitempty" json:"api_key_sha256,omitempty"`
}

// Role is a named, ordered list of rules.
type Role struct {
	Name        string `yaml:"name" json:"name"`
	Description string `yaml:"description,omitempty" json:"description,omitempty"`
	Rules       []Rule `yaml:"rules" json:"rules"`
}

// Effect of a rule.
const (
	EffectAllow = "allow"
	EffectDeny  = "deny"
)

// Rule matches a request when every field it sets matches (DESIGN §5):
// Methods (absent = any method), Backends (absent = any backend), and the item
// list for the request's item kind. A rule that sets none of Tools, Prompts and
// Resources covers every item of the methods and backends it names. All
// patterns are globs ('*' any run of characters, '?' one character).
type Rule struct {
	// ID names the rule in decisions and audit; default "<role>/<index>".
	ID        string   `yaml:"id,omitempty" json:"id,omitempty"`
	Effect    string   `yaml:"effect" json:"effect"`
	Methods   []string `yaml:"methods,omitempty" json:"methods,omitempty"`
	Backends  []string `yaml:"backends,omitempty" json:"backends,omitempty"`
	Tools     []string `yaml:"tools,omitempty" json:"tools,omitempty"`
	Prompts   []string `yaml:"prompts,omitempty" json:"prompts,omitempty"`
	Resources []string `yaml:"resources,omitempty" json:"resources,omitempty"`
}

// Binding grants a role to subjects: "user:<principal>" or "group:<group>".
type Binding struct {
	Role     string   `yaml:"role" json:"role"`
	Subjects []string `yaml:"subjects" json:"subjects"`
}

// Key is the stored form of one API key: the principal it authenticates and
// the SHA-256 of the whole key string as 64 lowercase hex digits. The secret
// itself is never stored (DESIGN §5).
type Key struct {
	Principal string `yaml:"principal" json:"principal"`
	SHA256    string `yaml:"sha256" json:"sha256"`
	// ExpiresAt is when the key stops working; zero means never.
	ExpiresAt time.Time `yaml:"expires_at,omitempty" json:"expires_at,omitempty"`
}

// Spec is everything Compile needs.
type Spec struct {
	Principals []Principal
	Roles      []Role
	Bindings   []Binding
	// Keys are API key hashes from the control plane's key store; they are
	// merged with the principals' api_key_sha256 (standalone documents).
	Keys []Key
}
