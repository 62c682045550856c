package auditlog

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mcpgw/mcpgw/internal/audit"
	"github.com/mcpgw/mcpgw/internal/auditdb"
	"github.com/mcpgw/mcpgw/internal/wait"
)

// SealedBatch is a spooled batch as sinks receive it: the batch (its Lines
// are the AuditBatch payload and CRC their CRC-32C), its Hash (the
// AuditBatch hash and the next batch's PrevHash), and Raw, the spool record
// it was read from.
type SealedBatch struct {
	auditdb.Batch
	Hash [32]byte
	Raw  []byte
}

// Sink is a destination of audit batches. The Log calls Deliver from one
// goroutine per sink, with contiguous batches oldest first; nil means every
// batch is durable at the sink, and the sink's cursor moves past them.
// After an error the same batches (identical bytes) are delivered again
// after a backoff, so a sink must make redelivery harmless: the file sink
// skips what it already wrote, Postgres ignores a known (node, epoch, seq),
// and an AuditStream shipper can be a third Sink.
//
// The batches, and the bytes their Lines and Raw alias, are the sink's to
// read only until Deliver returns: the Log reads the next ones into the
// same memory (never after a Deliver that ended with its ctx: the sink's
// goroutine stops then). A sink that needs any of it later copies it (the
// file sink writes it out, Postgres encodes it in the transaction, the
// shipper returns only once every batch is sent and acknowledged).
type Sink interface {
	// Name is stable across restarts ([a-z0-9_-], at most 32): it names the
	// sink's cursor file in the spool directory.
	Name() string
	Deliver(ctx context.Context, batches []SealedBatch) error
}

// LazySyncer is implemented by a sink whose Deliver leaves the batches
// written but not yet durable against a machine crash (the file sink's
// write(2) survives the process, not the kernel): Sync makes everything
// delivered so far durable. The Log writes such a sink's cursor only after
// a Sync, which it calls at most once a second (cursorSyncInterval),
// before deleting acknowledged spool segments, and when the sink stops;
// after a crash the sink is given again what it got since, so it must also
// skip what it already stored (the file sink is a resumer). One fsync a
// second replaces one per delivery, which at low concurrency with sync
// durability is one per call.
type LazySyncer interface {
	Sync() error
}

// How much one Deliver call carries, unless the sink says otherwise.
const (
	deliverMaxBatches = 64
	deliverMaxBytes   = 8 << 20
)

// DeliveryLimiter is implemented by a sink that wants more (or fewer)
// batches per Deliver than the default 64 batches / 8 MiB: Postgres
// amortizes a commit over many small batches, a shipper matches its
// in-flight window.
type DeliveryLimiter interface {
	MaxDelivery() (batches, bytes int)
}

// resumer is implemented by a sink that keeps its own durable record of
// what it stored last (the file sink: its file's last line). Before the
// sink's first delivery the Log looks for that event in the spooled batches
// after the sink's cursor, and starts delivering at the batch holding it:
// a cursor left behind by a crash (it is fsynced lazily) then costs
// nothing downstream, however many batches it is behind.
type resumer interface {
	// lastStored returns the identity (lineIdentity) of the last line
	// the sink stored, or nil when it stored nothing.
	lastStored() ([]byte, error)
}

// sinkState is the Log's view of one sink.
type sinkState struct {
	sink Sink
	r    *reader

	// mu guards healthy and status.
	mu      sync.Mutex
	healthy bool
	status  string

	delivered    atomic.Uint64 // events
	errors       atomic.Uint64
	pendingSince atomic.Int64 // Unix µs of the oldest event being delivered; 0 when caught up
}

func (s *sinkState) setHealth(ok bool, status string) {
	s.mu.Lock()
	s.healthy, s.status = ok, status
	s.mu.Unlock()
}

func (s *sinkState) health() (bool, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.healthy, s.status
}

