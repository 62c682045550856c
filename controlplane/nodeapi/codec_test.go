package nodeapi

import (
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/mcpgw/mcpgw/controlplane/snapshot"
	mcpgwv1 "github.com/mcpgw/mcpgw/gen/mcpgw/v1"
)

// The pre-encoded form a stream sends (prefix + shared payload) decodes to
// exactly the message an ordinary proto send would carry.
func TestPreEncodedSnapshotMatchesProto(t *testing.T) {
	res := &mcpgwv1.SnapshotResources{}
	for i := range 200 {
		res.Principals = append(res.Principals, &mcpgwv1.Principal{Name: fmt.Sprintf("user-%d", i), Groups: []string{"g"}})
	}
	big, err := snapshot.Build("default", 42, time.Now(), res)
	if err != nil {
		t.Fatal(err)
	}
	small, err := snapshot.Build("default", 43, time.Time{}, &mcpgwv1.SnapshotResources{})
	if err != nil {
		t.Fatal(err)
	}
	codec := newSnapshotCodec()
	for _, tc := range []struct {
		name        string
		snap        *snapshot.Snapshot
		gzip, empty bool
	}{
		{"gzip", big, true, false},
		{"plain", big, false, false},
		{"payload-less", big, true, true},
		{"tiny", small, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msg, body := snapshotMessage(tc.snap, "17", tc.gzip, tc.empty)
			pre, err := encodeSnapshot(msg, body)
			if err != nil {
				t.Fatal(err)
			}
			bufs, err := codec.Marshal(pre)
			if err != nil {
				t.Fatal(err)
			}
			var got mcpgwv1.ConfigStreamResponse
			if err := codec.Unmarshal(bufs, &got); err != nil {
				t.Fatal(err)
			}
			want := proto.Clone(msg).(*mcpgwv1.ConfigStreamResponse)
			want.GetSnapshot().Payload = body
			if !proto.Equal(&got, want) {
				t.Fatalf("pre-encoded message decodes to\n%v\nwant\n%v", &got, want)
			}
			if tc.empty != (len(got.GetSnapshot().GetPayload()) == 0) {
				t.Errorf("payload length %d with empty=%v", len(got.GetSnapshot().GetPayload()), tc.empty)
			}
			if tc.gzip && tc.snap.Gzip != nil && !tc.empty && got.GetSnapshot().GetPayloadEncoding() != mcpgwv1.PayloadEncoding_PAYLOAD_ENCODING_PROTO_GZIP {
				t.Errorf("encoding %v, want gzip", got.GetSnapshot().GetPayloadEncoding())
			}
			// The shared payload slice itself is what gRPC writes: no copy.
			if len(body) > 0 && (len(bufs) != 2 || &bufs[1].ReadOnlyData()[0] != &body[0]) {
				t.Error("the payload is not sent from the shared slice")
			}
		})
	}
}
