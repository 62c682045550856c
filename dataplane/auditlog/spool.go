package auditlog

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mcpgw/mcpgw/internal/auditdb"
)

// On-disk layout of a spool directory:
//
//	EPOCH                 the spool's epoch, decimal; written once when the directory is new
//	seg-<firstseq>.log    append-only segments of records, named by their first batch's seq (20 digits)
//	cursor-<consumer>     "v1 <epoch> <seq> <hash hex>": the last batch that consumer acknowledged
//	seg-*.log.torn-<ns>   bytes cut off a torn tail at recovery, kept as evidence
//
// A record is a 4-byte big-endian payload length, the payload's CRC-32C
// (4 bytes) and the payload: one encoded auditdb.Batch.
const (
	recordHeaderSize = 8
	// maxRecordSize bounds a record's claimed length so that a corrupted
	// length field is recognised instead of driving a huge allocation.
	maxRecordSize = 64 << 20
	epochFile     = "EPOCH"
	segPrefix     = "seg-"
	segSuffix     = ".log"
	cursorPrefix  = "cursor-"
)

// segment is one spool file. firstSeq comes from the name; lastSeq and size
// grow as the writer appends.
type segment struct {
	path     string
	firstSeq int64
	lastSeq  int64 // firstSeq-1 while empty
	size     int64 // bytes of complete records; readers never read past it
}

// spool is the append-only batch store. Log's writer (whoever holds
// Log.wmu) is its only appender; consumers read and acknowledge
// concurrently.
type spool struct {
	dir      string
	epoch    int64
	segBytes int64
	log      *slog.Logger

	// Writer-owned state: touched only under Log.wmu (and by open before
	// any goroutine starts).
	active   *os.File
	nextSeq  int64
	prevHash [32]byte

	// dirty is set by the writer after a write and cleared by whoever
	// fsyncs: the writer (always, rotation, close) or the interval syncer.
	dirty atomic.Bool

	// mu guards segs, the consumers' acked seqs, the notify channels and
	// syncFile (the interval syncer's view of the active segment).
	mu        sync.Mutex
	syncFile  *os.File
	segs      []*segment
	consumers map[string]*cursor
	notify    []chan struct{}

	used    atomic.Int64 // bytes of all segment files
	torn    atomic.Uint64
	corrupt atomic.Uint64
}

type cursor struct {
	name  string
	acked int64 // last acknowledged seq of this epoch; 0 for none (seqs start at 1)
	hash  [32]byte

	// Owned by the consumer's goroutine (ack, closeCursor): the cursor
	// file, open for overwriting in place, the line buffer, and when the
	// file was last fsynced with what it holds now.
	f        *os.File
	line     []byte
	unsynced bool
	syncedAt time.Time
	// For a LazySyncer sink: acknowledged in memory, not yet in the file.
	pending  bool
	pendSeq  int64
	pendHash [32]byte
}

// cursorSyncInterval bounds how long an acknowledged cursor stays unsynced.
// Every ack overwrites the cursor file in place (one pwrite, which survives
// the process being killed); fsync, which only matters if the machine
// itself goes down, happens at most this often, before acknowledged
// segments are deleted, and when the sink stops. A cursor that a machine
// crash left behind only makes the sink receive batches again that it
// already has: every sink tolerates that (Postgres and the control plane
// by (node, epoch, seq), the file sink by resuming after its last line).
//
// A LazySyncer sink's cursor is written only after its Sync, on the same
// occasions, so the cursor on disk never claims more than the sink made
// durable.
const cursorSyncInterval = time.Second

// recoveryReport says what open found, for logs and tests.
type recoveryReport struct {
	Segments      int
	Batches       int
	TornTails     int
	TornBytes     int64
	Corrupt       int      // records whose CRC or framing failed, skipped
	ChainBreaks   int      // batches whose prev_hash does not match the batch before
	Problems      []string // one line per torn tail, corrupt record or chain break
	NextSeq       int64
	Epoch         int64
	UnackedOldest int64
}

