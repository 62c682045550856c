package auditlog

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/mcpgw/mcpgw/internal/audit"
	"github.com/mcpgw/mcpgw/internal/auditdb"
)

// ErrAuditUnavailable is returned by Record (and Available) when an event
// cannot be recorded: the spool is full or unwritable under on_full: refuse,
// or the log is shut down. The gateway maps it to HTTP 503 and a JSON-RPC
// error saying audit is unavailable; it clears by itself once the sinks have
// drained the spool or the disk is writable again.
var ErrAuditUnavailable = errors.New("audit unavailable")

// The refusals, made once: refusing must stay cheap when it happens for
// every request.
var (
	errShutDown     = fmt.Errorf("%w: the audit log is shut down", ErrAuditUnavailable)
	errSpoolFull    = fmt.Errorf("%w: the audit spool is full", ErrAuditUnavailable)
	errSpoolFailing = fmt.Errorf("%w: the audit spool cannot be written", ErrAuditUnavailable)
	errQueueFull    = fmt.Errorf("%w: the audit queue is full (the spool writer is behind)", ErrAuditUnavailable)
)

// Log is the edge's audit pipeline: Record hands events to one writer
// that seals them into hash-chained batches in an append-only spool, and one
// goroutine per Sink delivers the spooled batches and acknowledges them.
// Construct with Open, then call Run; Record may be called concurrently
// from any number of goroutines once Open returned.
type Log struct {
	cfg   Config
	log   *slog.Logger
	spool *spool
	q     *ring
	sinks []*sinkState
	sync  bool
	drop  bool

	full         atomic.Bool  // new events are refused or dropped
	writeFailing atomic.Bool  // the last spool write failed
	closed       atomic.Bool  // Run has ended (or is ending): refuse everything
	inflight     atomic.Int64 // Records between their closed check and their event queued (or written)
	waiting      atomic.Int64 // sync Records waiting for the writer
	started      atomic.Bool

	enqueued atomic.Uint64 // events taken by the writer
	written  atomic.Uint64 // events written to the spool
	dropped  atomic.Uint64
	refused  atomic.Uint64
	writes   atomic.Uint64 // spool writes (one per group commit)
	fsyncs   atomic.Uint64
	sealed   atomic.Uint64 // batches sealed
	spoolErr atomic.Uint64 // failed spool writes

	// dropMu guards dropN, dropFirst and dropLast. It is taken only on the
	// drop path (spool full under on_full: drop), never by a normal Record.
	dropMu    sync.Mutex
	dropN     int64
	dropFirst time.Time
	dropLast  time.Time

	bufs    sync.Pool // *[]byte holding one encoded event
	waiters sync.Pool // *waiter

	// wmu makes one goroutine at a time the spool's writer: the writer
	// goroutine (writeLoop), or a sync Record that finds the lock free and
	// writes its own batch (see RecordWithin), once Run has started and
	// until it closes. w is the writer's state, touched only under wmu.
	wmu sync.Mutex
	w   *writer

	writerDone chan struct{}
	lock       *os.File // holds the spool directory's exclusive flock until Run returns
}

// lockDir takes an exclusive lock on dir/LOCK so two processes (or two Logs)
// never append to one spool.
func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, "LOCK"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("locking audit spool: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("audit spool %s is in use by another process or Log: %w", dir, err)
	}
	return f, nil
}

// waiter is how a sync Record learns that its event is in the spool. t
// bounds RecordWithin's wait; it is pooled with the waiter, so the bound
// costs no allocation per call.
type waiter struct {
	ch chan error
	t  *time.Timer
}

// maxPooledBuf keeps an occasional huge event from pinning a huge buffer.
const maxPooledBuf = 64 << 10

