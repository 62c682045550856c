package nodeapi_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcpgw/mcpgw/controlplane/nodeapi"
	"github.com/mcpgw/mcpgw/controlplane/store"
	"github.com/mcpgw/mcpgw/dataplane/cpclient"
	mcpgwv1 "github.com/mcpgw/mcpgw/gen/mcpgw/v1"
	"github.com/mcpgw/mcpgw/internal/document"
	"github.com/mcpgw/mcpgw/internal/policy"
)

// recorder stands in for the edge's data plane: it records every update it
// is asked to apply and can be told to reject some.
type recorder struct {
	// mu guards got and reject.
	mu     sync.Mutex
	got    []*cpclient.Update
	reject func(*cpclient.Update) error
}

func (r *recorder) Apply(_ context.Context, u *cpclient.Update) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.reject != nil {
		if err := r.reject(u); err != nil {
			return err
		}
	}
	r.got = append(r.got, u)
	return nil
}

// last returns the update applied last (nil if none).
func (r *recorder) last() *cpclient.Update {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.got) == 0 {
		return nil
	}
	return r.got[len(r.got)-1]
}

func (r *recorder) revision() int64 {
	if u := r.last(); u != nil {
		return u.Revision
	}
	return 0
}

// edge is a cpclient.Client running against a control plane.
type edge struct {
	c      *cpclient.Client
	rec    *recorder
	dir    string
	cancel context.CancelFunc
	done   chan error
}

func startEdge(t testing.TB, db *testDB, addr, token, dir string, rec *recorder) *edge {
	t.Helper()
	return startEdgeWith(t, db, addr, token, dir, rec, nil)
}

