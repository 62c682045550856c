package sqlitestore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	sqlite "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/mcpgw/mcpgw/controlplane/store"
)

// cfgTx is store.ConfigTx on a write transaction. rev is set once Commit
// has taken a revision, so the committer can announce it.
type cfgTx struct {
	tx  *sql.Tx
	rev int64
}

// beginConfig is the Writer's transaction: the write runs on the single
// writer connection (so it holds off every other writer, which is what
// LockHead promises), and a committed revision is announced to this
// process's listeners once it is durable.
func (s *Store) beginConfig(ctx context.Context, fn func(tx store.ConfigTx) error) error {
	c := &cfgTx{}
	err := s.writeTx(ctx, func(tx *sql.Tx) error {
		c.tx = tx
		return fn(c)
	})
	if err == nil && c.rev > 0 {
		s.announce(c.rev)
	}
	return err
}

func (c *cfgTx) LockHead(ctx context.Context) (int64, error) {
	return headRevision(ctx, c.tx)
}

func (c *cfgTx) LoadConfig(ctx context.Context, rev int64) (*store.Config, error) {
	return loadConfig(ctx, c.tx, rev)
}

func (c *cfgTx) KeysOf(ctx context.Context, principal string) ([]store.APIKey, error) {
	rows, err := c.tx.QueryContext(ctx, `SELECT `+apiKeyColumns+` FROM api_keys WHERE principal = ? ORDER BY id`, principal)
	if err != nil {
		return nil, fmt.Errorf("reading keys of principal %q: %w", principal, err)
	}
	return collect(rows, scanAPIKey)
}

func (c *cfgTx) PrincipalsWithKeys(ctx context.Context) ([]string, error) {
	rows, err := c.tx.QueryContext(ctx, `SELECT DISTINCT principal FROM api_keys`)
	if err != nil {
		return nil, fmt.Errorf("reading principals with keys: %w", err)
	}
	return collect(rows, func(r scanner) (string, error) {
		var n string
		return n, r.Scan(&n)
	})
}

func (c *cfgTx) APIKey(ctx context.Context, id string) (store.APIKey, error) {
	return getAPIKey(ctx, c.tx, id)
}

func (c *cfgTx) Commit(ctx context.Context, meta store.Meta, next *store.Config, changes []store.Change, keys []store.KeyWrite) (int64, error) {
	tx := c.tx
	base, err := headRevision(ctx, tx)
	if err != nil {
		return 0, err
	}
	rev, at := base+1, now()
	if _, err := tx.ExecContext(ctx, `UPDATE config_head SET revision = ?, updated_at = ?`, rev, us(at)); err != nil {
		return 0, fmt.Errorf("taking the next config revision: %w", err)
	}
	actor := meta.Actor
	if actor == "" {
		actor = "unknown"
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO config_revisions (revision, ts, actor, operation) VALUES (?, ?, ?, ?)`,
		rev, us(at), actor, meta.Operation); err != nil {
		return 0, fmt.Errorf("recording revision %d: %w", rev, err)
	}
	for _, ch := range changes {
		if err := writeChange(ctx, tx, ch, rev); err != nil {
			return 0, fmt.Errorf("writing %s %q: %w", ch.Kind, ch.Name, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO config_changes (revision, kind, name, action, before, after) VALUES (?, ?, ?, ?, ?, ?)`,
			rev, string(ch.Kind), ch.Name, string(ch.Action), nullText(ch.Before), nullText(ch.After)); err != nil {
			return 0, fmt.Errorf("logging change to %s %q: %w", ch.Kind, ch.Name, err)
		}
	}
	for _, kw := range keys {
		if err := writeKey(ctx, tx, kw, rev, at); err != nil {
			return 0, err
		}
	}
	c.rev = rev
	return rev, nil
}