// runSink delivers spooled batches to one sink until ctx ends, or until the
// writer has stopped and the sink has caught up.
func (l *Log) runSink(ctx context.Context, s *sinkState) error {
	name := s.sink.Name()
	maxBatches, maxBytes := deliverMaxBatches, deliverMaxBytes
	if dl, ok := s.sink.(DeliveryLimiter); ok {
		if b, n := dl.MaxDelivery(); b > 0 && n > 0 {
			maxBatches, maxBytes = b, n
		}
	}
	lazy, _ := s.sink.(LazySyncer)
	defer func() {
		if err := l.spool.closeCursor(name, lazy); err != nil {
			l.log.Error("persisting audit sink cursor", "sink", name, "err", err)
		}
	}()
	if rs, ok := s.sink.(resumer); ok {
		l.resume(s, rs)
	}
	backoff := l.cfg.RetryMin
	var batches []SealedBatch
	for {
		if batches == nil {
			var err error
			batches, err = s.r.next(ctx, l.writerDone, maxBatches, maxBytes)
			if errors.Is(err, errCaughtUp) || ctx.Err() != nil {
				s.pendingSince.Store(0)
				return nil
			}
			if err != nil {
				// An unreadable spool record: reported and counted by the
				// reader; retry after a pause rather than spin.
				s.errors.Add(1)
				s.setHealth(false, err.Error())
				l.log.Error("reading audit spool for sink", "sink", name, "err", err)
				if !wait.For(ctx, backoff) {
					return nil
				}
				backoff = min(2*backoff, l.cfg.RetryMax)
				continue
			}
			s.pendingSince.Store(oldestIn(batches))
		}
		err := s.sink.Deliver(ctx, batches)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			s.errors.Add(1)
			if ok, _ := s.health(); ok {
				l.log.Error("audit sink failing; batches stay in the spool and are retried", "sink", name, "err", err)
			}
			s.setHealth(false, err.Error())
			// Jitter so many edges do not retry a recovering database in step.
			d := backoff/2 + rand.N(backoff/2+1)
			if !wait.For(ctx, d) {
				return nil
			}
			backoff = min(2*backoff, l.cfg.RetryMax)
			continue
		}
		last := batches[len(batches)-1]
		if err := l.spool.ack(name, last.Seq, last.Hash, lazy); err != nil {
			// Delivered but not recorded: the batches will be delivered
			// again after a restart, which sinks tolerate.
			s.errors.Add(1)
			s.setHealth(false, err.Error())
			l.log.Error("persisting audit sink cursor", "sink", name, "err", err)
		} else if ok, _ := s.health(); !ok {
			l.log.Info("audit sink delivering again", "sink", name)
			s.setHealth(true, "ok")
		}
		n := 0
		for i := range batches {
			n += batches[i].Count
		}
		s.delivered.Add(uint64(n))
		s.pendingSince.Store(0)
		l.updateFull()
		batches, backoff = nil, l.cfg.RetryMin
	}
}

// oldestIn returns the Unix µs of the first event (or gap) of the batches.
func oldestIn(bs []SealedBatch) int64 {
	for i := range bs {
		if !bs[i].GapFirst.IsZero() {
			return bs[i].GapFirst.UnixMicro()
		}
		if t, ok := firstEventTime(bs[i].Lines); ok {
			return t.UnixMicro()
		}
	}
	return time.Now().UnixMicro()
}

// firstEventTime reads ts from the first canonical event line without
// decoding it: the canonical encoding puts id then ts at fixed offsets.
func firstEventTime(lines []byte) (time.Time, bool) {
	const pre = `{"id":"` + "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx" + `","ts":"`
	n := len(pre) + len(audit.TimeFormat)
	if len(lines) < n || string(lines[:7]) != `{"id":"` {
		return time.Time{}, false
	}
	t, err := time.Parse(audit.TimeFormat, string(lines[len(pre):n]))
	return t, err == nil
}

// resume moves s's reader to the spooled batch holding the last line the
// sink stored, if that batch is after the sink's cursor (the cursor is
// behind after a machine crash). The sink skips the lines up to that one in
// its first delivery.
func (l *Log) resume(s *sinkState, rs resumer) {
	mark, err := rs.lastStored()
	if err != nil || mark == nil {
		if err != nil {
			// The sink's first delivery tries again and fails visibly.
			l.log.Warn("audit sink: cannot read what it stored last; not resuming past its cursor", "sink", s.sink.Name(), "err", err)
		}
		return
	}
	r := &reader{s: l.spool, name: s.r.name, after: s.r.after, segIdx: -1}
	defer r.closeFile()
	found := int64(0)
	for {
		bs, err := r.read(deliverMaxBatches, deliverMaxBytes)
		if err != nil || len(bs) == 0 {
			break
		}
		for i := range bs {
			if batchHolds(&bs[i], mark) {
				found = bs[i].Seq
			}
		}
	}
	if found > s.r.after+1 {
		l.log.Info("audit sink resumes after what it already stored", "sink", s.sink.Name(),
			"cursor", s.r.after, "resume_at", found)
		s.r.after = found - 1
	}
}

// batchHolds reports whether b holds the line whose identity is mark.
func batchHolds(b *SealedBatch, mark []byte) bool {
	if b.DroppedBefore > 0 && bytes.Equal(lineIdentity(appendGapLine(nil, b)), mark) {
		return true
	}
	if !bytes.Contains(b.Lines, mark) {
		return false
	}
	found := false
	_ = b.EachLine(func(line []byte) error {
		if bytes.Equal(lineIdentity(line), mark) {
			found = true
		}
		return nil
	})
	return found
}
