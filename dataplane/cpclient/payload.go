package cpclient

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"

	"google.golang.org/protobuf/proto"

	mcpgwv1 "github.com/mcpgw/mcpgw/gen/mcpgw/v1"
)

// MaxSnapshotBytes is the largest uncompressed snapshot an edge accepts; a
// payload claiming more is refused before anything is inflated.
const MaxSnapshotBytes = 64 << 20

// decodePayload returns the uncompressed payload of s after checking its
// size and hash. An empty payload is an error here; callers handle the
// payload-less revision bump before calling.
func decodePayload(s *mcpgwv1.Snapshot) ([]byte, error) {
	if !s.GetFullState() {
		return nil, errors.New("snapshot is not full_state; this edge applies only full snapshots")
	}
	size := s.GetPayloadSize()
	if size > MaxSnapshotBytes {
		return nil, fmt.Errorf("snapshot payload of %d bytes exceeds this edge's limit of %d", size, MaxSnapshotBytes)
	}
	var raw []byte
	switch s.GetPayloadEncoding() {
	case mcpgwv1.PayloadEncoding_PAYLOAD_ENCODING_PROTO:
		raw = s.GetPayload()
	case mcpgwv1.PayloadEncoding_PAYLOAD_ENCODING_PROTO_GZIP:
		zr, err := gzip.NewReader(bytes.NewReader(s.GetPayload()))
		if err != nil {
			return nil, fmt.Errorf("inflating snapshot payload: %w", err)
		}
		// One byte more than announced, to notice a payload that is longer.
		raw, err = io.ReadAll(io.LimitReader(zr, int64(size)+1))
		if err != nil {
			return nil, fmt.Errorf("inflating snapshot payload: %w", err)
		}
	default:
		return nil, fmt.Errorf("snapshot payload encoding %v not supported", s.GetPayloadEncoding())
	}
	if uint64(len(raw)) != size {
		return nil, fmt.Errorf("snapshot payload is %d bytes, announced %d", len(raw), size)
	}
	sum := sha256.Sum256(raw)
	if got := hex.EncodeToString(sum[:]); got != s.GetHash() {
		return nil, fmt.Errorf("snapshot payload hash %s does not match announced %s", got, s.GetHash())
	}
	return raw, nil
}

// decodeResources decodes and validates an uncompressed payload.
func decodeResources(raw []byte, revision int64) (*Update, error) {
	var res mcpgwv1.SnapshotResources
	if err := proto.Unmarshal(raw, &res); err != nil {
		return nil, fmt.Errorf("decoding snapshot resources: %w", err)
	}
	return toUpdate(&res, revision)
}