// writeChange makes one document change in resources. The change's After
// is the resource's document JSON, which is exactly what the table keeps.
// Deleting a principal deletes its API keys, as Postgres's cascade does.
func writeChange(ctx context.Context, tx *sql.Tx, ch store.Change, rev int64) error {
	switch ch.Kind {
	case store.KindBackend, store.KindRole, store.KindBinding, store.KindPrincipal:
	default:
		return nil // API keys are written by writeKey
	}
	if ch.Action == store.ActionDelete {
		if _, err := tx.ExecContext(ctx, `DELETE FROM resources WHERE kind = ? AND name = ?`, string(ch.Kind), ch.Name); err != nil {
			return err
		}
		if ch.Kind == store.KindPrincipal {
			_, err := tx.ExecContext(ctx, `DELETE FROM api_keys WHERE principal = ?`, ch.Name)
			return err
		}
		return nil
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO resources (kind, name, spec, revision) VALUES (?, ?, ?, ?)
		ON CONFLICT (kind, name) DO UPDATE SET spec = excluded.spec, revision = excluded.revision`,
		string(ch.Kind), ch.Name, string(ch.After), rev)
	return err
}

// writeKey stores one API key row of a write.
func writeKey(ctx context.Context, tx *sql.Tx, kw store.KeyWrite, rev int64, createdAt time.Time) error {
	if k := kw.New; k != nil {
		_, err := tx.ExecContext(ctx, `INSERT INTO api_keys (id, principal, sha256, description, created_at, expires_at, revision)
			VALUES (?, ?, ?, ?, ?, ?, ?)`, k.ID, k.Principal, k.SHA256, k.Description, us(createdAt), nullUS(k.ExpiresAt), rev)
		if isUniqueViolation(err) {
			return fmt.Errorf("api key %q: %w", k.ID, store.ErrAlreadyExists)
		}
		if err != nil {
			return fmt.Errorf("storing api key %q: %w", k.ID, err)
		}
		if kw.CreatedAt != nil {
			*kw.CreatedAt = createdAt
		}
		return nil
	}
	if _, err := tx.ExecContext(ctx, `UPDATE api_keys SET revoked_at = ?, revision = ? WHERE id = ?`, us(kw.RevokedAt), rev, kw.RevokeID); err != nil {
		return fmt.Errorf("revoking api key %q: %w", kw.RevokeID, err)
	}
	return nil
}

// isUniqueViolation reports a primary key or unique conflict.
func isUniqueViolation(err error) bool {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return false
	}
	return se.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY || se.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE
}

// queryer is what a transaction and a pool offer for reading.
type queryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// scanner is a row being read.
type scanner interface{ Scan(dest ...any) error }

// collect reads every row with scan and closes rows.
func collect[T any](rows *sql.Rows, scan func(scanner) (T, error)) ([]T, error) {
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

func headRevision(ctx context.Context, q queryer) (int64, error) {
	var rev int64
	if err := q.QueryRowContext(ctx, `SELECT revision FROM config_head`).Scan(&rev); err != nil {
		return 0, fmt.Errorf("reading the config revision: %w", err)
	}
	return rev, nil
}

// loadConfig reads every config table through q, labelling the result rev.
// Lists come sorted by key in byte order (SQLite's BINARY collation), as
// the Postgres store's COLLATE "C".
func loadConfig(ctx context.Context, q queryer, rev int64) (*store.Config, error) {
	cfg := &store.Config{Revision: rev}
	rows, err := q.QueryContext(ctx, `SELECT kind, name, spec, revision FROM resources ORDER BY kind, name`)
	if err != nil {
		return nil, fmt.Errorf("loading config: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			kind, name, spec string
			r                int64
		)
		if err := rows.Scan(&kind, &name, &spec, &r); err != nil {
			return nil, fmt.Errorf("loading config: %w", err)
		}
		if err := addResource(cfg, store.Kind(kind), []byte(spec), r); err != nil {
			return nil, fmt.Errorf("loading %s %q: %w", kind, name, err)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("loading config: %w", err)
	}
	krows, err := q.QueryContext(ctx, `SELECT id, principal, sha256, expires_at FROM api_keys WHERE revoked_at IS NULL ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("reading api keys: %w", err)
	}
	cfg.APIKeys, err = collect(krows, func(r scanner) (store.APIKeyHash, error) {
		var (
			k   store.APIKeyHash
			exp sql.NullInt64
		)
		err := r.Scan(&k.KeyID, &k.Principal, &k.SHA256, &exp)
		k.ExpiresAt = nullTS(exp)
		return k, err
	})
	if err != nil {
		return nil, fmt.Errorf("reading api keys: %w", err)
	}
	return cfg, nil
}

