package upstream

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mcpgw/mcpgw/dataplane/rpc"
	"github.com/mcpgw/mcpgw/internal/mcpwire"
)

// errSessionExpired: an HTTP backend answered 404 to our session id.
var errSessionExpired = errors.New("upstream session expired (HTTP 404)")

// transport moves bytes to one backend connection.
type transport interface {
	// send writes a notification or a response.
	send(ctx context.Context, msg []byte) error
	// request writes a request. A transport whose replies come back on the
	// request itself (HTTP) also reads them, dispatching every message to
	// the conn with cl as its origin, until cl's response is in.
	request(ctx context.Context, c *conn, cl *call, msg []byte) error
	// copiesRequest reports whether request is done with msg's bytes
	// once it returns (it wrote or copied them), so they may be reused.
	copiesRequest() bool
	// answersInline reports whether request returns only once cl's
	// response is in or the request failed (HTTP: the response comes on
	// the request's own reply), so no call waits for a later delivery.
	answersInline() bool
}

// reqBufs recycles the bytes of requests to transports that copy them
// (copiesRequest), instead of allocating a request's size per call.
var reqBufs = sync.Pool{New: func() any { return new([]byte) }}

// maxPooledRequest bounds the buffers kept in reqBufs: a rare huge
// request's is left to the GC.
const maxPooledRequest = 64 << 10

// conn is one initialized connection: a child process or an HTTP session.
// It multiplexes calls by the ids it mints.
type conn struct {
	b *Backend
	t transport
	// shared is true when server→client messages carry nothing tying them
	// to a call (stdio), so attribution falls back to the sole call in flight.
	shared     bool
	pid        int // the child's pid (stdio), for logs and tests
	initResult json.RawMessage
	// modern is the 2026-07-28 version the backend serves statelessly, ""
	// for a legacy backend (set before the conn is published; era.go).
	modern string

	nextID atomic.Int64
	done   chan struct{}

	// mu guards pending, tokens, inbound and err, and each pending
	// call's response fields.
	mu      sync.Mutex
	pending map[int64]*call
	tokens  map[string]*call              // edge-minted progress token → call
	inbound map[string]context.CancelFunc // backend-originated requests being relayed, by raw id
	err     error                         // why the conn closed; nil while open
}

// call is one request in flight.
type call struct {
	id    int64
	sink  Sink
	token json.RawMessage // the caller's own progress token, restored on the way back
	upTok string          // the edge's token sent upstream
	// resp is the response once got (the first stands), guarded by the
	// conn's mu. arrived is closed when it comes, for a caller waiting on
	// a transport that does not answer inline (stdio); nil on one that
	// does, so the HTTP hot path makes no channel per call.
	got     bool
	resp    Response
	arrived chan struct{}
	// method and modern describe the request for transports that mirror
	// them in headers (2026-07-28 over HTTP).
	method string
	modern *Modern
}

func newConn(b *Backend, t transport, shared bool) *conn {
	return &conn{
		b:       b,
		t:       t,
		shared:  shared,
		done:    make(chan struct{}),
		pending: make(map[int64]*call),
		tokens:  make(map[string]*call),
		inbound: make(map[string]context.CancelFunc),
	}
}

// close ends the connection: every call in flight fails with err.
func (c *conn) close(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return
	}
	c.err = err
	for _, cancel := range c.inbound {
		cancel()
	}
	close(c.done)
}

func (c *conn) closedErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

