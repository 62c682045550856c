package upstream

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
)

// sseEvent is one server-sent event.
type sseEvent struct {
	id    string
	event string
	data  []byte
}

// readSSE calls fn for each event in r until r ends or fn returns false.
// It follows the WHATWG event-stream rules the MCP transport relies on:
// data lines join with "\n", comments are ignored, an event with no or
// empty data is not dispatched (but its id still counts for resumption).
func readSSE(r io.Reader, lastID *string, fn func(sseEvent) bool) error {
	br := bufio.NewReaderSize(r, 32<<10)
	var ev sseEvent
	var data bytes.Buffer
	hasData := false
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// Long data lines (large results): gather the whole line.
			full := bytes.Clone(line)
			for errors.Is(err, bufio.ErrBufferFull) {
				line, err = br.ReadSlice('\n')
				full = append(full, line...)
				if len(full) > maxLine {
					return fmt.Errorf("SSE line longer than %d bytes", maxLine)
				}
			}
			line = full
		}
		if err != nil && len(line) == 0 {
			if err == io.EOF {
				return nil
			}
			return fmt.Errorf("reading SSE stream: %w", err)
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			if ev.id != "" {
				*lastID = ev.id
			}
			// An event with empty data only primes the stream with an id
			// for resumption (2025-11-25 transports); nothing to deliver.
			if hasData && data.Len() > 0 {
				ev.data = bytes.Clone(data.Bytes())
				if !fn(ev) {
					return nil
				}
			}
			ev, hasData = sseEvent{}, false
			data.Reset()
			if err != nil {
				return nil
			}
			continue
		}
		if line[0] == ':' {
			continue
		}
		field, value, _ := bytes.Cut(line, []byte(":"))
		value = bytes.TrimPrefix(value, []byte(" "))
		switch string(field) {
		case "data":
			if hasData {
				data.WriteByte('\n')
			}
			data.Write(value)
			hasData = true
		case "id":
			ev.id = string(value)
		case "event":
			ev.event = string(value)
		}
		if err != nil {
			return nil
		}
	}
}
