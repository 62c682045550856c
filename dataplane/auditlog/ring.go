package auditlog

import (
	"sync/atomic"
)

// ring is a bounded multi-producer single-consumer queue (Vyukov's bounded
// queue with a sequence number per cell). Producers claim a cell with one
// CAS on head and publish it with a store to the cell, so concurrent
// requests share no lock; a channel would take its internal mutex on every
// send (see BenchmarkEnqueue* for the comparison).
type ring struct {
	cells []cell
	mask  uint64
	_     [56]byte // keep head on its own cache line
	head  atomic.Uint64
	_     [56]byte
	// tail is advanced by the consumer (whoever holds Log.wmu, which
	// orders successive consumers); atomic because the writer checks
	// empty() without the lock before it parks.
	tail atomic.Uint64

	// sleeping is set by the consumer before it parks on wake, so
	// producers signal only when someone is waiting.
	sleeping atomic.Bool
	wake     chan struct{}
}

type cell struct {
	seq atomic.Uint64
	val entry
}

// entry is one queued event: its encoded line in a pooled buffer and, in
// sync mode, the waiter to release once it is in the spool.
type entry struct {
	buf *[]byte
	w   *waiter
}

func newRing(size int) *ring {
	n := 1
	for n < size {
		n <<= 1
	}
	r := &ring{cells: make([]cell, n), mask: uint64(n - 1), wake: make(chan struct{}, 1)}
	for i := range r.cells {
		r.cells[i].seq.Store(uint64(i))
	}
	return r
}

// push enqueues v; false when the ring is full.
func (r *ring) push(v entry) bool {
	pos := r.head.Load()
	for {
		c := &r.cells[pos&r.mask]
		seq := c.seq.Load()
		switch dif := int64(seq) - int64(pos); {
		case dif == 0:
			if r.head.CompareAndSwap(pos, pos+1) {
				c.val = v
				c.seq.Store(pos + 1)
				if r.sleeping.Load() && r.sleeping.CompareAndSwap(true, false) {
					select {
					case r.wake <- struct{}{}:
					default:
					}
				}
				return true
			}
			pos = r.head.Load()
		case dif < 0:
			return false
		default:
			pos = r.head.Load()
		}
	}
}

// pop dequeues one entry; false when nothing is published yet. Consumer
// only: one at a time (under Log.wmu).
func (r *ring) pop() (entry, bool) {
	t := r.tail.Load()
	c := &r.cells[t&r.mask]
	if int64(c.seq.Load())-int64(t+1) < 0 {
		return entry{}, false
	}
	v := c.val
	c.val = entry{}
	c.seq.Store(t + r.mask + 1)
	r.tail.Store(t + 1)
	return v, true
}

// empty reports whether no published entry waits.
func (r *ring) empty() bool {
	t := r.tail.Load()
	c := &r.cells[t&r.mask]
	return int64(c.seq.Load())-int64(t+1) < 0
}

// park announces that the consumer is about to wait on r.wake. The caller
// must check empty() again after park and before waiting, so a producer
// that published before seeing the flag is not missed.
func (r *ring) park()   { r.sleeping.Store(true) }
func (r *ring) unpark() { r.sleeping.Store(false) }
