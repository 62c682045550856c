package store

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mcpgw/mcpgw/internal/document"
	"github.com/mcpgw/mcpgw/internal/policy"
)

// Backend is a stored backend with the revision that last changed it.
type Backend struct {
	document.Backend
	Revision int64
}

// Role is a stored role (with its ordered rules) and its revision.
type Role struct {
	policy.Role
	Revision int64
}

// Binding is the stored binding of one role: all its subjects, sorted.
type Binding struct {
	policy.Binding
	Revision int64
}

// Principal is a stored principal and its revision. APIKeySHA256 is always
// empty: in fleet mode key hashes live in api_keys (Config.APIKeys).
type Principal struct {
	policy.Principal
	Revision int64
}

// APIKeyHash is what an edge needs to authenticate one API key.
type APIKeyHash struct {
	KeyID     string
	Principal string
	// SHA256 is the lowercase hex SHA-256 of the whole key string.
	SHA256 string
	// ExpiresAt is zero when the key never expires.
	ExpiresAt time.Time
}

// Config is the whole configuration at one revision, as edges need it.
// Every list is sorted by its resource key in byte order (COLLATE "C", the
// order Go's string comparison agrees with).
type Config struct {
	Revision   int64
	Backends   []Backend
	Roles      []Role
	Bindings   []Binding
	Principals []Principal
	// APIKeys are the unrevoked keys. Expired ones stay, with their expiry,
	// so the set changes only with a revision; edges enforce expiry.
	APIKeys []APIKeyHash
}

// Document returns the config's declarative document (without API keys,
// which are never part of one in fleet mode), lists sorted by key.
func (c *Config) Document() document.Document {
	var d document.Document
	for _, b := range c.Backends {
		d.Backends = append(d.Backends, b.Backend)
	}
	for _, r := range c.Roles {
		d.Roles = append(d.Roles, r.Role)
	}
	for _, b := range c.Bindings {
		d.Bindings = append(d.Bindings, b.Binding)
	}
	for _, p := range c.Principals {
		d.Principals = append(d.Principals, p.Principal)
	}
	return d
}

// PolicySpec returns the compiler input for the config, with each principal's
// key hashes left out (fleet edges get them from APIKeys).
func (c *Config) PolicySpec() policy.Spec {
	d := c.Document()
	return policy.Spec{Principals: d.Principals, Roles: d.Roles, Bindings: d.Bindings}
}

// Backend returns the named backend.
func (c *Config) Backend(name string) (Backend, bool) {
	i, ok := slices.BinarySearchFunc(c.Backends, name, func(b Backend, n string) int { return cmp.Compare(b.Name, n) })
	if !ok {
		return Backend{}, false
	}
	return c.Backends[i], true
}

// Role returns the named role.
func (c *Config) Role(name string) (Role, bool) {
	i, ok := slices.BinarySearchFunc(c.Roles, name, func(r Role, n string) int { return cmp.Compare(r.Name, n) })
	if !ok {
		return Role{}, false
	}
	return c.Roles[i], true
}

// Binding returns the binding of the named role.
func (c *Config) Binding(role string) (Binding, bool) {
	i, ok := slices.BinarySearchFunc(c.Bindings, role, func(b Binding, n string) int { return cmp.Compare(b.Role, n) })
	if !ok {
		return Binding{}, false
	}
	return c.Bindings[i], true
}

// Principal returns the named principal.
func (c *Config) Principal(name string) (Principal, bool) {
	i, ok := slices.BinarySearchFunc(c.Principals, name, func(p Principal, n string) int { return cmp.Compare(p.Name, n) })
	if !ok {
		return Principal{}, false
	}
	return c.Principals[i], true
}

// querier is what both a pool and a transaction offer for reading.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// LoadConfig reads the current configuration in one consistent snapshot
// (REPEATABLE READ): the revision and every row belong together.
func (s *Store) LoadConfig(ctx context.Context) (*Config, error) {
	var cfg *Config
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		var rev int64
		if err := tx.QueryRow(ctx, `SELECT revision FROM config_head`).Scan(&rev); err != nil {
			return fmt.Errorf("reading the config revision: %w", err)
		}
		var err error
		cfg, err = loadConfig(ctx, tx, rev)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("loading config: %w", err)
	}
	return cfg, nil
}

