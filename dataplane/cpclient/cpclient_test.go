package cpclient

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	mcpgwv1 "github.com/mcpgw/mcpgw/gen/mcpgw/v1"
	"github.com/mcpgw/mcpgw/internal/policy"
)

func goodResources() *mcpgwv1.SnapshotResources {
	return &mcpgwv1.SnapshotResources{
		NodeGroup:  "default",
		Backends:   []*mcpgwv1.Backend{{Name: "github", Transport: &mcpgwv1.Backend_Http{Http: &mcpgwv1.HttpTransport{Url: "http://127.0.0.1:9/mcp"}}}},
		Principals: []*mcpgwv1.Principal{{Name: "alice", Groups: []string{"eng"}}},
		Roles:      []*mcpgwv1.Role{{Name: "dev", Rules: []*mcpgwv1.Rule{{Effect: "allow", Tools: []string{"github__*"}}}}},
		Bindings:   []*mcpgwv1.RoleBinding{{Role: "dev", Subjects: []string{"group:eng"}}},
		ApiKeys:    []*mcpgwv1.ApiKeyHash{{KeyId: "k1", Principal: "alice", Sha256: hex.EncodeToString(make([]byte, 32))}},
	}
}

// snapshotOf encodes res as the control plane would.
func snapshotOf(t testing.TB, res *mcpgwv1.SnapshotResources, revision int64, gz bool) *mcpgwv1.Snapshot {
	t.Helper()
	raw, err := proto.MarshalOptions{Deterministic: true}.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(raw)
	s := &mcpgwv1.Snapshot{Revision: revision, Nonce: "1", Hash: hex.EncodeToString(sum[:]), FullState: true,
		PayloadEncoding: mcpgwv1.PayloadEncoding_PAYLOAD_ENCODING_PROTO, Payload: raw, PayloadSize: uint64(len(raw)),
		CommitTime: timestamppb.Now()}
	if gz {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		zw.Write(raw)
		zw.Close()
		s.Payload, s.PayloadEncoding = buf.Bytes(), mcpgwv1.PayloadEncoding_PAYLOAD_ENCODING_PROTO_GZIP
	}
	return s
}

// The edge compiles the snapshot's policy with internal/policy: a snapshot
// that would not compile is refused with the resources at fault named.
func TestSnapshotIsCompiledAndBadOnesAreAttributed(t *testing.T) {
	u, err := decodeResources(snapshotOf(t, goodResources(), 7, false).Payload, 7)
	if err != nil {
		t.Fatalf("good snapshot refused: %v", err)
	}
	if u.Policy == nil || u.Policy.Revision() != 7 {
		t.Fatalf("good snapshot: policy %v", u.Policy)
	}
	d := u.Policy.Decide("alice", policy.Request{Method: "tools/call", Backend: "github", Kind: policy.KindTool, Name: "github__x"})
	if !d.Allow || d.Revision != 7 {
		t.Errorf("compiled policy decides %+v, want allow at revision 7", d)
	}
	if who, ok := u.Policy.Authenticate([32]byte{}, time.Now()); !ok || who != "alice" {
		t.Errorf("key hash from the snapshot does not authenticate alice: %q %v", who, ok)
	}

	for _, tc := range []struct {
		name     string
		mutate   func(*mcpgwv1.SnapshotResources)
		kind     mcpgwv1.ResourceKind
		resource string
	}{
		{"binding to a missing role", func(r *mcpgwv1.SnapshotResources) { r.Bindings[0].Role = "ghost" },
			mcpgwv1.ResourceKind_RESOURCE_KIND_BINDING, "ghost"},
		{"bad rule effect", func(r *mcpgwv1.SnapshotResources) { r.Roles[0].Rules[0].Effect = "maybe" },
			mcpgwv1.ResourceKind_RESOURCE_KIND_ROLE, "dev"},
		{"bad key hash", func(r *mcpgwv1.SnapshotResources) { r.ApiKeys[0].Sha256 = "xyz" },
			mcpgwv1.ResourceKind_RESOURCE_KIND_API_KEY, "k1"},
		{"backend without transport", func(r *mcpgwv1.SnapshotResources) { r.Backends[0].Transport = nil },
			mcpgwv1.ResourceKind_RESOURCE_KIND_BACKEND, "github"},
		{"relative backend url", func(r *mcpgwv1.SnapshotResources) {
			r.Backends[0].Transport = &mcpgwv1.Backend_Http{Http: &mcpgwv1.HttpTransport{Url: "/mcp"}}
		}, mcpgwv1.ResourceKind_RESOURCE_KIND_BACKEND, "github"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := goodResources()
			tc.mutate(res)
			_, err := decodeResources(snapshotOf(t, res, 8, false).Payload, 8)
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("err = %v, want a *ConfigError", err)
			}
			msg, rejected := nackFor(err)
			found := false
			for _, r := range rejected {
				found = found || (r.Kind == tc.kind && r.Name == tc.resource)
			}
			if !found || msg == "" {
				t.Errorf("NACK %q rejected %v: want %v %q named", msg, rejected, tc.kind, tc.resource)
			}
		})
	}
}

