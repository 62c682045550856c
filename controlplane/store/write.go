package store

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mcpgw/mcpgw/internal/document"
	"github.com/mcpgw/mcpgw/internal/policy"
)

// edit is one config write in progress: the config as committed (cur, read
// only) and as the write wants it (next). The store diffs the two, validates
// next as a whole, and writes only what differs.
type edit struct {
	tx   ConfigTx
	cur  *Config
	next *Config
	// extra are changes to objects outside the document (API keys), and
	// keys the key rows they make, written once the revision is known.
	extra []Change
	keys  []KeyWrite
}

// ConfigTx is one config write's database transaction as the shared write
// logic (Writer) needs it. The Postgres store implements it here and the
// embedded store (controlplane/store/sqlitestore) over its own SQL, so both
// turn the same write into the same revision, changes and validation
// errors: only the storage differs.
type ConfigTx interface {
	// LockHead returns the current revision and holds other config writers
	// off until the transaction ends, so revisions commit in order.
	LockHead(ctx context.Context) (int64, error)
	// LoadConfig reads the whole config, labelled rev.
	LoadConfig(ctx context.Context, rev int64) (*Config, error)
	// KeysOf lists the API keys of a principal, revoked and expired ones
	// included, by id.
	KeysOf(ctx context.Context, principal string) ([]APIKey, error)
	// PrincipalsWithKeys names the principals holding any API key.
	PrincipalsWithKeys(ctx context.Context) ([]string, error)
	// APIKey reads one key for update; ErrNotFound if there is none.
	APIKey(ctx context.Context, id string) (APIKey, error)
	// Commit takes the next revision, writes the resources changes names
	// (their new state is in next), applies keys, and records the revision
	// and every change; it returns the new revision. A key id that exists
	// already fails with ErrAlreadyExists.
	Commit(ctx context.Context, meta Meta, next *Config, changes []Change, keys []KeyWrite) (int64, error)
}

// KeyWrite is an API key row a write commits with its revision: a new key
// (New, whose creation time Commit stores in *CreatedAt when non-nil) or a
// revocation (RevokeID at RevokedAt).
type KeyWrite struct {
	New       *NewAPIKey
	CreatedAt *time.Time
	RevokeID  string
	RevokedAt time.Time
}

// Writer is the config write logic both stores share: every write loads the
// config under the head lock, edits a copy, validates it whole with the
// edges' compiler, diffs, and commits the difference as one revision.
type Writer struct {
	// Begin runs fn in one transaction: committed when fn returns nil,
	// rolled back otherwise, with fn's error returned (wrapped or not).
	Begin func(ctx context.Context, fn func(tx ConfigTx) error) error
}

// write runs fn under the config head lock and commits what it changed as
// one new revision. A write that changes nothing, a dry run, and a failed
// validation commit nothing.
func (w *Writer) write(ctx context.Context, meta Meta, dryRun bool, fn func(ctx context.Context, e *edit) error) (Result, error) {
	var res Result
	err := w.Begin(ctx, func(tx ConfigTx) error {
		base, err := tx.LockHead(ctx)
		if err != nil {
			return err
		}
		cur, err := tx.LoadConfig(ctx, base)
		if err != nil {
			return err
		}
		e := &edit{tx: tx, cur: cur, next: cur.clone()}
		if err := fn(ctx, e); err != nil {
			return err
		}
		sortConfig(e.next)
		if err := validateConfig(e.next); err != nil {
			return err
		}
		changes := diffConfig(cur, e.next)
		changes = append(changes, e.extra...)
		sortChanges(changes)
		res = Result{Changes: changes, BaseRevision: base, Revision: base}
		if dryRun || len(changes) == 0 {
			// Roll back: a dry run may have run statements to check them.
			return errDryRun
		}
		rev, err := tx.Commit(ctx, meta, e.next, changes, e.keys)
		if err != nil {
			return err
		}
		res.Revision, res.Committed = rev, true
		return nil
	})
	if errors.Is(err, errDryRun) {
		err = nil
	}
	if err != nil {
		return Result{}, err
	}
	return res, nil
}

// pgConfigTx is ConfigTx on a Postgres transaction.
type pgConfigTx struct{ tx pgx.Tx }

