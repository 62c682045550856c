package upstream

import (
	"context"
	"encoding/json"
	"sync"
	"time"
)

// Per-principal upstream sessions (`sessions: per_principal`): a backend
// that keeps per-caller state (a login, a working directory, a shopping
// cart) must not see every client of the edge as one caller. For such a
// backend the edge still keeps its one shared connection (lists, health,
// subscriptions) and, lazily, one more connection per principal (its own
// HTTP session, or its own child process over stdio) that carries that
// principal's calls. A principal's connection is closed after
// Options.PrincipalIdle without calls.

// principalConn is one principal's backend.
type principalConn struct {
	b        *Backend
	lastUsed time.Time
	stop     context.CancelFunc // set by runPrincipals when it starts b
	done     chan struct{}      // closed when b.Run returned
}

// For returns the backend that carries principal's calls: b itself unless
// b is per-principal, else the principal's own connection, started on
// first use (the call then waits for it to initialize, up to the
// backend's timeout).
func (b *Backend) For(principal string) *Backend {
	if !b.cfg.PerPrincipal || principal == "" {
		return b
	}
	b.principalsMu.Lock()
	defer b.principalsMu.Unlock()
	if pc := b.principals[principal]; pc != nil {
		pc.lastUsed = time.Now()
		return pc.b
	}
	cfg := b.cfg
	cfg.PerPrincipal = false
	opts := b.opts
	opts.Observer = principalObserver{}
	// The first call waits for the connection it caused to be opened.
	opts.ConnectWait = max(opts.ConnectWait, min(cfg.Timeout, 30*time.Second))
	sub := &Backend{
		cfg:     cfg,
		opts:    opts,
		log:     b.log.With("principal", principal),
		changed: make(chan struct{}),
		parent:  b,
	}
	pc := &principalConn{b: sub, lastUsed: time.Now(), done: make(chan struct{})}
	select {
	case b.spawn <- pc:
	default:
		// Run is not taking new connections (stopped, or swamped): the
		// call fails as unavailable rather than reaching another
		// principal's session.
		close(pc.done)
		return sub
	}
	if b.principals == nil {
		b.principals = make(map[string]*principalConn)
	}
	b.principals[principal] = pc
	return sub
}

// Principals returns how many per-principal connections are open.
func (b *Backend) Principals() int {
	b.principalsMu.Lock()
	defer b.principalsMu.Unlock()
	return len(b.principals)
}

// runPrincipals runs the per-principal connections For asks for, closes
// idle ones, and stops them all when ctx ends.
func (b *Backend) runPrincipals(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	every := max(b.opts.PrincipalIdle/4, 10*time.Millisecond)
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case pc := <-b.spawn:
			pctx, cancel := context.WithCancel(ctx)
			b.principalsMu.Lock()
			pc.stop = cancel
			b.principalsMu.Unlock()
			wg.Go(func() {
				defer close(pc.done)
				_ = pc.b.Run(pctx)
			})
		case now := <-tick.C:
			b.principalsMu.Lock()
			for name, pc := range b.principals {
				if pc.stop != nil && now.Sub(pc.lastUsed) > b.opts.PrincipalIdle && pc.b.Inflight() == 0 {
					pc.stop()
					delete(b.principals, name)
					b.log.Info("closed an idle per-principal session", "principal", name)
				}
			}
			b.principalsMu.Unlock()
		}
	}
}

// principalObserver ignores a per-principal connection's life and its
// notifications outside calls: lists and health come from the shared
// connection, and resource subscriptions live there too, so nothing a
// principal's session says outside a call is delivered (it could not be
// told apart from the shared one's, and must not reach other principals).
type principalObserver struct{}

func (principalObserver) BackendUp(*Backend)                              {}
func (principalObserver) BackendDown(*Backend, error)                     {}
func (principalObserver) BackendNotify(*Backend, string, json.RawMessage) {}
