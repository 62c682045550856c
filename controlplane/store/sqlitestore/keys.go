package sqlitestore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"maps"

	"github.com/google/uuid"

	"github.com/mcpgw/mcpgw/controlplane/store"
)

const apiKeyColumns = `id, principal, description, created_at, expires_at, revoked_at`

func scanAPIKey(r scanner) (store.APIKey, error) {
	var (
		k             store.APIKey
		created       int64
		expires, revd sql.NullInt64
	)
	if err := r.Scan(&k.ID, &k.Principal, &k.Description, &created, &expires, &revd); err != nil {
		return k, err
	}
	k.CreatedAt, k.ExpiresAt, k.RevokedAt = ts(created), nullTS(expires), nullTS(revd)
	return k, nil
}

func getAPIKey(ctx context.Context, q queryer, id string) (store.APIKey, error) {
	k, err := scanAPIKey(q.QueryRowContext(ctx, `SELECT `+apiKeyColumns+` FROM api_keys WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return store.APIKey{}, fmt.Errorf("%s %q: %w", store.KindAPIKey, id, store.ErrNotFound)
	}
	if err != nil {
		return store.APIKey{}, fmt.Errorf("reading api key %q: %w", id, err)
	}
	return k, nil
}

// GetAPIKey returns one key's metadata.
func (s *Store) GetAPIKey(ctx context.Context, id string) (store.APIKey, error) {
	return getAPIKey(ctx, s.r, id)
}

// ListAPIKeys lists keys newest first (created_at desc, id desc) after the
// cursor (nil = from the start); principal "" means every principal; with
// includeInactive false, revoked and expired keys are left out.
func (s *Store) ListAPIKeys(ctx context.Context, principal string, includeInactive bool, after *store.KeyCursor, limit int) ([]store.APIKey, error) {
	q := `SELECT ` + apiKeyColumns + ` FROM api_keys WHERE (?1 = '' OR principal = ?1)
		AND (?2 OR (revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?3)))`
	args := []any{principal, includeInactive, us(now())}
	if after != nil {
		q += ` AND (created_at, id) < (?4, ?5)`
		args = append(args, us(after.CreatedAt), after.ID)
	}
	q += ` ORDER BY created_at DESC, id DESC` + limitClause(limit)
	rows, err := s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("listing api keys: %w", err)
	}
	keys, err := collect(rows, scanAPIKey)
	if err != nil {
		return nil, fmt.Errorf("listing api keys: %w", err)
	}
	return keys, nil
}

func limitClause(limit int) string {
	if limit <= 0 {
		return ""
	}
	return fmt.Sprintf(" LIMIT %d", limit)
}

// AuthenticateAdmin finds the active admin token whose hash is sha256Hex and
// records its use; store.ErrNotFound for an unknown, revoked or expired one.
func (s *Store) AuthenticateAdmin(ctx context.Context, sha256Hex string) (store.AdminToken, error) {
	var t store.AdminToken
	err := s.writeTx(ctx, func(tx *sql.Tx) error {
		n := us(now())
		return tx.QueryRowContext(ctx, `UPDATE admin_tokens SET last_used_at = ?2
			WHERE sha256 = ?1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?2)
			RETURNING id, description`, sha256Hex, n).Scan(&t.ID, &t.Description)
	})
	if errors.Is(err, sql.ErrNoRows) {
		return store.AdminToken{}, fmt.Errorf("admin token: %w", store.ErrNotFound)
	}
	if err != nil {
		return store.AdminToken{}, fmt.Errorf("checking admin token: %w", err)
	}
	return t, nil
}

// EnsureBootstrapAdminToken makes the bootstrap admin token's hash
// sha256Hex: with replace an existing one is overwritten, otherwise the
// first one stored wins and the call reports false.
func (s *Store) EnsureBootstrapAdminToken(ctx context.Context, sha256Hex string, replace bool) (bool, error) {
	q := `INSERT INTO admin_tokens (id, sha256, description, created_at) VALUES (?, ?, 'bootstrap token of mcpgw cp', ?)
		ON CONFLICT (id) DO NOTHING`
	if replace {
		q = `INSERT INTO admin_tokens (id, sha256, description, created_at) VALUES (?, ?, 'bootstrap token of mcpgw cp (MCPGW_ADMIN_TOKEN)', ?)
			ON CONFLICT (id) DO UPDATE SET sha256 = excluded.sha256, description = excluded.description, revoked_at = NULL, expires_at = NULL`
	}
	var n int64
	err := s.writeTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, q, store.BootstrapAdminTokenID, sha256Hex, us(now()))
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return false, fmt.Errorf("storing the bootstrap admin token: %w", err)
	}
	return n > 0, nil
}

// HasActiveAdminToken reports whether any admin token can still log in.
func (s *Store) HasActiveAdminToken(ctx context.Context) (bool, error) {
	var ok bool
	err := s.r.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM admin_tokens
		WHERE revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?))`, us(now())).Scan(&ok)
	if err != nil {
		return false, fmt.Errorf("checking admin tokens: %w", err)
	}
	return ok, nil
}

