package auditlog

import (
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Durability says when Record returns.
type Durability string

const (
	// DurabilitySync (default) returns once the event is written to the
	// spool, so a process crash loses nothing a caller saw acknowledged.
	DurabilitySync Durability = "sync"
	// DurabilityAsync returns at once; a crash may lose the events still
	// queued or lingering (up to Linger plus one write).
	DurabilityAsync Durability = "async"
)

// OnFull says what happens to new events when the spool is full (or cannot
// be written).
type OnFull string

const (
	// OnFullRefuse (default) fails Record with ErrAuditUnavailable: fail
	// closed, the gateway answers 503 and serves again by itself once the
	// sinks drain the spool.
	OnFullRefuse OnFull = "refuse"
	// OnFullDrop keeps answering, counts every dropped event, and writes a
	// gap record (count, first and last time) into the stream once there is
	// room, so the loss is visible downstream.
	OnFullDrop OnFull = "drop"
)

// FsyncPolicy says when the spool is fsynced. A write(2) already survives a
// crash of the process (SIGKILL included); fsync is what survives a crash
// of the machine or a power loss.
type FsyncPolicy string

const (
	// FsyncAlways fsyncs every write before Record returns in sync mode:
	// nothing acknowledged is lost even on power loss, at the cost of one
	// fsync per group commit.
	FsyncAlways FsyncPolicy = "always"
	// FsyncInterval (default) releases callers after the write and fsyncs
	// at most FsyncInterval later: a power loss may lose that interval.
	FsyncInterval FsyncPolicy = "interval"
	// FsyncNever leaves flushing to the kernel (and to segment rotation and
	// shutdown).
	FsyncNever FsyncPolicy = "never"
)

// Defaults.
const (
	DefaultMaxBytes      = 1 << 30
	DefaultFsyncInterval = 10 * time.Millisecond
	DefaultBatchEvents   = 1024
	DefaultBatchBytes    = 1 << 20
	DefaultLinger        = 10 * time.Millisecond
	DefaultQueueSize     = 8192
	DefaultSegmentBytes  = 64 << 20
	DefaultShutdownDrain = 5 * time.Second
)

// Config configures a Log. The zero value of every field but Dir means its
// default.
type Config struct {
	// Dir is the spool directory (required). One Log per directory.
	Dir string
	// MaxBytes caps the spool's size on disk; at the cap OnFull applies.
	MaxBytes   int64
	Durability Durability
	OnFull     OnFull
	Fsync      FsyncPolicy
	// FsyncInterval is the longest a write stays unsynced under FsyncInterval.
	FsyncInterval time.Duration
	// A batch is sealed at BatchEvents events or BatchBytes bytes of events,
	// when a sync caller waits and nothing else is queued (group commit),
	// or, for async events, Linger after its first event.
	BatchEvents int
	BatchBytes  int
	Linger      time.Duration
	// QueueSize bounds the events between Record and the writer. An async
	// Record that finds it full applies OnFull; a sync one waits for room.
	QueueSize int
	// SegmentBytes is the size at which a new spool segment is started;
	// segments are deleted whole once every sink acknowledged them. It is
	// capped at MaxBytes/4 so acknowledged space is actually freed.
	SegmentBytes int64
	// ShutdownDrain is how long sinks keep delivering after Run's context
	// ends; what they do not deliver stays spooled for the next start.
	ShutdownDrain time.Duration
	// RetryMin and RetryMax bound the backoff between failed deliveries.
	RetryMin, RetryMax time.Duration
	Logger             *slog.Logger
}

func (c Config) withDefaults() (Config, error) {
	if c.Dir == "" {
		return c, errors.New("audit log: spool dir is required")
	}
	if c.MaxBytes == 0 {
		c.MaxBytes = DefaultMaxBytes
	}
	if c.Durability == "" {
		c.Durability = DurabilitySync
	}
	if c.OnFull == "" {
		c.OnFull = OnFullRefuse
	}
	if c.Fsync == "" {
		c.Fsync = FsyncInterval
	}
	if c.FsyncInterval == 0 {
		c.FsyncInterval = DefaultFsyncInterval
	}
	if c.BatchEvents == 0 {
		c.BatchEvents = DefaultBatchEvents
	}
	if c.BatchBytes == 0 {
		c.BatchBytes = DefaultBatchBytes
	}
	if c.Linger == 0 {
		c.Linger = DefaultLinger
	}
	if c.QueueSize == 0 {
		c.QueueSize = DefaultQueueSize
	}
	if c.SegmentBytes == 0 {
		c.SegmentBytes = DefaultSegmentBytes
	}
	if int64(c.BatchBytes) > c.MaxBytes/8 {
		c.BatchBytes = int(c.MaxBytes / 8)
	}
	if c.SegmentBytes > c.MaxBytes/4 {
		c.SegmentBytes = c.MaxBytes / 4
	}
	if c.ShutdownDrain == 0 {
		c.ShutdownDrain = DefaultShutdownDrain
	}
	if c.RetryMin == 0 {
		c.RetryMin = 100 * time.Millisecond
	}
	if c.RetryMax == 0 {
		c.RetryMax = 30 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	var errs []error
	switch c.Durability {
	case DurabilitySync, DurabilityAsync:
	default:
		errs = append(errs, fmt.Errorf("audit durability %q is not sync or async", c.Durability))
	}
	switch c.OnFull {
	case OnFullRefuse, OnFullDrop:
	default:
		errs = append(errs, fmt.Errorf("audit on_full %q is not refuse or drop", c.OnFull))
	}
	switch c.Fsync {
	case FsyncAlways, FsyncInterval, FsyncNever:
	default:
		errs = append(errs, fmt.Errorf("audit fsync %q is not always, interval or never", c.Fsync))
	}
	if c.MaxBytes < 16<<10 {
		errs = append(errs, fmt.Errorf("audit spool max bytes %d is too small (at least 16 KiB)", c.MaxBytes))
	}
	if c.BatchEvents < 1 || c.BatchBytes < 1 || c.QueueSize < 1 || c.FsyncInterval < 0 || c.Linger < 0 || c.SegmentBytes < 1 {
		errs = append(errs, errors.New("audit batch, queue, segment sizes and intervals must be positive"))
	}
	return c, errors.Join(errs...)
}