// openSpool opens or creates the spool in dir and recovers it: it verifies
// every record, truncates a torn tail (keeping the cut bytes in a side file),
// reports records that fail their CRC or break the hash chain, and continues
// the seq and the chain after the last good batch.
func openSpool(dir string, segBytes int64, consumers []string, log *slog.Logger) (*spool, recoveryReport, error) {
	var rep recoveryReport
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, rep, fmt.Errorf("creating audit spool dir: %w", err)
	}
	s := &spool{dir: dir, segBytes: segBytes, log: log, consumers: map[string]*cursor{}}

	names, err := os.ReadDir(dir)
	if err != nil {
		return nil, rep, fmt.Errorf("reading audit spool dir: %w", err)
	}
	for _, de := range names {
		n := de.Name()
		if !strings.HasPrefix(n, segPrefix) || !strings.HasSuffix(n, segSuffix) {
			continue
		}
		first, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimPrefix(n, segPrefix), segSuffix), 10, 64)
		if err != nil || first < 0 {
			return nil, rep, fmt.Errorf("audit spool: unexpected segment file name %q", n)
		}
		s.segs = append(s.segs, &segment{path: filepath.Join(dir, n), firstSeq: first, lastSeq: first - 1})
	}
	slices.SortFunc(s.segs, func(a, b *segment) int { return int(a.firstSeq - b.firstSeq) })

	epoch, err := readEpoch(dir)
	switch {
	case errors.Is(err, os.ErrNotExist) && len(s.segs) == 0:
		// A new spool: a new epoch. Microseconds since 1970 keep epochs of
		// successive spools on one node increasing.
		epoch = time.Now().UnixMicro()
		if err := writeFileAtomic(dir, epochFile, []byte(strconv.FormatInt(epoch, 10)+"\n")); err != nil {
			return nil, rep, err
		}
	case err != nil:
		return nil, rep, fmt.Errorf("audit spool has segments but no readable %s: %w", epochFile, err)
	}
	s.epoch, rep.Epoch = epoch, epoch

	for _, name := range consumers {
		c, err := readCursor(dir, name, epoch)
		if err != nil {
			return nil, rep, err
		}
		s.consumers[name] = c
	}

	// Scan every segment in order, continuing the chain across them.
	lastSeq, lastHash, haveLast := int64(-1), [32]byte{}, false
	for i, seg := range s.segs {
		last := i == len(s.segs)-1
		err := s.recoverSegment(seg, last, &rep, func(b *auditdb.Batch, h [32]byte) {
			if haveLast {
				if b.Seq != lastSeq+1 {
					rep.ChainBreaks++
					rep.Problems = append(rep.Problems, fmt.Sprintf("%s: seq %d follows seq %d", filepath.Base(seg.path), b.Seq, lastSeq))
				} else if b.PrevHash != lastHash {
					rep.ChainBreaks++
					rep.Problems = append(rep.Problems, fmt.Sprintf("%s: batch %d does not link to the hash of batch %d (tampered or forged)", filepath.Base(seg.path), b.Seq, lastSeq))
				}
			}
			lastSeq, lastHash, haveLast = b.Seq, h, true
			rep.Batches++
		})
		if err != nil {
			return nil, rep, err
		}
		s.used.Add(seg.size)
	}
	rep.Segments = len(s.segs)

	// Segments that were fully acknowledged are deleted, so the chain head
	// may only survive in a cursor.
	// Seqs start at 1, as the AuditStream contract numbers them.
	s.nextSeq, s.prevHash = 1, [32]byte{}
	if haveLast {
		s.nextSeq, s.prevHash = lastSeq+1, lastHash
	}
	for _, c := range s.consumers {
		if c.acked >= s.nextSeq {
			s.nextSeq, s.prevHash = c.acked+1, c.hash
		}
	}
	rep.NextSeq = s.nextSeq
	if rep.TornTails > 0 || rep.Corrupt > 0 || rep.ChainBreaks > 0 {
		s.torn.Add(uint64(rep.TornTails))
		s.corrupt.Add(uint64(rep.Corrupt + rep.ChainBreaks))
		for _, p := range rep.Problems {
			log.Error("audit spool recovery", "dir", dir, "problem", p)
		}
	}
	return s, rep, nil
}