// Open opens (creating or recovering) the spool in cfg.Dir for the given
// sinks. It starts no goroutine; call Run. Every sink needs a distinct Name:
// it names the sink's cursor in the spool directory. The directory is
// locked (flock on LOCK) from Open until Run returns, so two processes
// never append to one spool.
func Open(cfg Config, sinks ...Sink) (*Log, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if len(sinks) == 0 {
		return nil, errors.New("audit log: at least one sink is required (a file, Postgres, or the control plane)")
	}
	names := make([]string, 0, len(sinks))
	for _, s := range sinks {
		n := s.Name()
		if !validSinkName(n) {
			return nil, fmt.Errorf("audit log: sink name %q must be 1-32 of [a-z0-9_-]", n)
		}
		for _, o := range names {
			if o == n {
				return nil, fmt.Errorf("audit log: two sinks are named %q", n)
			}
		}
		names = append(names, n)
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating audit spool dir: %w", err)
	}
	lock, err := lockDir(cfg.Dir)
	if err != nil {
		return nil, err
	}
	sp, rep, err := openSpool(cfg.Dir, cfg.SegmentBytes, names, cfg.Logger)
	if err != nil {
		lock.Close()
		return nil, err
	}
	l := &Log{
		cfg:        cfg,
		log:        cfg.Logger,
		spool:      sp,
		q:          newRing(cfg.QueueSize),
		sync:       cfg.Durability == DurabilitySync,
		drop:       cfg.OnFull == OnFullDrop,
		writerDone: make(chan struct{}),
		lock:       lock,
	}
	l.w = &writer{l: l, nextSeq: sp.nextSeq, prevHash: sp.prevHash, backoff: cfg.RetryMin}
	l.bufs.New = func() any { b := make([]byte, 0, 1024); return &b }
	l.waiters.New = func() any { return &waiter{ch: make(chan error, 1)} }
	for _, s := range sinks {
		l.sinks = append(l.sinks, &sinkState{sink: s, r: sp.newReader(s.Name()), healthy: true, status: "ok"})
	}
	l.updateFull()
	cfg.Logger.Info("audit spool opened", "dir", cfg.Dir, "epoch", rep.Epoch, "segments", rep.Segments,
		"batches", rep.Batches, "next_seq", rep.NextSeq, "torn_tails", rep.TornTails,
		"corrupt_records", rep.Corrupt, "chain_breaks", rep.ChainBreaks, "durability", cfg.Durability, "on_full", cfg.OnFull)
	return l, nil
}

func validSinkName(n string) bool {
	if n == "" || len(n) > 32 {
		return false
	}
	for _, c := range n {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '_' && c != '-' {
			return false
		}
	}
	return true
}

// Available returns ErrAuditUnavailable when Record would refuse an event
// right now. The gateway calls it before forwarding a request, so that under
// on_full: refuse a call is turned away before it has any effect upstream.
func (l *Log) Available() error {
	if l.closed.Load() {
		return errShutDown
	}
	if l.full.Load() && !l.drop {
		return l.unavailable()
	}
	return nil
}

func (l *Log) unavailable() error {
	if l.writeFailing.Load() {
		return errSpoolFailing
	}
	return errSpoolFull
}

// Record validates ev and hands it to the writer. In sync mode it returns
// once the event is written to the spool (the caller may then release its
// response); in async mode it returns at once and never blocks. It returns
// ErrAuditUnavailable (wrapped) when the event is refused; under on_full:
// drop a full spool makes it count the event as dropped and return nil.
// ctx bounds only the wait in sync mode; an event already queued when ctx
// ends is still written.
func (l *Log) Record(ctx context.Context, ev *audit.Event) error {
	return l.RecordWithin(ctx, ev, 0)
}

