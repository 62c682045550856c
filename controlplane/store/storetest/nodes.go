package storetest

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/mcpgw/mcpgw/controlplane/store"
)

func testNodeRegistry(t *testing.T, s Store) {
	ctx := t.Context()
	var ids []uuid.UUID
	for i, tok := range []string{"t1", "t2", "t3"} {
		group := "default"
		if i == 2 {
			group = "canary"
		}
		if _, err := s.CreateJoinToken(ctx, store.NewJoinToken{ID: tok, SHA256: hash(tok), NodeGroup: group, ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
		id := uuid.New()
		if _, err := s.EnrollNode(ctx, enroll(id, tok, nil)); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	a, b := ids[0], ids[1]
	ident, err := s.NodeIdentity(ctx, a)
	if err != nil || ident.Name != a.String() || ident.NodeGroup != "default" || ident.RevokedAt != nil {
		t.Fatalf("NodeIdentity: %+v, %v", ident, err)
	}
	if _, err := s.NodeIdentity(ctx, uuid.New()); !errors.Is(err, store.ErrNodeNotFound) {
		t.Fatalf("unknown node: %v, want ErrNodeNotFound", err)
	}
	notAfter := time.Now().Add(48 * time.Hour).UTC().Truncate(time.Microsecond)
	if err := s.RecordNodeCertificate(ctx, a, "02", hash("renewed"), notAfter); err != nil {
		t.Fatal(err)
	}
	if err := s.RecordNodeCertificate(ctx, uuid.New(), "02", hash("x"), notAfter); !errors.Is(err, store.ErrNodeNotFound) {
		t.Fatalf("certificate of an unknown node: %v", err)
	}

	seen := time.Now().UTC().Truncate(time.Microsecond)
	oldest := seen.Add(-time.Minute)
	// a connects to r1, applies revision 3; b is NACKed at 4 on r2.
	if err := s.FlushNodeStatus(ctx, "r1", []store.NodeStatusUpdate{
		{ID: a, LastSeen: seen, Version: "v2", ConnectionChanged: true, Connected: true, Applied: true, AppliedRevision: 3, AppliedHash: "h3",
			Status: &store.NodeReport{SpoolDepthBytes: 10, SpoolDepthBatches: 2, SpoolOldestUnackedAt: &oldest, JSON: []byte(`{"ok":true}`)}},
		{ID: uuid.New(), LastSeen: seen}, // deleted/unknown: ignored
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.FlushNodeStatus(ctx, "r2", []store.NodeStatusUpdate{
		{ID: b, LastSeen: seen, ConnectionChanged: true, Connected: true, Nack: &store.NodeNack{Revision: 4, Error: "bad", RejectedJSON: []byte(`[{"name":"x"}]`), At: seen}},
	}); err != nil {
		t.Fatal(err)
	}
	na, err := s.GetNode(ctx, a)
	if err != nil || na.Version != "v2" || na.ConnectedReplica != "r1" || na.AppliedRevision != 3 || na.AppliedHash != "h3" ||
		!na.LastSeen.Equal(seen) || na.SpoolDepthBytes != 10 || na.SpoolDepthBatches != 2 || string(na.StatusJSON) == "" ||
		!na.CertNotAfter.Equal(notAfter) || na.EnrolledAt.IsZero() {
		t.Fatalf("node a: %+v, %v", na, err)
	}
	nb, _ := s.GetNode(ctx, b)
	if nb.LastNackRevision != 4 || nb.LastNackError != "bad" || len(nb.LastNackRejected) == 0 || nb.LastNackAt.IsZero() || nb.ConnectedReplica != "r2" {
		t.Fatalf("node b after NACK: %+v", nb)
	}
	// An older last_seen does not move it back; a disconnect from another
	// replica leaves the connection alone; an ACK past the NACK clears it.
	if err := s.FlushNodeStatus(ctx, "r1", []store.NodeStatusUpdate{
		{ID: a, LastSeen: seen.Add(-time.Hour)},
		{ID: b, ConnectionChanged: true, Connected: false, Applied: true, AppliedRevision: 5, AppliedHash: "h5"},
	}); err != nil {
		t.Fatal(err)
	}
	na, _ = s.GetNode(ctx, a)
	nb, _ = s.GetNode(ctx, b)
	if !na.LastSeen.Equal(seen) || na.Version != "v2" || na.AppliedRevision != 3 {
		t.Fatalf("node a after a partial update: %+v", na)
	}
	if nb.ConnectedReplica != "r2" || nb.AppliedRevision != 5 || nb.LastNackRevision != 0 || nb.LastNackError != "" || nb.LastNackRejected != nil {
		t.Fatalf("node b after ACK 5 from r1: %+v", nb)
	}
	ro, err := s.RolloutNodes(ctx, "default")
	if err != nil || len(ro) != 2 {
		t.Fatalf("RolloutNodes(default): %+v, %v", ro, err)
	}
	for _, n := range ro {
		if n.ID == a && (!n.Connected || n.AppliedRevision != 3) {
			t.Fatalf("rollout of a: %+v", n)
		}
	}
	if err := s.ReleaseReplicaNodes(ctx, "r2"); err != nil {
		t.Fatal(err)
	}
	if nb, _ = s.GetNode(ctx, b); nb.ConnectedReplica != "" {
		t.Fatalf("node b still connected after releasing r2: %+v", nb)
	}

	if _, err := s.RevokeNode(ctx, b); err != nil {
		t.Fatal(err)
	}
	first, _ := s.GetNode(ctx, b)
	again, err := s.RevokeNode(ctx, b)
	if err != nil || !again.RevokedAt.Equal(first.RevokedAt) || first.RevokedAt.IsZero() {
		t.Fatalf("revoking twice: %v then %v, %v", first.RevokedAt, again.RevokedAt, err)
	}
	if _, err := s.RevokeNode(ctx, uuid.New()); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("revoking an unknown node: %v, want ErrNotFound", err)
	}
	revoked, err := s.RevokedNodes(ctx, []uuid.UUID{a, b, uuid.New()})
	if err != nil || !slices.Equal(revoked, []uuid.UUID{b}) {
		t.Fatalf("RevokedNodes: %v, %v", revoked, err)
	}
	if ident, _ := s.NodeIdentity(ctx, b); ident.RevokedAt == nil {
		t.Fatal("revoked node's identity has no revocation time")
	}
	if err := s.RecordNodeCertificate(ctx, b, "03", hash("y"), notAfter); !errors.Is(err, store.ErrNodeNotFound) {
		t.Fatalf("renewing a revoked node: %v, want ErrNodeNotFound", err)
	}

	live, _, err := s.ListNodes(ctx, store.NodeFilter{})
	if err != nil || len(live) != 2 {
		t.Fatalf("unrevoked nodes: %+v, %v", live, err)
	}
	all, _, err := s.ListNodes(ctx, store.NodeFilter{IncludeRevoked: true, Limit: 2})
	if err != nil || len(all) != 2 || all[0].ID.String() >= all[1].ID.String() {
		t.Fatalf("first page of nodes: %+v, %v", all, err)
	}
	rest, _, err := s.ListNodes(ctx, store.NodeFilter{IncludeRevoked: true, After: all[1].ID})
	if err != nil || len(rest) != 1 {
		t.Fatalf("second page of nodes: %+v, %v", rest, err)
	}
	canary, _, err := s.ListNodes(ctx, store.NodeFilter{NodeGroup: "canary"})
	if err != nil || len(canary) != 1 || canary[0].ID != ids[2] {
		t.Fatalf("canary nodes: %+v, %v", canary, err)
	}
	if _, err := s.GetNode(ctx, uuid.New()); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown node: %v", err)
	}
}

func testNotifications(t *testing.T, s Store) {
	ctx := t.Context()
	must := mustOK(t)
	got := make(chan int64, 16)
	lctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- s.ListenConfig(lctx, func(rev int64) { got <- rev }) }()
	// The first call (0) says the listener is in place.
	select {
	case rev := <-got:
		if rev != 0 {
			t.Fatalf("first notification %d, want 0", rev)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("listener never started")
	}
	r := must(s.CreateBackend(ctx, meta, httpBackend("search", "http://127.0.0.1:9000/mcp"), store.WriteOptions{}))
	select {
	case rev := <-got:
		if rev != r.Revision {
			t.Fatalf("notified revision %d, want %d", rev, r.Revision)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no notification of the commit")
	}
	rev, at, res, err := s.LoadSnapshotResources(ctx)
	if err != nil || rev != r.Revision || at.IsZero() || len(res.Backends) != 1 || res.Backends[0].GetHttp().GetUrl() != "http://127.0.0.1:9000/mcp" {
		t.Fatalf("LoadSnapshotResources: %d %v %+v, %v", rev, at, res, err)
	}
	stop()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("ListenConfig after cancel: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("ListenConfig did not return after cancel")
	}
}
