package store

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// This file holds the node side of the store: enrollment, the node
// registry's batched status writes and the revocation checks that
// controlplane/nodeapi needs. nodeapi_config.go reads the config that
// controlplane/snapshot pushes.

// ErrJoinTokenRefused means a join token is unknown, already used, revoked
// or expired. The cases are deliberately not told apart so that tokens cannot be
// probed.
var ErrJoinTokenRefused = errors.New("join token refused")

// ErrNodeNotFound means no node has the given id.
var ErrNodeNotFound = errors.New("node not found")

// NodeStore is the node registry in Postgres. It is safe for concurrent use.
type NodeStore struct {
	pool *pgxpool.Pool
}

// NewNodeStore returns a NodeStore on pool.
func NewNodeStore(pool *pgxpool.Pool) *NodeStore { return &NodeStore{pool: pool} }

// EnrollParams describes a node being enrolled. The certificate has been
// signed already (for ID), so the row and the token consumption can commit
// together; if the token turns out to be refused the certificate is simply
// never handed out.
type EnrollParams struct {
	// JoinTokenSHA256 is the lowercase hex SHA-256 of the whole token string.
	JoinTokenSHA256 string
	ID              uuid.UUID
	// Name is the display name; "" means the node id.
	Name    string
	Version string
	// Labels the edge reported; the token's labels win on conflict.
	Labels          map[string]string
	CertSerial      string
	CertFingerprint string
	CertNotAfter    time.Time
}

// EnrolledNode is what enrollment decided from the join token.
type EnrolledNode struct {
	ID         uuid.UUID
	NodeGroup  string
	Labels     map[string]string
	EnrolledAt time.Time
}

// EnrollNode consumes the join token and creates the node in one
// transaction: a token is used by exactly one node even when two edges
// present it at once, and a failed insert leaves the token unused.
func (s *NodeStore) EnrollNode(ctx context.Context, p EnrollParams) (EnrolledNode, error) {
	var out EnrolledNode
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var tokenID string
		var tokenLabels map[string]string
		// The row lock taken by UPDATE makes a concurrent second use wait and
		// then see used_at set, so it matches no row.
		err := tx.QueryRow(ctx, `UPDATE join_tokens SET used_at = now()
			WHERE sha256 = $1 AND used_at IS NULL AND revoked_at IS NULL AND expires_at > now()
			RETURNING id, labels, node_group`, p.JoinTokenSHA256).Scan(&tokenID, &tokenLabels, &out.NodeGroup)
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrJoinTokenRefused
		}
		if err != nil {
			return fmt.Errorf("consuming join token: %w", err)
		}
		labels := make(map[string]string, len(p.Labels)+len(tokenLabels))
		maps.Copy(labels, p.Labels)
		maps.Copy(labels, tokenLabels)
		name := p.Name
		if name == "" {
			name = p.ID.String()
		}
		err = tx.QueryRow(ctx, `INSERT INTO nodes
			(id, name, labels, node_group, version, cert_serial, cert_fingerprint, cert_not_after)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING enrolled_at`,
			p.ID, name, labels, out.NodeGroup, p.Version, p.CertSerial, p.CertFingerprint, p.CertNotAfter,
		).Scan(&out.EnrolledAt)
		if err != nil {
			return fmt.Errorf("inserting node %s: %w", p.ID, err)
		}
		if _, err := tx.Exec(ctx, `UPDATE join_tokens SET used_by_node = $2 WHERE id = $1`, tokenID, p.ID); err != nil {
			return fmt.Errorf("recording join token %s use: %w", tokenID, err)
		}
		out.ID = p.ID
		out.Labels = labels
		return nil
	})
	if err != nil {
		return EnrolledNode{}, err
	}
	return out, nil
}

// NodeIdentity is what the node API checks when a node calls in.
type NodeIdentity struct {
	ID        uuid.UUID
	Name      string
	NodeGroup string
	// RevokedAt is non-nil for a revoked node, which is refused everywhere.
	RevokedAt *time.Time
}

// NodeIdentity returns the registry entry of node id, or ErrNodeNotFound.
func (s *NodeStore) NodeIdentity(ctx context.Context, id uuid.UUID) (NodeIdentity, error) {
	n := NodeIdentity{ID: id}
	err := s.pool.QueryRow(ctx, `SELECT name, node_group, revoked_at FROM nodes WHERE id = $1`, id).
		Scan(&n.Name, &n.NodeGroup, &n.RevokedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return NodeIdentity{}, fmt.Errorf("node %s: %w", id, ErrNodeNotFound)
	}
	if err != nil {
		return NodeIdentity{}, fmt.Errorf("reading node %s: %w", id, err)
	}
	return n, nil
}