// RecordWithin is Record with the sync wait bounded by d as well as by ctx
// (d <= 0: by ctx only). It spares the caller a context.WithTimeout per
// event (a context, a timer and a child entry in the request's context).
func (l *Log) RecordWithin(ctx context.Context, ev *audit.Event, d time.Duration) error {
	if err := ev.Validate(); err != nil {
		return err
	}
	l.inflight.Add(1)
	if l.closed.Load() {
		l.inflight.Add(-1)
		l.refused.Add(1)
		return errShutDown
	}
	if l.full.Load() {
		l.inflight.Add(-1)
		return l.overflow(ev, l.unavailable())
	}
	bp := l.bufs.Get().(*[]byte)
	*bp = ev.AppendJSON((*bp)[:0])
	if l.sync && l.inflight.Load() == 1 && l.waiting.Load() == 0 && l.started.Load() && l.wmu.TryLock() {
		// Alone, and nobody is writing: write this event's batch here
		// instead of handing it to the writer goroutine and being handed
		// the result back. At low concurrency that hand-off was two
		// cross-thread wake-ups per call, most of what sync audit cost a
		// request. With other callers about, the events go through the
		// queue as before, so that one write carries many of them (a
		// caller writing for itself there was measured slower: a write
		// and a batch per event instead of per group).
		if done, err := l.lead(bp); done {
			l.wmu.Unlock()
			l.inflight.Add(-1)
			return err
		}
		l.wmu.Unlock()
	}
	var w *waiter
	if l.sync {
		w = l.waiters.Get().(*waiter)
	}
	var waitStart time.Time
	for !l.q.push(entry{buf: bp, w: w}) {
		if !l.sync {
			l.inflight.Add(-1)
			l.bufs.Put(bp)
			return l.overflow(ev, errQueueFull)
		}
		// A sync caller waits for room: the queue is only full when the
		// disk is slower than the callers, and they are waiting anyway.
		err := ctx.Err()
		if d > 0 && err == nil {
			if waitStart.IsZero() {
				waitStart = time.Now()
			} else if time.Since(waitStart) >= d {
				err = context.DeadlineExceeded
			}
		}
		if err != nil || l.closed.Load() {
			l.inflight.Add(-1)
			l.bufs.Put(bp)
			l.waiters.Put(w)
			l.refused.Add(1)
			if err == nil {
				err = errors.New("the audit log is shut down")
			}
			return fmt.Errorf("%w: waiting for room in the audit queue: %v", ErrAuditUnavailable, err)
		}
		runtime.Gosched()
	}
	if w == nil {
		l.inflight.Add(-1)
		return nil
	}
	l.waiting.Add(1)
	l.inflight.Add(-1)
	defer l.waiting.Add(-1)
	var timeout <-chan time.Time
	if d > 0 {
		if w.t == nil {
			w.t = time.NewTimer(d)
		} else {
			w.t.Reset(d)
		}
		timeout = w.t.C
	}
	select {
	case err := <-w.ch:
		if timeout != nil {
			w.t.Stop()
		}
		l.waiters.Put(w)
		return err
	case <-ctx.Done():
		if timeout != nil {
			w.t.Stop()
		}
		// The writer still owns w; leave it to the garbage collector.
		return fmt.Errorf("waiting for the audit event to be spooled: %w", ctx.Err())
	case <-timeout:
		return fmt.Errorf("waiting for the audit event to be spooled: %w", context.DeadlineExceeded)
	}
}

// overflow handles an event that found the spool full (or the queue full
// in async mode): refused with why, or dropped and counted.
func (l *Log) overflow(ev *audit.Event, why error) error {
	if !l.drop {
		l.refused.Add(1)
		return why
	}
	l.dropped.Add(1)
	l.dropMu.Lock()
	if l.dropN == 0 || ev.TS.Before(l.dropFirst) {
		l.dropFirst = ev.TS
	}
	if l.dropN == 0 || ev.TS.After(l.dropLast) {
		l.dropLast = ev.TS
	}
	l.dropN++
	l.dropMu.Unlock()
	return nil
}

func (l *Log) takeGap() (n int64, first, last time.Time) {
	l.dropMu.Lock()
	n, first, last = l.dropN, l.dropFirst, l.dropLast
	l.dropN, l.dropFirst, l.dropLast = 0, time.Time{}, time.Time{}
	l.dropMu.Unlock()
	return n, first, last
}

func (l *Log) gapPending() bool {
	l.dropMu.Lock()
	defer l.dropMu.Unlock()
	return l.dropN > 0
}

func (l *Log) updateFull() {
	full := l.writeFailing.Load() || l.spool.used.Load() >= l.cfg.MaxBytes
	if l.full.Swap(full) != full && full {
		// The writer polls while the spool is full, to record a gap
		// soon after space is freed; it may be asleep with no deadline
		// when a sync caller's own write filled the spool.
		l.wakeWriter()
	}
}

