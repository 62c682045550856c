package store_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/mcpgw/mcpgw/controlplane/store"
	"github.com/mcpgw/mcpgw/internal/pgtest"
)

func enrollTestNode(t *testing.T, st *store.Store, nodes *store.NodeStore, tokenID string) uuid.UUID {
	t.Helper()
	ctx := t.Context()
	sum := fmt.Sprintf("%064x", len(tokenID)*7919+int(tokenID[0]))
	if _, err := st.CreateJoinToken(ctx, store.NewJoinToken{ID: tokenID, SHA256: sum, Labels: map[string]string{"zone": "a"},
		NodeGroup: "edge", ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	id := uuid.New()
	n, err := nodes.EnrollNode(ctx, store.EnrollParams{JoinTokenSHA256: sum, ID: id, Labels: map[string]string{"zone": "b", "os": "linux"},
		CertSerial: "01", CertFingerprint: fmt.Sprintf("%064x", id.ID()), CertNotAfter: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if n.NodeGroup != "edge" || n.Labels["zone"] != "a" || n.Labels["os"] != "linux" {
		t.Fatalf("enrolled %+v: want group edge, the token's zone, the edge's os", n)
	}
	if _, err := nodes.EnrollNode(ctx, store.EnrollParams{JoinTokenSHA256: sum, ID: uuid.New()}); !errors.Is(err, store.ErrJoinTokenRefused) {
		t.Fatalf("second use of a token: %v, want ErrJoinTokenRefused", err)
	}
	return id
}

func TestNodeStatusFlush(t *testing.T) {
	pool := pgtest.NewPool(t, pgtest.NewDatabase(t))
	st, nodes := store.New(pool), store.NewNodeStore(pool)
	ctx := t.Context()
	id := enrollTestNode(t, st, nodes, "tok")
	get := func() store.Node {
		t.Helper()
		n, err := st.GetNode(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	flush := func(replica string, u store.NodeStatusUpdate) {
		t.Helper()
		u.ID = id
		if err := nodes.FlushNodeStatus(ctx, replica, []store.NodeStatusUpdate{u}); err != nil {
			t.Fatal(err)
		}
	}
	if n := get(); n.Name != id.String() || n.Name == "" {
		t.Errorf("display name %q, want the node id when none was given", n.Name)
	}

	// Connection: a disconnect only clears the column if it names us.
	flush("r1", store.NodeStatusUpdate{LastSeen: time.Now(), Version: "1.2.3", ConnectionChanged: true, Connected: true})
	if n := get(); n.ConnectedReplica != "r1" || n.Version != "1.2.3" || n.LastSeen.IsZero() {
		t.Fatalf("after connect: replica %q version %q seen %v", n.ConnectedReplica, n.Version, n.LastSeen)
	}
	flush("r2", store.NodeStatusUpdate{ConnectionChanged: true, Connected: true})
	flush("r1", store.NodeStatusUpdate{ConnectionChanged: true, Connected: false})
	if n := get(); n.ConnectedReplica != "r2" || n.Version != "1.2.3" {
		t.Fatalf("stale disconnect from r1: replica %q (want r2), version %q", n.ConnectedReplica, n.Version)
	}

	// NACK, then an older ACK keeps it, a newer one clears it.
	flush("r2", store.NodeStatusUpdate{Nack: &store.NodeNack{Revision: 5, Error: "boom", At: time.Now(),
		RejectedJSON: []byte(`[{"kind":"RESOURCE_KIND_BACKEND","name":"x","error":"boom"}]`)}})
	if n := get(); n.LastNackRevision != 5 || n.LastNackError != "boom" || len(n.LastNackRejected) == 0 || n.LastNackAt.IsZero() {
		t.Fatalf("after NACK: %+v", n)
	}
	flush("r2", store.NodeStatusUpdate{Applied: true, AppliedRevision: 4, AppliedHash: "h4"})
	if n := get(); n.LastNackRevision != 5 || n.AppliedRevision != 4 || n.AppliedHash != "h4" {
		t.Fatalf("after an older ACK: nack %d applied %d", n.LastNackRevision, n.AppliedRevision)
	}
	flush("r2", store.NodeStatusUpdate{Applied: true, AppliedRevision: 6, AppliedHash: "h6"})
	if n := get(); n.LastNackRevision != 0 || n.LastNackError != "" || n.LastNackRejected != nil || n.AppliedRevision != 6 {
		t.Fatalf("after a newer ACK: %+v", n)
	}

	// Status report.
	oldest := time.Now().Add(-time.Minute)
	flush("r2", store.NodeStatusUpdate{Status: &store.NodeReport{SpoolDepthBytes: 4096, SpoolDepthBatches: 3,
		SpoolOldestUnackedAt: &oldest, JSON: []byte(`{"audit_spool":{"depth_bytes":"4096"}}`)}})
	if n := get(); n.SpoolDepthBytes != 4096 || n.SpoolDepthBatches != 3 || len(n.StatusJSON) == 0 {
		t.Fatalf("after status: %+v", n)
	}

	// Revocation and replica release.
	other := enrollTestNode(t, st, nodes, "tok2")
	if _, err := st.RevokeNode(ctx, other); err != nil {
		t.Fatal(err)
	}
	revoked, err := nodes.RevokedNodes(ctx, []uuid.UUID{id, other})
	if err != nil || len(revoked) != 1 || revoked[0] != other {
		t.Fatalf("RevokedNodes = %v, %v; want [%s]", revoked, err, other)
	}
	if err := nodes.RecordNodeCertificate(ctx, other, "02", fmt.Sprintf("%064x", 99), time.Now()); !errors.Is(err, store.ErrNodeNotFound) {
		t.Errorf("recording a certificate for a revoked node: %v", err)
	}
	if err := nodes.ReleaseReplicaNodes(ctx, "r2"); err != nil {
		t.Fatal(err)
	}
	if n := get(); n.ConnectedReplica != "" {
		t.Errorf("after releasing r2: replica %q", n.ConnectedReplica)
	}
	if _, err := nodes.NodeIdentity(ctx, uuid.New()); !errors.Is(err, store.ErrNodeNotFound) {
		t.Errorf("NodeIdentity of an unknown node: %v", err)
	}
}

// BenchmarkFlushNodeStatus measures one registry flush of a fleet-wide ACK
// wave: 1000 nodes acking a revision.
func BenchmarkFlushNodeStatus(b *testing.B) {
	pool := pgtest.NewPool(b, pgtest.NewDatabase(b))
	nodes := store.NewNodeStore(pool)
	const n = 1000
	ids := make([]uuid.UUID, n)
	fps := make([]string, n)
	for i := range ids {
		ids[i] = uuid.New()
		fps[i] = fmt.Sprintf("%064x", i)
	}
	if _, err := pool.Exec(b.Context(), `INSERT INTO nodes (id, name, cert_fingerprint)
		SELECT id, id::text, fp FROM unnest($1::uuid[], $2::text[]) AS t(id, fp)`, ids, fps); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := range b.N {
		updates := make([]store.NodeStatusUpdate, n)
		for j, id := range ids {
			updates[j] = store.NodeStatusUpdate{ID: id, LastSeen: time.Now(), Applied: true, AppliedRevision: int64(i + 1), AppliedHash: "h"}
		}
		if err := nodes.FlushNodeStatus(b.Context(), "r1", updates); err != nil {
			b.Fatal(err)
		}
	}
}
