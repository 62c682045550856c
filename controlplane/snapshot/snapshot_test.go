package snapshot_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"

	"github.com/mcpgw/mcpgw/controlplane/snapshot"
	"github.com/mcpgw/mcpgw/controlplane/store"
	mcpgwv1 "github.com/mcpgw/mcpgw/gen/mcpgw/v1"
	"github.com/mcpgw/mcpgw/internal/docproto"
	"github.com/mcpgw/mcpgw/internal/document"
	"github.com/mcpgw/mcpgw/internal/pgtest"
	"github.com/mcpgw/mcpgw/internal/policy"
)

func resources(backends int) *mcpgwv1.SnapshotResources {
	r := &mcpgwv1.SnapshotResources{}
	for i := range backends {
		env := map[string]string{}
		for j := range 20 { // maps are where a non-deterministic encoding would show
			env[fmt.Sprintf("VAR_%d", j)] = fmt.Sprintf("${env:SECRET_%d}", j)
		}
		r.Backends = append(r.Backends, &mcpgwv1.Backend{Name: fmt.Sprintf("b%03d", i),
			Transport: &mcpgwv1.Backend_Stdio{Stdio: &mcpgwv1.StdioTransport{Command: []string{"/bin/server", "--stdio"}, Env: env}}})
	}
	return r
}

func TestBuildIsDeterministicHashedAndCompressed(t *testing.T) {
	now := time.Now()
	a, err := snapshot.Build("default", 4, now, resources(1))
	if err != nil {
		t.Fatal(err)
	}
	for range 20 {
		b, err := snapshot.Build("default", 4, now, resources(1))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a.Payload, b.Payload) || a.Hash != b.Hash {
			t.Fatal("equal config encoded to different bytes")
		}
	}
	if len(a.Payload) >= snapshot.GzipThreshold || a.Gzip != nil {
		t.Errorf("small snapshot (%d bytes) has a gzip form", len(a.Payload))
	}
	other, _ := snapshot.Build("eu", 4, now, resources(1))
	if other.Hash == a.Hash {
		t.Error("snapshots of two groups share a hash")
	}
	var back mcpgwv1.SnapshotResources
	if err := proto.Unmarshal(a.Payload, &back); err != nil || back.NodeGroup != "default" || len(back.Backends) != 1 {
		t.Errorf("payload decodes to %v (%v)", &back, err)
	}

	big, err := snapshot.Build("default", 4, now, resources(50))
	if err != nil {
		t.Fatal(err)
	}
	if big.Gzip == nil || len(big.Gzip) >= len(big.Payload) {
		t.Fatalf("large snapshot (%d bytes): gzip form %d bytes", len(big.Payload), len(big.Gzip))
	}
	zr, err := gzip.NewReader(bytes.NewReader(big.Gzip))
	if err != nil {
		t.Fatal(err)
	}
	inflated, _ := io.ReadAll(zr)
	if !bytes.Equal(inflated, big.Payload) {
		t.Error("gzip form does not inflate to the payload")
	}
	if body, enc := big.Body(false); enc != mcpgwv1.PayloadEncoding_PAYLOAD_ENCODING_PROTO || !bytes.Equal(body, big.Payload) {
		t.Error("Body(false) is not the plain payload")
	}
	if _, enc := big.Body(true); enc != mcpgwv1.PayloadEncoding_PAYLOAD_ENCODING_PROTO_GZIP {
		t.Error("Body(true) is not gzip")
	}
}

