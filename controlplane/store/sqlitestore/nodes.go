package sqlitestore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mcpgw/mcpgw/controlplane/store"
	mcpgwv1 "github.com/mcpgw/mcpgw/gen/mcpgw/v1"
)

// EnrollNode consumes the join token and creates the node in one
// transaction: a token enrolls exactly one node, and a failed insert leaves
// it unused.
func (s *Store) EnrollNode(ctx context.Context, p store.EnrollParams) (store.EnrolledNode, error) {
	var out store.EnrolledNode
	err := s.writeTx(ctx, func(tx *sql.Tx) error {
		at := now()
		var (
			tokenID, labelsJSON string
			tokenLabels         map[string]string
		)
		err := tx.QueryRowContext(ctx, `UPDATE join_tokens SET used_at = ?2
			WHERE sha256 = ?1 AND used_at IS NULL AND revoked_at IS NULL AND expires_at > ?2
			RETURNING id, labels, node_group`, p.JoinTokenSHA256, us(at)).Scan(&tokenID, &labelsJSON, &out.NodeGroup)
		if errors.Is(err, sql.ErrNoRows) {
			return store.ErrJoinTokenRefused
		}
		if err != nil {
			return fmt.Errorf("consuming join token: %w", err)
		}
		if err := json.Unmarshal([]byte(labelsJSON), &tokenLabels); err != nil {
			return fmt.Errorf("join token %s labels: %w", tokenID, err)
		}
		labels := make(map[string]string, len(p.Labels)+len(tokenLabels))
		maps.Copy(labels, p.Labels)
		maps.Copy(labels, tokenLabels)
		lj, err := json.Marshal(labels)
		if err != nil {
			return err
		}
		name := p.Name
		if name == "" {
			name = p.ID.String()
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO nodes
			(id, name, labels, node_group, version, cert_serial, cert_fingerprint, cert_not_after, enrolled_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			p.ID.String(), name, string(lj), out.NodeGroup, p.Version, p.CertSerial, p.CertFingerprint, nullUS(p.CertNotAfter), us(at)); err != nil {
			return fmt.Errorf("inserting node %s: %w", p.ID, err)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE join_tokens SET used_by_node = ? WHERE id = ?`, p.ID.String(), tokenID); err != nil {
			return fmt.Errorf("recording join token %s use: %w", tokenID, err)
		}
		out.ID, out.Labels, out.EnrolledAt = p.ID, labels, at
		return nil
	})
	if err != nil {
		return store.EnrolledNode{}, err
	}
	return out, nil
}

// NodeIdentity returns the registry entry of node id, or
// store.ErrNodeNotFound.
func (s *Store) NodeIdentity(ctx context.Context, id uuid.UUID) (store.NodeIdentity, error) {
	n := store.NodeIdentity{ID: id}
	var revoked sql.NullInt64
	err := s.r.QueryRowContext(ctx, `SELECT name, node_group, revoked_at FROM nodes WHERE id = ?`, id.String()).
		Scan(&n.Name, &n.NodeGroup, &revoked)
	if errors.Is(err, sql.ErrNoRows) {
		return store.NodeIdentity{}, fmt.Errorf("node %s: %w", id, store.ErrNodeNotFound)
	}
	if err != nil {
		return store.NodeIdentity{}, fmt.Errorf("reading node %s: %w", id, err)
	}
	if revoked.Valid {
		t := ts(revoked.Int64)
		n.RevokedAt = &t
	}
	return n, nil
}

// RecordNodeCertificate records a renewed certificate of node id.
func (s *Store) RecordNodeCertificate(ctx context.Context, id uuid.UUID, serial, fingerprint string, notAfter time.Time) error {
	var n int64
	err := s.writeTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE nodes SET cert_serial = ?, cert_fingerprint = ?, cert_not_after = ?
			WHERE id = ? AND revoked_at IS NULL`, serial, fingerprint, us(notAfter), id.String())
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return fmt.Errorf("recording certificate of node %s: %w", id, err)
	}
	if n == 0 {
		return fmt.Errorf("recording certificate of node %s: %w", id, store.ErrNodeNotFound)
	}
	return nil
}

// RevokedNodes returns those of ids that are revoked.
func (s *Store) RevokedNodes(ctx context.Context, ids []uuid.UUID) ([]uuid.UUID, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	args := make([]any, len(ids))
	for i, id := range ids {
		args[i] = id.String()
	}
	rows, err := s.r.QueryContext(ctx, `SELECT id FROM nodes WHERE revoked_at IS NOT NULL AND id IN (SELECT value FROM json_each(?))`, jsonArray(args))
	if err != nil {
		return nil, fmt.Errorf("checking revoked nodes: %w", err)
	}
	out, err := collect(rows, scanUUID)
	if err != nil {
		return nil, fmt.Errorf("checking revoked nodes: %w", err)
	}
	return out, nil
}

func jsonArray(v []any) string {
	b, _ := json.Marshal(v) // strings only
	return string(b)
}

func scanUUID(r scanner) (uuid.UUID, error) {
	var s string
	if err := r.Scan(&s); err != nil {
		return uuid.Nil, err
	}
	return uuid.Parse(s)
}

// flushSQL applies one NodeStatusUpdate with the Postgres store's rules:
// zero parts leave columns alone, a disconnect clears the replica only if
// it is still this one, and an ACK newer than the recorded NACK clears it
// (a NACK in the same update wins). Every SET expression reads the old row.
const flushSQL = `UPDATE nodes SET
	last_seen = CASE WHEN ?2 IS NULL THEN last_seen WHEN last_seen IS NULL OR last_seen < ?2 THEN ?2 ELSE last_seen END,
	version = CASE WHEN ?3 = '' THEN version ELSE ?3 END,
	connected_replica = CASE
		WHEN NOT ?4 THEN connected_replica
		WHEN ?5 THEN ?6
		WHEN connected_replica = ?6 THEN NULL
		ELSE connected_replica END,
	applied_revision = CASE WHEN ?7 THEN ?8 ELSE applied_revision END,
	applied_hash = CASE WHEN ?7 THEN ?9 ELSE applied_hash END,
	last_nack_revision = CASE WHEN ?10 THEN ?11 WHEN ?7 AND last_nack_revision < ?8 THEN NULL ELSE last_nack_revision END,
	last_nack_error = CASE WHEN ?10 THEN ?12 WHEN ?7 AND last_nack_revision < ?8 THEN NULL ELSE last_nack_error END,
	last_nack_rejected = CASE WHEN ?10 THEN ?13 WHEN ?7 AND last_nack_revision < ?8 THEN NULL ELSE last_nack_rejected END,
	last_nack_at = CASE WHEN ?10 THEN ?14 WHEN ?7 AND last_nack_revision < ?8 THEN NULL ELSE last_nack_at END,
	spool_depth_bytes = CASE WHEN ?15 THEN ?16 ELSE spool_depth_bytes END,
	spool_depth_batches = CASE WHEN ?15 THEN ?17 ELSE spool_depth_batches END,
	spool_oldest_unacked_at = CASE WHEN ?15 THEN ?18 ELSE spool_oldest_unacked_at END,
	status = CASE WHEN ?15 THEN ?19 ELSE status END,
	status_at = CASE WHEN ?15 THEN ?20 ELSE status_at END
	WHERE id = ?1`

// FlushNodeStatus writes a batch of node updates from replica in one
// transaction. Updates of unknown (deleted) nodes are ignored.
func (s *Store) FlushNodeStatus(ctx context.Context, replica string, updates []store.NodeStatusUpdate) error {
	if len(updates) == 0 {
		return nil
	}
	err := s.writeTx(ctx, func(tx *sql.Tx) error {
		stmt, err := tx.PrepareContext(ctx, flushSQL)
		if err != nil {
			return err
		}
		defer stmt.Close()
		at := us(now())
		for _, u := range updates {
			var (
				hasNack                  bool
				nackRev, nackAt          any
				nackErr, nackRejected    any
				hasStatus                bool
				spoolBytes, spoolBatches int64
				spoolOldest, statusJSON  any
			)
			if nk := u.Nack; nk != nil {
				hasNack, nackRev, nackErr, nackRejected, nackAt = true, nk.Revision, nk.Error, nullText(nk.RejectedJSON), us(nk.At)
			}
			if st := u.Status; st != nil {
				hasStatus, spoolBytes, spoolBatches, statusJSON = true, st.SpoolDepthBytes, st.SpoolDepthBatches, nullText(st.JSON)
				if st.SpoolOldestUnackedAt != nil {
					spoolOldest = us(*st.SpoolOldestUnackedAt)
				}
			}
			if _, err := stmt.ExecContext(ctx, u.ID.String(), nullUS(u.LastSeen), u.Version,
				u.ConnectionChanged, u.Connected, replica, u.Applied, u.AppliedRevision, u.AppliedHash,
				hasNack, nackRev, nackErr, nackRejected, nackAt,
				hasStatus, spoolBytes, spoolBatches, spoolOldest, statusJSON, at); err != nil {
				return fmt.Errorf("node %s: %w", u.ID, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("flushing status of %d nodes: %w", len(updates), err)
	}
	return nil
}

// ReleaseReplicaNodes clears connected_replica of every node still recorded
// as connected to replica.
func (s *Store) ReleaseReplicaNodes(ctx context.Context, replica string) error {
	err := s.writeTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `UPDATE nodes SET connected_replica = NULL WHERE connected_replica = ?`, replica)
		return err
	})
	if err != nil {
		return fmt.Errorf("releasing nodes of replica %q: %w", replica, err)
	}
	return nil
}

// HeadRevision returns the latest committed config revision.
func (s *Store) HeadRevision(ctx context.Context) (int64, error) {
	rev, err := headRevision(ctx, s.r)
	if err != nil {
		return 0, fmt.Errorf("reading config head revision: %w", err)
	}
	return rev, nil
}

// ListenConfig calls onRevision with every revision this store commits
// until ctx ends. It stands in for LISTEN/NOTIFY: there is only one control
// plane on an embedded store, so every commit happens in this process.
// onRevision must not block (it runs on the committing goroutine).
func (s *Store) ListenConfig(ctx context.Context, onRevision func(int64)) error {
	s.mu.Lock()
	id := s.nextListener
	s.nextListener++
	s.listeners[id] = onRevision
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, id)
		s.mu.Unlock()
	}()
	// A commit before the registration would be missed; the caller looks
	// at the head revision after this call, as with Postgres.
	onRevision(0)
	<-ctx.Done()
	return nil
}

// announce tells the listeners about a committed revision.
func (s *Store) announce(rev int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range s.listeners {
		f(rev)
	}
}

// LoadSnapshotResources reads everything edges enforce at one revision, in
// one read transaction, sorted by key in byte order with resource revisions
// left 0, exactly as the Postgres NodeStore returns it.
func (s *Store) LoadSnapshotResources(ctx context.Context) (int64, time.Time, *mcpgwv1.SnapshotResources, error) {
	var (
		cfg     *store.Config
		updated int64
	)
	err := s.readTx(ctx, func(tx *sql.Tx) error {
		var rev int64
		if err := tx.QueryRowContext(ctx, `SELECT revision, updated_at FROM config_head`).Scan(&rev, &updated); err != nil {
			return fmt.Errorf("reading config head: %w", err)
		}
		var err error
		cfg, err = loadConfig(ctx, tx, rev)
		return err
	})
	if err != nil {
		return 0, time.Time{}, nil, fmt.Errorf("loading config for snapshots: %w", err)
	}
	return cfg.Revision, ts(updated), snapshotResources(cfg), nil
}

// snapshotResources converts a config into what edges are sent.
func snapshotResources(cfg *store.Config) *mcpgwv1.SnapshotResources {
	res := &mcpgwv1.SnapshotResources{}
	for _, b := range cfg.Backends {
		pb := &mcpgwv1.Backend{Name: b.Name, Prefix: b.Prefix, Sessions: b.Sessions}
		switch {
		case b.Stdio != nil:
			pb.Transport = &mcpgwv1.Backend_Stdio{Stdio: &mcpgwv1.StdioTransport{Command: b.Stdio.Command, Env: b.Stdio.Env, Dir: b.Stdio.Dir}}
		case b.HTTP != nil:
			pb.Transport = &mcpgwv1.Backend_Http{Http: &mcpgwv1.HttpTransport{Url: b.HTTP.URL, Headers: b.HTTP.Headers}}
		}
		if d := b.Timeout.D().Truncate(time.Millisecond); d > 0 {
			pb.Timeout = durationpb.New(d)
		}
		res.Backends = append(res.Backends, pb)
	}
	for _, p := range cfg.Principals {
		res.Principals = append(res.Principals, &mcpgwv1.Principal{Name: p.Name, Groups: p.Groups})
	}
	for _, r := range cfg.Roles {
		pr := &mcpgwv1.Role{Name: r.Name, Description: r.Description}
		for _, rule := range r.Rules {
			pr.Rules = append(pr.Rules, &mcpgwv1.Rule{Id: rule.ID, Effect: rule.Effect, Methods: rule.Methods, Backends: rule.Backends,
				Tools: rule.Tools, Prompts: rule.Prompts, Resources: rule.Resources})
		}
		res.Roles = append(res.Roles, pr)
	}
	for _, b := range cfg.Bindings {
		res.Bindings = append(res.Bindings, &mcpgwv1.RoleBinding{Role: b.Role, Subjects: b.Subjects})
	}
	for _, k := range cfg.APIKeys {
		pk := &mcpgwv1.ApiKeyHash{KeyId: k.KeyID, Principal: k.Principal, Sha256: k.SHA256}
		if !k.ExpiresAt.IsZero() {
			pk.ExpireTime = timestamppb.New(k.ExpiresAt)
		}
		res.ApiKeys = append(res.ApiKeys, pk)
	}
	return res
}

const nodeColumns = `id, name, node_group, labels, version, enrolled_at, cert_not_after, last_seen, connected_replica,
	applied_revision, applied_hash, last_nack_revision, last_nack_error, last_nack_rejected, last_nack_at, status,
	revoked_at, spool_depth_bytes, spool_depth_batches`

func scanNode(r scanner) (store.Node, error) {
	var (
		n                                     store.Node
		id, labels                            string
		enrolled                              int64
		certNotAfter, lastSeen, nackAt, revAt sql.NullInt64
		replica, nackErr, rejected, status    sql.NullString
		nackRev                               sql.NullInt64
	)
	err := r.Scan(&id, &n.Name, &n.NodeGroup, &labels, &n.Version, &enrolled, &certNotAfter, &lastSeen, &replica,
		&n.AppliedRevision, &n.AppliedHash, &nackRev, &nackErr, &rejected, &nackAt, &status,
		&revAt, &n.SpoolDepthBytes, &n.SpoolDepthBatches)
	if err != nil {
		return n, err
	}
	if n.ID, err = uuid.Parse(id); err != nil {
		return n, err
	}
	if err := json.Unmarshal([]byte(labels), &n.Labels); err != nil {
		return n, fmt.Errorf("node %s labels: %w", id, err)
	}
	n.EnrolledAt = ts(enrolled)
	n.CertNotAfter, n.LastSeen, n.LastNackAt, n.RevokedAt = nullTS(certNotAfter), nullTS(lastSeen), nullTS(nackAt), nullTS(revAt)
	n.ConnectedReplica, n.LastNackError, n.LastNackRevision = replica.String, nackErr.String, nackRev.Int64
	if rejected.Valid {
		n.LastNackRejected = []byte(rejected.String)
	}
	if status.Valid {
		n.StatusJSON = []byte(status.String)
	}
	return n, nil
}

// ListNodes lists nodes sorted by id, with the current config revision.
func (s *Store) ListNodes(ctx context.Context, f store.NodeFilter) ([]store.Node, int64, error) {
	var (
		out []store.Node
		rev int64
	)
	err := s.readTx(ctx, func(tx *sql.Tx) error {
		var err error
		if rev, err = headRevision(ctx, tx); err != nil {
			return err
		}
		after := ""
		if f.After != uuid.Nil {
			after = f.After.String()
		}
		rows, err := tx.QueryContext(ctx, `SELECT `+nodeColumns+` FROM nodes
			WHERE id > ?1 AND (?2 = '' OR node_group = ?2) AND (?3 OR revoked_at IS NULL)
			ORDER BY id`+limitClause(f.Limit), after, f.NodeGroup, f.IncludeRevoked)
		if err != nil {
			return err
		}
		out, err = collect(rows, scanNode)
		return err
	})
	if err != nil {
		return nil, 0, fmt.Errorf("listing nodes: %w", err)
	}
	return out, rev, nil
}

// GetNode returns one node; store.ErrNotFound if there is none.
func (s *Store) GetNode(ctx context.Context, id uuid.UUID) (store.Node, error) {
	n, err := scanNode(s.r.QueryRowContext(ctx, `SELECT `+nodeColumns+` FROM nodes WHERE id = ?`, id.String()))
	if errors.Is(err, sql.ErrNoRows) {
		return store.Node{}, fmt.Errorf("%s %q: %w", store.KindNode, id.String(), store.ErrNotFound)
	}
	if err != nil {
		return store.Node{}, fmt.Errorf("reading node %s: %w", id, err)
	}
	return n, nil
}

// RevokeNode marks a node revoked (idempotent: the first time stays).
func (s *Store) RevokeNode(ctx context.Context, id uuid.UUID) (store.Node, error) {
	var n int64
	err := s.writeTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE nodes SET revoked_at = coalesce(revoked_at, ?) WHERE id = ?`, us(now()), id.String())
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return store.Node{}, fmt.Errorf("revoking node %s: %w", id, err)
	}
	if n == 0 {
		return store.Node{}, fmt.Errorf("%s %q: %w", store.KindNode, id.String(), store.ErrNotFound)
	}
	return s.GetNode(ctx, id)
}

// RolloutNodes returns every unrevoked node (of group, "" = all) with what
// WatchRollout counts.
func (s *Store) RolloutNodes(ctx context.Context, group string) ([]store.NodeRollout, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT id, name, connected_replica IS NOT NULL, applied_revision,
			coalesce(last_nack_revision, 0), coalesce(last_nack_error, ''), last_nack_rejected, last_nack_at
		FROM nodes WHERE revoked_at IS NULL AND (?1 = '' OR node_group = ?1) ORDER BY id`, group)
	if err != nil {
		return nil, fmt.Errorf("reading rollout state: %w", err)
	}
	out, err := collect(rows, func(r scanner) (store.NodeRollout, error) {
		var (
			n        store.NodeRollout
			id       string
			rejected sql.NullString
			at       sql.NullInt64
		)
		if err := r.Scan(&id, &n.Name, &n.Connected, &n.AppliedRevision, &n.LastNackRevision, &n.LastNackError, &rejected, &at); err != nil {
			return n, err
		}
		var err error
		n.ID, err = uuid.Parse(id)
		if rejected.Valid {
			n.LastNackRejected = []byte(rejected.String)
		}
		n.LastNackAt = nullTS(at)
		return n, err
	})
	if err != nil {
		return nil, fmt.Errorf("reading rollout state: %w", err)
	}
	return out, nil
}