func TestDecodePayloadRefusesBadSnapshots(t *testing.T) {
	good := func() *mcpgwv1.Snapshot { return snapshotOf(t, goodResources(), 3, true) }
	if _, err := decodePayload(good()); err != nil {
		t.Fatalf("good gzip snapshot: %v", err)
	}
	for _, tc := range []struct {
		name   string
		mutate func(*mcpgwv1.Snapshot)
		want   string
	}{
		{"hash mismatch", func(s *mcpgwv1.Snapshot) { s.Hash = strings.Repeat("0", 64) }, "does not match"},
		{"size understated", func(s *mcpgwv1.Snapshot) { s.PayloadSize-- }, "announced"},
		{"size beyond limit", func(s *mcpgwv1.Snapshot) { s.PayloadSize = MaxSnapshotBytes + 1 }, "limit"},
		{"not full state", func(s *mcpgwv1.Snapshot) { s.FullState = false }, "full_state"},
		{"unknown encoding", func(s *mcpgwv1.Snapshot) { s.PayloadEncoding = mcpgwv1.PayloadEncoding_PAYLOAD_ENCODING_JSONL }, "not supported"},
		{"corrupt gzip", func(s *mcpgwv1.Snapshot) { s.Payload = s.Payload[:len(s.Payload)/2] }, "inflating"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := good()
			tc.mutate(s)
			if _, err := decodePayload(s); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
}

type memApplier struct{ got []*Update }

func (a *memApplier) Apply(_ context.Context, u *Update) error {
	a.got = append(a.got, u)
	return nil
}

func newTestClient(t *testing.T, dir string, a Applier) *Client {
	t.Helper()
	c, err := New(Config{ControlPlane: "127.0.0.1:1", StateDir: dir, Applier: a, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// The cache round-trips, and anything but an intact cache file is a miss.
func TestLastKnownGoodCache(t *testing.T) {
	dir := t.TempDir()
	a := &memApplier{}
	c := newTestClient(t, dir, a)
	if _, err := c.apply(t.Context(), snapshotOf(t, goodResources(), 5, true), true); err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(filepath.Join(dir, lkgFile))
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("cache file: %v, mode %v", err, info.Mode())
	}
	intact, _ := os.ReadFile(filepath.Join(dir, lkgFile))

	// A fresh client applies it without any network.
	b := &memApplier{}
	c2 := newTestClient(t, dir, b)
	c2.applyLKG(t.Context())
	if len(b.got) != 1 || b.got[0].Revision != 5 || b.got[0].Hash != a.got[0].Hash || b.got[0].Policy == nil {
		t.Fatalf("cache applied %+v, want revision 5 with hash %s", b.got, a.got[0].Hash)
	}
	if rev, hash := c2.Applied(); rev != 5 || hash != a.got[0].Hash {
		t.Errorf("Applied() = %d %s after the cache", rev, hash)
	}

	for _, tc := range []struct {
		name    string
		corrupt func([]byte) []byte
	}{
		{"flipped byte", func(b []byte) []byte { b[len(b)/2] ^= 1; return b }},
		{"truncated", func(b []byte) []byte { return b[:len(b)-10] }},
		{"empty", func([]byte) []byte { return nil }},
		{"wrong magic", func(b []byte) []byte { b[0] = 'X'; return b }},
		{"valid checksum over garbage", func([]byte) []byte {
			body := append([]byte(lkgMagic), 0xff, 0xff, 0xff)
			sum := sha256.Sum256(body)
			return append(body, sum[:]...)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := os.WriteFile(filepath.Join(dir, lkgFile), tc.corrupt(bytes.Clone(intact)), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := readLKG(dir); !errors.Is(err, errNoLKG) {
				t.Errorf("readLKG = %v, want errNoLKG", err)
			}
			m := &memApplier{}
			newTestClient(t, dir, m).applyLKG(t.Context())
			if len(m.got) != 0 {
				t.Errorf("corrupt cache applied: %+v", m.got)
			}
		})
	}
	os.Remove(filepath.Join(dir, lkgFile))
	if _, err := readLKG(dir); !errors.Is(err, errNoLKG) {
		t.Errorf("missing cache: %v, want errNoLKG", err)
	}
}

// A payload-less snapshot with the applied hash moves the revision (and the
// policy's revision) without decoding anything; with another hash it is
// refused.
func TestRevisionBumpWithoutPayload(t *testing.T) {
	dir := t.TempDir()
	a := &memApplier{}
	c := newTestClient(t, dir, a)
	first := snapshotOf(t, goodResources(), 5, false)
	if _, err := c.apply(t.Context(), first, true); err != nil {
		t.Fatal(err)
	}
	bump := &mcpgwv1.Snapshot{Revision: 6, Nonce: "2", Hash: first.Hash, FullState: true,
		PayloadEncoding: mcpgwv1.PayloadEncoding_PAYLOAD_ENCODING_PROTO, PayloadSize: first.PayloadSize}
	u, err := c.apply(t.Context(), bump, true)
	if err != nil {
		t.Fatal(err)
	}
	if u.Revision != 6 || u.Policy.Revision() != 6 || len(a.got) != 2 {
		t.Errorf("bump: revision %d, policy revision %d, applies %d", u.Revision, u.Policy.Revision(), len(a.got))
	}
	s, err := readLKG(dir)
	if err != nil || s.Revision != 6 || s.Hash != first.Hash {
		t.Errorf("cache after bump: %v %v", s, err)
	}
	other := proto.Clone(bump).(*mcpgwv1.Snapshot)
	other.Hash = strings.Repeat("a", 64)
	if _, err := c.apply(t.Context(), other, true); err == nil {
		t.Error("payload-less snapshot with an unknown hash was applied")
	}
	if rev, _ := c.Applied(); rev != 6 {
		t.Errorf("Applied() = %d after a refused snapshot, want 6", rev)
	}
}
