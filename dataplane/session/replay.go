package session

import (
	"strconv"
	"strings"
	"sync"
)

// Replay keeps what went out on one POST reply stream, so a client whose
// connection dropped can pick the stream up again with a GET carrying
// Last-Event-ID (2025-11-25 basic/transports, resumability). Event ids are
// "<stream>-<seq>"; GET-stream ids are plain numbers, so the two never mix.
type Replay struct {
	id string
	// mu guards every field below.
	mu     sync.Mutex
	events [][]byte // events[i] has seq i+1
	done   bool
	wake   chan struct{}
}

// maxReplayEvents bounds one stream's memory; older events are not
// replayable (a resume past them ends the stream).
const maxReplayEvents = 1024

// maxReplays is how many reply streams a session keeps for resumption.
const maxReplays = 16

// NewReplay starts recording a reply stream of s.
func (s *Session) NewReplay() *Replay {
	r := &Replay{id: "p" + strconv.FormatInt(s.nextStream.Add(1), 10), wake: make(chan struct{})}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.replays = append(s.replays, r)
	if len(s.replays) > maxReplays {
		s.replays = s.replays[1:]
	}
	return r
}

// ID returns the stream's id.
func (r *Replay) ID() string { return r.id }

// Add records a message and returns its event id.
func (r *Replay) Add(msg []byte) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.events) < maxReplayEvents {
		r.events = append(r.events, msg)
	}
	close(r.wake)
	r.wake = make(chan struct{})
	return r.id + "-" + strconv.Itoa(len(r.events))
}

// Finish marks the stream complete (its response was recorded).
func (r *Replay) Finish() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.done {
		r.done = true
		close(r.wake)
	}
}

// Since returns the events after seq (with their seqs starting at
// seq+1), a channel closed when more arrive, and whether the stream is
// complete.
func (r *Replay) Since(seq int) (evs [][]byte, wake <-chan struct{}, done bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if seq < len(r.events) {
		evs = r.events[seq:]
	}
	return evs, r.wake, r.done
}

// FindReplay resolves a Last-Event-ID naming a reply stream of s: the
// stream and the sequence number to resume after.
func (s *Session) FindReplay(lastEventID string) (*Replay, int, bool) {
	id, seqStr, ok := strings.Cut(lastEventID, "-")
	if !ok {
		return nil, 0, false
	}
	seq, err := strconv.Atoi(seqStr)
	if err != nil || seq < 0 {
		return nil, 0, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.replays {
		if r.id == id {
			return r, seq, true
		}
	}
	return nil, 0, false
}
