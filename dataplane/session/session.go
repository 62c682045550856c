// Package session keeps the edge's downstream MCP sessions: who opened
// them, what was negotiated, the requests in flight (for cancellation), the
// server→client requests waiting for the client's answer (with ids minted
// per session), resource subscriptions, and the outbox behind the session's
// GET stream with a replay window for Last-Event-ID resumption.
//
// The Store is a sync.Map, so no lock is shared by all requests; each
// Session has its own small mutex.
package session

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mcpgw/mcpgw/dataplane/rpc"
)

// ErrClosed: the session ended.
var ErrClosed = errors.New("session closed")

// ClientCaps are the client capabilities the edge acts on.
type ClientCaps struct {
	Sampling, Elicitation, Roots bool
}

// Log levels in RFC 5424 order, as MCP names them.
var levels = []string{"debug", "info", "notice", "warning", "error", "critical", "alert", "emergency"}

// LevelIndex returns the rank of an MCP log level, or -1.
func LevelIndex(l string) int {
	for i, s := range levels {
		if s == l {
			return i
		}
	}
	return -1
}

// Session is one downstream client session.
type Session struct {
	ID        string
	Principal string
	Transport string
	// Version is the negotiated protocol version.
	Version       string
	ClientName    string
	ClientVersion string
	Caps          ClientCaps
	// CapsJSON is the client's capabilities object as it sent it, passed on
	// to modern backends in each request's _meta (era bridging).
	CapsJSON json.RawMessage

	Outbox *Outbox

	lastUsed    atomic.Int64 // unix nanos
	active      atomic.Int32 // requests and streams holding the session open
	logLevel    atomic.Int32 // LevelIndex+1; 0 = never set
	initialized atomic.Bool
	nextOut     atomic.Int64
	stream      atomic.Int64 // generation of the GET stream that owns the outbox
	nextStream  atomic.Int64 // ids of POST reply streams

	// mu guards inflight, pending, subs, replays and closed.
	mu       sync.Mutex
	inflight map[string]Canceler         // downstream request id → its canceler
	pending  map[string]chan rpc.Message // our server→client request id → answer
	subs     map[string]string           // subscribed URI → backend
	replays  []*Replay                   // recent POST reply streams, oldest first
	closed   bool
	done     chan struct{}
}

// NewID returns a fresh, unguessable session id (128 random bits).
func NewID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("crypto/rand failed: %v", err)) // never on Linux ≥ 3.17
	}
	return hex.EncodeToString(b[:])
}

// New returns an open session.
func New(id, principal, transport string) *Session {
	s := &Session{
		ID:        id,
		Principal: principal,
		Transport: transport,
		Outbox:    NewOutbox(256),
		inflight:  make(map[string]Canceler),
		pending:   make(map[string]chan rpc.Message),
		subs:      make(map[string]string),
		done:      make(chan struct{}),
	}
	s.Touch()
	return s
}

// Touch marks the session as used now.
func (s *Session) Touch() { s.lastUsed.Store(time.Now().UnixNano()) }

// Acquire holds the session open (not idle) until the returned func runs.
func (s *Session) Acquire() func() {
	s.Hold()
	return s.Release
}

// Hold holds the session open (not idle) until Release; on the hot path
// it saves the closure Acquire returns.
func (s *Session) Hold() {
	s.active.Add(1)
	s.Touch()
}

// Release ends a Hold.
func (s *Session) Release() {
	s.Touch()
	s.active.Add(-1)
}

// ClaimStream makes the caller the session's one GET stream (a message
// goes out on one stream only) and returns a func reporting whether it
// still is: a newer GET takes over.
func (s *Session) ClaimStream() func() bool {
	gen := s.stream.Add(1)
	return func() bool { return s.stream.Load() == gen }
}

// Done is closed when the session ends.
func (s *Session) Done() <-chan struct{} { return s.done }

// SetInitialized records notifications/initialized.
func (s *Session) SetInitialized() { s.initialized.Store(true) }

// Initialized reports whether the client finished the handshake.
func (s *Session) Initialized() bool { return s.initialized.Load() }

// SetLogLevel records logging/setLevel.
func (s *Session) SetLogLevel(level string) error {
	i := LevelIndex(level)
	if i < 0 {
		return fmt.Errorf("unknown log level %q", level)
	}
	s.logLevel.Store(int32(i + 1))
	return nil
}

// LogLevel returns the level the client set, "" if it never did.
func (s *Session) LogLevel() string {
	if l := s.logLevel.Load(); l > 0 {
		return levels[l-1]
	}
	return ""
}

// WantsLog reports whether a log message at level should reach the client:
// only once it asked for logs, and only at or above its level.
func (s *Session) WantsLog(level string) bool {
	l := s.logLevel.Load()
	return l > 0 && LevelIndex(level) >= int(l-1)
}

// ErrCancelled is the cause a tracked request is cancelled with: its
// client sent notifications/cancelled for it, or the session ended.
var ErrCancelled = errors.New("cancelled by the client")

// A Canceler stops one request in flight (upstream.Canceler is one).
type Canceler interface {
	Cancel(cause error)
}

