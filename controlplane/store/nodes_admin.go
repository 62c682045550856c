package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// Node is the admin view of one registry row. NODE's flusher keeps the
// status columns current (nodeapi.go); this file only reads them, and
// revokes.
type Node struct {
	ID                uuid.UUID
	Name              string
	NodeGroup         string
	Labels            map[string]string
	Version           string
	EnrolledAt        time.Time
	CertNotAfter      time.Time
	LastSeen          time.Time
	ConnectedReplica  string
	AppliedRevision   int64
	AppliedHash       string
	LastNackRevision  int64
	LastNackError     string
	LastNackRejected  []byte // JSON array of ResourceError (protojson), or nil
	LastNackAt        time.Time
	StatusJSON        []byte // the latest EdgeStatus (protojson), or nil
	RevokedAt         time.Time
	SpoolDepthBytes   int64
	SpoolDepthBatches int64
}

const nodeColumns = `id, name, node_group, labels, version, enrolled_at, cert_not_after, last_seen, connected_replica,
	applied_revision, applied_hash, last_nack_revision, last_nack_error, last_nack_rejected, last_nack_at, status,
	revoked_at, spool_depth_bytes, spool_depth_batches`

func scanNode(r pgx.CollectableRow) (Node, error) {
	var (
		n                                     Node
		certNotAfter, lastSeen, nackAt, revAt *time.Time
		replica, nackErr                      *string
		nackRev                               *int64
	)
	err := r.Scan(&n.ID, &n.Name, &n.NodeGroup, &n.Labels, &n.Version, &n.EnrolledAt, &certNotAfter, &lastSeen, &replica,
		&n.AppliedRevision, &n.AppliedHash, &nackRev, &nackErr, &n.LastNackRejected, &nackAt, &n.StatusJSON,
		&revAt, &n.SpoolDepthBytes, &n.SpoolDepthBatches)
	if err != nil {
		return n, err
	}
	n.CertNotAfter = deref(certNotAfter)
	n.LastSeen = deref(lastSeen)
	n.LastNackAt = deref(nackAt)
	n.RevokedAt = deref(revAt)
	n.ConnectedReplica = deref(replica)
	n.LastNackError = deref(nackErr)
	n.LastNackRevision = deref(nackRev)
	return n, nil
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

// NodeFilter selects nodes for ListNodes.
type NodeFilter struct {
	// NodeGroup "" means every group.
	NodeGroup      string
	IncludeRevoked bool
	// After is the last id of the previous page (uuid.Nil = from the start).
	After uuid.UUID
	Limit int
}

// ListNodes lists nodes sorted by id, with the current config revision.
func (s *Store) ListNodes(ctx context.Context, f NodeFilter) ([]Node, int64, error) {
	var out []Node
	rev, err := s.readTx(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT `+nodeColumns+` FROM nodes
			WHERE id > $1 AND ($2 = '' OR node_group = $2) AND ($3 OR revoked_at IS NULL)
			ORDER BY id`+page{Limit: f.Limit}.limit(), f.After, f.NodeGroup, f.IncludeRevoked)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, scanNode)
		return err
	})
	if err != nil {
		return nil, 0, fmt.Errorf("listing nodes: %w", err)
	}
	return out, rev, nil
}

// GetNode returns one node; ErrNotFound if there is none.
func (s *Store) GetNode(ctx context.Context, id uuid.UUID) (Node, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+nodeColumns+` FROM nodes WHERE id = $1`, id)
	if err != nil {
		return Node{}, fmt.Errorf("reading node %s: %w", id, err)
	}
	n, err := pgx.CollectExactlyOneRow(rows, scanNode)
	if errors.Is(err, pgx.ErrNoRows) {
		return Node{}, notFound(KindNode, id.String())
	}
	if err != nil {
		return Node{}, fmt.Errorf("reading node %s: %w", id, err)
	}
	return n, nil
}

// RevokeNode marks a node revoked (idempotent: the first revocation time
// stays). Replicas holding its streams notice through
// NodeStore.RevokedNodes and close them; its certificate is refused on
// every call from then on.
func (s *Store) RevokeNode(ctx context.Context, id uuid.UUID) (Node, error) {
	tag, err := s.pool.Exec(ctx, `UPDATE nodes SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1`, id)
	if err != nil {
		return Node{}, fmt.Errorf("revoking node %s: %w", id, err)
	}
	if tag.RowsAffected() == 0 {
		return Node{}, notFound(KindNode, id.String())
	}
	return s.GetNode(ctx, id)
}

// NodeRollout is one node's part in a rollout.
type NodeRollout struct {
	ID               uuid.UUID
	Name             string
	Connected        bool
	AppliedRevision  int64
	LastNackRevision int64
	LastNackError    string
	LastNackRejected []byte
	LastNackAt       time.Time
}

// RolloutNodes returns every unrevoked node (of group, "" = all) with what
// WatchRollout counts.
func (s *Store) RolloutNodes(ctx context.Context, group string) ([]NodeRollout, error) {
	rows, err := s.pool.Query(ctx, `SELECT id, name, connected_replica IS NOT NULL, applied_revision,
			coalesce(last_nack_revision, 0), coalesce(last_nack_error, ''), last_nack_rejected, last_nack_at
		FROM nodes WHERE revoked_at IS NULL AND ($1 = '' OR node_group = $1) ORDER BY id`, group)
	if err != nil {
		return nil, fmt.Errorf("reading rollout state: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (NodeRollout, error) {
		var n NodeRollout
		var at *time.Time
		err := r.Scan(&n.ID, &n.Name, &n.Connected, &n.AppliedRevision, &n.LastNackRevision, &n.LastNackError, &n.LastNackRejected, &at)
		n.LastNackAt = deref(at)
		return n, err
	})
	if err != nil {
		return nil, fmt.Errorf("reading rollout state: %w", err)
	}
	return out, nil
}