func (s *Store) begin(ctx context.Context, fn func(tx ConfigTx) error) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error { return fn(pgConfigTx{tx}) })
}

func (p pgConfigTx) LockHead(ctx context.Context) (int64, error) { return head(ctx, p.tx) }

func (p pgConfigTx) LoadConfig(ctx context.Context, rev int64) (*Config, error) {
	return loadConfig(ctx, p.tx, rev)
}

func (p pgConfigTx) KeysOf(ctx context.Context, principal string) ([]APIKey, error) {
	return keysOf(ctx, p.tx, principal)
}

func (p pgConfigTx) PrincipalsWithKeys(ctx context.Context) ([]string, error) {
	rows, err := p.tx.Query(ctx, `SELECT DISTINCT principal FROM api_keys`)
	if err != nil {
		return nil, fmt.Errorf("reading principals with keys: %w", err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("reading principals with keys: %w", err)
	}
	return names, nil
}

func (p pgConfigTx) APIKey(ctx context.Context, id string) (APIKey, error) {
	rows, err := p.tx.Query(ctx, `SELECT `+apiKeyColumns+` FROM api_keys WHERE id = $1 FOR UPDATE`, id)
	if err != nil {
		return APIKey{}, fmt.Errorf("reading api key %q: %w", id, err)
	}
	k, err := pgx.CollectExactlyOneRow(rows, scanAPIKey)
	if errors.Is(err, pgx.ErrNoRows) {
		return APIKey{}, notFound(KindAPIKey, id)
	}
	if err != nil {
		return APIKey{}, fmt.Errorf("reading api key %q: %w", id, err)
	}
	return k, nil
}

func (p pgConfigTx) Commit(ctx context.Context, meta Meta, next *Config, changes []Change, keys []KeyWrite) (int64, error) {
	tx := p.tx
	return commitRevision(ctx, tx, meta, changes, func(rev int64) error {
		if err := writeChanges(ctx, tx, next, changes, rev); err != nil {
			return err
		}
		for _, kw := range keys {
			if err := writeKey(ctx, tx, kw, rev); err != nil {
				return err
			}
		}
		return nil
	})
}

// errDryRun rolls back a write that must leave no trace.
var errDryRun = errors.New("dry run")

func sortConfig(c *Config) {
	slices.SortFunc(c.Backends, func(a, b Backend) int { return cmp.Compare(a.Name, b.Name) })
	slices.SortFunc(c.Roles, func(a, b Role) int { return cmp.Compare(a.Name, b.Name) })
	slices.SortFunc(c.Bindings, func(a, b Binding) int { return cmp.Compare(a.Role, b.Role) })
	slices.SortFunc(c.Principals, func(a, b Principal) int { return cmp.Compare(a.Name, b.Name) })
}

func sortChanges(cs []Change) {
	slices.SortStableFunc(cs, func(a, b Change) int {
		if c := cmp.Compare(kindOrder[a.Kind], kindOrder[b.Kind]); c != 0 {
			return c
		}
		return cmp.Compare(a.Name, b.Name)
	})
}

// diffConfig lists what turns cur into next, kind by kind.
func diffConfig(cur, next *Config) []Change {
	var out []Change
	out = diffKind(out, KindBackend, cur.Backends, next.Backends, func(b Backend) (string, any) { return b.Name, b.Backend })
	out = diffKind(out, KindRole, cur.Roles, next.Roles, func(r Role) (string, any) { return r.Name, r.Role })
	out = diffKind(out, KindBinding, cur.Bindings, next.Bindings, func(b Binding) (string, any) { return b.Role, b.Binding })
	out = diffKind(out, KindPrincipal, cur.Principals, next.Principals, func(p Principal) (string, any) { return p.Name, p.Principal })
	return out
}

func diffKind[T any](out []Change, kind Kind, cur, next []T, key func(T) (string, any)) []Change {
	before := make(map[string]json.RawMessage, len(cur))
	for _, v := range cur {
		k, spec := key(v)
		before[k] = specJSON(spec)
	}
	seen := make(map[string]bool, len(next))
	for _, v := range next {
		k, spec := key(v)
		seen[k] = true
		after := specJSON(spec)
		b, ok := before[k]
		switch {
		case !ok:
			out = append(out, Change{Kind: kind, Name: k, Action: ActionCreate, After: after})
		case !bytes.Equal(b, after):
			out = append(out, Change{Kind: kind, Name: k, Action: ActionUpdate, Before: b, After: after})
		}
	}
	for _, v := range cur {
		k, _ := key(v)
		if !seen[k] {
			out = append(out, Change{Kind: kind, Name: k, Action: ActionDelete, Before: before[k]})
		}
	}
	return out
}

// writeChanges makes the document changes in the tables, stamping rev.
func writeChanges(ctx context.Context, tx pgx.Tx, next *Config, changes []Change, rev int64) error {
	for _, c := range changes {
		var err error
		switch c.Kind {
		case KindBackend:
			if c.Action == ActionDelete {
				_, err = tx.Exec(ctx, `DELETE FROM backends WHERE name = $1`, c.Name)
			} else {
				b, _ := next.Backend(c.Name)
				err = upsertBackend(ctx, tx, b.Backend, rev)
			}
		case KindRole:
			if c.Action == ActionDelete {
				_, err = tx.Exec(ctx, `DELETE FROM roles WHERE name = $1`, c.Name)
			} else {
				r, _ := next.Role(c.Name)
				err = upsertRole(ctx, tx, r.Role, rev)
			}
		case KindBinding:
			if c.Action == ActionDelete {
				_, err = tx.Exec(ctx, `DELETE FROM bindings WHERE role = $1`, c.Name)
			} else {
				b, _ := next.Binding(c.Name)
				_, err = tx.Exec(ctx, `INSERT INTO bindings (role, subjects, revision) VALUES ($1, $2, $3)
					ON CONFLICT (role) DO UPDATE SET subjects = EXCLUDED.subjects, revision = EXCLUDED.revision`,
					b.Role, nonNil(b.Subjects), rev)
			}
		case KindPrincipal:
			if c.Action == ActionDelete {
				_, err = tx.Exec(ctx, `DELETE FROM principals WHERE name = $1`, c.Name)
			} else {
				p, _ := next.Principal(c.Name)
				_, err = tx.Exec(ctx, `INSERT INTO principals (name, groups, revision) VALUES ($1, $2, $3)
					ON CONFLICT (name) DO UPDATE SET groups = EXCLUDED.groups, revision = EXCLUDED.revision, updated_at = now()`,
					p.Name, nonNil(p.Groups), rev)
			}
		default:
			continue // extra changes are written by their own statements
		}
		if err != nil {
			return fmt.Errorf("writing %s %q: %w", c.Kind, c.Name, err)
		}
	}
	return nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func upsertBackend(ctx context.Context, tx pgx.Tx, b document.Backend, rev int64) error {
	var (
		command []string
		env     map[string]string
		dir     *string
		url     *string
		headers map[string]string
	)
	if b.Stdio != nil {
		command, env = b.Stdio.Command, b.Stdio.Env
		if b.Stdio.Dir != "" {
			dir = &b.Stdio.Dir
		}
	}
	if b.HTTP != nil {
		url, headers = &b.HTTP.URL, b.HTTP.Headers
	}
	_, err := tx.Exec(ctx, `INSERT INTO backends (name, prefix, stdio_command, stdio_env, stdio_dir, http_url, http_headers, timeout_ms, sessions, revision)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
		ON CONFLICT (name) DO UPDATE SET prefix = EXCLUDED.prefix, stdio_command = EXCLUDED.stdio_command,
			stdio_env = EXCLUDED.stdio_env, stdio_dir = EXCLUDED.stdio_dir, http_url = EXCLUDED.http_url,
			http_headers = EXCLUDED.http_headers, timeout_ms = EXCLUDED.timeout_ms, sessions = EXCLUDED.sessions,
			revision = EXCLUDED.revision, updated_at = now()`,
		b.Name, b.Prefix, command, jsonOrNil(env), dir, url, jsonOrNil(headers),
		b.Timeout.D().Milliseconds(), b.Sessions, rev)
	return err
}

// jsonOrNil stores a nil map as SQL NULL rather than a JSON null.
func jsonOrNil(m map[string]string) any {
	if m == nil {
		return nil
	}
	return m
}

func upsertRole(ctx context.Context, tx pgx.Tx, r policy.Role, rev int64) error {
	if _, err := tx.Exec(ctx, `INSERT INTO roles (name, description, revision) VALUES ($1, $2, $3)
		ON CONFLICT (name) DO UPDATE SET description = EXCLUDED.description, revision = EXCLUDED.revision, updated_at = now()`,
		r.Name, r.Description, rev); err != nil {
		return err
	}
	// A role's rules are rewritten together (migrations/0001_config.sql).
	if _, err := tx.Exec(ctx, `DELETE FROM rules WHERE role = $1`, r.Name); err != nil {
		return err
	}
	for i, rule := range r.Rules {
		if _, err := tx.Exec(ctx, `INSERT INTO rules (role, position, id, effect, methods, backends, tools, prompts, resources, revision)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
			r.Name, i, rule.ID, rule.Effect, nonNil(rule.Methods), nonNil(rule.Backends), nonNil(rule.Tools),
			nonNil(rule.Prompts), nonNil(rule.Resources), rev); err != nil {
			return fmt.Errorf("rule %d: %w", i, err)
		}
	}
	return nil
}

// checkExpected compares a resource's stored revision with the caller's
// expectation (0 = unconditional).
func checkExpected(kind Kind, name string, expected, actual int64) error {
	if expected != 0 && expected != actual {
		return &RevisionMismatchError{Kind: kind, Name: name, Expected: expected, Actual: actual}
	}
	return nil
}

// WriteOptions are the common options of single-resource writes.
type WriteOptions struct {
	// ExpectedRevision must equal the resource's revision (0 = unconditional).
	// Ignored by creates.
	ExpectedRevision int64
	// DryRun validates and diffs without committing.
	DryRun bool
}

// CreateBackend stores a new backend; ErrAlreadyExists if the name is taken.
func (w *Writer) CreateBackend(ctx context.Context, meta Meta, b document.Backend, opt WriteOptions) (Result, error) {
	normalizeBackend(&b)
	return w.write(ctx, meta, opt.DryRun, func(_ context.Context, e *edit) error {
		if _, ok := e.cur.Backend(b.Name); ok {
			return fmt.Errorf("backend %q: %w", b.Name, ErrAlreadyExists)
		}
		e.next.Backends = append(e.next.Backends, Backend{Backend: b})
		return nil
	})
}

// UpdateBackend replaces a backend wholesale.
func (w *Writer) UpdateBackend(ctx context.Context, meta Meta, b document.Backend, opt WriteOptions) (Result, error) {
	normalizeBackend(&b)
	return w.write(ctx, meta, opt.DryRun, func(_ context.Context, e *edit) error {
		old, ok := e.cur.Backend(b.Name)
		if !ok {
			return notFound(KindBackend, b.Name)
		}
		if err := checkExpected(KindBackend, b.Name, opt.ExpectedRevision, old.Revision); err != nil {
			return err
		}
		e.next.Backends = replace(e.next.Backends, func(x Backend) bool { return x.Name == b.Name }, Backend{Backend: b, Revision: old.Revision})
		return nil
	})
}

// DeleteBackend removes a backend.
func (w *Writer) DeleteBackend(ctx context.Context, meta Meta, name string, opt WriteOptions) (Result, error) {
	return w.write(ctx, meta, opt.DryRun, func(_ context.Context, e *edit) error {
		old, ok := e.cur.Backend(name)
		if !ok {
			return notFound(KindBackend, name)
		}
		if err := checkExpected(KindBackend, name, opt.ExpectedRevision, old.Revision); err != nil {
			return err
		}
		e.next.Backends = slices.DeleteFunc(e.next.Backends, func(x Backend) bool { return x.Name == name })
		return nil
	})
}

// CreateRole stores a new role; ErrAlreadyExists if the name is taken.
func (w *Writer) CreateRole(ctx context.Context, meta Meta, r policy.Role, opt WriteOptions) (Result, error) {
	normalizeRole(&r)
	return w.write(ctx, meta, opt.DryRun, func(_ context.Context, e *edit) error {
		if _, ok := e.cur.Role(r.Name); ok {
			return fmt.Errorf("role %q: %w", r.Name, ErrAlreadyExists)
		}
		e.next.Roles = append(e.next.Roles, Role{Role: r})
		return nil
	})
}

// UpdateRole replaces a role and all its rules.
func (w *Writer) UpdateRole(ctx context.Context, meta Meta, r policy.Role, opt WriteOptions) (Result, error) {
	normalizeRole(&r)
	return w.write(ctx, meta, opt.DryRun, func(_ context.Context, e *edit) error {
		old, ok := e.cur.Role(r.Name)
		if !ok {
			return notFound(KindRole, r.Name)
		}
		if err := checkExpected(KindRole, r.Name, opt.ExpectedRevision, old.Revision); err != nil {
			return err
		}
		e.next.Roles = replace(e.next.Roles, func(x Role) bool { return x.Name == r.Name }, Role{Role: r, Revision: old.Revision})
		return nil
	})
}

// DeleteRole removes a role; ErrInUse while a binding grants it.
func (w *Writer) DeleteRole(ctx context.Context, meta Meta, name string, opt WriteOptions) (Result, error) {
	return w.write(ctx, meta, opt.DryRun, func(_ context.Context, e *edit) error {
		old, ok := e.cur.Role(name)
		if !ok {
			return notFound(KindRole, name)
		}
		if err := checkExpected(KindRole, name, opt.ExpectedRevision, old.Revision); err != nil {
			return err
		}
		if _, ok := e.cur.Binding(name); ok {
			return fmt.Errorf("role %q still has a binding; delete the binding first: %w", name, ErrInUse)
		}
		e.next.Roles = slices.DeleteFunc(e.next.Roles, func(x Role) bool { return x.Name == name })
		return nil
	})
}

// CreateBinding stores the binding of a role; ErrAlreadyExists if the role
// has one.
func (w *Writer) CreateBinding(ctx context.Context, meta Meta, b policy.Binding, opt WriteOptions) (Result, error) {
	normalizeBinding(&b)
	return w.write(ctx, meta, opt.DryRun, func(_ context.Context, e *edit) error {
		if _, ok := e.cur.Binding(b.Role); ok {
			return fmt.Errorf("binding of role %q: %w", b.Role, ErrAlreadyExists)
		}
		e.next.Bindings = append(e.next.Bindings, Binding{Binding: b})
		return nil
	})
}

// UpdateBinding replaces the subjects of a role's binding.
func (w *Writer) UpdateBinding(ctx context.Context, meta Meta, b policy.Binding, opt WriteOptions) (Result, error) {
	normalizeBinding(&b)
	return w.write(ctx, meta, opt.DryRun, func(_ context.Context, e *edit) error {
		old, ok := e.cur.Binding(b.Role)
		if !ok {
			return notFound(KindBinding, b.Role)
		}
		if err := checkExpected(KindBinding, b.Role, opt.ExpectedRevision, old.Revision); err != nil {
			return err
		}
		e.next.Bindings = replace(e.next.Bindings, func(x Binding) bool { return x.Role == b.Role }, Binding{Binding: b, Revision: old.Revision})
		return nil
	})
}

// DeleteBinding removes the binding of a role.
func (w *Writer) DeleteBinding(ctx context.Context, meta Meta, role string, opt WriteOptions) (Result, error) {
	return w.write(ctx, meta, opt.DryRun, func(_ context.Context, e *edit) error {
		old, ok := e.cur.Binding(role)
		if !ok {
			return notFound(KindBinding, role)
		}
		if err := checkExpected(KindBinding, role, opt.ExpectedRevision, old.Revision); err != nil {
			return err
		}
		e.next.Bindings = slices.DeleteFunc(e.next.Bindings, func(x Binding) bool { return x.Role == role })
		return nil
	})
}

// CreatePrincipal stores a new principal; ErrAlreadyExists if taken.
func (w *Writer) CreatePrincipal(ctx context.Context, meta Meta, p policy.Principal, opt WriteOptions) (Result, error) {
	normalizePrincipal(&p)
	return w.write(ctx, meta, opt.DryRun, func(_ context.Context, e *edit) error {
		if _, ok := e.cur.Principal(p.Name); ok {
			return fmt.Errorf("principal %q: %w", p.Name, ErrAlreadyExists)
		}
		e.next.Principals = append(e.next.Principals, Principal{Principal: p})
		return nil
	})
}

// UpdatePrincipal replaces a principal's groups.
func (w *Writer) UpdatePrincipal(ctx context.Context, meta Meta, p policy.Principal, opt WriteOptions) (Result, error) {
	normalizePrincipal(&p)
	return w.write(ctx, meta, opt.DryRun, func(_ context.Context, e *edit) error {
		old, ok := e.cur.Principal(p.Name)
		if !ok {
			return notFound(KindPrincipal, p.Name)
		}
		if err := checkExpected(KindPrincipal, p.Name, opt.ExpectedRevision, old.Revision); err != nil {
			return err
		}
		e.next.Principals = replace(e.next.Principals, func(x Principal) bool { return x.Name == p.Name }, Principal{Principal: p, Revision: old.Revision})
		return nil
	})
}

// DeletePrincipal removes a principal together with its API keys (the
// api_keys rows cascade), and returns the ids of the keys that were still
// active, which stop working with the new revision.
func (w *Writer) DeletePrincipal(ctx context.Context, meta Meta, name string, opt WriteOptions) (Result, []string, error) {
	var revoked []string
	res, err := w.write(ctx, meta, opt.DryRun, func(ctx context.Context, e *edit) error {
		old, ok := e.cur.Principal(name)
		if !ok {
			return notFound(KindPrincipal, name)
		}
		if err := checkExpected(KindPrincipal, name, opt.ExpectedRevision, old.Revision); err != nil {
			return err
		}
		e.next.Principals = slices.DeleteFunc(e.next.Principals, func(x Principal) bool { return x.Name == name })
		keys, err := e.tx.KeysOf(ctx, name)
		if err != nil {
			return err
		}
		for _, k := range keys {
			e.extra = append(e.extra, Change{Kind: KindAPIKey, Name: k.ID, Action: ActionDelete, Before: specJSON(k.logForm())})
			if k.active(time.Now()) {
				revoked = append(revoked, k.ID)
			}
		}
		return nil
	})
	if err != nil {
		return Result{}, nil, err
	}
	return res, revoked, nil
}

// replace swaps the element matching f for v.
func replace[T any](s []T, f func(T) bool, v T) []T {
	for i := range s {
		if f(s[i]) {
			s[i] = v
		}
	}
	return s
}

// ApplyOptions control ApplyDocument.
type ApplyOptions struct {
	// Prune deletes backends, roles, bindings and principals the document
	// does not name. Principals that hold API keys are kept (ApplyDocument
	// never touches keys, and deleting the principal would remove them).
	Prune bool
	// DryRun computes and validates the diff without committing.
	DryRun bool
	// ExpectedRevision must equal the installation's current revision
	// (0 = unconditional).
	ExpectedRevision int64
}

// ApplyDocument makes the stored config match doc: it creates or replaces
// everything doc names and, with Prune, deletes what it omits, all in one
// revision. A document equal to the stored config changes nothing and makes
// no revision. The edge-local sections (auth, audit) and principals' key
// hashes are refused: in fleet mode they do not belong in the store.
func (w *Writer) ApplyDocument(ctx context.Context, meta Meta, doc document.Document, opt ApplyOptions) (Result, error) {
	if errs := fleetOnly(doc); len(errs) > 0 {
		return Result{}, &InvalidConfigError{Errors: errs}
	}
	want, errs := documentConfig(doc)
	if len(errs) > 0 {
		return Result{}, &InvalidConfigError{Errors: errs}
	}
	return w.write(ctx, meta, opt.DryRun, func(ctx context.Context, e *edit) error {
		if opt.ExpectedRevision != 0 && opt.ExpectedRevision != e.cur.Revision {
			return &RevisionMismatchError{Expected: opt.ExpectedRevision, Actual: e.cur.Revision}
		}
		keep := map[string]bool{}
		if opt.Prune {
			names, err := e.tx.PrincipalsWithKeys(ctx)
			if err != nil {
				return err
			}
			for _, n := range names {
				keep[n] = true
			}
		}
		e.next.Backends = merge(e.next.Backends, want.Backends, opt.Prune, func(b Backend) string { return b.Name }, nil)
		e.next.Roles = merge(e.next.Roles, want.Roles, opt.Prune, func(r Role) string { return r.Name }, nil)
		e.next.Bindings = merge(e.next.Bindings, want.Bindings, opt.Prune, func(b Binding) string { return b.Role }, nil)
		e.next.Principals = merge(e.next.Principals, want.Principals, opt.Prune, func(p Principal) string { return p.Name }, keep)
		return nil
	})
}

// merge upserts want into have (by key) and, with prune, drops what want
// lacks except keys in keep.
func merge[T any](have, want []T, prune bool, key func(T) string, keep map[string]bool) []T {
	wanted := make(map[string]T, len(want))
	for _, w := range want {
		wanted[key(w)] = w
	}
	var out []T
	for _, h := range have {
		k := key(h)
		if w, ok := wanted[k]; ok {
			out = append(out, w)
			delete(wanted, k)
			continue
		}
		if !prune || keep[k] {
			out = append(out, h)
		}
	}
	for _, w := range want {
		if _, ok := wanted[key(w)]; ok {
			out = append(out, w)
		}
	}
	return out
}

// fleetOnly refuses the parts of a document that only a standalone edge
// may carry.
func fleetOnly(doc document.Document) []FieldError {
	var errs []FieldError
	if doc.Auth != nil {
		errs = append(errs, FieldError{"auth", "edge-local section; the control plane does not store it"})
	}
	if doc.Audit != nil {
		errs = append(errs, FieldError{"audit", "edge-local section; the control plane does not store it"})
	}
	for i, p := range doc.Principals {
		if p.APIKeySHA256 != "" {
			errs = append(errs, FieldError{fmt.Sprintf("principals[%d].api_key_sha256", i),
				"API keys are not part of the document in fleet mode; create them with `mcpctl keys create`"})
		}
	}
	return errs
}

// documentConfig turns a document into normalized config resources, merging
// several bindings of one role into one (they mean the union) and refusing
// duplicate names.
func documentConfig(doc document.Document) (*Config, []FieldError) {
	c := &Config{}
	var errs []FieldError
	seen := map[string]int{}
	for i, b := range doc.Backends {
		if j, dup := seen["b/"+b.Name]; dup {
			errs = append(errs, FieldError{fmt.Sprintf("backends[%d].name", i), fmt.Sprintf("duplicate backend %q (also backends[%d])", b.Name, j)})
			continue
		}
		seen["b/"+b.Name] = i
		b = cloneBackend(b)
		normalizeBackend(&b)
		c.Backends = append(c.Backends, Backend{Backend: b})
	}
	for i, r := range doc.Roles {
		if j, dup := seen["r/"+r.Name]; dup {
			errs = append(errs, FieldError{fmt.Sprintf("roles[%d].name", i), fmt.Sprintf("duplicate role %q (also roles[%d])", r.Name, j)})
			continue
		}
		seen["r/"+r.Name] = i
		r.Rules = slices.Clone(r.Rules)
		normalizeRole(&r)
		c.Roles = append(c.Roles, Role{Role: r})
	}
	byRole := map[string]int{}
	for _, b := range doc.Bindings {
		if j, ok := byRole[b.Role]; ok {
			c.Bindings[j].Subjects = append(c.Bindings[j].Subjects, b.Subjects...)
			continue
		}
		byRole[b.Role] = len(c.Bindings)
		c.Bindings = append(c.Bindings, Binding{Binding: policy.Binding{Role: b.Role, Subjects: slices.Clone(b.Subjects)}})
	}
	for i := range c.Bindings {
		c.Bindings[i].Subjects = slices.Compact(sortedCopy(c.Bindings[i].Subjects))
		normalizeBinding(&c.Bindings[i].Binding)
	}
	for i, p := range doc.Principals {
		if j, dup := seen["p/"+p.Name]; dup {
			errs = append(errs, FieldError{fmt.Sprintf("principals[%d].name", i), fmt.Sprintf("duplicate principal %q (also principals[%d])", p.Name, j)})
			continue
		}
		seen["p/"+p.Name] = i
		p.Groups = slices.Clone(p.Groups)
		normalizePrincipal(&p)
		c.Principals = append(c.Principals, Principal{Principal: p})
	}
	sortConfig(c)
	return c, errs
}

func sortedCopy(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

func cloneBackend(b document.Backend) document.Backend {
	c := (&Config{Backends: []Backend{{Backend: b}}}).clone()
	return c.Backends[0].Backend
}