// loadConfig reads every config table through q, labelling the result rev.
func loadConfig(ctx context.Context, q querier, rev int64) (*Config, error) {
	cfg := &Config{Revision: rev}
	var err error
	if cfg.Backends, err = readBackends(ctx, q, page{}); err != nil {
		return nil, err
	}
	if cfg.Roles, err = readRoles(ctx, q, page{}); err != nil {
		return nil, err
	}
	if cfg.Bindings, err = readBindings(ctx, q, page{}); err != nil {
		return nil, err
	}
	if cfg.Principals, err = readPrincipals(ctx, q, page{}); err != nil {
		return nil, err
	}
	rows, err := q.Query(ctx, `SELECT id, principal, sha256, expires_at FROM api_keys
		WHERE revoked_at IS NULL ORDER BY id COLLATE "C"`)
	if err != nil {
		return nil, fmt.Errorf("reading api keys: %w", err)
	}
	cfg.APIKeys, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (APIKeyHash, error) {
		var k APIKeyHash
		var exp *time.Time
		err := r.Scan(&k.KeyID, &k.Principal, &k.SHA256, &exp)
		if exp != nil {
			k.ExpiresAt = exp.UTC()
		}
		return k, err
	})
	if err != nil {
		return nil, fmt.Errorf("reading api keys: %w", err)
	}
	return cfg, nil
}

// page selects rows of a list: keys after After (exclusive), or only the key
// Only, at most Limit rows (0 = all).
type page struct {
	After string
	Only  string
	Limit int
}

// where is the shared filter clause on key column col; $1 is After, $2 Only.
func (p page) where(col string) string {
	return fmt.Sprintf(` WHERE %[1]s COLLATE "C" > $1 AND ($2 = '' OR %[1]s = $2)`, col)
}

// limit turns the page size into SQL; 0 means no limit.
func (p page) limit() string {
	if p.Limit <= 0 {
		return ""
	}
	return fmt.Sprintf(" LIMIT %d", p.Limit)
}

func readBackends(ctx context.Context, q querier, p page) ([]Backend, error) {
	rows, err := q.Query(ctx, `SELECT name, prefix, stdio_command, stdio_env, stdio_dir, http_url, http_headers,
		timeout_ms, sessions, revision FROM backends`+p.where("name")+` ORDER BY name COLLATE "C"`+p.limit(), p.After, p.Only)
	if err != nil {
		return nil, fmt.Errorf("reading backends: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Backend, error) {
		var (
			b       Backend
			command []string
			env     map[string]string
			dir     *string
			url     *string
			headers map[string]string
			ms      int64
		)
		if err := r.Scan(&b.Name, &b.Prefix, &command, &env, &dir, &url, &headers, &ms, &b.Sessions, &b.Revision); err != nil {
			return b, err
		}
		if command != nil {
			b.Stdio = &document.StdioTransport{Command: command, Env: env}
			if dir != nil {
				b.Stdio.Dir = *dir
			}
		}
		if url != nil {
			b.HTTP = &document.HTTPTransport{URL: *url, Headers: headers}
		}
		b.Timeout = document.Duration(time.Duration(ms) * time.Millisecond)
		normalizeBackend(&b.Backend)
		return b, nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading backends: %w", err)
	}
	return out, nil
}

func readRoles(ctx context.Context, q querier, p page) ([]Role, error) {
	rows, err := q.Query(ctx, `SELECT name, description, revision FROM roles`+p.where("name")+` ORDER BY name COLLATE "C"`+p.limit(), p.After, p.Only)
	if err != nil {
		return nil, fmt.Errorf("reading roles: %w", err)
	}
	roles, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Role, error) {
		var role Role
		err := r.Scan(&role.Name, &role.Description, &role.Revision)
		return role, err
	})
	if err != nil {
		return nil, fmt.Errorf("reading roles: %w", err)
	}
	if len(roles) == 0 {
		return nil, nil
	}
	names := make([]string, len(roles))
	for i, r := range roles {
		names[i] = r.Name
	}
	rows, err = q.Query(ctx, `SELECT role, id, effect, methods, backends, tools, prompts, resources
		FROM rules WHERE role = ANY($1) ORDER BY role COLLATE "C", position`, names)
	if err != nil {
		return nil, fmt.Errorf("reading rules: %w", err)
	}
	byRole := make(map[string][]policy.Rule, len(roles))
	var (
		role string
		rule policy.Rule
	)
	_, err = pgx.ForEachRow(rows, []any{&role, &rule.ID, &rule.Effect, &rule.Methods, &rule.Backends, &rule.Tools, &rule.Prompts, &rule.Resources}, func() error {
		byRole[role] = append(byRole[role], normalizeRule(rule))
		rule = policy.Rule{}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading rules: %w", err)
	}
	for i := range roles {
		roles[i].Rules = byRole[roles[i].Name]
	}
	return roles, nil
}