// wakeWriter wakes writeLoop if it sleeps.
func (l *Log) wakeWriter() {
	select {
	case l.q.wake <- struct{}{}:
	default:
	}
}

// Run writes and delivers until ctx ends, then stops taking events, writes
// what was queued, gives the sinks up to ShutdownDrain to deliver the rest
// (anything left stays spooled for the next start), and returns.
func (l *Log) Run(ctx context.Context) error {
	if !l.started.CompareAndSwap(false, true) {
		return errors.New("audit log: Run called twice")
	}
	defer l.lock.Close() // releases the flock: the spool is closed by now
	sinkCtx, cancelSinks := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelSinks()
	var g, sg errgroup.Group
	g.Go(func() error {
		defer close(l.writerDone)
		return l.writeLoop(ctx)
	})
	if l.cfg.Fsync == FsyncInterval {
		g.Go(func() error { l.syncLoop(l.writerDone); return nil })
	}
	for _, s := range l.sinks {
		sg.Go(func() error { return l.runSink(sinkCtx, s) })
	}
	sinksDone := make(chan struct{})
	g.Go(func() error {
		defer close(sinksDone)
		return sg.Wait()
	})
	g.Go(func() error {
		select {
		case <-sinksDone:
			return nil
		case <-l.writerDone:
		}
		t := time.NewTimer(l.cfg.ShutdownDrain)
		defer t.Stop()
		select {
		case <-t.C:
			cancelSinks()
		case <-sinksDone:
		}
		return nil
	})
	return g.Wait()
}

// batchBuilder collects events for the next batch.
type batchBuilder struct {
	lines   []byte
	count   int
	waiters []*waiter
	first   time.Time
}

// pendingWrite is sealed batches (framed records) not yet in the spool. A
// sealed batch is immutable: a failed write is retried with these bytes.
type pendingWrite struct {
	records  []byte
	first    int64
	last     int64
	lastHash [32]byte
	events   int
	waiters  []*waiter
}

// writer is the spool writer's state, touched only under Log.wmu.
type writer struct {
	l        *Log
	cur      batchBuilder
	pend     pendingWrite
	nextSeq  int64
	prevHash [32]byte

	retryAt time.Time     // when a failed write may be retried (zero: now)
	backoff time.Duration // the next retry's delay
	yielded bool          // writeLoop yielded once for this group commit
}

func (w *writer) add(e entry) {
	if w.cur.count == 0 {
		w.cur.first = time.Now()
	}
	w.cur.lines = append(w.cur.lines, *e.buf...)
	w.cur.lines = append(w.cur.lines, '\n')
	w.cur.count++
	if e.w != nil {
		w.cur.waiters = append(w.cur.waiters, e.w)
	}
	if cap(*e.buf) <= maxPooledBuf {
		w.l.bufs.Put(e.buf)
	}
	if w.cur.count >= w.l.cfg.BatchEvents || len(w.cur.lines) >= w.l.cfg.BatchBytes {
		w.seal(0, time.Time{}, time.Time{})
	}
}

// seal turns the current events (possibly none, for a gap-only batch) into
// the next batch of the chain and frames it for writing. With neither
// events nor a gap there is no batch to make: add has just sealed a full
// one, and a caller that seals what it added (lead) must not chain an
// empty batch after it.
func (w *writer) seal(gap int64, gapFirst, gapLast time.Time) {
	if w.cur.count == 0 && gap == 0 {
		return
	}
	b := auditdb.Batch{
		Epoch: w.l.spool.epoch, Seq: w.nextSeq, PrevHash: w.prevHash,
		DroppedBefore: gap, GapFirst: gapFirst, GapLast: gapLast,
		Count: w.cur.count, Lines: w.cur.lines,
	}
	h := b.Hash()
	if len(w.pend.records) == 0 {
		w.pend.first = w.nextSeq
	}
	w.pend.records = appendRecord(w.pend.records, &b)
	w.pend.last, w.pend.lastHash = w.nextSeq, h
	w.pend.events += w.cur.count
	w.pend.waiters = append(w.pend.waiters, w.cur.waiters...)
	w.nextSeq, w.prevHash = w.nextSeq+1, h
	w.l.sealed.Add(1)
	clear(w.cur.waiters)
	w.cur.lines, w.cur.count, w.cur.waiters = w.cur.lines[:0], 0, w.cur.waiters[:0]
}