func (c *conn) call(ctx context.Context, method string, params json.RawMessage, sink Sink, modern *Modern) (Response, error) {
	cl := &call{id: c.nextID.Add(1), sink: sink, method: method, modern: modern}
	if !c.t.answersInline() {
		cl.arrived = make(chan struct{})
	}
	// Only params that mention a progress token are decoded to find it.
	if bytes.Contains(params, []byte(`"progressToken"`)) {
		if tok := rpc.MetaField(params, "progressToken"); len(tok) > 0 {
			cl.token = tok
			cl.upTok = "mcpgw-" + strconv.FormatInt(cl.id, 10)
			var err error
			if params, err = rpc.SetMetaField(params, "progressToken", rpc.Quote(cl.upTok)); err != nil {
				return Response{}, fmt.Errorf("rewriting progress token: %w", err)
			}
		}
	}
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return Response{}, fmt.Errorf("%w: %w", ErrConnectionLost, err)
	}
	c.pending[cl.id] = cl
	if cl.upTok != "" {
		c.tokens[cl.upTok] = cl
	}
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.pending, cl.id)
		if cl.upTok != "" {
			delete(c.tokens, cl.upTok)
		}
		c.mu.Unlock()
	}()

	var err error
	if c.t.copiesRequest() {
		bp := reqBufs.Get().(*[]byte)
		*bp = rpc.AppendRequest((*bp)[:0], cl.id, method, params)
		err = c.t.request(ctx, c, cl, *bp)
		if cap(*bp) <= maxPooledRequest {
			reqBufs.Put(bp)
		}
	} else {
		err = c.t.request(ctx, c, cl, rpc.AppendRequest(make([]byte, 0, len(params)+len(method)+64), cl.id, method, params))
	}
	// A response may have arrived even if the stream then failed.
	if r, ok := c.response(cl); ok {
		return r, nil
	}
	if err != nil {
		if ctx.Err() != nil {
			c.cancelUpstream(ctx, cl.id, method)
			return Response{}, context.Cause(ctx)
		}
		return Response{}, err
	}
	if cl.arrived == nil {
		// An inline transport returns without error only with the
		// response in; this is a bug, not a wait.
		return Response{}, fmt.Errorf("%w: request ended without its response", ErrConnectionLost)
	}
	select {
	case <-cl.arrived:
		r, _ := c.response(cl)
		return r, nil
	case <-c.done:
		if r, ok := c.response(cl); ok {
			return r, nil
		}
		return Response{}, fmt.Errorf("%w: %w", ErrConnectionLost, c.closedErr())
	case <-ctx.Done():
		c.cancelUpstream(ctx, cl.id, method)
		return Response{}, context.Cause(ctx)
	}
}

// response returns cl's response if it is in.
func (c *conn) response(cl *call) (Response, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return cl.resp, cl.got
}

// answered reports whether cl's response is in.
func (c *conn) answered(cl *call) bool {
	_, ok := c.response(cl)
	return ok
}