func addResource(cfg *store.Config, kind store.Kind, spec []byte, rev int64) error {
	switch kind {
	case store.KindBackend:
		var b store.Backend
		if err := json.Unmarshal(spec, &b.Backend); err != nil {
			return err
		}
		b.Revision = rev
		cfg.Backends = append(cfg.Backends, b)
	case store.KindRole:
		var r store.Role
		if err := json.Unmarshal(spec, &r.Role); err != nil {
			return err
		}
		r.Revision = rev
		cfg.Roles = append(cfg.Roles, r)
	case store.KindBinding:
		var b store.Binding
		if err := json.Unmarshal(spec, &b.Binding); err != nil {
			return err
		}
		b.Revision = rev
		cfg.Bindings = append(cfg.Bindings, b)
	case store.KindPrincipal:
		var p store.Principal
		if err := json.Unmarshal(spec, &p.Principal); err != nil {
			return err
		}
		p.Revision = rev
		cfg.Principals = append(cfg.Principals, p)
	default:
		return fmt.Errorf("unknown resource kind %q", kind)
	}
	return nil
}

// snapshot reads the head revision and the whole config in one read
// transaction.
func (s *Store) snapshot(ctx context.Context) (*store.Config, error) {
	var cfg *store.Config
	err := s.readTx(ctx, func(tx *sql.Tx) error {
		rev, err := headRevision(ctx, tx)
		if err != nil {
			return err
		}
		cfg, err = loadConfig(ctx, tx, rev)
		return err
	})
	if err != nil {
		return nil, err
	}
	return cfg, nil
}

// LoadConfig reads the current configuration in one consistent snapshot.
func (s *Store) LoadConfig(ctx context.Context) (*store.Config, error) {
	cfg, err := s.snapshot(ctx)
	if err != nil {
		return nil, fmt.Errorf("loading config: %w", err)
	}
	return cfg, nil
}

// CurrentRevision returns the latest committed config revision.
func (s *Store) CurrentRevision(ctx context.Context) (int64, error) {
	return headRevision(ctx, s.r)
}

// page returns up to limit (0 = all) items whose key sorts after `after`.
// Configs are small enough that the embedded store pages in memory.
func page[T any](items []T, key func(T) string, after string, limit int) []T {
	var out []T
	for _, it := range items {
		if key(it) <= after {
			continue
		}
		if limit > 0 && len(out) == limit {
			break
		}
		out = append(out, it)
	}
	return out
}

func list[T any](ctx context.Context, s *Store, pick func(*store.Config) []T, key func(T) string, after string, limit int) ([]T, int64, error) {
	cfg, err := s.snapshot(ctx)
	if err != nil {
		return nil, 0, err
	}
	return page(pick(cfg), key, after, limit), cfg.Revision, nil
}

func get[T any](ctx context.Context, s *Store, kind store.Kind, name string, find func(*store.Config, string) (T, bool)) (T, error) {
	var zero T
	cfg, err := s.snapshot(ctx)
	if err != nil {
		return zero, err
	}
	v, ok := find(cfg, name)
	if !ok || name == "" {
		return zero, fmt.Errorf("%s %q: %w", kind, name, store.ErrNotFound)
	}
	return v, nil
}

// ListBackends returns up to limit backends named after `after`.
func (s *Store) ListBackends(ctx context.Context, after string, limit int) ([]store.Backend, int64, error) {
	return list(ctx, s, func(c *store.Config) []store.Backend { return c.Backends }, func(b store.Backend) string { return b.Name }, after, limit)
}

// ListRoles returns up to limit roles named after `after`.
func (s *Store) ListRoles(ctx context.Context, after string, limit int) ([]store.Role, int64, error) {
	return list(ctx, s, func(c *store.Config) []store.Role { return c.Roles }, func(r store.Role) string { return r.Name }, after, limit)
}