func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func TestCacheWatchAndGroups(t *testing.T) {
	c := snapshot.NewCache()
	s, ch, err := c.Watch("")
	if s != nil || err != nil || closed(ch) {
		t.Fatalf("empty cache: %v %v closed=%v", s, err, closed(ch))
	}
	if err := c.Publish(3, time.Now(), resources(1)); err != nil {
		t.Fatal(err)
	}
	if !closed(ch) {
		t.Fatal("publish did not wake the watcher")
	}
	def, ch2, _ := c.Watch("default")
	if def == nil || def.Revision != 3 || closed(ch2) {
		t.Fatalf("after publish: %v, closed=%v", def, closed(ch2))
	}
	// A group nobody asked for before is built on first use, once.
	eu, _ := c.Current("eu")
	eu2, _ := c.Current("eu")
	if eu == nil || eu != eu2 || eu.Revision != 3 || eu.Hash == def.Hash {
		t.Fatalf("group eu: %v / %v", eu, eu2)
	}
	if closed(ch2) {
		t.Error("building a new group woke watchers")
	}
	// Old or equal revisions are ignored.
	if err := c.Publish(3, time.Now(), resources(2)); err != nil || closed(ch2) {
		t.Fatalf("republishing revision 3: %v, woke=%v", err, closed(ch2))
	}
	if err := c.Publish(5, time.Now(), resources(2)); err != nil || !closed(ch2) {
		t.Fatalf("publishing revision 5: %v, woke=%v", err, closed(ch2))
	}
	groups := []string{}
	for _, s := range c.Snapshots() {
		groups = append(groups, s.Group)
		if s.Revision != 5 {
			t.Errorf("group %s at revision %d after publish 5", s.Group, s.Revision)
		}
	}
	if !slices.Equal(groups, []string{"default", "eu"}) {
		t.Errorf("groups after publish: %v", groups)
	}
}

// silentSource is the store with LISTEN broken: only polling can notice.
type silentSource struct{ *store.NodeStore }

func (silentSource) ListenConfig(ctx context.Context, _ func(int64)) error {
	<-ctx.Done()
	return nil
}

func testDoc(tool string) document.Document {
	pfx := ""
	return document.Document{
		Backends: []document.Backend{
			{Name: "github", HTTP: &document.HTTPTransport{URL: "http://127.0.0.1:9/mcp", Headers: map[string]string{"X-Team": "core"}}, Timeout: document.Duration(90 * time.Second)},
			{Name: "files", Prefix: &pfx, Stdio: &document.StdioTransport{Command: []string{"fs-server"}, Env: map[string]string{"ROOT": "/srv"}, Dir: "/tmp"}, Sessions: "per_principal"},
		},
		Roles: []policy.Role{
			{Name: "dev", Description: "developers", Rules: []policy.Rule{{Effect: "allow", Tools: []string{tool}}, {ID: "no-delete", Effect: "deny", Tools: []string{"github__delete_*"}}}},
			{Name: "ro", Rules: []policy.Rule{{Effect: "allow", Methods: []string{"resources/read"}, Resources: []string{"file:///docs/*"}}}},
		},
		Bindings:   []policy.Binding{{Role: "dev", Subjects: []string{"user:alice", "group:eng"}}, {Role: "ro", Subjects: []string{"user:bob"}}},
		Principals: []policy.Principal{{Name: "alice", Groups: []string{"eng"}}, {Name: "bob"}},
	}
}