const joinTokenColumns = `id, labels, node_group, description, created_at, expires_at, used_at, used_by_node, revoked_at`

func scanJoinToken(r scanner) (store.JoinToken, error) {
	var (
		t                store.JoinToken
		labels           string
		created, expires int64
		used, revoked    sql.NullInt64
		by               sql.NullString
	)
	if err := r.Scan(&t.ID, &labels, &t.NodeGroup, &t.Description, &created, &expires, &used, &by, &revoked); err != nil {
		return t, err
	}
	if err := json.Unmarshal([]byte(labels), &t.Labels); err != nil {
		return t, fmt.Errorf("join token %q labels: %w", t.ID, err)
	}
	t.CreatedAt, t.ExpiresAt, t.UsedAt, t.RevokedAt = ts(created), ts(expires), nullTS(used), nullTS(revoked)
	if by.Valid {
		id, err := uuid.Parse(by.String)
		if err != nil {
			return t, fmt.Errorf("join token %q used_by_node: %w", t.ID, err)
		}
		t.UsedBy = id
	}
	return t, nil
}

// CreateJoinToken stores a join token's hash. Join tokens are not config:
// they take no revision.
func (s *Store) CreateJoinToken(ctx context.Context, t store.NewJoinToken) (store.JoinToken, error) {
	group := t.NodeGroup
	if group == "" {
		group = "default"
	}
	labels := maps.Clone(t.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	lj, err := json.Marshal(labels)
	if err != nil {
		return store.JoinToken{}, fmt.Errorf("join token %q labels: %w", t.ID, err)
	}
	var out store.JoinToken
	err = s.writeTx(ctx, func(tx *sql.Tx) error {
		var err error
		out, err = scanJoinToken(tx.QueryRowContext(ctx, `INSERT INTO join_tokens (id, sha256, labels, node_group, description, created_at, expires_at)
			VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING `+joinTokenColumns,
			t.ID, t.SHA256, string(lj), group, t.Description, us(now()), us(t.ExpiresAt)))
		return err
	})
	if isUniqueViolation(err) {
		return store.JoinToken{}, fmt.Errorf("join token %q: %w", t.ID, store.ErrAlreadyExists)
	}
	if err != nil {
		return store.JoinToken{}, fmt.Errorf("storing join token %q: %w", t.ID, err)
	}
	return out, nil
}

// ListJoinTokens lists tokens newest first after the cursor (nil = from the
// start); without includeInactive, used, expired and revoked tokens are
// left out.
func (s *Store) ListJoinTokens(ctx context.Context, includeInactive bool, after *store.TokenCursor, limit int) ([]store.JoinToken, error) {
	q := `SELECT ` + joinTokenColumns + ` FROM join_tokens
		WHERE (?1 OR (used_at IS NULL AND revoked_at IS NULL AND expires_at > ?2))`
	args := []any{includeInactive, us(now())}
	if after != nil {
		q += ` AND (created_at, id) < (?3, ?4)`
		args = append(args, us(after.CreatedAt), after.ID)
	}
	q += ` ORDER BY created_at DESC, id DESC` + limitClause(limit)
	rows, err := s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("listing join tokens: %w", err)
	}
	out, err := collect(rows, scanJoinToken)
	if err != nil {
		return nil, fmt.Errorf("listing join tokens: %w", err)
	}
	return out, nil
}

// RevokeJoinToken makes an unused token unusable; revoking a revoked token
// is a no-op and a used one is refused with store.ErrJoinTokenUsed.
func (s *Store) RevokeJoinToken(ctx context.Context, id string) (store.JoinToken, error) {
	var out store.JoinToken
	err := s.writeTx(ctx, func(tx *sql.Tx) error {
		t, err := scanJoinToken(tx.QueryRowContext(ctx, `SELECT `+joinTokenColumns+` FROM join_tokens WHERE id = ?`, id))
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("%s %q: %w", store.KindJoinToken, id, store.ErrNotFound)
		}
		if err != nil {
			return err
		}
		if !t.UsedAt.IsZero() {
			return fmt.Errorf("join token %q enrolled node %s: %w", id, t.UsedBy, store.ErrJoinTokenUsed)
		}
		if t.RevokedAt.IsZero() {
			t.RevokedAt = now()
			if _, err := tx.ExecContext(ctx, `UPDATE join_tokens SET revoked_at = ? WHERE id = ?`, us(t.RevokedAt), id); err != nil {
				return err
			}
		}
		out = t
		return nil
	})
	if err != nil {
		return store.JoinToken{}, fmt.Errorf("revoking join token %q: %w", id, err)
	}
	return out, nil
}