// ListBindings returns up to limit bindings of roles after `after`.
func (s *Store) ListBindings(ctx context.Context, after string, limit int) ([]store.Binding, int64, error) {
	return list(ctx, s, func(c *store.Config) []store.Binding { return c.Bindings }, func(b store.Binding) string { return b.Role }, after, limit)
}

// ListPrincipals returns up to limit principals named after `after`.
func (s *Store) ListPrincipals(ctx context.Context, after string, limit int) ([]store.Principal, int64, error) {
	return list(ctx, s, func(c *store.Config) []store.Principal { return c.Principals }, func(p store.Principal) string { return p.Name }, after, limit)
}

// GetBackend returns one backend; store.ErrNotFound if there is none.
func (s *Store) GetBackend(ctx context.Context, name string) (store.Backend, error) {
	return get(ctx, s, store.KindBackend, name, (*store.Config).Backend)
}

// GetRole returns one role; store.ErrNotFound if there is none.
func (s *Store) GetRole(ctx context.Context, name string) (store.Role, error) {
	return get(ctx, s, store.KindRole, name, (*store.Config).Role)
}

// GetBinding returns the binding of one role; store.ErrNotFound if none.
func (s *Store) GetBinding(ctx context.Context, role string) (store.Binding, error) {
	return get(ctx, s, store.KindBinding, role, (*store.Config).Binding)
}

// GetPrincipal returns one principal; store.ErrNotFound if there is none.
func (s *Store) GetPrincipal(ctx context.Context, name string) (store.Principal, error) {
	return get(ctx, s, store.KindPrincipal, name, (*store.Config).Principal)
}

// GetRevision returns one change-log entry; store.ErrNotFound if rev was
// never committed.
func (s *Store) GetRevision(ctx context.Context, rev int64) (store.Revision, error) {
	revs, err := s.revisions(ctx, `WHERE revision = ?`, rev)
	if err != nil {
		return store.Revision{}, err
	}
	if len(revs) == 0 {
		return store.Revision{}, fmt.Errorf("revision %d: %w", rev, store.ErrNotFound)
	}
	return revs[0], nil
}

// ListRevisions lists change-log entries newest first, older than before
// (0 = from the newest), at most limit (0 = all).
func (s *Store) ListRevisions(ctx context.Context, before int64, limit int) ([]store.Revision, error) {
	if before <= 0 {
		before = 1<<63 - 1
	}
	q := `WHERE revision < ? ORDER BY revision DESC`
	if limit > 0 {
		q += fmt.Sprintf(" LIMIT %d", limit)
	}
	return s.revisions(ctx, q, before)
}

func (s *Store) revisions(ctx context.Context, where string, arg int64) ([]store.Revision, error) {
	var out []store.Revision
	err := s.readTx(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `SELECT revision, ts, actor, operation FROM config_revisions `+where, arg)
		if err != nil {
			return err
		}
		out, err = collect(rows, func(r scanner) (store.Revision, error) {
			var (
				rv store.Revision
				at int64
			)
			err := r.Scan(&rv.Revision, &at, &rv.Actor, &rv.Operation)
			rv.Time = ts(at)
			return rv, err
		})
		if err != nil {
			return err
		}
		for i := range out {
			crows, err := tx.QueryContext(ctx, `SELECT kind, name, action, before, after FROM config_changes WHERE revision = ? ORDER BY id`, out[i].Revision)
			if err != nil {
				return err
			}
			out[i].Changes, err = collect(crows, func(r scanner) (store.Change, error) {
				var (
					c             store.Change
					kind, action  string
					before, after sql.NullString
				)
				err := r.Scan(&kind, &c.Name, &action, &before, &after)
				c.Kind, c.Action = store.Kind(kind), store.Action(action)
				if before.Valid {
					c.Before = json.RawMessage(before.String)
				}
				if after.Valid {
					c.After = json.RawMessage(after.String)
				}
				return c, err
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading the change log: %w", err)
	}
	return out, nil
}