// recoverSegment verifies seg's records, reporting each good batch to ok,
// and truncates a torn tail. It streams the segment (up to SegmentBytes,
// 64 MiB by default) through one record-sized buffer: reading it whole
// left the heap, and the idle edge's RSS, that much larger after a restart.
func (s *spool) recoverSegment(seg *segment, last bool, rep *recoveryReport, ok func(*auditdb.Batch, [32]byte)) error {
	f, err := os.Open(seg.path)
	if err != nil {
		return fmt.Errorf("reading audit spool segment: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("reading audit spool segment: %w", err)
	}
	name := filepath.Base(seg.path)
	size := st.Size()
	br := bufio.NewReaderSize(f, readChunk)
	var hdr [recordHeaderSize]byte
	var payload []byte
	off := int64(0)
	for off < size {
		if size-off < recordHeaderSize {
			break // torn header
		}
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			return fmt.Errorf("reading audit spool segment %s: %w", name, err)
		}
		n := int64(binary.BigEndian.Uint32(hdr[0:4]))
		if n > maxRecordSize || recordHeaderSize+n > size-off {
			break // torn record, or a length that cannot be trusted
		}
		if int64(cap(payload)) < n {
			payload = make([]byte, n)
		}
		payload = payload[:n]
		if _, err := io.ReadFull(br, payload); err != nil {
			return fmt.Errorf("reading audit spool segment %s: %w", name, err)
		}
		end := off + recordHeaderSize + n
		if auditdb.CRC32C(payload) != binary.BigEndian.Uint32(hdr[4:8]) {
			if end == size {
				break // the last record is incomplete garbage: a torn tail
			}
			rep.Corrupt++
			rep.Problems = append(rep.Problems, fmt.Sprintf("%s: record at offset %d fails its CRC-32C; skipped (its seq is a gap downstream)", name, off))
			off = end
			continue
		}
		b, err := auditdb.DecodeBatch(payload)
		if err == nil && b.Epoch != s.epoch {
			err = fmt.Errorf("epoch %d is not the spool's epoch %d", b.Epoch, s.epoch)
		}
		if err != nil {
			rep.Corrupt++
			rep.Problems = append(rep.Problems, fmt.Sprintf("%s: record at offset %d: %v; skipped", name, off, err))
			off = end
			continue
		}
		if b.Seq > seg.lastSeq {
			seg.lastSeq = b.Seq
		}
		ok(&b, b.Hash())
		off = end
	}
	seg.size = off
	if off == size {
		return nil
	}
	// A torn tail: keep the cut bytes beside the segment, then truncate so
	// appends continue from the last complete record.
	tail := make([]byte, size-off)
	if _, err := f.ReadAt(tail, off); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("reading the torn tail of audit spool segment %s: %w", name, err)
	}
	side := fmt.Sprintf("%s.torn-%d", seg.path, time.Now().UnixNano())
	if err := os.WriteFile(side, tail, 0o600); err != nil {
		return fmt.Errorf("saving torn tail of audit spool segment %s: %w", name, err)
	}
	if err := os.Truncate(seg.path, off); err != nil {
		return fmt.Errorf("truncating torn tail of audit spool segment %s: %w", name, err)
	}
	rep.TornTails++
	rep.TornBytes += int64(len(tail))
	where := "tail"
	if !last {
		where = "tail of a non-final segment"
	}
	rep.Problems = append(rep.Problems, fmt.Sprintf("%s: torn %s at offset %d (%d bytes, saved to %s) truncated", name, where, off, len(tail), filepath.Base(side)))
	return nil
}

