package auditlog

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/mcpgw/mcpgw/internal/auditdb"
)

// appendRecord encodes the batch in place after what dst holds; the
// record must be the length, the CRC-32C and the encoding, as framed
// from a separately encoded payload.
func TestAppendRecordFramesTheEncoding(t *testing.T) {
	b := auditdb.Batch{Epoch: 7, Seq: 3, PrevHash: [32]byte{1, 2, 3}, Count: 2, Lines: []byte("{\"a\":1}\n{\"b\":2}\n")}
	payload := b.AppendBinary(nil)
	want := []byte("earlier records")
	want = binary.BigEndian.AppendUint32(want, uint32(len(payload)))
	want = binary.BigEndian.AppendUint32(want, auditdb.CRC32C(payload))
	want = append(want, payload...)
	if got := appendRecord([]byte("earlier records"), &b); !bytes.Equal(got, want) {
		t.Fatalf("appendRecord:\n got %x\nwant %x", got, want)
	}
}
