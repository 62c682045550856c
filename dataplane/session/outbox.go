package session

import (
	"sync"
)

// Event is one message on a session's GET stream.
type Event struct {
	ID   uint64
	Data []byte
}

// Outbox queues server-initiated messages for a session's GET stream and
// keeps the last few for a client that reconnects with Last-Event-ID.
// Messages pushed while no stream is open wait in the window.
type Outbox struct {
	// mu guards every field below.
	mu     sync.Mutex
	ring   []Event // oldest first, at most window
	window int
	next   uint64 // id of the next event; ids start at 1
	sent   uint64 // newest id written to some stream
	wake   chan struct{}
	closed bool
}

// NewOutbox keeps up to window events. The window grows as events come:
// most sessions never get one, and a preallocated window (8 KiB at 256)
// was most of an idle session's memory.
func NewOutbox(window int) *Outbox {
	return &Outbox{window: max(window, 1), next: 1, wake: make(chan struct{})}
}

// Push appends a message and wakes the stream.
func (o *Outbox) Push(data []byte) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return
	}
	if len(o.ring) == o.window {
		copy(o.ring, o.ring[1:])
		o.ring = o.ring[:len(o.ring)-1]
	}
	o.ring = append(o.ring, Event{ID: o.next, Data: data})
	o.next++
	close(o.wake)
	o.wake = make(chan struct{})
}

// Since returns the events after id after, a channel closed when more
// arrive, whether events between after and the first returned were lost
// (the window moved on), and whether the outbox is closed.
func (o *Outbox) Since(after uint64) (evs []Event, wake <-chan struct{}, lost, closed bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, e := range o.ring {
		if e.ID > after {
			evs = append(evs, e)
		}
	}
	if len(o.ring) > 0 && o.ring[0].ID > after+1 && after+1 < o.next {
		lost = true
	}
	return evs, o.wake, lost, o.closed
}

// Last returns the id of the newest event (0 if none).
func (o *Outbox) Last() uint64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.next - 1
}

// Close ends the stream.
func (o *Outbox) Close() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.closed {
		o.closed = true
		close(o.wake)
	}
}

// MarkSent records that events up to id reached a stream, so a new stream
// opened without Last-Event-ID starts after them.
func (o *Outbox) MarkSent(id uint64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.sent = max(o.sent, id)
}

// Sent returns the newest id written to a stream.
func (o *Outbox) Sent() uint64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.sent
}
