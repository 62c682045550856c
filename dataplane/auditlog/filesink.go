package auditlog

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mcpgw/mcpgw/internal/audit"
)

// DefaultFileKeep is how many rotated audit files FileSink keeps.
const DefaultFileKeep = 5

// FileSink appends events as JSON lines (the canonical encoding, one event
// per line) to a file, rotating by size. It is a LazySyncer: the Log has it
// fsync at most once a second (and before its cursor moves on disk), not
// once per delivery. A gap
// (events dropped under on_full: drop) is written as its own line:
//
//	{"gap":{"epoch":E,"seq":S,"dropped":N,"first_ts":"…","last_ts":"…"}}
//
// Redelivery after a crash is harmless: on (re)open the sink reads the
// file's last line, the Log starts its delivery at the spooled batch holding
// that line when the sink's cursor is behind it, and the sink skips
// everything up to it in the first batches it is given, so every event
// appears once.
type FileSink struct {
	path     string
	maxBytes int64
	keep     int

	// Owned by the Log's delivery goroutine for this sink.
	f       *os.File
	size    int64
	mark    []byte // identity of the file's last line, to skip on redelivery
	buf     []byte
	nowFunc func() time.Time
}

// NewFileSink returns a sink writing to path, rotated once it reaches
// maxBytes (0: never) keeping keep old files (0: DefaultFileKeep). The
// file is opened on first delivery, so a bad path shows as a failing sink
// rather than a failed start.
func NewFileSink(path string, maxBytes int64, keep int) (*FileSink, error) {
	if path == "" {
		return nil, errors.New("audit file sink: path is empty")
	}
	if maxBytes < 0 || keep < 0 {
		return nil, errors.New("audit file sink: max bytes and keep must not be negative")
	}
	if keep == 0 {
		keep = DefaultFileKeep
	}
	return &FileSink{path: path, maxBytes: maxBytes, keep: keep, nowFunc: time.Now}, nil
}

// Name implements Sink.
func (s *FileSink) Name() string { return "file" }

// Deliver implements Sink.
func (s *FileSink) Deliver(_ context.Context, batches []SealedBatch) error {
	if s.f == nil {
		if err := s.open(); err != nil {
			return err
		}
	}
	s.buf = s.buf[:0]
	mark := s.mark
	for i := range batches {
		b := &batches[i]
		if b.DroppedBefore > 0 {
			line := appendGapLine(nil, b)
			if mark != nil {
				if bytes.Equal(lineIdentity(line), mark) {
					mark = nil
				}
			} else {
				s.buf = append(append(s.buf, line...), '\n')
			}
		}
		_ = b.EachLine(func(line []byte) error {
			if mark != nil {
				if bytes.Equal(lineIdentity(line), mark) {
					mark = nil
				}
				return nil
			}
			s.buf = append(append(s.buf, line...), '\n')
			return nil
		})
	}
	if mark != nil {
		// The file's last line is not in these batches: it was written by
		// earlier, acknowledged deliveries, so all of these are new.
		s.buf = s.buf[:0]
		for i := range batches {
			b := &batches[i]
			if b.DroppedBefore > 0 {
				s.buf = append(appendGapLine(s.buf, b), '\n')
			}
			s.buf = append(s.buf, b.Lines...)
		}
	}
	s.mark = nil
	if len(s.buf) == 0 {
		return nil
	}
	// Rotate only after the redelivery check, which needs the old file's
	// last line.
	if s.maxBytes > 0 && s.size >= s.maxBytes {
		if err := s.rotate(); err != nil {
			return err
		}
	}
	if _, err := s.f.Write(s.buf); err != nil {
		s.close()
		return fmt.Errorf("writing audit file %s: %w", s.path, err)
	}
	s.size += int64(len(s.buf))
	return nil
}

// Sync implements LazySyncer: it fsyncs what Deliver wrote.
func (s *FileSink) Sync() error {
	if s.f == nil {
		// Closed after a failed write: what was written before is in the
		// same file, which fsync reaches through a new descriptor.
		if err := s.open(); err != nil {
			return err
		}
	}
	if err := s.f.Sync(); err != nil {
		s.close()
		return fmt.Errorf("fsyncing audit file %s: %w", s.path, err)
	}
	return nil
}

// lastStored implements resumer: it opens the file (as the first Deliver
// would) and returns the identity of its last line.
func (s *FileSink) lastStored() ([]byte, error) {
	if s.f == nil {
		if err := s.open(); err != nil {
			return nil, err
		}
	}
	return s.mark, nil
}

// Close closes the file; a later Deliver reopens it.
func (s *FileSink) Close() error {
	if s.f == nil {
		return nil
	}
	err := s.f.Close()
	s.f = nil
	return err
}

func (s *FileSink) close() {
	s.f.Close()
	s.f = nil
}