// append writes already framed records holding batches first..last (the
// writer's seqs) in one write, rotating to a new segment first when the
// active one is full. On error nothing is committed: a partial write is cut
// back so the segment still ends at a record boundary.
func (s *spool) append(records []byte, first, last int64, lastHash [32]byte, fsync bool) error {
	s.mu.Lock()
	var seg *segment
	if n := len(s.segs); n > 0 {
		seg = s.segs[n-1]
	}
	s.mu.Unlock()
	// A new segment when none exists, the active one is full, or the seq
	// does not continue the last segment (its tail was lost to corruption).
	if seg == nil || seg.size >= s.segBytes || (seg.size > 0 && seg.lastSeq != first-1) || (seg.size == 0 && seg.firstSeq != first) {
		if err := s.rotate(first); err != nil {
			return err
		}
		s.mu.Lock()
		seg = s.segs[len(s.segs)-1]
		s.mu.Unlock()
	}
	if s.active == nil {
		f, err := os.OpenFile(seg.path, os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return fmt.Errorf("opening audit spool segment: %w", err)
		}
		s.active = f
		s.mu.Lock()
		s.syncFile = f
		s.mu.Unlock()
	}
	if _, err := s.active.Write(records); err != nil {
		if terr := s.active.Truncate(seg.size); terr != nil {
			// The segment now ends in a partial record; recovery will cut
			// it as a torn tail. Stop appending to this file.
			s.active.Close()
			s.active = nil
			return fmt.Errorf("writing audit spool: %w (and cutting the partial write back failed: %v)", err, terr)
		}
		return fmt.Errorf("writing audit spool: %w", err)
	}
	s.dirty.Store(true)
	if fsync {
		if err := s.sync(); err != nil {
			return err
		}
	}
	s.nextSeq, s.prevHash = last+1, lastHash
	s.used.Add(int64(len(records)))
	s.mu.Lock()
	seg.size += int64(len(records))
	seg.lastSeq = last
	for _, ch := range s.notify {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
	s.mu.Unlock()
	return nil
}

// sync fsyncs the active segment if it has unsynced writes. Writer only.
func (s *spool) sync() error {
	if s.active == nil || !s.dirty.Swap(false) {
		return nil
	}
	if err := s.active.Sync(); err != nil {
		s.dirty.Store(true)
		return fmt.Errorf("fsyncing audit spool: %w", err)
	}
	return nil
}

// syncActive is the interval syncer's fsync, run off the writer goroutine
// so a slow fsync never stalls writes. It reports whether it synced.
func (s *spool) syncActive() (bool, error) {
	if !s.dirty.Swap(false) {
		return false, nil
	}
	s.mu.Lock()
	f := s.syncFile
	s.mu.Unlock()
	if f == nil {
		return false, nil
	}
	if err := f.Sync(); err != nil {
		if errors.Is(err, os.ErrClosed) {
			return false, nil // rotated meanwhile; rotation fsyncs the old segment itself
		}
		s.dirty.Store(true)
		return false, fmt.Errorf("fsyncing audit spool: %w", err)
	}
	return true, nil
}

// rotate closes the active segment (fsynced) and creates seg-<first>.log.
func (s *spool) rotate(first int64) error {
	if s.active != nil {
		if err := s.active.Sync(); err != nil {
			return fmt.Errorf("fsyncing audit spool segment before rotation: %w", err)
		}
		s.active.Close()
		s.active = nil
		s.dirty.Store(false)
	}
	path := filepath.Join(s.dir, fmt.Sprintf("%s%020d%s", segPrefix, first, segSuffix))
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("creating audit spool segment: %w", err)
	}
	if err := syncDir(s.dir); err != nil {
		f.Close()
		return err
	}
	s.active = f
	s.mu.Lock()
	s.syncFile = f
	s.segs = append(s.segs, &segment{path: path, firstSeq: first, lastSeq: first - 1})
	s.mu.Unlock()
	return nil
}

func (s *spool) close() error {
	if s.active == nil {
		return nil
	}
	err := s.sync()
	if cerr := s.active.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("closing audit spool segment: %w", cerr)
	}
	s.active = nil
	return err
}

// ack records that consumer name has delivered every batch through seq,
// persists its cursor, and deletes segments every consumer is done with.
// lazy is nil when the consumer's deliveries are durable when they return;
// else its cursor is persisted only after lazy.Sync (see persistLazy).
// Only the consumer's own goroutine acks it.
func (s *spool) ack(name string, seq int64, hash [32]byte, lazy LazySyncer) error {
	s.mu.Lock()
	c := s.consumers[name]
	s.mu.Unlock()
	if c == nil {
		return fmt.Errorf("audit spool: unknown consumer %q", name)
	}
	if lazy == nil {
		if err := s.writeCursor(c, seq, hash); err != nil {
			return err
		}
	} else {
		c.pending, c.pendSeq, c.pendHash = true, seq, hash
		if time.Since(c.syncedAt) >= cursorSyncInterval {
			if err := s.persistLazy(c, lazy); err != nil {
				return err
			}
		}
	}
	s.mu.Lock()
	c.acked, c.hash = seq, hash
	min := c.acked
	for _, o := range s.consumers {
		if o.acked < min {
			min = o.acked
		}
	}
	// Never delete the newest segment: the writer appends to it.
	var drop []*segment
	for len(s.segs) > 1 && s.segs[0].lastSeq <= min {
		drop = append(drop, s.segs[0])
		s.segs = s.segs[1:]
	}
	s.mu.Unlock()
	if len(drop) > 0 {
		// The cursor reaches the disk before the batches it covers leave it.
		err := s.persistLazy(c, lazy)
		if err == nil {
			err = s.syncCursor(c)
		}
		if err != nil {
			s.mu.Lock()
			s.segs = append(drop, s.segs...) // still needed after a crash
			s.mu.Unlock()
			return err
		}
	}
	for _, seg := range drop {
		if err := os.Remove(seg.path); err != nil && !errors.Is(err, os.ErrNotExist) {
			s.log.Error("deleting acknowledged audit spool segment", "path", seg.path, "err", err)
			continue
		}
		s.used.Add(-seg.size)
	}
	return nil
}