func (w *writer) release(err error) {
	for i, wt := range w.pend.waiters {
		wt.ch <- err
		w.pend.waiters[i] = nil
	}
	w.pend.waiters = w.pend.waiters[:0]
}

// lead writes the caller's event bp, and what is queued, as the writer,
// under wmu. It reports done=false (bp untouched) when a failed write is
// waiting for its retry: the caller then queues as usual, behind it. On
// done, err is the caller's result, exactly as a waiter would get it.
func (l *Log) lead(bp *[]byte) (done bool, err error) {
	w := l.w
	if len(w.pend.records) > 0 || l.closed.Load() || (l.drop && l.gapPending()) {
		// A write to retry or a gap to record first: the writer goroutine
		// does both, and a queued event wakes it.
		return false, nil
	}
	l.drain(w)
	l.enqueued.Add(1)
	w.add(entry{buf: bp})
	w.seal(0, time.Time{}, time.Time{})
	err = l.commit(w)
	if err != nil {
		// The batch stays sealed and pending; the writer goroutine
		// retries it after the backoff. Wake it so it sets its timer.
		l.wakeWriter()
	}
	return true, err
}

// drain moves queued events into the current batch, bounding what one
// write carries so a burst cannot grow memory without limit while the disk
// is slow. Under wmu.
func (l *Log) drain(w *writer) {
	maxPending := 2 * l.cfg.BatchBytes
	for len(w.pend.records) < maxPending {
		e, ok := l.q.pop()
		if !ok {
			return
		}
		l.enqueued.Add(1)
		w.add(e)
	}
}

// commit writes the pending sealed batches in one write (group commit),
// fsyncing per the policy, and releases their waiters with the outcome.
// On failure the batches stay pending for a retry after w.retryAt. Under
// wmu.
func (l *Log) commit(w *writer) error {
	err := l.spool.append(w.pend.records, w.pend.first, w.pend.last, w.pend.lastHash, l.cfg.Fsync == FsyncAlways)
	if err == nil {
		l.writes.Add(1)
		if l.cfg.Fsync == FsyncAlways {
			l.fsyncs.Add(1)
		}
		l.written.Add(uint64(w.pend.events))
		w.release(nil)
		w.pend.records, w.pend.events = w.pend.records[:0], 0
		w.retryAt, w.backoff = time.Time{}, l.cfg.RetryMin
		if l.writeFailing.Swap(false) {
			l.log.Info("audit spool writable again")
		}
		l.updateFull()
		return nil
	}
	l.spoolErr.Add(1)
	if !l.writeFailing.Swap(true) {
		l.log.Error("audit spool write failed; refusing or dropping new events until it succeeds", "err", err)
	}
	l.updateFull()
	// Callers learn now; their events stay sealed and are retried, so none
	// that was sealed is lost.
	err = fmt.Errorf("%w: %v", ErrAuditUnavailable, err)
	w.release(err)
	w.retryAt = time.Now().Add(w.backoff)
	w.backoff = min(2*w.backoff, 5*time.Second)
	return err
}

