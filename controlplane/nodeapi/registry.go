package nodeapi

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/mcpgw/mcpgw/controlplane/store"
)

var (
	// errReplaced ends a stream whose node opened a newer one here.
	errReplaced = errors.New("replaced by a newer stream of the same node")
	// errRevoked ends the streams of a node revoked while connected.
	errRevoked = errors.New("node revoked")
)

// registry is this replica's in-memory view of its connected nodes. Every
// stream reports to it (connect, ack, nack, status); it writes what changed
// to the nodes table in one batch per flush interval instead of one write
// per message, so a fleet-wide ack storm costs one round trip.
type registry struct {
	// mu guards streams, pending and nextToken. It is held only for map
	// operations, never across I/O or a stream send.
	mu        sync.Mutex
	streams   map[uuid.UUID]streamEntry
	pending   map[uuid.UUID]*store.NodeStatusUpdate
	nextToken uint64
}

// streamEntry is the one ConfigStream a node has open on this replica.
type streamEntry struct {
	token  uint64
	cancel context.CancelCauseFunc
}

func newRegistry() *registry {
	return &registry{
		streams: make(map[uuid.UUID]streamEntry),
		pending: make(map[uuid.UUID]*store.NodeStatusUpdate),
	}
}

// update returns the pending update of id, creating it; mu must be held.
func (r *registry) update(id uuid.UUID, now time.Time) *store.NodeStatusUpdate {
	u := r.pending[id]
	if u == nil {
		u = &store.NodeStatusUpdate{ID: id}
		r.pending[id] = u
	}
	u.LastSeen = now
	return u
}

// attach records a new stream of node id and ends the older one, if any. It
// returns the token detach needs.
func (r *registry) attach(id uuid.UUID, version string, cancel context.CancelCauseFunc) uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	if old, ok := r.streams[id]; ok {
		old.cancel(errReplaced)
	}
	r.nextToken++
	r.streams[id] = streamEntry{token: r.nextToken, cancel: cancel}
	u := r.update(id, time.Now())
	u.ConnectionChanged, u.Connected = true, true
	if version != "" {
		u.Version = version
	}
	return r.nextToken
}

// detach forgets the stream with token, unless a newer stream of the node
// has replaced it already.
func (r *registry) detach(id uuid.UUID, token uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if cur, ok := r.streams[id]; !ok || cur.token != token {
		return
	}
	delete(r.streams, id)
	u := r.update(id, time.Now())
	u.ConnectionChanged, u.Connected = true, false
}

func (r *registry) connected() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.streams)
}

func (r *registry) acked(id uuid.UUID, revision int64, hash string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	u := r.update(id, time.Now())
	u.Applied, u.AppliedRevision, u.AppliedHash = true, revision, hash
	// A NACK older than this ack is cleared by the store; a pending one of
	// an older revision must not overwrite that.
	if u.Nack != nil && u.Nack.Revision < revision {
		u.Nack = nil
	}
}

func (r *registry) nacked(id uuid.UUID, n store.NodeNack) {
	r.mu.Lock()
	defer r.mu.Unlock()
	u := r.update(id, n.At)
	u.Nack = &n
}

func (r *registry) reported(id uuid.UUID, rep store.NodeReport) {
	r.mu.Lock()
	defer r.mu.Unlock()
	u := r.update(id, time.Now())
	u.Status = &rep
}

func (r *registry) seen(id uuid.UUID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.update(id, time.Now())
}

// touchAll marks every connected node as seen now: an open stream with
// working keepalives is a node alive, whether or not it said anything.
func (r *registry) touchAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	for id := range r.streams {
		r.update(id, now)
	}
}

// take removes and returns everything pending.
func (r *registry) take() []store.NodeStatusUpdate {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.pending) == 0 {
		return nil
	}
	out := make([]store.NodeStatusUpdate, 0, len(r.pending))
	for _, u := range r.pending {
		out = append(out, *u)
	}
	clear(r.pending)
	return out
}

// giveBack re-queues updates whose flush failed, under anything that
// arrived since (newer facts win).
func (r *registry) giveBack(failed []store.NodeStatusUpdate) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, old := range failed {
		u := r.pending[old.ID]
		if u == nil {
			o := old
			r.pending[old.ID] = &o
			continue
		}
		if u.LastSeen.Before(old.LastSeen) {
			u.LastSeen = old.LastSeen
		}
		if u.Version == "" {
			u.Version = old.Version
		}
		if !u.ConnectionChanged {
			u.ConnectionChanged, u.Connected = old.ConnectionChanged, old.Connected
		}
		if !u.Applied {
			u.Applied, u.AppliedRevision, u.AppliedHash = old.Applied, old.AppliedRevision, old.AppliedHash
		}
		if u.Nack == nil && old.Nack != nil && (!u.Applied || old.Nack.Revision >= u.AppliedRevision) {
			u.Nack = old.Nack
		}
		if u.Status == nil {
			u.Status = old.Status
		}
	}
}

// streamIDs returns the nodes with a stream here.
func (r *registry) streamIDs() []uuid.UUID {
	r.mu.Lock()
	defer r.mu.Unlock()
	ids := make([]uuid.UUID, 0, len(r.streams))
	for id := range r.streams {
		ids = append(ids, id)
	}
	return ids
}

// kick ends the stream of node id with cause.
func (r *registry) kick(id uuid.UUID, cause error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e, ok := r.streams[id]; ok {
		e.cancel(cause)
	}
}
