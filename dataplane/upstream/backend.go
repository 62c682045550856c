package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mcpgw/mcpgw/dataplane/rpc"
)

// ProtocolVersion is the protocol revision the edge speaks to backends.
const ProtocolVersion = "2025-11-25"

// Errors a Call can end with. They are wrapped with the backend's name.
var (
	// ErrUnavailable: the backend is not connected (starting, restarting,
	// or stopped). Nothing was sent.
	ErrUnavailable = errors.New("backend unavailable")
	// ErrConnectionLost: the connection (process or session) ended while
	// the call was in flight; the call may or may not have run.
	ErrConnectionLost = errors.New("backend connection lost mid-call")
	// ErrTimeout: the backend's configured timeout elapsed.
	ErrTimeout = errors.New("backend timed out")
)

// Response is a backend's answer: exactly one of Result and Error is set,
// both raw JSON.
type Response struct {
	Result json.RawMessage
	Error  json.RawMessage
}

// Sink receives what a backend sends in the course of one call. Methods are
// called from the goroutine reading the backend, so they must not block for
// long except Request, which the backend itself is waiting on.
type Sink interface {
	// Notify delivers a notification related to the call (progress with the
	// caller's own token restored, log messages).
	Notify(method string, params json.RawMessage)
	// Request relays a server→client request (sampling, elicitation, roots)
	// to the caller and returns its answer.
	Request(ctx context.Context, method string, params json.RawMessage) (Response, error)
}

// Observer hears about a backend's life. One observer serves every backend
// of an edge and outlives config reloads.
type Observer interface {
	// BackendUp: a connection is initialized; lists may have changed.
	BackendUp(b *Backend)
	// BackendDown: the connection is gone (err says why; nil on shutdown).
	BackendDown(b *Backend, err error)
	// BackendNotify: a notification not tied to any call (list_changed,
	// resources/updated, log messages outside a call).
	BackendNotify(b *Backend, method string, params json.RawMessage)
}

// Config describes one backend. Environment references in it must already
// be expanded.
type Config struct {
	Name string
	// Exactly one of Stdio and HTTP is set.
	Stdio *StdioConfig
	HTTP  *HTTPConfig
	// Timeout bounds one call (default 60s).
	Timeout time.Duration
	// PerPrincipal gives every principal its own upstream session (or
	// process) for its calls, for backends that keep per-caller state
	// (`sessions: per_principal`); see For.
	PerPrincipal bool
}

// StdioConfig runs the backend as a child process.
type StdioConfig struct {
	Command []string
	Env     []string // "K=V", added to the edge's environment
	Dir     string
	// StopGrace is how long shutdown waits after closing stdin before
	// SIGTERM, and after SIGTERM before SIGKILL (default 2s).
	StopGrace time.Duration
}

// HTTPConfig reaches the backend over Streamable HTTP.
type HTTPConfig struct {
	URL     string
	Headers map[string]string
}

// withDefaults returns c with defaults filled in, sharing nothing mutable
// with c.
func (c Config) withDefaults() Config {
	if c.Timeout <= 0 {
		c.Timeout = 60 * time.Second
	}
	if c.Stdio != nil {
		sc := *c.Stdio
		if sc.StopGrace <= 0 {
			sc.StopGrace = 2 * time.Second
		}
		c.Stdio = &sc
	}
	if c.HTTP != nil {
		hc := *c.HTTP
		c.HTTP = &hc
	}
	return c
}