// writeCursor persists c as acknowledged through seq. The first write of a
// process replaces the file atomically (an older file may have another
// length); later ones overwrite the same bytes in place, since the line has
// a fixed width for the spool's epoch, and are fsynced lazily (see
// cursorSyncInterval).
func (s *spool) writeCursor(c *cursor, seq int64, hash [32]byte) error {
	c.line = append(c.line[:0], "v1 "...)
	c.line = strconv.AppendInt(c.line, s.epoch, 10)
	c.line = append(c.line, ' ')
	for n := seqDigits(seq); n < 20; n++ { // zero-padded to a fixed width
		c.line = append(c.line, '0')
	}
	c.line = strconv.AppendInt(c.line, seq, 10)
	c.line = append(c.line, ' ')
	c.line = hex.AppendEncode(c.line, hash[:])
	c.line = append(c.line, '\n')
	if c.f == nil {
		if err := writeFileAtomic(s.dir, cursorPrefix+c.name, c.line); err != nil {
			return err
		}
		f, err := os.OpenFile(filepath.Join(s.dir, cursorPrefix+c.name), os.O_WRONLY, 0)
		if err != nil {
			return fmt.Errorf("opening audit spool cursor %q: %w", c.name, err)
		}
		c.f, c.unsynced, c.syncedAt = f, false, time.Now()
		return nil
	}
	if _, err := c.f.WriteAt(c.line, 0); err != nil {
		c.f.Close()
		c.f = nil // rewritten whole by the next ack
		return fmt.Errorf("writing audit spool cursor %q: %w", c.name, err)
	}
	c.unsynced = true
	if time.Since(c.syncedAt) >= cursorSyncInterval {
		return s.syncCursor(c)
	}
	return nil
}

// seqDigits is how many decimal digits seq (>= 0) has.
func seqDigits(seq int64) int {
	n := 1
	for seq >= 10 {
		seq /= 10
		n++
	}
	return n
}

// syncCursor fsyncs c's file if an ack was written to it since the last fsync.
func (s *spool) syncCursor(c *cursor) error {
	if c.f == nil || !c.unsynced {
		return nil
	}
	if err := c.f.Sync(); err != nil {
		return fmt.Errorf("fsyncing audit spool cursor %q: %w", c.name, err)
	}
	c.unsynced, c.syncedAt = false, time.Now()
	return nil
}

// persistLazy makes a LazySyncer consumer's deliveries durable (lazy.Sync)
// and then writes and fsyncs its cursor, if it acknowledged anything since.
func (s *spool) persistLazy(c *cursor, lazy LazySyncer) error {
	if lazy == nil || !c.pending {
		return nil
	}
	if err := lazy.Sync(); err != nil {
		return err
	}
	if err := s.writeCursor(c, c.pendSeq, c.pendHash); err != nil {
		return err
	}
	c.pending = false
	return s.syncCursor(c)
}

// closeCursor persists and closes consumer name's cursor file, when its
// goroutine stops.
func (s *spool) closeCursor(name string, lazy LazySyncer) error {
	s.mu.Lock()
	c := s.consumers[name]
	s.mu.Unlock()
	if c == nil {
		return nil
	}
	if err := s.persistLazy(c, lazy); err != nil {
		return err
	}
	if c.f == nil {
		return nil
	}
	err := s.syncCursor(c)
	if cerr := c.f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("closing audit spool cursor %q: %w", c.name, cerr)
	}
	c.f = nil
	return err
}

// minAcked is the lowest seq every consumer has acknowledged.
func (s *spool) minAcked() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	min := int64(0)
	first := true
	for _, c := range s.consumers {
		if first || c.acked < min {
			min, first = c.acked, false
		}
	}
	return min
}

