package auditdb

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"time"
)

// Batch is a sealed group of audit events as an edge spools and ships it and
// as ingest records it in audit_ledger. A batch is immutable once sealed, so
// a retry re-sends identical bytes. Its hash and CRC are defined as the
// AuditStream contract (proto/mcpgw/v1 AuditBatch) defines them, over the
// fields the wire carries, so the control plane recomputes exactly what the
// edge chained: see Hash and CRC. AppendBinary is the spool's own framing
// of all the fields; it is not what is hashed.
type Batch struct {
	// Epoch names one spool's life: a fresh spool directory starts a new
	// epoch, and Seq restarts at 0 in it.
	Epoch int64
	// Seq is contiguous within an epoch, from 1.
	Seq int64
	// DroppedBefore counts events dropped (on_full: drop) between the
	// previous batch and this one; GapFirst and GapLast bound their times.
	// A batch may hold only a gap (no events) so a loss is recorded even
	// when nothing else is happening.
	DroppedBefore int64
	GapFirst      time.Time
	GapLast       time.Time
	// PrevHash is the Hash of the previous batch of the epoch; zero (none)
	// for seq 1.
	PrevHash [32]byte
	// Count is the number of events in Lines.
	Count int
	// Lines holds the events in their canonical JSON encoding
	// (audit.Event.AppendJSON), each followed by '\n'.
	Lines []byte

	// CRC is the CRC-32C the sender computed over Lines (the AuditBatch
	// payload). Ingest records whether Lines still match it.
	CRC uint32
}

const (
	batchMagic   = "MGAB"
	batchVersion = 1
	// BatchHeaderSize is the fixed size of an encoded batch before its lines.
	BatchHeaderSize = len(batchMagic) + 1 + 5*8 + 32 + 4
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// CRC32C is CRC-32C (Castagnoli): what the spool stores per record (over
// the record) and audit_ledger.crc holds (over a batch's Lines).
func CRC32C(p []byte) uint32 { return crc32.Checksum(p, castagnoli) }

// AppendBinary appends the spool encoding of b: a fixed header (magic,
// version, epoch, seq, dropped_before, gap first/last as Unix µs or 0,
// prev_hash, count; integers big-endian) followed by Lines.
func (b *Batch) AppendBinary(dst []byte) []byte {
	dst = append(dst, batchMagic...)
	dst = append(dst, batchVersion)
	dst = binary.BigEndian.AppendUint64(dst, uint64(b.Epoch))
	dst = binary.BigEndian.AppendUint64(dst, uint64(b.Seq))
	dst = binary.BigEndian.AppendUint64(dst, uint64(b.DroppedBefore))
	dst = binary.BigEndian.AppendUint64(dst, uint64(unixMicro(b.GapFirst)))
	dst = binary.BigEndian.AppendUint64(dst, uint64(unixMicro(b.GapLast)))
	dst = append(dst, b.PrevHash[:]...)
	dst = binary.BigEndian.AppendUint32(dst, uint32(b.Count))
	return append(dst, b.Lines...)
}

// Hash is the batch's link in its epoch's chain (AuditBatch.hash, the next
// batch's PrevHash, audit_ledger.batch_hash): SHA-256 over PrevHash (32
// zero bytes for none), Seq and DroppedBefore as 8-byte big-endian, and
// Lines; then, only when GapFirst is set, GapFirst and GapLast as 8-byte
// big-endian Unix microseconds, so that a gap's times cannot be altered
// unnoticed while every batch without them hashes as it did before they
// travelled. Epoch is not covered: the wire carries it once per stream.
func (b *Batch) Hash() [32]byte {
	h := sha256.New()
	var hdr [48]byte
	copy(hdr[:32], b.PrevHash[:])
	binary.BigEndian.PutUint64(hdr[32:], uint64(b.Seq))
	binary.BigEndian.PutUint64(hdr[40:], uint64(b.DroppedBefore))
	h.Write(hdr[:])
	h.Write(b.Lines)
	if !b.GapFirst.IsZero() {
		var gap [16]byte
		binary.BigEndian.PutUint64(gap[:8], uint64(b.GapFirst.UnixMicro()))
		binary.BigEndian.PutUint64(gap[8:], uint64(unixMicro(b.GapLast)))
		h.Write(gap[:])
	}
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// HasPrev reports whether PrevHash is set (every batch but an epoch's first).
func (b *Batch) HasPrev() bool { return b.PrevHash != [32]byte{} }

// EachLine calls fn with every event line of the batch, without its '\n'.
// The slice aliases Lines and must not be kept.
func (b *Batch) EachLine(fn func(line []byte) error) error {
	rest := b.Lines
	for len(rest) > 0 {
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			return errors.New("audit batch: last event line has no newline")
		}
		if err := fn(rest[:i]); err != nil {
			return err
		}
		rest = rest[i+1:]
	}
	return nil
}

// DecodeBatch parses a spool-encoded batch. Lines aliases p, and CRC is set
// to the CRC-32C of Lines. It checks the framing (header, line count, newline
// termination) but not the events themselves; ingest validates each event.
func DecodeBatch(p []byte) (Batch, error) {
	if len(p) < BatchHeaderSize {
		return Batch{}, fmt.Errorf("audit batch: %d bytes is shorter than the %d-byte header", len(p), BatchHeaderSize)
	}
	if string(p[:4]) != batchMagic {
		return Batch{}, fmt.Errorf("audit batch: bad magic %q", p[:4])
	}
	if p[4] != batchVersion {
		return Batch{}, fmt.Errorf("audit batch: unsupported version %d", p[4])
	}
	h := p[5:]
	var b Batch
	b.Epoch = int64(binary.BigEndian.Uint64(h[0:]))
	b.Seq = int64(binary.BigEndian.Uint64(h[8:]))
	b.DroppedBefore = int64(binary.BigEndian.Uint64(h[16:]))
	gf, gl := int64(binary.BigEndian.Uint64(h[24:])), int64(binary.BigEndian.Uint64(h[32:]))
	if gf < 0 || gl < 0 {
		return Batch{}, fmt.Errorf("audit batch: negative gap time %d..%d", gf, gl)
	}
	b.GapFirst, b.GapLast = fromUnixMicro(gf), fromUnixMicro(gl)
	copy(b.PrevHash[:], h[40:72])
	b.Count = int(binary.BigEndian.Uint32(h[72:]))
	b.Lines = p[BatchHeaderSize:]
	b.CRC = CRC32C(b.Lines)
	if b.Epoch < 0 || b.Seq < 0 || b.DroppedBefore < 0 {
		return Batch{}, fmt.Errorf("audit batch: negative epoch %d, seq %d or dropped_before %d", b.Epoch, b.Seq, b.DroppedBefore)
	}
	if n := bytes.Count(b.Lines, []byte{'\n'}); n != b.Count {
		return Batch{}, fmt.Errorf("audit batch %d/%d: header says %d events, found %d lines", b.Epoch, b.Seq, b.Count, n)
	}
	if len(b.Lines) > 0 && b.Lines[len(b.Lines)-1] != '\n' {
		return Batch{}, fmt.Errorf("audit batch %d/%d: trailing bytes after the last event line", b.Epoch, b.Seq)
	}
	return b, nil
}

func unixMicro(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMicro()
}

func fromUnixMicro(us int64) time.Time {
	if us == 0 {
		return time.Time{}
	}
	return time.UnixMicro(us).UTC()
}