// Equal reports whether two configs describe the same backend, so a reload
// can keep a running one.
func (c Config) Equal(o Config) bool {
	c, o = c.withDefaults(), o.withDefaults()
	if c.Name != o.Name || c.Timeout != o.Timeout || c.PerPrincipal != o.PerPrincipal || (c.Stdio == nil) != (o.Stdio == nil) || (c.HTTP == nil) != (o.HTTP == nil) {
		return false
	}
	if c.Stdio != nil {
		a, b := c.Stdio, o.Stdio
		if a.Dir != b.Dir || a.StopGrace != b.StopGrace || !equalStrings(a.Command, b.Command) || !equalStrings(a.Env, b.Env) {
			return false
		}
	}
	if c.HTTP != nil {
		a, b := c.HTTP, o.HTTP
		if a.URL != b.URL || len(a.Headers) != len(b.Headers) {
			return false
		}
		for k, v := range a.Headers {
			if w, ok := b.Headers[k]; !ok || w != v {
				return false
			}
		}
	}
	return true
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Options are the edge-wide settings shared by all backends.
type Options struct {
	Logger *slog.Logger
	// Client carries HTTP backends' traffic; see NewTransport.
	Client   *http.Client
	Observer Observer
	// ClientInfo is sent in initialize ({"name":..,"version":..}).
	ClientInfo json.RawMessage
	// ClientCapabilities is what the edge declares to backends. The edge
	// relays sampling, elicitation and roots for its clients, and refuses
	// them per call for a client that lacks them.
	ClientCapabilities json.RawMessage
	// ConnectWait is how long a call waits for a backend that is
	// (re)connecting before failing with ErrUnavailable (default 2s).
	ConnectWait time.Duration
	// Backoff bounds restart delays (defaults 100ms and 30s).
	MinBackoff, MaxBackoff time.Duration
	// PrincipalIdle closes a per-principal connection unused this long
	// (default 30m).
	PrincipalIdle time.Duration
}

// Backend is one upstream MCP server. Create it with New, run it with Run,
// call it with Call from any goroutine.
type Backend struct {
	cfg  Config
	opts Options
	log  *slog.Logger

	// cur is the live connection, nil while down.
	cur atomic.Pointer[conn]
	// inflight counts calls in progress, so a removed backend can be
	// drained before it is stopped.
	inflight atomic.Int64

	// mu guards changed, which is closed and replaced whenever cur changes
	// so callers can wait for a reconnect.
	mu      sync.Mutex
	changed chan struct{}

	// Era bridging (era.go): watchMu guards watched, the resources clients
	// subscribed to on a modern backend; rewatch wakes its listen stream.
	watchMu sync.Mutex
	watched map[string]int
	rewatch chan struct{}

	// principalsMu guards principals: the per-principal connections of a
	// PerPrincipal backend, by principal. spawn hands new ones to Run.
	principalsMu sync.Mutex
	principals   map[string]*principalConn
	spawn        chan *principalConn
	// parent is the shared backend of a per-principal one.
	parent *Backend
	// logLevel holds the params of the last logging/setLevel sent, so a
	// new connection (a reconnect, or a principal's own) gets it too.
	logLevel atomic.Pointer[json.RawMessage]
}

// New validates cfg and returns a backend that does nothing until Run.
func New(cfg Config, opts Options) (*Backend, error) {
	if cfg.Name == "" {
		return nil, errors.New("backend has no name")
	}
	if (cfg.Stdio == nil) == (cfg.HTTP == nil) {
		return nil, fmt.Errorf("backend %q: exactly one of stdio and http must be set", cfg.Name)
	}
	if cfg.Stdio != nil && len(cfg.Stdio.Command) == 0 {
		return nil, fmt.Errorf("backend %q: stdio.command is empty", cfg.Name)
	}
	if cfg.HTTP != nil && cfg.HTTP.URL == "" {
		return nil, fmt.Errorf("backend %q: http.url is empty", cfg.Name)
	}
	cfg = cfg.withDefaults()
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Client == nil {
		opts.Client = &http.Client{Transport: NewTransport(64)}
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = 100 * time.Millisecond
	}
	if opts.ConnectWait <= 0 {
		opts.ConnectWait = 2 * time.Second
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = 30 * time.Second
	}
	if opts.PrincipalIdle <= 0 {
		opts.PrincipalIdle = 30 * time.Minute
	}
	if len(opts.ClientInfo) == 0 {
		opts.ClientInfo = json.RawMessage(`{"name":"mcpgw","version":"dev"}`)
	}
	if len(opts.ClientCapabilities) == 0 {
		opts.ClientCapabilities = json.RawMessage(`{"roots":{"listChanged":true},"sampling":{},"elicitation":{}}`)
	}
	return &Backend{
		cfg:     cfg,
		opts:    opts,
		log:     opts.Logger.With("backend", cfg.Name),
		changed: make(chan struct{}),
		rewatch: make(chan struct{}, 1),
		spawn:   make(chan *principalConn, 64),
	}, nil
}

// Name returns the backend's configured name.
func (b *Backend) Name() string { return b.cfg.Name }

// Config returns the backend's configuration.
func (b *Backend) Config() Config { return b.cfg }

// Inflight returns the number of calls in progress.
func (b *Backend) Inflight() int64 { return b.inflight.Load() }

// Healthy reports whether the backend has an initialized connection.
func (b *Backend) Healthy() bool { return b.cur.Load() != nil }

// InitializeResult returns the backend's initialize result (capabilities,
// serverInfo, instructions) for the live connection, or nil when down.
func (b *Backend) InitializeResult() json.RawMessage {
	if c := b.cur.Load(); c != nil {
		return c.initResult
	}
	return nil
}

// Run keeps the backend connected until ctx ends, then shuts it down
// cleanly. It returns nil on shutdown; it never gives up on a failing
// backend, it backs off.
func (b *Backend) Run(ctx context.Context) error {
	if b.cfg.PerPrincipal {
		var wg sync.WaitGroup
		wg.Go(func() { b.runPrincipals(ctx) })
		defer wg.Wait()
	}
	attempt := 0
	for {
		start := time.Now()
		var err error
		if b.cfg.Stdio != nil {
			err = b.runStdio(ctx)
		} else {
			err = b.runHTTP(ctx)
		}
		if ctx.Err() != nil {
			return nil
		}
		// A connection that stayed up a while earned a fresh backoff.
		if time.Since(start) > 10*time.Second {
			attempt = 0
		}
		d := backoff(b.opts.MinBackoff, b.opts.MaxBackoff, attempt)
		attempt++
		b.log.Warn("backend connection ended; reconnecting", "err", err, "retry_in", d)
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// backoff returns a jittered exponential delay: uniform in [d/2, d] where d
// doubles per attempt from min up to max, so a crash-looping fleet does not
// restart in lockstep.
func backoff(minD, maxD time.Duration, attempt int) time.Duration {
	d := minD
	for i := 0; i < attempt && d < maxD; i++ {
		d *= 2
	}
	d = min(d, maxD)
	return d/2 + rand.N(d/2+1)
}

// setConn publishes c (nil when down) and wakes waiters.
func (b *Backend) setConn(c *conn) {
	b.cur.Store(c)
	b.mu.Lock()
	close(b.changed)
	b.changed = make(chan struct{})
	b.mu.Unlock()
}

func (b *Backend) changedCh() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.changed
}

// Call sends one request and waits for its response. params are raw JSON
// (nil for none); a progress token in params._meta is replaced by one of the
// edge's and restored in the progress notifications given to sink. sink may
// be nil. An error means no response came from the backend; a JSON-RPC error
// from the backend is a Response with Error set.
func (b *Backend) Call(ctx context.Context, method string, params json.RawMessage, sink Sink) (Response, error) {
	return b.call(ctx, method, params, sink, nil)
}

// Modern describes a 2026-07-28 request: it carries its protocol version
// and client capabilities in params._meta and stands alone, so over HTTP it
// is sent without the legacy session, with the version and the Mcp-Method
// and Mcp-Name headers the body implies.
type Modern struct {
	Version string
	// Name is params.name (tools/call, prompts/get) or params.uri
	// (resources/read), mirrored in Mcp-Name; "" for other methods.
	Name string
	// Params are the client's Mcp-Param-* headers (tool arguments mirrored
	// in headers), passed on for the backend to check against the body.
	Params map[string]string
}

// CallModern is Call for a 2026-07-28 request whose params already carry
// the per-request _meta. Its result (including an input_required one) comes
// back untouched.
func (b *Backend) CallModern(ctx context.Context, method string, params json.RawMessage, sink Sink, m Modern) (Response, error) {
	return b.call(ctx, method, params, sink, &m)
}

func (b *Backend) call(ctx context.Context, method string, params json.RawMessage, sink Sink, modern *Modern) (Response, error) {
	if method == "logging/setLevel" {
		p := append(json.RawMessage(nil), params...)
		b.logLevel.Store(&p)
	}
	b.inflight.Add(1)
	defer b.inflight.Add(-1)
	cc := newCallCtx(ctx, b.cfg.Timeout)
	defer cc.end()
	ctx = cc
	for attempt := 0; ; attempt++ {
		c := b.cur.Load()
		if c == nil {
			if c = b.awaitConn(ctx); c == nil {
				return Response{}, fmt.Errorf("calling %s on backend %q: %w", method, b.cfg.Name, ErrUnavailable)
			}
		}
		if c.modern != "" && modern == nil {
			// Era bridge: a modern backend has no resources/subscribe.
			if r, ok := b.callWatch(method, params); ok {
				return r, nil
			}
		}
		resp, err := c.call(ctx, method, params, sink, modern)
		if errors.Is(err, errSessionExpired) && attempt == 0 {
			// The server forgot our session before processing the request
			// (404), so a retry on a fresh session cannot run it twice.
			b.log.Info("upstream session expired; re-initializing")
			c.close(errSessionExpired)
			if err := b.awaitReconnect(ctx, c); err != nil {
				return Response{}, fmt.Errorf("calling %s on backend %q: session expired and re-initialize failed: %w", method, b.cfg.Name, err)
			}
			continue
		}
		if err != nil {
			// Err first: it is what notices a passed deadline (callCtx).
			if ctx.Err() != nil && errors.Is(context.Cause(ctx), ErrTimeout) {
				err = fmt.Errorf("%w after %s", ErrTimeout, b.cfg.Timeout)
			}
			return Response{}, fmt.Errorf("calling %s on backend %q: %w", method, b.cfg.Name, err)
		}
		return resp, nil
	}
}

// awaitConn waits up to Options.ConnectWait for a connection, so a call
// arriving during a quick reconnect (expired session, restarted process)
// rides it out instead of failing.
func (b *Backend) awaitConn(ctx context.Context) *conn {
	t := time.NewTimer(b.opts.ConnectWait)
	defer t.Stop()
	for {
		ch := b.changedCh()
		if c := b.cur.Load(); c != nil {
			return c
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			return nil
		case <-ch:
		}
	}
}

// awaitReconnect waits until the connection is no longer old.
func (b *Backend) awaitReconnect(ctx context.Context, old *conn) error {
	for {
		ch := b.changedCh()
		if c := b.cur.Load(); c != nil && c != old {
			return nil
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-ch:
		}
	}
}

// levelParams returns the logging/setLevel params a new connection of b
// should be sent: the last the edge sent b, or b's shared backend.
func (b *Backend) levelParams() json.RawMessage {
	for r := b; r != nil; r = r.parent {
		if p := r.logLevel.Load(); p != nil {
			return *p
		}
	}
	return nil
}

// Notify sends a notification to the backend on its live connection.
func (b *Backend) Notify(ctx context.Context, method string, params json.RawMessage) error {
	c := b.cur.Load()
	if c == nil {
		return fmt.Errorf("notifying %s to backend %q: %w", method, b.cfg.Name, ErrUnavailable)
	}
	if err := c.t.send(ctx, rpc.AppendNotification(nil, method, params)); err != nil {
		return fmt.Errorf("notifying %s to backend %q: %w", method, b.cfg.Name, err)
	}
	return nil
}