// reader reads records in seq order for one consumer.
type reader struct {
	s      *spool
	name   string
	notify chan struct{}

	// Owned by the consumer's goroutine.
	after  int64 // deliver batches with seq > after
	segIdx int64 // firstSeq of the segment being read
	off    int64
	f      *os.File
	// buf holds bytes of the segment from offset bufOff, read with one
	// pread for many records. The batches a read hands out alias it, so
	// while they are out (bufLent) a new chunk goes into another buffer:
	// lent holds the earlier chunks the current read's batches alias, and
	// spare a buffer no batch aliases any more. A sink is done with a
	// read's batches when the next read starts (see read), so the chunks
	// are overwritten only then: a fresh buffer per chunk was ~0.8 KB of
	// garbage per event.
	buf     []byte
	bufOff  int64
	bufLent bool
	lent    [][]byte
	spare   []byte
	linger  *time.Timer
	out     []SealedBatch // read's result, reused
}

// readChunk is the most one pread of a reader asks for (more when one
// record is bigger).
const readChunk = 256 << 10

// deliverLinger is how long a sink that had caught up waits after the
// writer's next write before reading, so that one delivery (a read, a
// Deliver, an ack) carries the batches of many group commits: with sync
// callers at low concurrency every call is a batch of its own. Callers
// never wait for sinks; it only delays delivery.
const deliverLinger = 5 * time.Millisecond

func (s *spool) newReader(name string) *reader {
	ch := make(chan struct{}, 1)
	s.mu.Lock()
	s.notify = append(s.notify, ch)
	after := s.consumers[name].acked
	s.mu.Unlock()
	return &reader{s: s, name: name, notify: ch, after: after, segIdx: -1}
}

// rewind makes the reader deliver again everything after the acked cursor.
func (r *reader) rewind() {
	r.s.mu.Lock()
	r.after = r.s.consumers[r.name].acked
	r.s.mu.Unlock()
	r.closeFile()
	r.segIdx, r.off = -1, 0
}

func (r *reader) closeFile() {
	if r.f != nil {
		r.f.Close()
		r.f = nil
	}
	r.dropBuf()
}

// dropBuf retires the current chunk: to lent while batches of this read
// alias it, else to spare.
func (r *reader) dropBuf() {
	buf, lent := r.buf, r.bufLent
	r.buf, r.bufOff, r.bufLent = nil, 0, false
	if buf == nil {
		return
	}
	if lent {
		r.lent = append(r.lent, buf)
	} else {
		r.recycle(buf)
	}
}

// recycle offers buf, which no batch aliases any more, for reuse. Between
// reads a reader keeps one buffer, the largest it has (as the spare, or
// as buf when that is larger and not lent), as it kept one chunk when it
// allocated each: a catch-up read lends many chunks at once, and keeping
// them would hold a delivery's worth (8-16 MiB) for good. The largest,
// because a read that outruns its chunk (the writer appended meanwhile)
// continues in a small new one, and keeping that instead would allocate
// again on every such read. An outsized record's buffer is left to the
// collector.
func (r *reader) recycle(buf []byte) {
	if cap(buf) > readChunk {
		return
	}
	if r.buf != nil {
		if r.bufLent || cap(r.buf) >= cap(buf) {
			return
		}
		r.buf, r.bufOff = nil, 0 // a smaller chunk; only a cache
	}
	if cap(buf) > cap(r.spare) {
		r.spare = buf
	}
}

// chunkCap is the capacity to allocate for a chunk of size bytes: a power
// of two from 4 KiB, so that a reader's buffer soon fits its usual
// deliveries and is reused, without every reader holding a full readChunk
// while idle.
func chunkCap(size int64) int64 {
	if size >= readChunk {
		return size
	}
	c := int64(4 << 10)
	for c < size {
		c <<= 1
	}
	return c
}

// release is called when a new read starts: the caller is done with the
// batches of the previous one, so every chunk they alias may be
// overwritten.
func (r *reader) release() {
	r.bufLent = false
	for i, b := range r.lent {
		r.recycle(b)
		r.lent[i] = nil
	}
	r.lent = r.lent[:0]
}