// writeLoop is the spool's writer whenever no sync Record is (see lead): it
// drains the queue into batches, writes all sealed batches in one write
// (group commit), fsyncs per the policy, releases sync callers, retries
// failed writes and, at shutdown, writes what is left.
func (l *Log) writeLoop(ctx context.Context) error {
	w := l.w
	var (
		timer   = time.NewTimer(time.Hour)
		closing bool
	)
	timer.Stop()
	defer timer.Stop()
	for {
		if !closing && ctx.Err() != nil {
			closing = true
			l.closed.Store(true)
			// Wait for Records that passed the closed check to finish
			// queueing (or writing, as leaders), so none is stranded in
			// the queue.
			for l.inflight.Load() > 0 {
				runtime.Gosched()
			}
		}
		l.wmu.Lock()
		act, wait := l.step(w, closing)
		l.wmu.Unlock()
		switch act {
		case stepAgain:
			continue
		case stepYield:
			runtime.Gosched()
			continue
		case stepFinish:
			l.wmu.Lock()
			defer l.wmu.Unlock()
			return l.finish(w)
		}
		l.q.park()
		if !l.q.empty() {
			l.q.unpark()
			continue
		}
		var tc <-chan time.Time
		if wait > 0 {
			timer.Reset(wait)
			tc = timer.C
		}
		done := ctx.Done()
		if closing {
			done = nil
		}
		select {
		case <-l.q.wake:
		case <-tc:
		case <-done:
		}
		l.q.unpark()
		if tc != nil && !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
	}
}

// What writeLoop does after a step.
type stepAction int

const (
	stepAgain  stepAction = iota // step again at once
	stepYield                    // let runnable callers queue, then step again
	stepSleep                    // sleep until woken or the returned wait (< 0: no deadline)
	stepFinish                   // shutting down and nothing is left: close the spool
)

// step is one pass of the writer under wmu: take queued events, seal,
// write, retry, and say what to do next.
func (l *Log) step(w *writer, closing bool) (stepAction, time.Duration) {
	l.drain(w)
	if len(w.cur.waiters) > 0 && !closing && !w.yielded {
		// Group commit: let callers that are runnable right now queue
		// their events before this write, instead of each paying for its
		// own write.
		w.yielded = true
		return stepYield, 0
	}
	w.yielded = false
	now := time.Now()
	if w.cur.count > 0 && (len(w.cur.waiters) > 0 || closing || now.Sub(w.cur.first) >= l.cfg.Linger) {
		w.seal(0, time.Time{}, time.Time{})
	}
	if (!l.full.Load() || closing) && l.gapPending() {
		n, f, la := l.takeGap()
		// The events sealed above were accepted before or during the
		// drop; the gap goes into its own batch so it is never lost
		// behind a partial batch.
		w.seal(n, f, la)
	}
	if len(w.pend.records) > 0 && (w.retryAt.IsZero() || !now.Before(w.retryAt)) {
		_ = l.commit(w) // waiters learn the outcome; failures are retried
	}
	if closing && l.q.empty() && w.cur.count == 0 {
		if len(w.pend.records) == 0 || !w.retryAt.IsZero() {
			return stepFinish, 0
		}
		return stepAgain, 0
	}
	if !l.q.empty() {
		return stepAgain, 0
	}
	// Sleep until an event arrives or the next deadline.
	var wait time.Duration = -1
	deadline := func(d time.Duration) {
		if d < 0 {
			d = 0
		}
		if wait < 0 || d < wait {
			wait = d
		}
	}
	if w.cur.count > 0 {
		deadline(l.cfg.Linger - now.Sub(w.cur.first))
	}
	if len(w.pend.records) > 0 {
		deadline(w.retryAt.Sub(now))
	}
	if l.full.Load() {
		// Space is freed by sink acks, which do not wake the writer; poll
		// so a pending gap record is written soon after.
		deadline(50 * time.Millisecond)
	}
	if wait == 0 {
		return stepAgain, 0
	}
	return stepSleep, wait
}

// syncLoop fsyncs the spool every FsyncInterval while there are unsynced
// writes, until the writer has stopped (it fsyncs at close itself).
func (l *Log) syncLoop(writerDone <-chan struct{}) {
	t := time.NewTicker(l.cfg.FsyncInterval)
	defer t.Stop()
	for {
		select {
		case <-writerDone:
			return
		case <-t.C:
		}
		synced, err := l.spool.syncActive()
		if err != nil {
			l.spoolErr.Add(1)
			l.log.Error("audit spool fsync failed", "err", err)
		} else if synced {
			l.fsyncs.Add(1)
		}
	}
}