// caName is the pki row of the installation CA.
const caName = "ca"

// LoadOrCreateCA returns the stored CA, or stores the one create makes. The
// write transaction (one writer) makes the check and the insert atomic.
func (s *Store) LoadOrCreateCA(ctx context.Context, create func() (store.CARecord, error)) (store.CARecord, bool, error) {
	var (
		rec     store.CARecord
		created bool
	)
	err := s.writeTx(ctx, func(tx *sql.Tx) error {
		var (
			certPEM  string
			notAfter int64
		)
		err := tx.QueryRowContext(ctx, `SELECT cert_pem, key_encrypted, key_encryption, kek_id, not_after FROM pki WHERE name = ?`, caName).
			Scan(&certPEM, &rec.KeyEncrypted, &rec.KeyEncryption, &rec.KEKID, &notAfter)
		if err == nil {
			rec.CertPEM, rec.NotAfter = []byte(certPEM), ts(notAfter)
			return nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("reading the CA: %w", err)
		}
		if rec, err = create(); err != nil {
			return fmt.Errorf("creating the CA: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO pki (name, cert_pem, key_encrypted, key_encryption, kek_id, not_after, created_at)
			VALUES (?, ?, ?, ?, ?, ?, ?)`, caName, string(rec.CertPEM), rec.KeyEncrypted, rec.KeyEncryption, rec.KEKID, us(rec.NotAfter), us(now())); err != nil {
			return fmt.Errorf("storing the CA: %w", err)
		}
		created = true
		return nil
	})
	if err != nil {
		return store.CARecord{}, false, err
	}
	return rec, created, nil
}
