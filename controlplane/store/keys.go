package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mcpgw/mcpgw/internal/policy"
)

// HashSecret is the lowercase hex SHA-256 of a whole secret string (API key,
// admin token, join token): the only form in which secrets are stored.
func HashSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// APIKey is an API key's metadata; the secret is never stored and its hash
// never leaves the store through this type.
type APIKey struct {
	ID          string
	Principal   string
	Description string
	CreatedAt   time.Time
	// ExpiresAt and RevokedAt are zero when unset.
	ExpiresAt time.Time
	RevokedAt time.Time
}

func (k APIKey) active(now time.Time) bool {
	return k.RevokedAt.IsZero() && (k.ExpiresAt.IsZero() || k.ExpiresAt.After(now))
}

// apiKeyLog is a key's form in the change log: metadata only, never the hash.
type apiKeyLog struct {
	ID          string     `json:"id"`
	Principal   string     `json:"principal"`
	Description string     `json:"description,omitempty"`
	ExpiresAt   *time.Time `json:"expires_at,omitempty"`
	RevokedAt   *time.Time `json:"revoked_at,omitempty"`
}

func (k APIKey) logForm() apiKeyLog {
	l := apiKeyLog{ID: k.ID, Principal: k.Principal, Description: k.Description}
	if !k.ExpiresAt.IsZero() {
		t := k.ExpiresAt.UTC()
		l.ExpiresAt = &t
	}
	if !k.RevokedAt.IsZero() {
		t := k.RevokedAt.UTC()
		l.RevokedAt = &t
	}
	return l
}

const apiKeyColumns = `id, principal, description, created_at, expires_at, revoked_at`

func scanAPIKey(r pgx.CollectableRow) (APIKey, error) {
	var (
		k        APIKey
		exp, rev *time.Time
	)
	if err := r.Scan(&k.ID, &k.Principal, &k.Description, &k.CreatedAt, &exp, &rev); err != nil {
		return k, err
	}
	if exp != nil {
		k.ExpiresAt = *exp
	}
	if rev != nil {
		k.RevokedAt = *rev
	}
	return k, nil
}

func keysOf(ctx context.Context, q querier, principal string) ([]APIKey, error) {
	rows, err := q.Query(ctx, `SELECT `+apiKeyColumns+` FROM api_keys WHERE principal = $1 ORDER BY id COLLATE "C"`, principal)
	if err != nil {
		return nil, fmt.Errorf("reading keys of principal %q: %w", principal, err)
	}
	keys, err := pgx.CollectRows(rows, scanAPIKey)
	if err != nil {
		return nil, fmt.Errorf("reading keys of principal %q: %w", principal, err)
	}
	return keys, nil
}

// NewAPIKey describes a key to store. The caller minted the secret and
// passes only its hash.
type NewAPIKey struct {
	ID          string
	Principal   string
	SHA256      string
	Description string
	// ExpiresAt zero means never.
	ExpiresAt time.Time
}

// CreateAPIKey stores a key's hash, creating its principal (without groups)
// if it does not exist, in one new revision: edges learn the hash from it.
// It reports whether the principal was created.
func (w *Writer) CreateAPIKey(ctx context.Context, meta Meta, k NewAPIKey) (APIKey, Result, bool, error) {
	var (
		created bool
		out     APIKey
	)
	res, err := w.write(ctx, meta, false, func(_ context.Context, e *edit) error {
		if _, ok := e.cur.Principal(k.Principal); !ok {
			created = true
			e.next.Principals = append(e.next.Principals, Principal{Principal: policy.Principal{Name: k.Principal}})
		}
		out = APIKey{ID: k.ID, Principal: k.Principal, Description: k.Description, ExpiresAt: k.ExpiresAt}
		e.extra = append(e.extra, Change{Kind: KindAPIKey, Name: k.ID, Action: ActionCreate, After: specJSON(out.logForm())})
		e.keys = append(e.keys, KeyWrite{New: &k, CreatedAt: &out.CreatedAt})
		return nil
	})
	if err != nil {
		return APIKey{}, Result{}, false, err
	}
	return out, res, created, nil
}

// writeKey stores one KeyWrite in Postgres, stamping rev.
func writeKey(ctx context.Context, tx pgx.Tx, kw KeyWrite, rev int64) error {
	if k := kw.New; k != nil {
		var exp *time.Time
		if !k.ExpiresAt.IsZero() {
			exp = &k.ExpiresAt
		}
		var createdAt time.Time
		err := tx.QueryRow(ctx, `INSERT INTO api_keys (id, principal, sha256, description, expires_at, revision)
			VALUES ($1, $2, $3, $4, $5, $6) RETURNING created_at`,
			k.ID, k.Principal, k.SHA256, k.Description, exp, rev).Scan(&createdAt)
		if isUniqueViolation(err) {
			return fmt.Errorf("api key %q: %w", k.ID, ErrAlreadyExists)
		}
		if err != nil {
			return fmt.Errorf("storing api key %q: %w", k.ID, err)
		}
		if kw.CreatedAt != nil {
			*kw.CreatedAt = createdAt
		}
		return nil
	}
	_, err := tx.Exec(ctx, `UPDATE api_keys SET revoked_at = $2, revision = $3 WHERE id = $1`, kw.RevokeID, kw.RevokedAt, rev)
	return err
}