func readBindings(ctx context.Context, q querier, p page) ([]Binding, error) {
	rows, err := q.Query(ctx, `SELECT role, subjects, revision FROM bindings`+p.where("role")+` ORDER BY role COLLATE "C"`+p.limit(), p.After, p.Only)
	if err != nil {
		return nil, fmt.Errorf("reading bindings: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Binding, error) {
		var b Binding
		err := r.Scan(&b.Role, &b.Subjects, &b.Revision)
		return b, err
	})
	if err != nil {
		return nil, fmt.Errorf("reading bindings: %w", err)
	}
	return out, nil
}

func readPrincipals(ctx context.Context, q querier, p page) ([]Principal, error) {
	rows, err := q.Query(ctx, `SELECT name, groups, revision FROM principals`+p.where("name")+` ORDER BY name COLLATE "C"`+p.limit(), p.After, p.Only)
	if err != nil {
		return nil, fmt.Errorf("reading principals: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Principal, error) {
		var p Principal
		err := r.Scan(&p.Name, &p.Groups, &p.Revision)
		if len(p.Groups) == 0 {
			p.Groups = nil
		}
		return p, err
	})
	if err != nil {
		return nil, fmt.Errorf("reading principals: %w", err)
	}
	return out, nil
}

// ListBackends returns up to limit backends named after `after`, sorted by
// name, and the current revision.
func (s *Store) ListBackends(ctx context.Context, after string, limit int) ([]Backend, int64, error) {
	var out []Backend
	rev, err := s.readTx(ctx, func(tx pgx.Tx) (err error) {
		out, err = readBackends(ctx, tx, page{After: after, Limit: limit})
		return err
	})
	return out, rev, err
}

// ListRoles returns up to limit roles named after `after`, sorted by name.
func (s *Store) ListRoles(ctx context.Context, after string, limit int) ([]Role, int64, error) {
	var out []Role
	rev, err := s.readTx(ctx, func(tx pgx.Tx) (err error) {
		out, err = readRoles(ctx, tx, page{After: after, Limit: limit})
		return err
	})
	return out, rev, err
}

// ListBindings returns up to limit bindings of roles after `after`.
func (s *Store) ListBindings(ctx context.Context, after string, limit int) ([]Binding, int64, error) {
	var out []Binding
	rev, err := s.readTx(ctx, func(tx pgx.Tx) (err error) {
		out, err = readBindings(ctx, tx, page{After: after, Limit: limit})
		return err
	})
	return out, rev, err
}

// ListPrincipals returns up to limit principals named after `after`.
func (s *Store) ListPrincipals(ctx context.Context, after string, limit int) ([]Principal, int64, error) {
	var out []Principal
	rev, err := s.readTx(ctx, func(tx pgx.Tx) (err error) {
		out, err = readPrincipals(ctx, tx, page{After: after, Limit: limit})
		return err
	})
	return out, rev, err
}

// GetBackend returns one backend; ErrNotFound if there is none.
func (s *Store) GetBackend(ctx context.Context, name string) (Backend, error) {
	return getOne(ctx, s, KindBackend, name, readBackends)
}

// GetRole returns one role; ErrNotFound if there is none.
func (s *Store) GetRole(ctx context.Context, name string) (Role, error) {
	return getOne(ctx, s, KindRole, name, readRoles)
}

// GetBinding returns the binding of one role; ErrNotFound if there is none.
func (s *Store) GetBinding(ctx context.Context, role string) (Binding, error) {
	return getOne(ctx, s, KindBinding, role, readBindings)
}

// GetPrincipal returns one principal; ErrNotFound if there is none.
func (s *Store) GetPrincipal(ctx context.Context, name string) (Principal, error) {
	return getOne(ctx, s, KindPrincipal, name, readPrincipals)
}