// bytesAt returns n bytes of the current segment at off (off+n <= limit,
// the segment's complete size), from the chunk read last if it holds them.
// A new chunk overwrites a buffer that no batch handed out aliases.
func (r *reader) bytesAt(off, n, limit int64) ([]byte, error) {
	if off >= r.bufOff && off+n <= r.bufOff+int64(len(r.buf)) {
		return r.buf[off-r.bufOff : off-r.bufOff+n], nil
	}
	size := min(max(n, readChunk), limit-off)
	var buf []byte
	if !r.bufLent && int64(cap(r.buf)) >= size {
		buf = r.buf // no batch handed out aliases it
	} else {
		if r.bufLent {
			r.lent = append(r.lent, r.buf)
		} // else it is too small: left to the collector
		if int64(cap(r.spare)) >= size {
			buf = r.spare
		} else {
			buf = make([]byte, 0, chunkCap(size))
		}
		r.spare = nil
	}
	buf = buf[:size]
	r.buf, r.bufOff, r.bufLent = nil, 0, false
	if _, err := r.f.ReadAt(buf, off); err != nil && !errors.Is(err, io.EOF) {
		r.recycle(buf)
		return nil, err
	}
	r.buf, r.bufOff = buf, off
	return buf[:n], nil
}

// next returns up to maxBatches batches (at least one, up to about
// maxBytes) with seq > the last one returned, blocking until one exists.
// Once the writer has stopped (writerDone closed) and nothing is left, it
// returns errCaughtUp.
func (r *reader) next(ctx context.Context, writerDone <-chan struct{}, maxBatches int, maxBytes int) ([]SealedBatch, error) {
	for {
		select {
		case <-writerDone:
			out, err := r.read(maxBatches, maxBytes)
			if err == nil && len(out) == 0 {
				return nil, errCaughtUp
			}
			return out, err
		default:
		}
		out, err := r.read(maxBatches, maxBytes)
		if err != nil || len(out) > 0 {
			return out, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-r.notify:
			if !r.wait(ctx, writerDone, deliverLinger) {
				return nil, ctx.Err()
			}
		case <-writerDone:
		}
	}
}

// wait sleeps for d, or until the writer stops; false if ctx ended.
func (r *reader) wait(ctx context.Context, writerDone <-chan struct{}, d time.Duration) bool {
	if r.linger == nil {
		r.linger = time.NewTimer(d)
	} else {
		r.linger.Reset(d)
	}
	select {
	case <-ctx.Done():
		r.linger.Stop()
		return false
	case <-writerDone:
		r.linger.Stop()
	case <-r.linger.C:
	}
	return true
}

var errCaughtUp = errors.New("audit sink caught up with a stopped writer")

// read returns the next batches after r.after. The slice, and the chunk
// buffers the batches' Lines and Raw alias, are r's own and are reused by
// its next read (a delivery used to grow a new slice, ~0.5 KB per event,
// and a new chunk, ~0.8 KB per event): callers are done with the batches
// before they read again, as runSink is once it has delivered and
// acknowledged them (Sink says a sink keeps nothing of them after Deliver
// returns).
func (r *reader) read(maxBatches, maxBytes int) ([]SealedBatch, error) {
	r.release()
	clear(r.out) // drop the previous batches' references to their chunks
	out, err := r.readInto(r.out[:0], maxBatches, maxBytes)
	if cap(out) <= 256 {
		r.out = out
	}
	return out, err
}