// GetAPIKey returns one key's metadata.
func (s *Store) GetAPIKey(ctx context.Context, id string) (APIKey, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+apiKeyColumns+` FROM api_keys WHERE id = $1`, id)
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

// KeyCursor is the position after a key in the newest-first key order.
type KeyCursor struct {
	CreatedAt time.Time
	ID        string
}

// ListAPIKeys lists keys newest first (created_at desc, id desc) after the
// cursor (nil = from the start). principal "" means every principal; with
// includeInactive false, revoked and expired keys are left out.
func (s *Store) ListAPIKeys(ctx context.Context, principal string, includeInactive bool, after *KeyCursor, limit int) ([]APIKey, error) {
	q := `SELECT ` + apiKeyColumns + ` FROM api_keys WHERE ($1 = '' OR principal = $1)
		AND ($2 OR (revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())))`
	args := []any{principal, includeInactive}
	if after != nil {
		q += ` AND (created_at, id COLLATE "C") < ($3, $4)`
		args = append(args, after.CreatedAt, after.ID)
	}
	q += ` ORDER BY created_at DESC, id COLLATE "C" DESC` + page{Limit: limit}.limit()
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("listing api keys: %w", err)
	}
	keys, err := pgx.CollectRows(rows, scanAPIKey)
	if err != nil {
		return nil, fmt.Errorf("listing api keys: %w", err)
	}
	return keys, nil
}

// RevokeAPIKey revokes a key in a new revision (edges drop its hash when they
// apply it). Revoking a revoked key changes nothing and makes no revision.
func (w *Writer) RevokeAPIKey(ctx context.Context, meta Meta, id string) (APIKey, Result, error) {
	var out APIKey
	res, err := w.write(ctx, meta, false, func(ctx context.Context, e *edit) error {
		k, err := e.tx.APIKey(ctx, id)
		if err != nil {
			return err
		}
		out = k
		if !k.RevokedAt.IsZero() {
			return nil
		}
		before := specJSON(k.logForm())
		now := time.Now().UTC().Truncate(time.Microsecond)
		k.RevokedAt = now
		out = k
		e.extra = append(e.extra, Change{Kind: KindAPIKey, Name: id, Action: ActionUpdate, Before: before, After: specJSON(k.logForm())})
		e.keys = append(e.keys, KeyWrite{RevokeID: id, RevokedAt: now})
		return nil
	})
	if err != nil {
		return APIKey{}, Result{}, err
	}
	return out, res, nil
}

// AdminToken is an admin token's metadata.
type AdminToken struct {
	ID          string
	Description string
}

// AuthenticateAdmin finds the active admin token whose hash is sha256Hex and
// records its use. ErrNotFound for an unknown, revoked or expired token.
func (s *Store) AuthenticateAdmin(ctx context.Context, sha256Hex string) (AdminToken, error) {
	var t AdminToken
	err := s.pool.QueryRow(ctx, `UPDATE admin_tokens SET last_used_at = now()
		WHERE sha256 = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())
		RETURNING id, description`, sha256Hex).Scan(&t.ID, &t.Description)
	if errors.Is(err, pgx.ErrNoRows) {
		return AdminToken{}, fmt.Errorf("admin token: %w", ErrNotFound)
	}
	if err != nil {
		return AdminToken{}, fmt.Errorf("checking admin token: %w", err)
	}
	return t, nil
}

// BootstrapAdminTokenID names the admin token that `mcpgw cp` manages.
const BootstrapAdminTokenID = "bootstrap"

// EnsureBootstrapAdminToken makes the bootstrap admin token's hash
// sha256Hex. With replace (the operator supplied the token, so it is the
// truth) an existing bootstrap token is overwritten; otherwise (a replica
// generated a candidate) the first one stored wins and the call reports
// false, so only the replica whose token was stored prints it.
func (s *Store) EnsureBootstrapAdminToken(ctx context.Context, sha256Hex string, replace bool) (stored bool, err error) {
	q := `INSERT INTO admin_tokens (id, sha256, description) VALUES ($1, $2, 'bootstrap token of mcpgw cp')
		ON CONFLICT (id) DO NOTHING`
	if replace {
		q = `INSERT INTO admin_tokens (id, sha256, description) VALUES ($1, $2, 'bootstrap token of mcpgw cp (MCPGW_ADMIN_TOKEN)')
			ON CONFLICT (id) DO UPDATE SET sha256 = EXCLUDED.sha256, description = EXCLUDED.description, revoked_at = NULL, expires_at = NULL`
	}
	tag, err := s.pool.Exec(ctx, q, BootstrapAdminTokenID, sha256Hex)
	if err != nil {
		return false, fmt.Errorf("storing the bootstrap admin token: %w", err)
	}
	return tag.RowsAffected() > 0, nil
}

// HasActiveAdminToken reports whether any admin token can still log in.
func (s *Store) HasActiveAdminToken(ctx context.Context) (bool, error) {
	var ok bool
	err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM admin_tokens
		WHERE revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now()))`).Scan(&ok)
	if err != nil {
		return false, fmt.Errorf("checking admin tokens: %w", err)
	}
	return ok, nil
}
