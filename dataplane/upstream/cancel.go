package upstream

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Canceler cancels the call in progress on behalf of its caller (a
// client's notifications/cancelled) without the caller making a context
// of its own per request: each call already makes one (its deadline), and
// a context per layer is measurable on the hot path (DESIGN §4.3). Attach
// it with WithCanceler; a Cancel before the call starts cancels it as soon
// as it does. The zero value is ready to use.
type Canceler struct {
	// mu guards call, bound and cause.
	mu    sync.Mutex
	call  *callCtx                // the call in progress
	bound context.CancelCauseFunc // Bound's context, between calls
	cause error
}

// Cancel cancels the current and any later call with cause.
func (c *Canceler) Cancel(cause error) {
	c.mu.Lock()
	if c.cause == nil {
		c.cause = cause
	}
	call, bound := c.call, c.bound
	c.mu.Unlock()
	if call != nil {
		call.cancelCause(cause)
	}
	if bound != nil {
		bound(cause)
	}
}

// Cause returns what Cancel was given, or nil.
func (c *Canceler) Cause() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cause
}

func (c *Canceler) bindCall(cc *callCtx) {
	c.mu.Lock()
	c.call = cc
	cause := c.cause
	c.mu.Unlock()
	if cause != nil {
		cc.cancelCause(cause)
	}
}

func (c *Canceler) unbindCall() {
	c.mu.Lock()
	c.call = nil
	c.mu.Unlock()
}

func (c *Canceler) bind(f context.CancelCauseFunc) {
	c.mu.Lock()
	c.bound = f
	cause := c.cause
	c.mu.Unlock()
	if cause != nil {
		f(cause)
	}
}

func (c *Canceler) unbind() {
	c.mu.Lock()
	c.bound = nil
	c.mu.Unlock()
}

type cancelerKey struct{}

// WithCanceler returns ctx carrying c: calls made with it can be
// cancelled through c.
func WithCanceler(ctx context.Context, c *Canceler) context.Context {
	return context.WithValue(ctx, cancelerKey{}, c)
}

// CancelerFrom returns the Canceler ctx carries, or nil.
func CancelerFrom(ctx context.Context) *Canceler {
	c, _ := ctx.Value(cancelerKey{}).(*Canceler)
	return c
}

// callCtx is the one context a call makes: cancelled by the backend's
// timeout (cause ErrTimeout), by its parent, or through the parent's
// Canceler. Built from WithCancelCause, a time.AfterFunc for the timeout
// and the closures binding them it cost about eleven allocations per call,
// though most calls end without being cancelled and never wait on Done.
// So callCtx makes the standard context (and the timer) only when someone
// asks for Done or the call is cancelled; until then the timeout is a
// time compared in Err, and a call blocked on an h1 connection (exchange)
// is bounded by the connection's deadline and interrupted through watch.
type callCtx struct {
	parent   context.Context
	deadline time.Time // the backend's timeout
	canceler *Canceler // nil if the parent carries none

	// inner is the standard context behind Done, Err and Cause once
	// made; it carries the cause context.Cause finds.
	inner atomic.Pointer[innerCtx]

	// mu guards nc, interrupted and ended, and the making of inner.
	mu          sync.Mutex
	nc          net.Conn // the connection the call is blocked on (watch)
	interrupted bool     // nc's deadline was moved to the past by a cancel
	ended       bool
}

type innerCtx struct {
	ctx    context.Context
	cancel context.CancelCauseFunc
	timer  *time.Timer // nil if the deadline had passed when made
}

// newCallCtx starts a call's context; end it with end.
func newCallCtx(parent context.Context, timeout time.Duration) *callCtx {
	c := &callCtx{parent: parent, deadline: time.Now().Add(timeout), canceler: CancelerFrom(parent)}
	if c.canceler != nil {
		c.canceler.bindCall(c)
	}
	return c
}

// end releases what the call made; the context reads as cancelled after.
func (c *callCtx) end() {
	if c.canceler != nil {
		c.canceler.unbindCall()
	}
	c.mu.Lock()
	c.ended = true
	c.mu.Unlock()
	if in := c.inner.Load(); in != nil {
		if in.timer != nil {
			in.timer.Stop()
		}
		in.cancel(nil)
	}
}

// materialize returns inner, making it if need be. Called with mu held.
func (c *callCtx) materialize() *innerCtx {
	if in := c.inner.Load(); in != nil {
		return in
	}
	ctx, cancel := context.WithCancelCause(c.parent)
	in := &innerCtx{ctx: ctx, cancel: cancel}
	if d := time.Until(c.deadline); d > 0 {
		in.timer = time.AfterFunc(d, func() { c.cancelCause(ErrTimeout) })
	} else {
		cancel(ErrTimeout)
	}
	c.inner.Store(in)
	return in
}

// cancelCause cancels the call with cause (the first cause stands) and
// interrupts the connection it is blocked on, if any.
func (c *callCtx) cancelCause(cause error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended {
		return
	}
	c.materialize().cancel(cause)
	if c.nc != nil && !c.interrupted {
		c.interrupted = true
		c.nc.SetDeadline(time.Unix(1, 0))
	}
}

// watch registers nc as the connection the call is blocked on, so a
// cancellation interrupts it; a call cancelled already interrupts it at
// once. The caller also sets nc's deadline to c.deadline.
func (c *callCtx) watch(nc net.Conn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.nc, c.interrupted = nc, false
	if in := c.inner.Load(); in != nil && in.ctx.Err() != nil {
		c.interrupted = true
		nc.SetDeadline(time.Unix(1, 0))
	}
}

// unwatch ends watch. It reports whether the connection was left alone:
// one a cancellation interrupted must not be reused.
func (c *callCtx) unwatch() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	clean := !c.interrupted
	c.nc, c.interrupted = nil, false
	return clean
}

// Deadline implements context.Context with the parent's deadline: the
// backend's timeout was never one callers saw (stdio bounds its writes by
// a deadline only if the caller set one), and it stays so.
func (c *callCtx) Deadline() (time.Time, bool) { return c.parent.Deadline() }

// Done implements context.Context; the first call makes the standard
// context and the timer.
func (c *callCtx) Done() <-chan struct{} {
	if in := c.inner.Load(); in != nil {
		return in.ctx.Done()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended {
		return closedChan
	}
	return c.materialize().ctx.Done()
}

var closedChan = func() chan struct{} { ch := make(chan struct{}); close(ch); return ch }()

// Err implements context.Context. A passed deadline cancels the call
// here, so the cause (ErrTimeout) is in place before anyone asks for it:
// ask Err before context.Cause.
func (c *callCtx) Err() error {
	if in := c.inner.Load(); in != nil {
		return in.ctx.Err()
	}
	if err := c.parent.Err(); err != nil {
		return err
	}
	if !time.Now().Before(c.deadline) {
		c.cancelCause(ErrTimeout)
		if in := c.inner.Load(); in != nil {
			return in.ctx.Err()
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended {
		return context.Canceled
	}
	return nil
}

// Value implements context.Context. Once inner is made it answers, so
// context.Cause finds inner's cause.
func (c *callCtx) Value(key any) any {
	if in := c.inner.Load(); in != nil {
		return in.ctx.Value(key)
	}
	return c.parent.Value(key)
}