// cancelUpstream tells the backend to stop working on id (MCP
// notifications/cancelled; a dropped HTTP stream alone does not cancel).
func (c *conn) cancelUpstream(ctx context.Context, id int64, method string) {
	if method == "initialize" {
		return // the spec forbids cancelling initialize
	}
	reason := "request cancelled by the gateway's caller"
	if errors.Is(context.Cause(ctx), ErrTimeout) {
		reason = "gateway timeout"
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	params := []byte(`{"requestId":` + strconv.FormatInt(id, 10) + `,"reason":` + string(rpc.Quote(reason)) + `}`)
	if err := c.t.send(ctx, rpc.AppendNotification(nil, "notifications/cancelled", params)); err != nil {
		c.b.log.Debug("sending cancellation upstream", "err", err)
	}
}

// initialize performs the MCP handshake on a fresh connection.
func (c *conn) initialize(ctx context.Context) error {
	params := make([]byte, 0, 256)
	params = append(params, `{"protocolVersion":"`+ProtocolVersion+`","capabilities":`...)
	params = append(params, c.b.opts.ClientCapabilities...)
	params = append(params, `,"clientInfo":`...)
	params = append(params, c.b.opts.ClientInfo...)
	params = append(params, '}')
	ctx, cancel := context.WithTimeout(ctx, min(c.b.cfg.Timeout, 30*time.Second))
	defer cancel()
	resp, err := c.call(ctx, "initialize", params, nil, nil)
	if err != nil {
		return fmt.Errorf("initialize: %w", err)
	}
	if len(resp.Error) > 0 {
		return fmt.Errorf("initialize: backend answered error %s", resp.Error)
	}
	c.initResult = resp.Result
	if ht, ok := c.t.(*httpTransport); ok {
		ht.setVersion(rpc.StringField(resp.Result, "protocolVersion"))
	}
	if err := c.t.send(ctx, rpc.AppendNotification(nil, "notifications/initialized", nil)); err != nil {
		return fmt.Errorf("sending notifications/initialized: %w", err)
	}
	// A connection made after the edge asked for logs (a reconnect, or a
	// principal's own session) is asked too before any call uses it.
	if level := c.b.levelParams(); level != nil && len(rpc.Field(rpc.Field(c.initResult, "capabilities"), "logging")) > 0 {
		if r, err := c.call(ctx, "logging/setLevel", level, nil, nil); err != nil || len(r.Error) > 0 {
			c.b.log.Warn("setting the log level on a new connection", "err", err, "error", string(r.Error))
		}
	}
	return nil
}

// dispatch handles one message from the backend. origin is the call whose
// response stream carried it, or nil (stdio, or an HTTP GET stream). spawn
// says whether a server→client request may be served in its own goroutine
// (tracked by wg) instead of inline; ctx bounds that service.
func (c *conn) dispatch(ctx context.Context, raw []byte, origin *call, wg *sync.WaitGroup) {
	// A response, the message nearly every call gets, is delivered
	// straight from the scanned envelope (on the stack); only other
	// messages become an rpc.Message, which escapes to the handlers.
	var env mcpwire.Envelope
	scanErr := mcpwire.Scan(raw, &env)
	if scanErr == nil && (env.Kind == mcpwire.KindResult || env.Kind == mcpwire.KindError) && len(env.ID) > 0 {
		c.deliver(env.ID, Response{Result: env.Result, Error: env.Error})
		return
	}
	m, err := backendMessage(raw, &env, scanErr)
	if err != nil {
		c.b.log.Warn("dropping malformed message from backend", "err", err)
		return
	}
	switch {
	case m.IsResponse():
		c.deliver(m.ID, Response{Result: m.Result, Error: m.Error})
	case m.IsNotification():
		c.notification(m, origin)
	default:
		target := origin
		n := 0
		if target == nil && c.shared {
			target, n = c.soleCall()
		}
		if wg == nil {
			c.serveInbound(ctx, m, target, n)
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.serveInbound(ctx, m, target, n)
		}()
	}
}

// deliver hands the response to call id to the call waiting for it.
func (c *conn) deliver(rawID json.RawMessage, r Response) {
	id, err := strconv.ParseInt(string(rawID), 10, 64)
	if err != nil {
		c.b.log.Warn("dropping response with an id the edge did not mint", "id", string(rawID))
		return
	}
	c.mu.Lock()
	cl := c.pending[id]
	if cl != nil && !cl.got { // a duplicate response: the first one stands
		cl.got, cl.resp = true, r
		if cl.arrived != nil {
			close(cl.arrived)
		}
	}
	c.mu.Unlock()
	if cl == nil {
		c.b.log.Debug("dropping response to a call no longer waiting", "id", id)
	}
}

// soleCall returns the only in-flight call that has a sink, and how many
// there are.
func (c *conn) soleCall() (*call, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var sole *call
	n := 0
	for _, cl := range c.pending {
		if cl.sink != nil {
			sole = cl
			n++
		}
	}
	if n != 1 {
		return nil, n
	}
	return sole, 1
}

func (c *conn) notification(m *rpc.Message, origin *call) {
	switch m.Method {
	case "notifications/progress":
		tok := rpc.StringField(m.Params, "progressToken")
		c.mu.Lock()
		cl := c.tokens[tok]
		c.mu.Unlock()
		if cl == nil || cl.sink == nil {
			return
		}
		params, err := rpc.SetField(m.Params, "progressToken", cl.token)
		if err != nil {
			return
		}
		cl.sink.Notify(m.Method, params)
	case "notifications/cancelled":
		// The backend withdraws a request it sent us.
		id := rpc.Field(m.Params, "requestId")
		c.mu.Lock()
		cancel := c.inbound[string(id)]
		c.mu.Unlock()
		if cancel != nil {
			cancel()
		}
	case "notifications/message":
		target := origin
		n := 0
		if target == nil && c.shared {
			target, n = c.soleCall()
		}
		switch {
		case target != nil && target.sink != nil:
			target.sink.Notify(m.Method, m.Params)
		case n == 0:
			// Nothing in flight: a backend-level log line, not a caller's.
			c.b.opts.Observer.BackendNotify(c.b, m.Method, m.Params)
		default:
			// Several callers share this process and nothing says whose
			// log this is; delivering it to all would leak across callers.
			c.b.log.Debug("dropping log message that cannot be attributed", "calls_in_flight", n)
		}
	default:
		c.b.opts.Observer.BackendNotify(c.b, m.Method, m.Params)
	}
}

// serveInbound answers a server→client request: ping locally, anything
// else by relaying it to the caller it belongs to. It always replies.
func (c *conn) serveInbound(ctx context.Context, m *rpc.Message, target *call, inFlight int) {
	var out []byte
	switch {
	case m.Method == "ping":
		out = rpc.AppendResponse(nil, m.ID, json.RawMessage("{}"), nil)
	case target == nil || target.sink == nil:
		reason := "it was not sent in the course of a client's request"
		if inFlight > 1 {
			reason = fmt.Sprintf("%d client requests are in flight on this shared stdio connection", inFlight)
		}
		out = rpc.AppendErrorResponse(nil, m.ID, rpc.Errorf(rpc.CodeInternalError,
			"mcpgw: cannot relay %s to a client: %s", m.Method, reason))
	default:
		ctx, cancel := context.WithCancel(ctx)
		key := string(m.ID)
		c.mu.Lock()
		c.inbound[key] = cancel
		c.mu.Unlock()
		r, err := target.sink.Request(ctx, m.Method, m.Params)
		c.mu.Lock()
		delete(c.inbound, key)
		c.mu.Unlock()
		cancel()
		if err != nil {
			var re *rpc.Error
			if !errors.As(err, &re) {
				re = rpc.Errorf(rpc.CodeInternalError, "mcpgw: relaying %s: %v", m.Method, err)
			}
			out = rpc.AppendErrorResponse(nil, m.ID, re)
		} else {
			out = rpc.AppendResponse(nil, m.ID, r.Result, r.Error)
		}
	}
	sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer scancel()
	if err := c.t.send(sctx, out); err != nil {
		c.b.log.Warn("answering backend request", "method", m.Method, "err", err)
	}
}

// parseBackendMessage reads a backend's message with the zero-allocation
// envelope scanner (result and error bytes alias raw, which the caller
// owns); a message the strict scanner refuses is read leniently, since a
// backend's odd-but-valid JSON is not an attack on the edge's own checks.
func parseBackendMessage(raw []byte) (*rpc.Message, error) {
	var env mcpwire.Envelope // stays on the stack
	return backendMessage(raw, &env, mcpwire.Scan(raw, &env))
}

// backendMessage is parseBackendMessage given raw's scan into env and its
// error.
func backendMessage(raw []byte, env *mcpwire.Envelope, scanErr error) (*rpc.Message, error) {
	if scanErr != nil {
		return rpc.Parse(raw)
	}
	m := &rpc.Message{JSONRPC: "2.0", ID: env.ID, Params: env.Params}
	switch env.Kind {
	case mcpwire.KindRequest, mcpwire.KindNotification:
		m.Method = env.MethodString()
	case mcpwire.KindResult:
		m.Result = env.Result
	case mcpwire.KindError:
		m.Error = env.Error
	}
	return m, nil
}