func getOne[T any](ctx context.Context, s *Store, kind Kind, key string, load func(context.Context, querier, page) ([]T, error)) (T, error) {
	var zero T
	if key == "" {
		return zero, notFound(kind, key)
	}
	var out []T
	_, err := s.readTx(ctx, func(tx pgx.Tx) (err error) {
		out, err = load(ctx, tx, page{Only: key})
		return err
	})
	if err != nil {
		return zero, err
	}
	if len(out) == 0 {
		return zero, notFound(kind, key)
	}
	return out[0], nil
}

// readTx runs fn in a read-only REPEATABLE READ transaction and returns the
// config revision that transaction saw.
func (s *Store) readTx(ctx context.Context, fn func(tx pgx.Tx) error) (int64, error) {
	var rev int64
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `SELECT revision FROM config_head`).Scan(&rev); err != nil {
			return fmt.Errorf("reading the config revision: %w", err)
		}
		return fn(tx)
	})
	return rev, err
}

// normalizeBackend gives equal backends one spelling, so comparing their JSON
// compares their meaning: empty maps and lists are nil, timeouts whole
// milliseconds (what the table stores).
func normalizeBackend(b *document.Backend) {
	b.Timeout = document.Duration(b.Timeout.D().Truncate(time.Millisecond))
	if b.Stdio != nil {
		if len(b.Stdio.Env) == 0 {
			b.Stdio.Env = nil
		}
		if len(b.Stdio.Command) == 0 {
			b.Stdio.Command = nil
		}
	}
	if b.HTTP != nil && len(b.HTTP.Headers) == 0 {
		b.HTTP.Headers = nil
	}
}

func normalizeRule(r policy.Rule) policy.Rule {
	for _, l := range []*[]string{&r.Methods, &r.Backends, &r.Tools, &r.Prompts, &r.Resources} {
		if len(*l) == 0 {
			*l = nil
		}
	}
	return r
}

func normalizeRole(r *policy.Role) {
	if len(r.Rules) == 0 {
		r.Rules = nil
	}
	for i := range r.Rules {
		r.Rules[i] = normalizeRule(r.Rules[i])
	}
}

// normalizeBinding sorts subjects: a binding is a set, stored as rows.
func normalizeBinding(b *policy.Binding) {
	b.Subjects = slices.Clone(b.Subjects)
	slices.Sort(b.Subjects)
	if len(b.Subjects) == 0 {
		b.Subjects = nil
	}
}

func normalizePrincipal(p *policy.Principal) {
	if len(p.Groups) == 0 {
		p.Groups = nil
	}
}

// clone deep-copies the parts of a Config that edits change.
func (c *Config) clone() *Config {
	n := &Config{Revision: c.Revision, APIKeys: slices.Clone(c.APIKeys)}
	for _, b := range c.Backends {
		nb := b
		nb.Prefix = clonePtr(b.Prefix)
		if b.Stdio != nil {
			s := *b.Stdio
			s.Command = slices.Clone(s.Command)
			s.Env = maps.Clone(s.Env)
			nb.Stdio = &s
		}
		if b.HTTP != nil {
			h := *b.HTTP
			h.Headers = maps.Clone(h.Headers)
			nb.HTTP = &h
		}
		n.Backends = append(n.Backends, nb)
	}
	for _, r := range c.Roles {
		nr := r
		nr.Rules = nil
		for _, rule := range r.Rules {
			rule.Methods = slices.Clone(rule.Methods)
			rule.Backends = slices.Clone(rule.Backends)
			rule.Tools = slices.Clone(rule.Tools)
			rule.Prompts = slices.Clone(rule.Prompts)
			rule.Resources = slices.Clone(rule.Resources)
			nr.Rules = append(nr.Rules, rule)
		}
		n.Roles = append(n.Roles, nr)
	}
	for _, b := range c.Bindings {
		nb := b
		nb.Subjects = slices.Clone(b.Subjects)
		n.Bindings = append(n.Bindings, nb)
	}
	for _, p := range c.Principals {
		np := p
		np.Groups = slices.Clone(p.Groups)
		n.Principals = append(n.Principals, np)
	}
	return n
}

func clonePtr[T any](p *T) *T {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}

// specJSON is the JSON form of a resource in the change log and diffs: the
// declarative document's spelling, without bookkeeping.
func specJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		// The document types are plain data; failing to encode one is a bug.
		panic(fmt.Sprintf("store: encoding %T: %v", v, err))
	}
	return b
}