// Track registers a request in flight so notifications/cancelled can stop
// it, until Untrack. Unlike a closure per call, a Canceler the caller has
// anyway (the call's upstream.Canceler) costs the hot path no allocation.
func (s *Session) Track(id json.RawMessage, c Canceler) {
	key := string(id)
	s.mu.Lock()
	s.inflight[key] = c
	s.mu.Unlock()
}

// Untrack unregisters the request Track registered under id.
func (s *Session) Untrack(id json.RawMessage) {
	s.mu.Lock()
	delete(s.inflight, string(id))
	s.mu.Unlock()
}

// Cancel cancels the request with downstream id, if still in flight.
func (s *Session) Cancel(id json.RawMessage) bool {
	s.mu.Lock()
	c := s.inflight[string(id)]
	s.mu.Unlock()
	if c != nil {
		c.Cancel(ErrCancelled)
	}
	return c != nil
}

// Request sends a server→client request over send, under an id this
// session mints, and waits for the client's answer (delivered by Deliver).
func (s *Session) Request(ctx context.Context, method string, params json.RawMessage, send func([]byte) error) (rpc.Message, error) {
	id := rpc.Quote("mcpgw-" + strconv.FormatInt(s.nextOut.Add(1), 10))
	ch := make(chan rpc.Message, 1)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return rpc.Message{}, ErrClosed
	}
	s.pending[string(id)] = ch
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.pending, string(id))
		s.mu.Unlock()
	}()
	if err := send(rpc.AppendRequestRawID(nil, id, method, params)); err != nil {
		return rpc.Message{}, fmt.Errorf("sending %s to the client: %w", method, err)
	}
	select {
	case m := <-ch:
		return m, nil
	case <-ctx.Done():
		// Tell the client to stop (e.g. stop showing an elicitation form),
		// on the stream the request went out on and on the session's GET
		// stream: the first has usually ended, or been abandoned by a
		// client that cancelled the call. A duplicate is harmless.
		cancelled := rpc.AppendNotification(nil, "notifications/cancelled", json.RawMessage(`{"requestId":`+string(id)+`,"reason":"the request that raised it ended"}`))
		_ = send(cancelled)
		s.Outbox.Push(cancelled)
		return rpc.Message{}, context.Cause(ctx)
	case <-s.done:
		return rpc.Message{}, ErrClosed
	}
}

// Deliver hands the client's response to the request waiting for it. It
// reports false for an id this session is not waiting on.
func (s *Session) Deliver(m *rpc.Message) bool {
	s.mu.Lock()
	ch := s.pending[string(m.ID)]
	s.mu.Unlock()
	if ch == nil {
		return false
	}
	select {
	case ch <- *m:
	default:
	}
	return true
}

// Subscribe records a subscription; it reports whether it is new.
func (s *Session) Subscribe(uri, backend string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, had := s.subs[uri]
	s.subs[uri] = backend
	return !had
}

// Unsubscribe removes a subscription; it reports whether there was one.
func (s *Session) Unsubscribe(uri string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, had := s.subs[uri]
	delete(s.subs, uri)
	return had
}

// Subscribed reports whether the session subscribed to uri.
func (s *Session) Subscribed(uri string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.subs[uri]
	return ok
}

// Close ends the session: requests in flight are cancelled, relayed
// requests fail, the GET stream ends. It returns the subscriptions the
// session held (URI → backend) so the caller can release them upstream.
func (s *Session) Close() map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	for _, c := range s.inflight {
		c.Cancel(ErrCancelled)
	}
	close(s.done)
	s.Outbox.Close()
	subs := s.subs
	s.subs = map[string]string{}
	return subs
}

// Store holds the sessions of one edge.
type Store struct {
	m     sync.Map // id → *Session
	count atomic.Int64
	// OnClose runs after a session is removed (expired or deleted), with
	// the subscriptions it held (URI → backend).
	OnClose func(s *Session, subs map[string]string)
}

// Add stores s.
func (st *Store) Add(s *Session) {
	st.m.Store(s.ID, s)
	st.count.Add(1)
}

// Get finds a live session.
func (st *Store) Get(id string) *Session {
	v, ok := st.m.Load(id)
	if !ok {
		return nil
	}
	return v.(*Session)
}

// Remove closes and forgets a session; false if it was not there.
func (st *Store) Remove(id string) bool {
	v, ok := st.m.LoadAndDelete(id)
	if !ok {
		return false
	}
	st.count.Add(-1)
	s := v.(*Session)
	subs := s.Close()
	if st.OnClose != nil {
		st.OnClose(s, subs)
	}
	return true
}

// Len returns the number of live sessions.
func (st *Store) Len() int { return int(st.count.Load()) }

// Range calls fn for each live session until it returns false.
func (st *Store) Range(fn func(*Session) bool) {
	st.m.Range(func(_, v any) bool { return fn(v.(*Session)) })
}

// Run expires sessions idle for longer than idle until ctx ends, then
// closes every session.
func (st *Store) Run(ctx context.Context, idle time.Duration) error {
	t := time.NewTicker(max(idle/4, time.Second))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			st.Range(func(s *Session) bool { st.Remove(s.ID); return true })
			return nil
		case now := <-t.C:
			cutoff := now.Add(-idle).UnixNano()
			st.Range(func(s *Session) bool {
				if s.active.Load() == 0 && s.lastUsed.Load() < cutoff {
					st.Remove(s.ID)
				}
				return true
			})
		}
	}
}
