// Package snapshot builds the immutable, hashed per-node-group config
// snapshots that the control plane pushes to edges over ConfigStream, and
// keeps the current ones in a Cache that every stream shares.
//
// A snapshot is built once per (node group, revision): the config is loaded
// once, encoded deterministically (so every replica produces the same bytes
// and the same hash for the same config), hashed with SHA-256, gzipped once
// when that pays off, and then the same byte slices are handed to every
// stream. A Builder keeps the Cache current: it LISTENs for the revision
// that config writers notify on commit, debounces bursts of commits into one
// rebuild, and polls the head revision as a fallback for lost notifications.
package snapshot

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	mcpgwv1 "github.com/mcpgw/mcpgw/gen/mcpgw/v1"
)

// GzipThreshold is the payload size from which a gzip form is also kept.
// Below it the gzip header and the CPU cost outweigh the bytes saved.
const GzipThreshold = 4 << 10

// Snapshot is the config of one node group at one revision, encoded. It is
// immutable once built: streams share it and its byte slices and must not
// modify them.
type Snapshot struct {
	Group      string
	Revision   int64
	CommitTime time.Time
	// Hash is the lowercase hex SHA-256 of Payload.
	Hash string
	// Payload is the deterministic protobuf encoding of SnapshotResources
	// (PAYLOAD_ENCODING_PROTO).
	Payload []byte
	// Gzip is Payload gzipped (PAYLOAD_ENCODING_PROTO_GZIP), or nil when the
	// payload is small or does not compress.
	Gzip []byte
}

// Build encodes base for group at revision. base is not modified (the group
// is stamped on a shallow copy).
func Build(group string, revision int64, commitTime time.Time, base *mcpgwv1.SnapshotResources) (*Snapshot, error) {
	res := &mcpgwv1.SnapshotResources{
		NodeGroup:  group,
		Backends:   base.GetBackends(),
		Principals: base.GetPrincipals(),
		Roles:      base.GetRoles(),
		Bindings:   base.GetBindings(),
		ApiKeys:    base.GetApiKeys(),
	}
	payload, err := proto.MarshalOptions{Deterministic: true}.Marshal(res)
	if err != nil {
		return nil, fmt.Errorf("encoding snapshot of group %q at revision %d: %w", group, revision, err)
	}
	sum := sha256.Sum256(payload)
	s := &Snapshot{
		Group:      group,
		Revision:   revision,
		CommitTime: commitTime,
		Hash:       hex.EncodeToString(sum[:]),
		Payload:    payload,
	}
	if len(payload) >= GzipThreshold {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		if _, err := zw.Write(payload); err != nil {
			return nil, fmt.Errorf("compressing snapshot of group %q: %w", group, err)
		}
		if err := zw.Close(); err != nil {
			return nil, fmt.Errorf("compressing snapshot of group %q: %w", group, err)
		}
		if buf.Len() < len(payload) {
			s.Gzip = buf.Bytes()
		}
	}
	return s, nil
}

// Body returns the payload to send and its encoding: the gzip form when the
// edge accepts gzip and one exists, else the plain encoding.
func (s *Snapshot) Body(acceptGzip bool) ([]byte, mcpgwv1.PayloadEncoding) {
	if acceptGzip && s.Gzip != nil {
		return s.Gzip, mcpgwv1.PayloadEncoding_PAYLOAD_ENCODING_PROTO_GZIP
	}
	return s.Payload, mcpgwv1.PayloadEncoding_PAYLOAD_ENCODING_PROTO
}
