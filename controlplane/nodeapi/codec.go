package nodeapi

import (
	"fmt"

	"google.golang.org/grpc/encoding"
	_ "google.golang.org/grpc/encoding/proto" // registers the "proto" codec this one wraps
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mcpgw/mcpgw/controlplane/snapshot"
	mcpgwv1 "github.com/mcpgw/mcpgw/gen/mcpgw/v1"
)

// snapshotCodec is the proto codec with one addition: a *preEncoded message
// is written as the bytes it already holds. It lets a thousand streams send
// one snapshot without a thousand copies of its payload: each send is a
// small per-stream prefix (nonce, revision, hash) followed by the shared
// payload slice, which gRPC writes without copying it into a new buffer.
type snapshotCodec struct {
	proto encoding.CodecV2
}

func newSnapshotCodec() snapshotCodec {
	return snapshotCodec{proto: encoding.GetCodecV2("proto")}
}

// Name is "proto": on the wire this is the ordinary protobuf content type.
func (snapshotCodec) Name() string { return "proto" }

func (c snapshotCodec) Marshal(v any) (mem.BufferSlice, error) {
	if p, ok := v.(*preEncoded); ok {
		if len(p.payload) == 0 {
			return mem.BufferSlice{mem.SliceBuffer(p.prefix)}, nil
		}
		return mem.BufferSlice{mem.SliceBuffer(p.prefix), mem.SliceBuffer(p.payload)}, nil
	}
	return c.proto.Marshal(v)
}

func (c snapshotCodec) Unmarshal(data mem.BufferSlice, v any) error {
	return c.proto.Unmarshal(data, v)
}

// preEncoded is a ConfigStreamResponse in wire form, split so that the
// shared payload is never copied. Protobuf fields may come in any order, so
// the payload field (Snapshot.payload, 7) comes last, after the others.
type preEncoded struct {
	prefix  []byte
	payload []byte
}

// snapshotMessage builds the message for one send of s on one stream. With
// empty set the payload is left out: the edge already has that content
// (same hash) and only needs the new revision.
func snapshotMessage(s *snapshot.Snapshot, nonce string, acceptGzip, empty bool) (*mcpgwv1.ConfigStreamResponse, []byte) {
	m := &mcpgwv1.Snapshot{
		Revision:        s.Revision,
		Nonce:           nonce,
		Hash:            s.Hash,
		FullState:       true,
		PayloadEncoding: mcpgwv1.PayloadEncoding_PAYLOAD_ENCODING_PROTO,
		PayloadSize:     uint64(len(s.Payload)),
	}
	if !s.CommitTime.IsZero() {
		m.CommitTime = timestamppb.New(s.CommitTime)
	}
	var body []byte
	if !empty {
		body, m.PayloadEncoding = s.Body(acceptGzip)
	}
	return &mcpgwv1.ConfigStreamResponse{Msg: &mcpgwv1.ConfigStreamResponse_Snapshot{Snapshot: m}}, body
}

// encodeSnapshot turns the message from snapshotMessage (whose payload is
// still unset) and its body into a preEncoded value.
func encodeSnapshot(msg *mcpgwv1.ConfigStreamResponse, body []byte) (*preEncoded, error) {
	inner, err := proto.Marshal(msg.GetSnapshot())
	if err != nil {
		return nil, fmt.Errorf("encoding snapshot header: %w", err)
	}
	payloadField := 0
	if len(body) > 0 {
		payloadField = protowire.SizeTag(7) + protowire.SizeBytes(len(body))
	}
	innerLen := len(inner) + payloadField
	prefix := make([]byte, 0, protowire.SizeTag(1)+protowire.SizeVarint(uint64(innerLen))+len(inner)+protowire.SizeTag(7)+protowire.SizeVarint(uint64(len(body))))
	prefix = protowire.AppendTag(prefix, 1, protowire.BytesType)
	prefix = protowire.AppendVarint(prefix, uint64(innerLen))
	prefix = append(prefix, inner...)
	if len(body) > 0 {
		prefix = protowire.AppendTag(prefix, 7, protowire.BytesType)
		prefix = protowire.AppendVarint(prefix, uint64(len(body)))
	}
	return &preEncoded{prefix: prefix, payload: body}, nil
}