func (r *reader) readInto(out []SealedBatch, maxBatches, maxBytes int) ([]SealedBatch, error) {
	total := 0
	for len(out) < maxBatches && total < maxBytes {
		// Find the segment holding seq after+1.
		r.s.mu.Lock()
		var seg *segment
		var limit int64
		for _, sg := range r.s.segs {
			if sg.lastSeq > r.after && sg.size > 0 {
				seg, limit = sg, sg.size
				break
			}
		}
		r.s.mu.Unlock()
		if seg == nil {
			return out, nil
		}
		if r.segIdx != seg.firstSeq {
			r.closeFile()
			f, err := os.Open(seg.path)
			if err != nil {
				return out, fmt.Errorf("opening audit spool segment for reading: %w", err)
			}
			r.f, r.segIdx, r.off = f, seg.firstSeq, 0
		}
		if r.off >= limit {
			// Every record of the segment was read, yet it claims a later
			// seq: its last records were unreadable (reported and counted
			// when skipped). Move past them unless the writer may still
			// append here.
			r.s.mu.Lock()
			isLast := r.s.segs[len(r.s.segs)-1] == seg
			r.s.mu.Unlock()
			if isLast {
				return out, nil
			}
			r.after = seg.lastSeq
			continue
		}
		if r.off+recordHeaderSize > limit {
			r.s.corrupt.Add(1)
			return out, fmt.Errorf("audit spool segment %s: record header at offset %d runs past the segment's end", filepath.Base(seg.path), r.off)
		}
		hdr, err := r.bytesAt(r.off, recordHeaderSize, limit)
		if err != nil {
			return out, fmt.Errorf("reading audit spool record header: %w", err)
		}
		n := int64(binary.BigEndian.Uint32(hdr[0:4]))
		if n > maxRecordSize || r.off+recordHeaderSize+n > limit {
			r.s.corrupt.Add(1)
			return out, fmt.Errorf("audit spool segment %s: record at offset %d has an impossible length %d", filepath.Base(seg.path), r.off, n)
		}
		crc := binary.BigEndian.Uint32(hdr[4:8])
		payload, err := r.bytesAt(r.off+recordHeaderSize, n, limit)
		if err != nil {
			return out, fmt.Errorf("reading audit spool record: %w", err)
		}
		at := r.off
		r.off += recordHeaderSize + n
		if auditdb.CRC32C(payload) != crc {
			r.s.corrupt.Add(1)
			r.s.log.Error("audit spool record fails its CRC-32C; skipped, its seq will be a gap downstream", "segment", seg.path, "offset", at)
			continue
		}
		b, err := auditdb.DecodeBatch(payload)
		if err != nil {
			r.s.corrupt.Add(1)
			r.s.log.Error("audit spool record does not decode; skipped", "segment", seg.path, "offset", at, "err", err)
			continue
		}
		if b.Seq <= r.after {
			continue
		}
		r.after = b.Seq
		r.bufLent = true // payload aliases r.buf
		out = append(out, SealedBatch{Batch: b, Hash: b.Hash(), Raw: payload})
		total += len(payload)
	}
	return out, nil
}

// appendRecord appends b as one record (length, CRC-32C, payload: b's
// spool encoding) to dst. The payload is encoded in place and the header
// filled in after it: encoding it elsewhere first copied every event's
// bytes once more.
func appendRecord(dst []byte, b *auditdb.Batch) []byte {
	at := len(dst)
	dst = append(dst, make([]byte, recordHeaderSize)...)
	dst = b.AppendBinary(dst)
	payload := dst[at+recordHeaderSize:]
	binary.BigEndian.PutUint32(dst[at:], uint32(len(payload)))
	binary.BigEndian.PutUint32(dst[at+4:], auditdb.CRC32C(payload))
	return dst
}

func readEpoch(dir string) (int64, error) {
	b, err := os.ReadFile(filepath.Join(dir, epochFile))
	if err != nil {
		return 0, err
	}
	e, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil || e < 0 {
		return 0, fmt.Errorf("audit spool %s holds %q, not an epoch", epochFile, b)
	}
	return e, nil
}

// readCursor loads a consumer's cursor; a missing cursor or one from an
// earlier epoch means nothing of this epoch is acknowledged.
func readCursor(dir, name string, epoch int64) (*cursor, error) {
	c := &cursor{name: name}
	b, err := os.ReadFile(filepath.Join(dir, cursorPrefix+name))
	if errors.Is(err, os.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading audit spool cursor %q: %w", name, err)
	}
	f := strings.Fields(string(b))
	if len(f) != 4 || f[0] != "v1" {
		return nil, fmt.Errorf("audit spool cursor %q is malformed: %q", name, b)
	}
	e, err1 := strconv.ParseInt(f[1], 10, 64)
	seq, err2 := strconv.ParseInt(f[2], 10, 64)
	h, err3 := hex.DecodeString(f[3])
	if err1 != nil || err2 != nil || err3 != nil || len(h) != 32 {
		return nil, fmt.Errorf("audit spool cursor %q is malformed: %q", name, b)
	}
	if e != epoch {
		return c, nil
	}
	c.acked = seq
	copy(c.hash[:], h)
	return c, nil
}

// writeFileAtomic replaces dir/name with data: temp file, fsync, rename,
// fsync of the directory, so a crash leaves the old or the new content.
func writeFileAtomic(dir, name string, data []byte) error {
	tmp, err := os.CreateTemp(dir, "."+name+".tmp-*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", name, err)
	}
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), filepath.Join(dir, name))
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("writing %s: %w", name, err)
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("opening %s to fsync it: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsyncing %s: %w", dir, err)
	}
	return nil
}