func startEdgeWith(t testing.TB, db *testDB, addr, token, dir string, rec *recorder, tune func(*cpclient.Config)) *edge {
	t.Helper()
	caFile := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(caFile, db.ca.CertPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := cpclient.Config{
		ControlPlane: addr, CAFile: caFile, JoinToken: token, StateDir: dir,
		Name: "edge-" + filepath.Base(dir), Version: "test", Labels: map[string]string{"zone": "edge-says", "os": "linux"},
		Applier: rec, Logger: testLogger(),
		MinBackoff: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
	}
	if tune != nil {
		tune(&cfg)
	}
	c, err := cpclient.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	e := &edge{c: c, rec: rec, dir: dir, cancel: cancel, done: make(chan error, 1)}
	go func() { e.done <- c.Run(ctx) }()
	t.Cleanup(func() { e.stop(t) })
	return e
}

func (e *edge) stop(t testing.TB) {
	if e.cancel == nil {
		return
	}
	e.cancel()
	e.cancel = nil
	select {
	case err := <-e.done:
		if err != nil {
			t.Errorf("edge Run: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Error("edge Run did not return after cancel")
	}
}

// testDoc is a small valid fleet config whose one rule allows tool.
func testDoc(tool string, extraBackends ...string) document.Document {
	d := document.Document{
		Backends:   []document.Backend{{Name: "github", HTTP: &document.HTTPTransport{URL: "http://127.0.0.1:9/mcp"}}},
		Roles:      []policy.Role{{Name: "dev", Rules: []policy.Rule{{Effect: "allow", Tools: []string{tool}}}}},
		Bindings:   []policy.Binding{{Role: "dev", Subjects: []string{"user:alice"}}},
		Principals: []policy.Principal{{Name: "alice", Groups: []string{"eng"}}},
	}
	for _, b := range extraBackends {
		d.Backends = append(d.Backends, document.Backend{Name: b, Stdio: &document.StdioTransport{Command: []string{"/bin/" + b}}})
	}
	return d
}

func (db *testDB) apply(t testing.TB, d document.Document) int64 {
	t.Helper()
	res, err := db.st.ApplyDocument(context.Background(), store.Meta{Actor: "test", Operation: "ApplyPolicy"}, d, store.ApplyOptions{Prune: true})
	if err != nil {
		t.Fatalf("applying config: %v", err)
	}
	if !res.Committed {
		t.Fatal("config write committed nothing")
	}
	return res.Revision
}

func (db *testDB) node(t testing.TB, id string) store.Node {
	t.Helper()
	n, err := db.st.GetNode(context.Background(), uuid.MustParse(id))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func allows(u *cpclient.Update, tool string) bool {
	return u.Policy.Decide("alice", policy.Request{Method: "tools/call", Backend: "github", Kind: policy.KindTool, Name: tool}).Allow
}

// Two replicas on one database, one edge on each: a change committed once
// reaches both edges, which ACK it within a second; the registry shows
// what the token said (labels, group) and what the edges acked.
func TestPolicyChangeReachesEdgesOnTwoReplicas(t *testing.T) {
	db := newTestDB(t)
	rev1 := db.apply(t, testDoc("github__*"))
	reg := prometheus.NewRegistry()
	cp1 := startCP(t, db, "replica-1", func(cfg *nodeapi.Config) { cfg.Registerer = reg })
	cp2 := startCP(t, db, "replica-2")
	expires := time.Now().Add(time.Hour)
	a := startEdge(t, db, cp1.addr, db.joinToken(t, "tokA", map[string]string{"zone": "token-says"}, expires), t.TempDir(), &recorder{})
	b := startEdge(t, db, cp2.addr, db.joinToken(t, "tokB", nil, expires), t.TempDir(), &recorder{})
	waitFor(t, 10*time.Second, "both edges apply the first revision", func() bool {
		return a.rec.revision() == rev1 && b.rec.revision() == rev1
	})
	if !allows(a.rec.last(), "github__delete_repo") {
		t.Fatal("revision 1 should allow github__delete_repo")
	}

	commit := time.Now()
	rev2 := db.apply(t, testDoc("github__read_*"))
	waitFor(t, 5*time.Second, "both edges apply the second revision", func() bool {
		return a.rec.revision() == rev2 && b.rec.revision() == rev2
	})
	if took := time.Since(commit); took > time.Second {
		t.Errorf("commit → both edges applied took %v, want ≤ 1s", took)
	} else {
		t.Logf("commit → both edges applied: %v", took)
	}
	for _, e := range []*edge{a, b} {
		u := e.rec.last()
		if allows(u, "github__delete_repo") || !allows(u, "github__read_file") {
			t.Errorf("edge %s: revision %d policy does not match the committed one", e.c.NodeID(), u.Revision)
		}
		if rev, _ := e.c.Applied(); rev != rev2 {
			t.Errorf("edge Applied() = %d, want %d", rev, rev2)
		}
	}

	waitFor(t, 5*time.Second, "the registry records both ACKs", func() bool {
		return db.node(t, a.c.NodeID()).AppliedRevision == rev2 && db.node(t, b.c.NodeID()).AppliedRevision == rev2
	})
	metrics := gather(t, reg)
	for name, ok := range map[string]bool{
		"mcpgw_cp_connected_edges":                   metrics["mcpgw_cp_connected_edges"] == 1,
		"mcpgw_cp_config_push_latency_seconds_count": metrics["mcpgw_cp_config_push_latency_seconds_count"] == 2,
		"mcpgw_cp_config_acks_total":                 metrics["mcpgw_cp_config_acks_total"] == 2,
		"mcpgw_cp_config_nacks_total":                metrics["mcpgw_cp_config_nacks_total"] == 0,
		"mcpgw_cp_snapshot_bytes":                    metrics["mcpgw_cp_snapshot_bytes"] > 0,
		"mcpgw_cp_config_payload_bytes_sent_total":   metrics["mcpgw_cp_config_payload_bytes_sent_total"] > 0,
	} {
		if !ok {
			t.Errorf("metric %s = %v", name, metrics[name])
		}
	}
	na, nb := db.node(t, a.c.NodeID()), db.node(t, b.c.NodeID())
	if na.ConnectedReplica != "replica-1" || nb.ConnectedReplica != "replica-2" {
		t.Errorf("connected replicas = %q, %q; want replica-1, replica-2", na.ConnectedReplica, nb.ConnectedReplica)
	}
	if na.Labels["zone"] != "token-says" || na.Labels["os"] != "linux" || na.NodeGroup != "default" {
		t.Errorf("node labels %v group %q: want the token's zone over the edge's, plus the edge's os", na.Labels, na.NodeGroup)
	}
	if na.Version != "test" || na.AppliedHash == "" || na.AppliedHash != a.rec.last().Hash {
		t.Errorf("node version %q applied hash %q; want test and %q", na.Version, na.AppliedHash, a.rec.last().Hash)
	}
}

// An edge that reconnects with the revision it already runs is sent
// nothing, whether its own process restarted or the control plane did.
func TestReconnectWithUnchangedConfigCostsNoBytes(t *testing.T) {
	db := newTestDB(t)
	rev := db.apply(t, testDoc("github__*"))
	c := startCP(t, db, "replica-1")
	dir := t.TempDir()
	token := db.joinToken(t, "tok", nil, time.Now().Add(time.Hour))
	e := startEdge(t, db, c.addr, token, dir, &recorder{})
	waitFor(t, 10*time.Second, "the edge applies the config", func() bool { return e.rec.revision() == rev })
	e.stop(t)
	before := c.srv.Stats()
	if before.SnapshotsSent != 1 || before.PayloadBytesSent == 0 {
		t.Fatalf("first connect: %+v, want one snapshot with a payload", before)
	}

	// The edge restarts: it serves its cache and says so in hello.
	e2 := startEdge(t, db, c.addr, "", dir, &recorder{})
	waitFor(t, 5*time.Second, "the restarted edge reconnects", func() bool {
		st := c.srv.Stats()
		return st.StreamsOpened == before.StreamsOpened+1 && st.Connected == 1
	})
	time.Sleep(300 * time.Millisecond) // time for anything that would be sent
	if after := c.srv.Stats(); after.SnapshotsSent != before.SnapshotsSent || after.PayloadBytesSent != before.PayloadBytesSent {
		t.Errorf("edge restart with unchanged config: server sent %+v, before %+v", after, before)
	}
	if st := e2.c.Stats(); st.Snapshots != 0 || st.PayloadBytes != 0 {
		t.Errorf("restarted edge received %+v, want nothing", st)
	}
	if e2.rec.revision() != rev {
		t.Errorf("restarted edge serves revision %d, want %d from its cache", e2.rec.revision(), rev)
	}

	// The control plane restarts on the same address.
	addr := c.addr
	c.stop()
	c2 := startCPOnAddr(t, db, "replica-1", addr)
	waitFor(t, 10*time.Second, "the edge reconnects to the new control plane", func() bool { return c2.srv.Stats().Connected == 1 })
	time.Sleep(300 * time.Millisecond)
	if st := c2.srv.Stats(); st.SnapshotsSent != 0 || st.PayloadBytesSent != 0 {
		t.Errorf("control plane restart with unchanged config: sent %+v", st)
	}
	if st := e2.c.Stats(); st.Snapshots != 0 {
		t.Errorf("edge received %d snapshots after the control plane restart, want 0", st.Snapshots)
	}

	// And a new revision still flows on the resumed stream.
	rev2 := db.apply(t, testDoc("github__read_*"))
	waitFor(t, 5*time.Second, "the edge applies the next revision", func() bool { return e2.rec.revision() == rev2 })
}

// A snapshot the edge cannot apply is NACKed: the error reaches the node
// registry (what ListNodes shows), the edge keeps serving the previous
// revision, and a later good revision clears the NACK.
func TestNackIsRecordedAndPreviousStateKept(t *testing.T) {
	db := newTestDB(t)
	rev1 := db.apply(t, testDoc("github__*"))
	c := startCP(t, db, "replica-1")
	rec := &recorder{reject: func(u *cpclient.Update) error {
		for _, b := range u.Document.Backends {
			if b.Name == "broken" {
				return &cpclient.ConfigError{Resources: []cpclient.ResourceError{{
					Kind: mcpgwv1.ResourceKind_RESOURCE_KIND_BACKEND, Name: "broken", Err: "executable not found",
				}}}
			}
		}
		return nil
	}}
	e := startEdge(t, db, c.addr, db.joinToken(t, "tok", nil, time.Now().Add(time.Hour)), t.TempDir(), rec)
	waitFor(t, 10*time.Second, "the edge applies revision 1", func() bool { return rec.revision() == rev1 })

	rev2 := db.apply(t, testDoc("github__*", "broken"))
	waitFor(t, 5*time.Second, "the NACK reaches the registry", func() bool {
		return db.node(t, e.c.NodeID()).LastNackRevision == rev2
	})
	n := db.node(t, e.c.NodeID())
	if !strings.Contains(n.LastNackError, "executable not found") || !strings.Contains(string(n.LastNackRejected), `"broken"`) ||
		!strings.Contains(string(n.LastNackRejected), "RESOURCE_KIND_BACKEND") {
		t.Errorf("registry NACK: error %q rejected %s", n.LastNackError, n.LastNackRejected)
	}
	if n.AppliedRevision != rev1 {
		t.Errorf("registry applied revision %d after a NACK, want %d", n.AppliedRevision, rev1)
	}
	if rev, _ := e.c.Applied(); rev != rev1 || rec.revision() != rev1 {
		t.Errorf("edge serves %d (applier %d) after NACK, want %d", rev, rec.revision(), rev1)
	}
	if st := e.c.Stats(); st.Nacks != 1 {
		t.Errorf("edge NACKs = %d, want 1", st.Nacks)
	}

	rev3 := db.apply(t, testDoc("github__read_*"))
	waitFor(t, 5*time.Second, "the good revision is acked and clears the NACK", func() bool {
		n := db.node(t, e.c.NodeID())
		return n.AppliedRevision == rev3 && n.LastNackRevision == 0 && n.LastNackError == ""
	})
}

// An edge restarted while the control plane is down serves its
// last-known-good config at once; a corrupt cache is a miss, not a crash,
// and the edge then takes its config from the control plane when it is back.
func TestLastKnownGoodWhileControlPlaneDown(t *testing.T) {
	db := newTestDB(t)
	rev := db.apply(t, testDoc("github__read_*"))
	c := startCP(t, db, "replica-1")
	dir := t.TempDir()
	e := startEdge(t, db, c.addr, db.joinToken(t, "tok", nil, time.Now().Add(time.Hour)), dir, &recorder{})
	waitFor(t, 10*time.Second, "the edge applies the config", func() bool { return e.rec.revision() == rev })
	e.stop(t)
	addr := c.addr
	c.stop()

	start := time.Now()
	e2 := startEdge(t, db, addr, "", dir, &recorder{})
	waitFor(t, 2*time.Second, "the edge applies its cache", func() bool { return e2.rec.revision() == rev })
	took := time.Since(start)
	t.Logf("cold start from last-known-good with the control plane down: serving after %v", took)
	if took > time.Second {
		t.Errorf("serving from the cache took %v, want well under a second (budget 200ms)", took)
	}
	if u := e2.rec.last(); !allows(u, "github__read_file") || allows(u, "github__delete_repo") {
		t.Error("cached policy differs from the committed one")
	}
	e2.stop(t)

	// Corrupt one byte in the middle of the cache.
	lkg := filepath.Join(dir, "lkg.snapshot")
	b, err := os.ReadFile(lkg)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0xff
	if err := os.WriteFile(lkg, b, 0o600); err != nil {
		t.Fatal(err)
	}
	e3 := startEdge(t, db, addr, "", dir, &recorder{})
	time.Sleep(300 * time.Millisecond)
	if u := e3.rec.last(); u != nil {
		t.Fatalf("edge applied revision %d from a corrupt cache", u.Revision)
	}
	select {
	case err := <-e3.done:
		t.Fatalf("edge stopped on a corrupt cache: %v", err)
	default:
	}
	c2 := startCPOnAddr(t, db, "replica-1", addr)
	waitFor(t, 10*time.Second, "the edge takes the config from the control plane", func() bool { return e3.rec.revision() == rev })
	if st := c2.srv.Stats(); st.SnapshotsSent != 1 {
		t.Errorf("control plane sent %d snapshots, want 1 (the cache was a miss)", st.SnapshotsSent)
	}
	waitFor(t, 5*time.Second, "the corrupt cache is replaced by a good one", func() bool {
		now, err := os.ReadFile(lkg)
		return err == nil && len(now) > 0 && !bytes.Equal(now, b)
	})
}

// A replica's maximum connection age sends GOAWAY; the edge reconnects at
// once (its backoff here is far longer than the test) and, its config being
// current, is sent nothing on the new stream.
func TestGoAwayReconnectsAtOnceWithoutResending(t *testing.T) {
	db := newTestDB(t)
	rev := db.apply(t, testDoc("github__*"))
	c := startCP(t, db, "replica-1", func(cfg *nodeapi.Config) {
		cfg.MaxConnectionAge, cfg.MaxConnectionAgeGrace = 500*time.Millisecond, 100*time.Millisecond
	})
	e := startEdgeWith(t, db, c.addr, db.joinToken(t, "tok", nil, time.Now().Add(time.Hour)), t.TempDir(), &recorder{},
		func(cfg *cpclient.Config) { cfg.MinBackoff, cfg.MaxBackoff = 10*time.Second, 10*time.Second })
	waitFor(t, 10*time.Second, "the edge applies the config", func() bool { return e.rec.revision() == rev })
	waitFor(t, 20*time.Second, "the edge is moved to new connections twice", func() bool { return c.srv.Stats().StreamsOpened >= 3 })
	if st := c.srv.Stats(); st.SnapshotsSent != 1 {
		t.Errorf("server sent %d snapshots over %d streams, want 1", st.SnapshotsSent, st.StreamsOpened)
	}
	if st := e.c.Stats(); st.Snapshots != 1 || st.Acks != 1 {
		t.Errorf("edge stats %+v, want one snapshot, one ack", st)
	}
}

// Status reports reach the registry in the batched flush.
func TestStatusReportsReachTheRegistry(t *testing.T) {
	db := newTestDB(t)
	db.apply(t, testDoc("github__*"))
	c := startCP(t, db, "replica-1")
	e := startEdgeWith(t, db, c.addr, db.joinToken(t, "tok", nil, time.Now().Add(time.Hour)), t.TempDir(), &recorder{},
		func(cfg *cpclient.Config) {
			cfg.StatusInterval = 50 * time.Millisecond
			cfg.Status = func() *mcpgwv1.EdgeStatus {
				return &mcpgwv1.EdgeStatus{
					AuditSpool: &mcpgwv1.AuditSpoolStatus{DepthBytes: 12345, DepthBatches: 3},
					Backends:   []*mcpgwv1.BackendHealth{{Name: "github", State: mcpgwv1.BackendState_BACKEND_STATE_HEALTHY}},
				}
			}
		})
	waitFor(t, 10*time.Second, "the status reaches the nodes table", func() bool {
		id := e.c.NodeID()
		if id == "" {
			return false
		}
		n := db.node(t, id)
		return n.SpoolDepthBytes == 12345 && n.SpoolDepthBatches == 3 && strings.Contains(string(n.StatusJSON), "BACKEND_STATE_HEALTHY")
	})
}

// The edge renews its certificate before it expires and reconnects with
// the new one once the old one has expired.
func TestCertificateRenewal(t *testing.T) {
	db := newTestDB(t)
	rev := db.apply(t, testDoc("github__*"))
	const ttl = 6 * time.Second
	short := func(cfg *nodeapi.Config) { cfg.CertTTL = ttl }
	c := startCP(t, db, "replica-1", short)
	enrolled := time.Now()
	e := startEdge(t, db, c.addr, db.joinToken(t, "tok", nil, time.Now().Add(time.Hour)), t.TempDir(), &recorder{})
	waitFor(t, 10*time.Second, "the edge applies the config", func() bool { return e.rec.revision() == rev })
	fingerprint := func() string {
		var fp string
		if err := db.pool.QueryRow(t.Context(), `SELECT cert_fingerprint FROM nodes WHERE id = $1`, e.c.NodeID()).Scan(&fp); err != nil {
			t.Fatal(err)
		}
		return fp
	}
	first := fingerprint()
	waitFor(t, 2*ttl, "the certificate is renewed", func() bool { return fingerprint() != first })

	// Past the first certificate's expiry, a new connection must use the
	// renewed one.
	time.Sleep(time.Until(enrolled.Add(ttl + 500*time.Millisecond)))
	addr := c.addr
	c.stop()
	c2 := startCPOnAddr(t, db, "replica-1", addr, short)
	waitFor(t, 10*time.Second, "the edge reconnects with its renewed certificate", func() bool { return c2.srv.Stats().Connected == 1 })
	rev2 := db.apply(t, testDoc("github__read_*"))
	waitFor(t, 5*time.Second, "the edge applies the next revision", func() bool { return e.rec.revision() == rev2 })
}

// gather returns the registry's samples by name (histograms as _count).
func gather(t testing.TB, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			switch {
			case m.GetGauge() != nil:
				out[mf.GetName()] += m.GetGauge().GetValue()
			case m.GetCounter() != nil:
				out[mf.GetName()] += m.GetCounter().GetValue()
			case m.GetHistogram() != nil:
				out[mf.GetName()+"_count"] += float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return out
}

// One snapshot in flight per stream: revisions committed while the edge is
// still applying one are not sent until it answers, and then only the
// newest goes out.
func TestOneInFlightNewestWins(t *testing.T) {
	db := newTestDB(t)
	rev1 := db.apply(t, testDoc("github__a*"))
	c := startCP(t, db, "replica-1")
	gate := make(chan struct{})
	var hold sync.Once
	holding := make(chan struct{})
	rec := &recorder{}
	startEdgeWith(t, db, c.addr, db.joinToken(t, "tok", nil, time.Now().Add(time.Hour)), t.TempDir(), rec,
		func(cfg *cpclient.Config) {
			cfg.Applier = cpclient.ApplierFunc(func(ctx context.Context, u *cpclient.Update) error {
				if u.Revision > rev1 {
					var err error
					hold.Do(func() { // hold the first update after rev1
						close(holding)
						select {
						case <-gate:
						case <-ctx.Done():
							err = ctx.Err()
						}
					})
					if err != nil {
						return err
					}
				}
				return rec.Apply(ctx, u)
			})
		})
	waitFor(t, 10*time.Second, "the edge applies revision 1", func() bool { return rec.revision() == rev1 })

	rev2 := db.apply(t, testDoc("github__b*"))
	<-holding // revision 2 is in flight at the edge
	rev3 := db.apply(t, testDoc("github__c*"))
	rev4 := db.apply(t, testDoc("github__d*"))
	waitFor(t, 5*time.Second, "the replica publishes revision 4", func() bool { return c.cache.Revision() == rev4 })
	time.Sleep(200 * time.Millisecond)
	if st := c.srv.Stats(); st.SnapshotsSent != 2 {
		t.Fatalf("%d snapshots sent while one was in flight, want 2", st.SnapshotsSent)
	}
	close(gate)
	waitFor(t, 5*time.Second, "the edge applies revision 4", func() bool { return rec.revision() == rev4 })
	var got []int64
	rec.mu.Lock()
	for _, u := range rec.got {
		got = append(got, u.Revision)
	}
	rec.mu.Unlock()
	if want := []int64{rev1, rev2, rev4}; !slices.Equal(got, want) {
		t.Errorf("edge applied revisions %v, want %v (revision %d skipped)", got, want, rev3)
	}
	if st := c.srv.Stats(); st.SnapshotsSent != 3 {
		t.Errorf("%d snapshots sent, want 3", st.SnapshotsSent)
	}
}

// An edge that takes its snapshot and then never reads or answers again
// holds only its own stream: the others get every revision as usual.
func TestStuckEdgeDoesNotDelayOthers(t *testing.T) {
	db := newTestDB(t)
	db.apply(t, testDoc("github__*"))
	c := startCP(t, db, "replica-1")
	_, cert := c.enroll(t, db.joinToken(t, "stuck", nil, time.Now().Add(time.Hour)))
	stuck, err := c.client(t, cert).ConfigStream(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if err := stuck.Send(&mcpgwv1.ConfigStreamRequest{Msg: &mcpgwv1.ConfigStreamRequest_Hello{Hello: &mcpgwv1.ConfigHello{}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := stuck.Recv(); err != nil { // and never again
		t.Fatal(err)
	}
	e := startEdge(t, db, c.addr, db.joinToken(t, "ok", nil, time.Now().Add(time.Hour)), t.TempDir(), &recorder{})
	for _, tool := range []string{"github__a*", "github__b*", "github__c*"} {
		commit := time.Now()
		rev := db.apply(t, testDoc(tool))
		waitFor(t, 5*time.Second, "the healthy edge applies the change", func() bool { return e.rec.revision() == rev })
		if took := time.Since(commit); took > time.Second {
			t.Errorf("revision %d took %v to reach the healthy edge next to a stuck one", rev, took)
		}
	}
	if st := c.srv.Stats(); st.Connected != 2 {
		t.Errorf("%d streams connected, want 2 (the stuck one stays)", st.Connected)
	}
}