// open opens the file for appending, cuts a partial last line left by a
// crash, and remembers the identity of the last complete line.
func (s *FileSink) open() error {
	f, err := os.OpenFile(s.path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("opening audit file: %w", err)
	}
	size, last, err := lastLine(f)
	if err != nil {
		f.Close()
		return fmt.Errorf("reading the end of audit file %s: %w", s.path, err)
	}
	if size >= 0 {
		if err := f.Truncate(size); err != nil {
			f.Close()
			return fmt.Errorf("cutting a partial last line of audit file %s: %w", s.path, err)
		}
	} else {
		st, err := f.Stat()
		if err != nil {
			f.Close()
			return fmt.Errorf("audit file %s: %w", s.path, err)
		}
		size = st.Size()
	}
	if _, err := f.Seek(size, io.SeekStart); err != nil {
		f.Close()
		return fmt.Errorf("audit file %s: %w", s.path, err)
	}
	s.f, s.size = f, size
	s.mark = nil
	if last != nil {
		s.mark = slices.Clone(lineIdentity(last))
	}
	return nil
}

// lastLine returns the last complete line of f and, when f ends in a
// partial line, the size to truncate it to (else -1).
func lastLine(f *os.File) (int64, []byte, error) {
	st, err := f.Stat()
	if err != nil {
		return -1, nil, err
	}
	size := st.Size()
	if size == 0 {
		return -1, nil, nil
	}
	const chunk = 64 << 10
	start := max(0, size-chunk)
	buf := make([]byte, size-start)
	if _, err := f.ReadAt(buf, start); err != nil && !errors.Is(err, io.EOF) {
		return -1, nil, err
	}
	trunc := int64(-1)
	if buf[len(buf)-1] != '\n' {
		i := bytes.LastIndexByte(buf, '\n')
		if i < 0 {
			if start == 0 {
				return 0, nil, nil // one partial line: cut it all
			}
			return -1, nil, errors.New("last line longer than 64 KiB without a newline")
		}
		trunc = start + int64(i) + 1
		buf = buf[:i+1]
	}
	body := buf[:len(buf)-1]
	i := bytes.LastIndexByte(body, '\n')
	if i < 0 && start > 0 {
		return -1, nil, errors.New("last line longer than 64 KiB")
	}
	return trunc, body[i+1:], nil
}

// lineIdentity is what identifies a line for redelivery: an event's id, or
// a gap's "epoch/seq".
func lineIdentity(line []byte) []byte {
	const idPre = `{"id":"`
	if bytes.HasPrefix(line, []byte(idPre)) && len(line) >= len(idPre)+36 {
		return line[len(idPre) : len(idPre)+36]
	}
	const gapPre = `{"gap":{"epoch":`
	if bytes.HasPrefix(line, []byte(gapPre)) {
		rest := line[len(gapPre):]
		if i := bytes.Index(rest, []byte(`,"dropped"`)); i > 0 {
			return rest[:i]
		}
	}
	return line
}

func appendGapLine(dst []byte, b *SealedBatch) []byte {
	dst = append(dst, `{"gap":{"epoch":`...)
	dst = strconv.AppendInt(dst, b.Epoch, 10)
	dst = append(dst, `,"seq":`...)
	dst = strconv.AppendInt(dst, b.Seq, 10)
	dst = append(dst, `,"dropped":`...)
	dst = strconv.AppendInt(dst, b.DroppedBefore, 10)
	dst = append(dst, `,"first_ts":"`...)
	dst = b.GapFirst.UTC().AppendFormat(dst, audit.TimeFormat)
	dst = append(dst, `","last_ts":"`...)
	dst = b.GapLast.UTC().AppendFormat(dst, audit.TimeFormat)
	return append(dst, `"}}`...)
}

// rotate renames the full file to <name>-<UTC time><ext>, starts a new one
// and deletes the oldest rotated files beyond keep.
func (s *FileSink) rotate() error {
	if err := s.f.Sync(); err != nil {
		return fmt.Errorf("fsyncing audit file before rotation: %w", err)
	}
	s.close()
	dir, base := filepath.Split(s.path)
	if dir == "" {
		dir = "."
	}
	ext := filepath.Ext(base)
	stem := strings.TrimSuffix(base, ext)
	rotated := filepath.Join(dir, stem+"-"+s.nowFunc().UTC().Format("20060102T150405.000000000Z")+ext)
	if err := os.Rename(s.path, rotated); err != nil {
		return fmt.Errorf("rotating audit file: %w", err)
	}
	if err := syncDir(dir); err != nil {
		return err
	}
	old, err := filepath.Glob(filepath.Join(dir, stem+"-*"+ext))
	if err == nil && len(old) > s.keep {
		slices.Sort(old) // the UTC timestamp sorts lexically
		for _, p := range old[:len(old)-s.keep] {
			if err := os.Remove(p); err != nil {
				return fmt.Errorf("deleting old audit file: %w", err)
			}
		}
	}
	f, err := os.OpenFile(s.path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("creating audit file after rotation: %w", err)
	}
	s.f, s.size, s.mark = f, 0, nil
	return nil
}