// finish closes the spool at shutdown; events whose write keeps failing are
// reported, never dropped silently.
func (l *Log) finish(w *writer) error {
	var errs []error
	if len(w.pend.records) > 0 {
		err := l.spool.append(w.pend.records, w.pend.first, w.pend.last, w.pend.lastHash, true)
		if err != nil {
			w.release(fmt.Errorf("%w: %v", ErrAuditUnavailable, err))
			l.dropped.Add(uint64(w.pend.events))
			errs = append(errs, fmt.Errorf("audit: %d events could not be spooled at shutdown: %w", w.pend.events, err))
		} else {
			l.written.Add(uint64(w.pend.events))
			w.release(nil)
		}
	}
	if n, _, _ := l.takeGap(); n > 0 {
		errs = append(errs, fmt.Errorf("audit: %d events were dropped (on_full: drop) and the gap record could not be written before shutdown", n))
	}
	if err := l.spool.close(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Stats is a point-in-time view of the pipeline, for metrics, the
// control-plane Status message and tests.
type Stats struct {
	Enqueued, Written, Dropped, Refused uint64
	// Writes counts spool writes: with group commit far fewer than events.
	Writes, Fsyncs, Batches uint64
	SpoolBytes              int64
	// UnackedBatches is how many sealed batches some sink has not acknowledged.
	UnackedBatches int64
	// OldestUnacked is the age of the oldest event not yet delivered to
	// every sink (0 when all are delivered).
	OldestUnacked time.Duration
	SpoolErrors   uint64
	TornTails     uint64
	Corrupt       uint64
	Full          bool
}

// Stats returns the current counters.
func (l *Log) Stats() Stats {
	st := Stats{
		Enqueued: l.enqueued.Load(), Written: l.written.Load(), Dropped: l.dropped.Load(), Refused: l.refused.Load(),
		Writes: l.writes.Load(), Fsyncs: l.fsyncs.Load(), Batches: l.sealed.Load(),
		SpoolBytes:  l.spool.used.Load(),
		SpoolErrors: l.spoolErr.Load(), TornTails: l.spool.torn.Load(), Corrupt: l.spool.corrupt.Load(),
		Full: l.full.Load(),
	}
	l.spool.mu.Lock()
	var last int64 = -1
	if n := len(l.spool.segs); n > 0 {
		last = l.spool.segs[n-1].lastSeq
	}
	l.spool.mu.Unlock()
	if last < 0 {
		last = l.spool.minAcked() // nothing on disk: nothing unacknowledged
	}
	st.UnackedBatches = max(0, last-l.spool.minAcked())
	var oldest int64
	for _, s := range l.sinks {
		if p := s.pendingSince.Load(); p != 0 && (oldest == 0 || p < oldest) {
			oldest = p
		}
	}
	if oldest != 0 {
		st.OldestUnacked = max(0, time.Since(time.UnixMicro(oldest)))
	}
	return st
}

// Healthy reports whether events are being accepted and every sink is
// delivering, with a one-line reason when not: for /readyz and logs.
func (l *Log) Healthy() (bool, string) {
	var bad []string
	if l.full.Load() {
		if l.writeFailing.Load() {
			bad = append(bad, "audit spool cannot be written")
		} else if l.drop {
			bad = append(bad, "audit spool full, dropping events")
		} else {
			bad = append(bad, "audit spool full, refusing calls")
		}
	}
	for _, s := range l.sinks {
		if ok, msg := s.health(); !ok {
			bad = append(bad, fmt.Sprintf("audit sink %s: %s", s.sink.Name(), msg))
		}
	}
	if len(bad) == 0 {
		return true, "ok"
	}
	return false, strings.Join(bad, "; ")
}

// Epoch is the spool's epoch (for the AuditStream hello).
func (l *Log) Epoch() int64 { return l.spool.epoch }

// Acked returns the last seq of this spool's epoch that the named sink
// acknowledged (0 for none; seqs start at 1): with Epoch, what an
// AuditStream hello reports as (spool_epoch, next_unacked_seq - 1).
func (l *Log) Acked(sink string) (int64, error) {
	l.spool.mu.Lock()
	defer l.spool.mu.Unlock()
	c := l.spool.consumers[sink]
	if c == nil {
		return 0, fmt.Errorf("audit log: no sink named %q", sink)
	}
	return c.acked, nil
}