// RecordNodeCertificate records a renewed certificate of node id.
func (s *NodeStore) RecordNodeCertificate(ctx context.Context, id uuid.UUID, serial, fingerprint string, notAfter time.Time) error {
	tag, err := s.pool.Exec(ctx, `UPDATE nodes SET cert_serial = $2, cert_fingerprint = $3, cert_not_after = $4
		WHERE id = $1 AND revoked_at IS NULL`, id, serial, fingerprint, notAfter)
	if err != nil {
		return fmt.Errorf("recording certificate of node %s: %w", id, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("recording certificate of node %s: %w", id, ErrNodeNotFound)
	}
	return nil
}

// RevokedNodes returns those of ids that are revoked, so a replica can close
// the streams of nodes revoked through another replica.
func (s *NodeStore) RevokedNodes(ctx context.Context, ids []uuid.UUID) ([]uuid.UUID, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	rows, err := s.pool.Query(ctx, `SELECT id FROM nodes WHERE id = ANY($1) AND revoked_at IS NOT NULL`, ids)
	if err != nil {
		return nil, fmt.Errorf("checking revoked nodes: %w", err)
	}
	revoked, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
	if err != nil {
		return nil, fmt.Errorf("checking revoked nodes: %w", err)
	}
	return revoked, nil
}

// NodeStatusUpdate is everything a replica learned about one node since its
// last flush. Zero-valued parts leave the stored values alone.
type NodeStatusUpdate struct {
	ID       uuid.UUID
	LastSeen time.Time
	// Version is the edge's build version from its hello; "" = unchanged.
	Version string
	// Connection: ConnectionChanged with Connected true records this
	// replica as the node's; with Connected false it clears the column, but
	// only if it still names this replica (the node may have moved on).
	ConnectionChanged bool
	Connected         bool
	// Applied is set when the node acked a snapshot. It also clears an
	// older NACK (the node has moved past what it rejected).
	Applied         bool
	AppliedRevision int64
	AppliedHash     string
	// Nack is the node's latest rejection, nil = none since the last flush.
	Nack *NodeNack
	// Status is the node's latest self-report, nil = none since the last flush.
	Status *NodeReport
}

// NodeNack is one rejected snapshot.
type NodeNack struct {
	Revision int64
	Error    string
	// RejectedJSON is the per-resource errors as a JSON array (protojson of
	// ResourceError with proto names), or nil.
	RejectedJSON []byte
	At           time.Time
}

// NodeReport is the part of an edge's status report the registry stores.
type NodeReport struct {
	SpoolDepthBytes   int64
	SpoolDepthBatches int64
	// SpoolOldestUnackedAt is nil when the spool is empty.
	SpoolOldestUnackedAt *time.Time
	// JSON is the whole EdgeStatus (protojson, proto names) for ListNodes.
	JSON []byte
}

// FlushNodeStatus writes a batch of node updates from replica in one
// statement (a fleet-wide ACK wave is one UPDATE over unnest'ed arrays, not
// a thousand). Updates of unknown (deleted) nodes are ignored; ids must be
// distinct.
func (s *NodeStore) FlushNodeStatus(ctx context.Context, replica string, updates []NodeStatusUpdate) error {
	if len(updates) == 0 {
		return nil
	}
	n := len(updates)
	var (
		ids          = make([]uuid.UUID, n)
		lastSeen     = make([]*time.Time, n)
		version      = make([]string, n)
		connChanged  = make([]bool, n)
		connected    = make([]bool, n)
		applied      = make([]bool, n)
		appliedRev   = make([]int64, n)
		appliedHash  = make([]string, n)
		nackRev      = make([]*int64, n)
		nackErr      = make([]*string, n)
		nackRejected = make([]*string, n)
		nackAt       = make([]*time.Time, n)
		hasStatus    = make([]bool, n)
		spoolBytes   = make([]int64, n)
		spoolBatches = make([]int64, n)
		spoolOldest  = make([]*time.Time, n)
		statusJSON   = make([]*string, n)
	)
	for i, u := range updates {
		ids[i] = u.ID
		if !u.LastSeen.IsZero() {
			lastSeen[i] = &u.LastSeen
		}
		version[i] = u.Version
		connChanged[i], connected[i] = u.ConnectionChanged, u.Connected
		applied[i], appliedRev[i], appliedHash[i] = u.Applied, u.AppliedRevision, u.AppliedHash
		if nk := u.Nack; nk != nil {
			nackRev[i], nackErr[i], nackAt[i] = &nk.Revision, &nk.Error, &nk.At
			nackRejected[i] = jsonText(nk.RejectedJSON)
		}
		if st := u.Status; st != nil {
			hasStatus[i] = true
			spoolBytes[i], spoolBatches[i], spoolOldest[i] = st.SpoolDepthBytes, st.SpoolDepthBatches, st.SpoolOldestUnackedAt
			statusJSON[i] = jsonText(st.JSON)
		}
	}
	// An ACK newer than the recorded NACK clears it (the node has moved
	// past what it rejected); a NACK in the same update wins.
	_, err := s.pool.Exec(ctx, `UPDATE nodes n SET
		last_seen = greatest(n.last_seen, u.last_seen),
		version = CASE WHEN u.version = '' THEN n.version ELSE u.version END,
		connected_replica = CASE
			WHEN NOT u.conn_changed THEN n.connected_replica
			WHEN u.connected THEN $2
			WHEN n.connected_replica = $2 THEN NULL
			ELSE n.connected_replica END,
		applied_revision = CASE WHEN u.applied THEN u.applied_rev ELSE n.applied_revision END,
		applied_hash = CASE WHEN u.applied THEN u.applied_hash ELSE n.applied_hash END,
		last_nack_revision = CASE
			WHEN u.nack_rev IS NOT NULL THEN u.nack_rev
			WHEN u.applied AND n.last_nack_revision < u.applied_rev THEN NULL
			ELSE n.last_nack_revision END,
		last_nack_error = CASE
			WHEN u.nack_rev IS NOT NULL THEN u.nack_err
			WHEN u.applied AND n.last_nack_revision < u.applied_rev THEN NULL
			ELSE n.last_nack_error END,
		last_nack_rejected = CASE
			WHEN u.nack_rev IS NOT NULL THEN u.nack_rejected::jsonb
			WHEN u.applied AND n.last_nack_revision < u.applied_rev THEN NULL
			ELSE n.last_nack_rejected END,
		last_nack_at = CASE
			WHEN u.nack_rev IS NOT NULL THEN u.nack_at
			WHEN u.applied AND n.last_nack_revision < u.applied_rev THEN NULL
			ELSE n.last_nack_at END,
		spool_depth_bytes = CASE WHEN u.has_status THEN u.spool_bytes ELSE n.spool_depth_bytes END,
		spool_depth_batches = CASE WHEN u.has_status THEN u.spool_batches ELSE n.spool_depth_batches END,
		spool_oldest_unacked_at = CASE WHEN u.has_status THEN u.spool_oldest ELSE n.spool_oldest_unacked_at END,
		status = CASE WHEN u.has_status THEN u.status_json::jsonb ELSE n.status END,
		status_at = CASE WHEN u.has_status THEN now() ELSE n.status_at END
		FROM unnest($1::uuid[], $3::timestamptz[], $4::text[], $5::bool[], $6::bool[], $7::bool[], $8::bigint[],
			$9::text[], $10::bigint[], $11::text[], $12::text[], $13::timestamptz[], $14::bool[], $15::bigint[],
			$16::bigint[], $17::timestamptz[], $18::text[])
		AS u(id, last_seen, version, conn_changed, connected, applied, applied_rev, applied_hash, nack_rev, nack_err,
			nack_rejected, nack_at, has_status, spool_bytes, spool_batches, spool_oldest, status_json)
		WHERE n.id = u.id`,
		ids, replica, lastSeen, version, connChanged, connected, applied, appliedRev, appliedHash,
		nackRev, nackErr, nackRejected, nackAt, hasStatus, spoolBytes, spoolBatches, spoolOldest, statusJSON)
	if err != nil {
		return fmt.Errorf("flushing status of %d nodes: %w", n, err)
	}
	return nil
}

// jsonText turns an empty document into SQL NULL.
func jsonText(b []byte) *string {
	if len(b) == 0 {
		return nil
	}
	s := string(b)
	return &s
}

// ReleaseReplicaNodes clears connected_replica of every node still recorded
// as connected to replica; a replica calls it when it starts (after a crash)
// and when it stops.
func (s *NodeStore) ReleaseReplicaNodes(ctx context.Context, replica string) error {
	if _, err := s.pool.Exec(ctx, `UPDATE nodes SET connected_replica = NULL WHERE connected_replica = $1`, replica); err != nil {
		return fmt.Errorf("releasing nodes of replica %q: %w", replica, err)
	}
	return nil
}

// HeadRevision returns the latest committed config revision (0 before the
// first change). Cheap enough to poll.
func (s *NodeStore) HeadRevision(ctx context.Context) (int64, error) {
	var rev int64
	if err := s.pool.QueryRow(ctx, `SELECT revision FROM config_head`).Scan(&rev); err != nil {
		return 0, fmt.Errorf("reading config head revision: %w", err)
	}
	return rev, nil
}

// ListenConfig LISTENs on NotifyChannel on a connection of its own (not one
// of the pool's, which would be lost to the pool for good) and calls
// onRevision with each notified revision until ctx ends or the connection
// fails. Malformed payloads are passed as 0, which callers treat as "look at
// the head revision".
func (s *NodeStore) ListenConfig(ctx context.Context, onRevision func(int64)) error {
	conn, err := pgx.ConnectConfig(ctx, s.pool.Config().ConnConfig.Copy())
	if err != nil {
		return fmt.Errorf("connecting to listen for config changes: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "LISTEN "+NotifyChannel); err != nil {
		return fmt.Errorf("listening on %s: %w", NotifyChannel, err)
	}
	// A change committed before LISTEN took effect would be missed; the
	// caller's first look at the head revision happens after this call.
	onRevision(0)
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("waiting for config notifications: %w", err)
		}
		rev, _ := strconv.ParseInt(n.Payload, 10, 64)
		onRevision(rev)
	}
}
