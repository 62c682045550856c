package upstream

import (
	"context"
	"sync"
	"time"
)

// Canceler cancels the call in progress on behalf of its caller (a
// client's notifications/cancelled) without the caller making a context
// of its own per request: each call already makes one (its deadline), and
// a context per layer is measurable on the hot path (DESIGN §4.3). Attach
// it with WithCanceler; a Cancel before the call starts cancels it as soon
// as it does. The zero value is ready to use.
type Canceler struct {
	// mu guards cancel and cause.
	mu     sync.Mutex
	cancel context.CancelCauseFunc
	cause  error
}

// Cancel cancels the current and any later call with cause.
func (c *Canceler) Cancel(cause error) {
	c.mu.Lock()
	if c.cause == nil {
		c.cause = cause
	}
	f := c.cancel
	c.mu.Unlock()
	if f != nil {
		f(cause)
	}
}

// Cause returns what Cancel was given, or nil.
func (c *Canceler) Cause() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cause
}

func (c *Canceler) bind(f context.CancelCauseFunc) {
	c.mu.Lock()
	c.cancel = f
	cause := c.cause
	c.mu.Unlock()
	if cause != nil {
		f(cause)
	}
}

func (c *Canceler) unbind() {
	c.mu.Lock()
	c.cancel = nil
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

// callContext is the one context a call makes: cancelled by the backend's
// timeout (cause ErrTimeout), by ctx, or through ctx's Canceler.
func callContext(ctx context.Context, timeout time.Duration) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	t := time.AfterFunc(timeout, func() { cancel(ErrTimeout) })
	c := CancelerFrom(ctx)
	if c != nil {
		c.bind(cancel)
	}
	return ctx, func() {
		if c != nil {
			c.unbind()
		}
		t.Stop()
		cancel(nil)
	}
}