func TestBuilderFollowsTheStore(t *testing.T) {
	for _, tc := range []struct {
		name   string
		source func(*store.NodeStore) snapshot.Source
	}{
		{"notify", func(n *store.NodeStore) snapshot.Source { return n }},
		{"polling fallback", func(n *store.NodeStore) snapshot.Source { return silentSource{n} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pool := pgtest.NewPool(t, pgtest.NewDatabase(t))
			st, nodes := store.New(pool), store.NewNodeStore(pool)
			meta := store.Meta{Actor: "test", Operation: "test"}
			cache := snapshot.NewCache()
			b := snapshot.NewBuilder(tc.source(nodes), cache, snapshot.BuilderConfig{Debounce: 10 * time.Millisecond, PollInterval: 100 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
			ctx, cancel := context.WithCancel(t.Context())
			done := make(chan error, 1)
			go func() { done <- b.Run(ctx) }()
			defer func() {
				cancel()
				if err := <-done; err != nil {
					t.Errorf("Run: %v", err)
				}
			}()
			time.Sleep(50 * time.Millisecond)
			if cache.Revision() != 0 {
				t.Fatalf("empty store published revision %d", cache.Revision())
			}

			for i, tool := range []string{"github__*", "github__read_*", "github__list_*"} {
				res, err := st.ApplyDocument(t.Context(), meta, testDoc(tool), store.ApplyOptions{Prune: true})
				if err != nil {
					t.Fatal(err)
				}
				if i == 1 {
					if _, _, _, err := st.CreateAPIKey(t.Context(), meta, store.NewAPIKey{ID: "k1", Principal: "alice",
						SHA256: fmt.Sprintf("%064x", 7)}); err != nil {
						t.Fatal(err)
					}
				}
				want, _ := st.CurrentRevision(t.Context())
				deadline := time.Now().Add(2 * time.Second)
				for cache.Revision() != want {
					if time.Now().After(deadline) {
						t.Fatalf("cache at revision %d, store at %d (applied %d)", cache.Revision(), want, res.Revision)
					}
					time.Sleep(5 * time.Millisecond)
				}
			}

			// What the edges get equals the store's config through docproto.
			cfg, err := st.LoadConfig(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			doc := docproto.DocumentToProto(cfg.Document())
			want := &mcpgwv1.SnapshotResources{NodeGroup: "default", Backends: doc.Backends, Principals: doc.Principals, Roles: doc.Roles, Bindings: doc.Bindings}
			for _, k := range cfg.APIKeys {
				want.ApiKeys = append(want.ApiKeys, docproto.APIKeyHashToProto(docproto.APIKeyHash{KeyID: k.KeyID, Principal: k.Principal, SHA256: k.SHA256, ExpiresAt: k.ExpiresAt}))
			}
			s, _ := cache.Current("default")
			var got mcpgwv1.SnapshotResources
			if err := proto.Unmarshal(s.Payload, &got); err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(want, &got) {
				t.Errorf("snapshot differs from the store's config\nstore:    %s\nsnapshot: %s", prototext.Format(want), prototext.Format(&got))
			}
		})
	}
}

// countingSource counts full config loads.
type countingSource struct {
	*store.NodeStore
	loads atomic.Int64
}

func (c *countingSource) LoadSnapshotResources(ctx context.Context) (int64, time.Time, *mcpgwv1.SnapshotResources, error) {
	c.loads.Add(1)
	return c.NodeStore.LoadSnapshotResources(ctx)
}

// A change after a quiet spell is built at once; a burst of changes shares
// rebuilds.
func TestBuilderDebounce(t *testing.T) {
	pool := pgtest.NewPool(t, pgtest.NewDatabase(t))
	st := store.New(pool)
	src := &countingSource{NodeStore: store.NewNodeStore(pool)}
	cache := snapshot.NewCache()
	const debounce = time.Second
	b := snapshot.NewBuilder(src, cache, snapshot.BuilderConfig{Debounce: debounce, PollInterval: time.Hour, Logger: slog.New(slog.DiscardHandler)})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	meta := store.Meta{Actor: "test", Operation: "test"}
	wait := func(rev int64) time.Duration {
		t.Helper()
		start := time.Now()
		for cache.Revision() != rev {
			if time.Since(start) > 10*time.Second {
				t.Fatalf("cache at %d, want %d", cache.Revision(), rev)
			}
			time.Sleep(2 * time.Millisecond)
		}
		return time.Since(start)
	}
	time.Sleep(debounce + 100*time.Millisecond) // past the initial load's window

	res, err := st.ApplyDocument(t.Context(), meta, testDoc("a*"), store.ApplyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if took := wait(res.Revision); took > debounce*9/10 {
		t.Errorf("an isolated change took %v to publish; the debounce (%v) should not delay it", took, debounce)
	}

	before := src.loads.Load()
	var last int64
	const burst = 8
	for i := range burst {
		res, err := st.ApplyDocument(t.Context(), meta, testDoc(fmt.Sprintf("b%d*", i)), store.ApplyOptions{})
		if err != nil {
			t.Fatal(err)
		}
		last = res.Revision
	}
	wait(last)
	if loads := src.loads.Load() - before; loads >= burst {
		t.Errorf("%d commits in a burst cost %d loads, want fewer", burst, loads)
	}
}
