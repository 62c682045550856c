package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// JoinToken is a join token's metadata; the token itself is never stored.
type JoinToken struct {
	ID          string
	Labels      map[string]string
	NodeGroup   string
	Description string
	CreatedAt   time.Time
	ExpiresAt   time.Time
	// UsedAt and RevokedAt are zero when unset; UsedBy is uuid.Nil while
	// unused (or after the node that used it was deleted).
	UsedAt    time.Time
	UsedBy    uuid.UUID
	RevokedAt time.Time
}

// NewJoinToken describes a token to store; the caller minted the secret and
// passes only its hash.
type NewJoinToken struct {
	ID          string
	SHA256      string
	Labels      map[string]string
	NodeGroup   string
	Description string
	ExpiresAt   time.Time
}

const joinTokenColumns = `id, labels, node_group, description, created_at, expires_at, used_at, used_by_node, revoked_at`

func scanJoinToken(r pgx.CollectableRow) (JoinToken, error) {
	var (
		t             JoinToken
		used, revoked *time.Time
		by            *uuid.UUID
	)
	if err := r.Scan(&t.ID, &t.Labels, &t.NodeGroup, &t.Description, &t.CreatedAt, &t.ExpiresAt, &used, &by, &revoked); err != nil {
		return t, err
	}
	if used != nil {
		t.UsedAt = *used
	}
	if by != nil {
		t.UsedBy = *by
	}
	if revoked != nil {
		t.RevokedAt = *revoked
	}
	return t, nil
}

// CreateJoinToken stores a join token's hash. Join tokens are not config:
// they take no revision and are never pushed to edges.
func (s *Store) CreateJoinToken(ctx context.Context, t NewJoinToken) (JoinToken, error) {
	group := t.NodeGroup
	if group == "" {
		group = "default"
	}
	labels := t.Labels
	if labels == nil {
		labels = map[string]string{}
	}
	rows, err := s.pool.Query(ctx, `INSERT INTO join_tokens (id, sha256, labels, node_group, description, expires_at)
		VALUES ($1, $2, $3, $4, $5, $6) RETURNING `+joinTokenColumns,
		t.ID, t.SHA256, labels, group, t.Description, t.ExpiresAt)
	if err != nil {
		return JoinToken{}, fmt.Errorf("storing join token %q: %w", t.ID, err)
	}
	out, err := pgx.CollectExactlyOneRow(rows, scanJoinToken)
	if isUniqueViolation(err) {
		return JoinToken{}, fmt.Errorf("join token %q: %w", t.ID, ErrAlreadyExists)
	}
	if err != nil {
		return JoinToken{}, fmt.Errorf("storing join token %q: %w", t.ID, err)
	}
	return out, nil
}

// TokenCursor is the position after a token in the newest-first order.
type TokenCursor = KeyCursor

// ListJoinTokens lists tokens newest first after the cursor (nil = from the
// start); without includeInactive, used, expired and revoked tokens are
// left out.
func (s *Store) ListJoinTokens(ctx context.Context, includeInactive bool, after *TokenCursor, limit int) ([]JoinToken, error) {
	q := `SELECT ` + joinTokenColumns + ` FROM join_tokens
		WHERE ($1 OR (used_at IS NULL AND revoked_at IS NULL AND expires_at > now()))`
	args := []any{includeInactive}
	if after != nil {
		q += ` AND (created_at, id COLLATE "C") < ($2, $3)`
		args = append(args, after.CreatedAt, after.ID)
	}
	q += ` ORDER BY created_at DESC, id COLLATE "C" DESC` + page{Limit: limit}.limit()
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("listing join tokens: %w", err)
	}
	out, err := pgx.CollectRows(rows, scanJoinToken)
	if err != nil {
		return nil, fmt.Errorf("listing join tokens: %w", err)
	}
	return out, nil
}

// ErrJoinTokenUsed refuses revoking a token that already enrolled a node:
// revocation cannot undo that (revoke the node instead).
var ErrJoinTokenUsed = errors.New("join token already used")

// RevokeJoinToken makes an unused token unusable. Revoking a revoked token
// is a no-op; a used one is refused with ErrJoinTokenUsed.
func (s *Store) RevokeJoinToken(ctx context.Context, id string) (JoinToken, error) {
	var out JoinToken
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT `+joinTokenColumns+` FROM join_tokens WHERE id = $1 FOR UPDATE`, id)
		if err != nil {
			return err
		}
		t, err := pgx.CollectExactlyOneRow(rows, scanJoinToken)
		if errors.Is(err, pgx.ErrNoRows) {
			return notFound(KindJoinToken, id)
		}
		if err != nil {
			return err
		}
		if !t.UsedAt.IsZero() {
			return fmt.Errorf("join token %q enrolled node %s: %w", id, t.UsedBy, ErrJoinTokenUsed)
		}
		if t.RevokedAt.IsZero() {
			if err := tx.QueryRow(ctx, `UPDATE join_tokens SET revoked_at = now() WHERE id = $1 RETURNING revoked_at`, id).Scan(&t.RevokedAt); err != nil {
				return err
			}
		}
		out = t
		return nil
	})
	if err != nil {
		return JoinToken{}, fmt.Errorf("revoking join token %q: %w", id, err)
	}
	return out, nil
}
