// Package gateway is the edge's front door: it serves MCP to clients over
// Streamable HTTP (at /mcp) and over stdio, and runs every client request
// through the chain authenticate → decide → forward → record.
//
// The request path is built for the hot path of DESIGN §4.3: the body is
// read once, only the envelope is decoded, arguments and results pass
// through as raw bytes, live state is one atomic load, and there is no lock
// shared by all requests (sessions live in a sync.Map and each has its
// own mutex).
package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mcpgw/mcpgw/dataplane/catalog"
	"github.com/mcpgw/mcpgw/dataplane/rpc"
	"github.com/mcpgw/mcpgw/dataplane/session"
	"github.com/mcpgw/mcpgw/dataplane/state"
	"github.com/mcpgw/mcpgw/dataplane/upstream"
)

// Protocol versions of the legacy (initialize-based) era the edge speaks to
// clients, newest first.
var legacyVersions = []string{"2025-11-25", "2025-06-18", "2025-03-26"}

// CodeDenied is the JSON-RPC error for a request policy refused.
const CodeDenied = -32003

// StateSource yields the live state (nil before the first config).
type StateSource interface {
	Load() *state.State
}

// Options configure a Gateway. Zero values take the documented defaults.
type Options struct {
	Logger  *slog.Logger
	Auth    Authenticator // default Anonymous{"anonymous"}
	Decider Decider       // default AllowAll
	Record  Recorder      // default Discard
	Metrics *Metrics      // nil: no metrics
	// ServerName and ServerVersion go into initialize's serverInfo.
	ServerName, ServerVersion string
	// PageSize bounds list pages (default 100).
	PageSize int
	// MaxBodyBytes bounds a request body (default 4 MiB).
	MaxBodyBytes int64
	// AllowedHosts are the Host header values (without port) accepted on
	// HTTP; "*" allows any. Empty: localhost, 127.0.0.1 and ::1 only.
	AllowedHosts []string
	// AllowedOrigins are the Origin header values accepted ("*": any).
	// Requests without Origin are accepted. Empty: origins whose host is
	// an allowed host.
	AllowedOrigins []string
	// KeepAlive is the interval of SSE keep-alive comments on idle
	// streams (default 15s).
	KeepAlive time.Duration
	// SessionIdle expires sessions unused this long (default 30m).
	SessionIdle time.Duration
	// ListWait bounds how long a request for an item nobody lists waits
	// for a backend that could serve it and has not been listed yet (it is
	// starting or reconnecting) before the item is reported unknown or
	// the backend unavailable (default 5s).
	ListWait time.Duration
	// MaxParkedPerPrincipal bounds the era-bridged calls one principal may
	// hold parked waiting for its input (a 2026-07-28 client of a legacy
	// backend, bridge_modern.go); a call that would park beyond it gets a
	// JSON-RPC error instead (default 16; negative: no limit).
	MaxParkedPerPrincipal int
}

// Gateway serves MCP clients from the live state.
type Gateway struct {
	state    StateSource
	sessions *session.Store
	opts     Options
	log      *slog.Logger

	// upstreamLogging is set once any client asked for logs: from then on
	// backends are asked for every level and the edge filters per session.
	// loggingOnce runs that asking; a client asking meanwhile waits in it,
	// so no client's setLevel returns before the backends log.
	upstreamLogging atomic.Bool
	loggingOnce     sync.Once

	// subsMu guards subs: how many sessions subscribe to each backend URI,
	// so the backend (one shared upstream session) sees one subscribe and
	// the last unsubscribe.
	subsMu sync.Mutex
	subs   map[subKey]int

	// listeners holds the open 2026-07-28 subscriptions/listen streams
	// (*listener → struct{}).
	listeners sync.Map

	// tasks maps the task ids clients see to backends' tasks.
	tasks taskTable

	// bridge holds modern clients' calls parked on legacy backends between
	// input rounds (era bridging, bridge_modern.go).
	bridge *bridge
}

type subKey struct{ backend, uri string }

// New returns a gateway over src.
func New(src StateSource, opts Options) *Gateway {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Auth == nil {
		opts.Auth = Anonymous{Name: "anonymous"}
	}
	if opts.Decider == nil {
		opts.Decider = AllowAll{}
	}
	if opts.Record == nil {
		opts.Record = Discard{}
	}
	if opts.ServerName == "" {
		opts.ServerName = "mcpgw"
	}
	if opts.ServerVersion == "" {
		opts.ServerVersion = "dev"
	}
	if opts.PageSize <= 0 {
		opts.PageSize = 100
	}
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = 4 << 20
	}
	if opts.KeepAlive <= 0 {
		opts.KeepAlive = 15 * time.Second
	}
	if opts.SessionIdle <= 0 {
		opts.SessionIdle = 30 * time.Minute
	}
	if opts.ListWait <= 0 {
		opts.ListWait = 5 * time.Second
	}
	if opts.MaxParkedPerPrincipal == 0 {
		opts.MaxParkedPerPrincipal = 16
	}
	g := &Gateway{
		state:    src,
		sessions: &session.Store{},
		opts:     opts,
		log:      opts.Logger,
		subs:     make(map[subKey]int),
		bridge:   newBridge(opts.MaxParkedPerPrincipal),
	}
	g.sessions.OnClose = g.sessionClosed
	if opts.Metrics != nil {
		opts.Metrics.sessions = g.sessions
		opts.Metrics.state = src
		opts.Metrics.bridge = g.bridge
	}
	return g
}

// Run expires idle sessions until ctx ends, then closes all sessions.
func (g *Gateway) Run(ctx context.Context) error {
	defer g.bridge.stop()
	return g.sessions.Run(ctx, g.opts.SessionIdle)
}

// Sessions returns the number of live sessions.
func (g *Gateway) Sessions() int { return g.sessions.Len() }

// Outbound carries messages to the client in the course of one request:
// notifications (progress, logs) and server→client requests.
type Outbound interface {
	Send(msg []byte) error
}

// negotiate picks the protocol version for a legacy initialize: the
// client's if the edge speaks it, else the newest the edge speaks (the
// client then decides whether to continue), as the lifecycle spec says.
func negotiate(requested string) string {
	for _, v := range legacyVersions {
		if v == requested {
			return v
		}
	}
	return legacyVersions[0]
}

// initialize fills sess from the client's initialize params and returns
// the result.
func (g *Gateway) initialize(st *state.State, sess *session.Session, params json.RawMessage) json.RawMessage {
	sess.Version = negotiate(rpc.StringField(params, "protocolVersion"))
	caps := rpc.Field(params, "capabilities")
	sess.CapsJSON = caps
	sess.Caps = session.ClientCaps{
		Sampling:    len(rpc.Field(caps, "sampling")) > 0,
		Elicitation: len(rpc.Field(caps, "elicitation")) > 0,
		Roots:       len(rpc.Field(caps, "roots")) > 0,
	}
	info := rpc.Field(params, "clientInfo")
	sess.ClientName = rpc.StringField(info, "name")
	sess.ClientVersion = rpc.StringField(info, "version")

	b := make([]byte, 0, 512)
	b = append(b, `{"protocolVersion":`...)
	b = append(b, rpc.Quote(sess.Version)...)
	b = append(b, `,"capabilities":`...)
	b = append(b, g.serverCapabilities(st)...)
	b = append(b, `,"serverInfo":{"name":`...)
	b = append(b, rpc.Quote(g.opts.ServerName)...)
	b = append(b, `,"version":`...)
	b = append(b, rpc.Quote(g.opts.ServerVersion)...)
	b = append(b, `}}`...)
	return b
}

// serverCapabilities advertises what the edge serves: the three lists
// always (they are the edge's own, possibly empty, and it announces their
// changes), completions, logging and subscriptions when a backend offers
// them.
func (g *Gateway) serverCapabilities(st *state.State) json.RawMessage {
	var completions, logging, subscribe bool
	if st != nil {
		for _, b := range st.Backends {
			caps := rpc.Field(b.InitializeResult(), "capabilities")
			completions = completions || len(rpc.Field(caps, "completions")) > 0
			logging = logging || len(rpc.Field(caps, "logging")) > 0
			subscribe = subscribe || string(rpc.Field(rpc.Field(caps, "resources"), "subscribe")) == "true"
		}
	}
	var sb strings.Builder
	sb.WriteString(`{"tools":{"listChanged":true},"prompts":{"listChanged":true},"resources":{"listChanged":true`)
	if subscribe {
		sb.WriteString(`,"subscribe":true`)
	}
	sb.WriteString(`}`)
	if st != nil {
		if tasks := taskCapabilities(st); tasks != nil {
			sb.WriteString(`,"tasks":`)
			sb.Write(tasks)
		}
	}
	if completions {
		sb.WriteString(`,"completions":{}`)
	}
	if logging {
		sb.WriteString(`,"logging":{}`)
	}
	sb.WriteString(`}`)
	return json.RawMessage(sb.String())
}

// errAuditUnavailable answers a request whose outcome could not be
// recorded, or that was refused because it could not be.
var errAuditUnavailable = rpc.Errorf(rpc.CodeInternalError, "mcpgw: audit unavailable; the request was not served")

// admit reports why the recorder would refuse this request's event now,
// checked before anything reaches a backend.
func (g *Gateway) admit() error {
	if a, ok := g.opts.Record.(Availability); ok {
		return a.Available()
	}
	return nil
}

// serve runs one request through the chain and returns the response bytes
// to send, or nil when the client cancelled the request (a cancelled
// request gets no response, 2025-11-25 utilities/cancellation). cc, when
// not nil, is a zero Canceler for the call (part of the caller's
// allocation, see post).
func (g *Gateway) serve(ctx context.Context, st *state.State, sess *session.Session, m *message, out Outbound, rq *Request, cc *upstream.Canceler) []byte {
	rq.Method = m.Method
	rq.ID = m.ID
	if sess != nil {
		rq.SessionID = sess.ID
		rq.ProtocolVersion = sess.Version
		rq.ClientName, rq.ClientVersion = sess.ClientName, sess.ClientVersion
	}
	// The client's notifications/cancelled cancels the upstream call
	// through the call's own context (one context per call, not one per
	// layer).
	if sess == nil {
		cc = nil // nothing can cancel the call
	} else {
		if cc == nil {
			cc = &upstream.Canceler{}
		}
		ctx = upstream.WithCanceler(ctx, cc)
		sess.Track(m.ID, cc)
		defer sess.Untrack(m.ID)
	}

	var result, rerr json.RawMessage
	if st == nil {
		rq.Status = StatusUnavailable
		rerr = g.fail(rq, rpc.Errorf(rpc.CodeInternalError, "mcpgw: the edge has no configuration yet"))
	} else {
		result, rerr = g.dispatch(ctx, st, sess, m, out, rq)
	}
	if rq.Status == "" {
		rq.Status = StatusOK
	}
	resp := rpc.AppendResponse(make([]byte, 0, len(result)+len(rerr)+64), m.ID, result, rerr)
	if cc != nil && cc.Cause() != nil {
		rq.Status = StatusCancelled
		g.finish(ctx, m.ID, rq, nil)
		return nil
	}
	return g.finish(ctx, m.ID, rq, resp)
}

// finish records the outcome and returns what the client may see.
func (g *Gateway) finish(ctx context.Context, id json.RawMessage, rq *Request, resp []byte) []byte {
	rq.Latency = time.Since(rq.Start)
	rq.ResponseBytes = len(resp)
	if ctx.Done() != nil {
		// Recording must finish even if the client went away.
		ctx = context.WithoutCancel(ctx)
	}
	if err := g.opts.Record.Record(ctx, rq); err != nil {
		g.log.Error("recording request failed; withholding the result", "method", rq.Method, "err", err)
		rq.unrecorded = true
		resp = rpc.AppendErrorResponse(nil, id, errAuditUnavailable)
	}
	if g.opts.Metrics != nil {
		g.opts.Metrics.observe(rq)
	}
	return resp
}

func (g *Gateway) fail(rq *Request, e *rpc.Error) json.RawMessage {
	if rq.Status == "" {
		rq.Status = StatusError
	}
	rq.Error = e.Message
	return e.Raw()
}

// dispatch routes one request. It returns the result or the error object.
func (g *Gateway) dispatch(ctx context.Context, st *state.State, sess *session.Session, m *message, out Outbound, rq *Request) (json.RawMessage, json.RawMessage) {
	switch m.Method {
	case "ping":
		if !g.allowed(ctx, st, rq, Action{Method: m.Method}) {
			return nil, g.denied(rq)
		}
		return json.RawMessage("{}"), nil
	case "tools/list", "prompts/list", "resources/list", "resources/templates/list":
		k, _ := catalog.KindOfList(m.Method)
		return g.list(ctx, st, k, m.cursor(), rq)
	case "tools/call":
		return g.callNamed(ctx, st, sess, catalog.Tools, m, out, rq)
	case "prompts/get":
		return g.callNamed(ctx, st, sess, catalog.Prompts, m, out, rq)
	case "resources/read":
		return g.callResource(ctx, st, sess, m, out, rq)
	case "resources/subscribe", "resources/unsubscribe":
		return g.subscription(ctx, st, sess, m, rq)
	case "completion/complete":
		return g.complete(ctx, st, sess, m, out, rq)
	case "logging/setLevel":
		return g.setLevel(ctx, st, sess, m, rq)
	case "tasks/get", "tasks/result", "tasks/cancel":
		return g.taskRequest(ctx, st, sess, m, out, rq)
	case "tasks/list":
		return g.taskList(ctx, st, rq)
	case "initialize":
		return nil, g.fail(rq, rpc.Errorf(rpc.CodeInvalidRequest, "mcpgw: the session is already initialized"))
	default:
		return nil, g.fail(rq, rpc.Errorf(rpc.CodeMethodNotFound, "mcpgw: method %q is not supported", m.Method))
	}
}

func (g *Gateway) allowed(ctx context.Context, st *state.State, rq *Request, a Action) bool {
	rq.Decision = g.opts.Decider.Decide(ctx, st, rq.Principal, a)
	return rq.Decision.Allow
}

func (g *Gateway) denied(rq *Request) json.RawMessage {
	rq.Status = StatusDenied
	msg := "mcpgw: denied by policy"
	if rq.Decision.Reason != "" {
		msg += ": " + rq.Decision.Reason
	}
	return g.fail(rq, rpc.Errorf(CodeDenied, "%s", msg))
}

// list serves a page of the merged catalog, item by item filtered by the
// decider.
func (g *Gateway) list(ctx context.Context, st *state.State, k catalog.Kind, cursor string, rq *Request) (json.RawMessage, json.RawMessage) {
	if !g.allowed(ctx, st, rq, Action{Method: rq.Method}) {
		return nil, g.denied(rq)
	}
	keep := func(it *catalog.Item) bool {
		return g.opts.Decider.Decide(ctx, st, rq.Principal, Action{Method: k.UseMethod(), Backend: it.Backend, Name: it.Name}).Allow
	}
	items, next, err := st.Catalog.Page(k, cursor, g.opts.PageSize, keep)
	if err != nil {
		return nil, g.fail(rq, rpc.Errorf(rpc.CodeInvalidParams, "mcpgw: %v", err))
	}
	n := 64 + len(next)
	for _, it := range items {
		n += len(it.JSON) + 1
	}
	b := make([]byte, 0, n)
	b = append(b, `{"`...)
	b = append(b, k.ResultField()...)
	b = append(b, `":[`...)
	for i, it := range items {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, it.JSON...)
	}
	// The list is filtered for this caller, so no cache may share it across
	// callers; and the catalog can change at any time (2026-07-28 caching).
	b = append(b, `],"ttlMs":0,"cacheScope":"private"`...)
	if next != "" {
		b = append(b, `,"nextCursor":`...)
		b = append(b, rpc.Quote(next)...)
	}
	return append(b, '}'), nil
}

// callNamed serves tools/call and prompts/get: route by exposed name, put
// the backend's own name back, forward.
func (g *Gateway) callNamed(ctx context.Context, st *state.State, sess *session.Session, k catalog.Kind, m *message, out Outbound, rq *Request) (json.RawMessage, json.RawMessage) {
	// A listed name without escapes is looked up by the body's bytes and
	// then used as the catalog's own string: decoding it into a string of
	// its own was an allocation per call.
	var name string
	var it *catalog.Item
	var ok bool
	if b, plain := m.env.Name.Unquoted(); plain && len(b) > 0 {
		if it, ok = st.Catalog.Lookup(k, string(b)); ok {
			name = it.Name
		}
	}
	if !ok {
		name = m.name()
	}
	if name == "" {
		return nil, g.fail(rq, rpc.Errorf(rpc.CodeInvalidParams, "mcpgw: params.name is required"))
	}
	rq.Name = name
	rq.Arguments = m.env.Arguments
	if !ok {
		it, ok = st.Catalog.Lookup(k, name)
	}
	if !ok {
		var waiting []string
		if st, it, waiting = g.awaitListed(ctx, st, k, name); it == nil {
			kind := strings.TrimSuffix(k.ResultField(), "s")
			return nil, g.unlisted(rq, waiting, rpc.Errorf(rpc.CodeInvalidParams, "mcpgw: unknown %s %q", kind, name))
		}
	}
	rq.Backend = it.Backend
	if !g.allowed(ctx, st, rq, Action{Method: m.Method, Backend: it.Backend, Name: name}) {
		return nil, g.denied(rq)
	}
	params := m.Params
	if it.Original != name {
		params = m.paramsWithName(it.Original)
	}
	return g.forward(ctx, st, sess, it.Backend, m.Method, params, out, rq)
}

func (g *Gateway) callResource(ctx context.Context, st *state.State, sess *session.Session, m *message, out Outbound, rq *Request) (json.RawMessage, json.RawMessage) {
	uri := m.uri()
	if uri == "" {
		return nil, g.fail(rq, rpc.Errorf(rpc.CodeInvalidParams, "mcpgw: params.uri is required"))
	}
	rq.Name = uri
	it, ok := st.Catalog.Resource(uri)
	if !ok {
		var waiting []string
		if st, it, waiting = g.awaitListed(ctx, st, catalog.Resources, uri); it == nil {
			// Resource not found is -32602 with the URI in data (SEP-2164;
			// older servers used -32002).
			return nil, g.unlisted(rq, waiting, &rpc.Error{Code: rpc.CodeInvalidParams, Message: "mcpgw: no backend serves resource " + uri, Data: json.RawMessage(`{"uri":` + string(rpc.Quote(uri)) + `}`)})
		}
	}
	rq.Backend = it.Backend
	if !g.allowed(ctx, st, rq, Action{Method: m.Method, Backend: it.Backend, Name: uri}) {
		return nil, g.denied(rq)
	}
	return g.forward(ctx, st, sess, it.Backend, m.Method, m.Params, out, rq)
}

// awaitListed looks an item up again while a backend that could serve it
// has not been listed yet: right after the edge starts (or a backend
// reconnects) a client may call a tool it knows before the backend's lists
// are in, and deserves the call, not "unknown tool". It waits at most
// Options.ListWait and returns the state it found the item in, or nil and
// the backends still not listed.
func (g *Gateway) awaitListed(ctx context.Context, st *state.State, k catalog.Kind, name string) (*state.State, *catalog.Item, []string) {
	waiting := st.Catalog.Unlisted(k, name)
	if len(waiting) == 0 {
		return st, nil, nil
	}
	deadline := time.NewTimer(g.opts.ListWait)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return st, nil, waiting
		case <-deadline.C:
			return st, nil, waiting
		case <-tick.C:
		}
		next := g.state.Load()
		if next == nil || next == st {
			continue
		}
		st = next
		var it *catalog.Item
		var ok bool
		if k == catalog.Resources {
			it, ok = st.Catalog.Resource(name)
		} else {
			it, ok = st.Catalog.Lookup(k, name)
		}
		if ok {
			return st, it, nil
		}
		if waiting = st.Catalog.Unlisted(k, name); len(waiting) == 0 {
			return st, nil, nil
		}
	}
}

// unlisted answers a request for an item no listed backend serves: unknown
// when every backend that could serve it is listed, else unavailable,
// naming the backends that are not (yet) up.
func (g *Gateway) unlisted(rq *Request, waiting []string, unknown *rpc.Error) json.RawMessage {
	if len(waiting) == 0 {
		return g.fail(rq, unknown)
	}
	rq.Status = StatusUnavailable
	return g.fail(rq, rpc.Errorf(rpc.CodeBackendUnavailable, "mcpgw: %s (backend %s not available yet)", strings.TrimPrefix(unknown.Message, "mcpgw: "), strings.Join(waiting, ", ")))
}

// subscription forwards resources/subscribe and unsubscribe, counting
// subscribers so the shared upstream session sees the first subscribe and
// the last unsubscribe only.
func (g *Gateway) subscription(ctx context.Context, st *state.State, sess *session.Session, m *message, rq *Request) (json.RawMessage, json.RawMessage) {
	uri := m.uri()
	if uri == "" {
		return nil, g.fail(rq, rpc.Errorf(rpc.CodeInvalidParams, "mcpgw: params.uri is required"))
	}
	rq.Name = uri
	it, ok := st.Catalog.Resource(uri)
	if !ok {
		return nil, g.fail(rq, &rpc.Error{Code: rpc.CodeInvalidParams, Message: "mcpgw: no backend serves resource " + uri, Data: json.RawMessage(`{"uri":` + string(rpc.Quote(uri)) + `}`)})
	}
	rq.Backend = it.Backend
	if !g.allowed(ctx, st, rq, Action{Method: "resources/read", Backend: it.Backend, Name: uri}) {
		return nil, g.denied(rq)
	}
	if sess == nil {
		return nil, g.fail(rq, rpc.Errorf(rpc.CodeInvalidRequest, "mcpgw: subscriptions need a session"))
	}
	key := subKey{it.Backend, uri}
	if m.Method == "resources/subscribe" {
		if !sess.Subscribe(uri, it.Backend) {
			return json.RawMessage("{}"), nil
		}
		g.subsMu.Lock()
		g.subs[key]++
		first := g.subs[key] == 1
		g.subsMu.Unlock()
		if !first {
			return json.RawMessage("{}"), nil
		}
		res, rerr := g.forward(ctx, st, sess, it.Backend, m.Method, m.Params, nil, rq)
		if rerr != nil {
			sess.Unsubscribe(uri)
			g.release(key)
		}
		return res, rerr
	}
	if !sess.Unsubscribe(uri) {
		return json.RawMessage("{}"), nil
	}
	if g.release(key) {
		return g.forward(ctx, st, sess, it.Backend, m.Method, m.Params, nil, rq)
	}
	return json.RawMessage("{}"), nil
}

// release drops one subscriber and reports whether it was the last.
func (g *Gateway) release(key subKey) bool {
	g.subsMu.Lock()
	defer g.subsMu.Unlock()
	g.subs[key]--
	if g.subs[key] <= 0 {
		delete(g.subs, key)
		return true
	}
	return false
}

// sessionClosed releases a closed session's subscriptions upstream.
func (g *Gateway) sessionClosed(_ *session.Session, subs map[string]string) {
	st := g.state.Load()
	for uri, backend := range subs {
		if !g.release(subKey{backend, uri}) || st == nil {
			continue
		}
		if b := st.Backend(backend); b != nil && b.Healthy() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, _ = b.Call(ctx, "resources/unsubscribe", json.RawMessage(`{"uri":`+string(rpc.Quote(uri))+`}`), nil)
			cancel()
		}
	}
}

// complete routes completion/complete by its reference: a prompt by
// exposed name (renamed back), a resource template by URI.
func (g *Gateway) complete(ctx context.Context, st *state.State, sess *session.Session, m *message, out Outbound, rq *Request) (json.RawMessage, json.RawMessage) {
	ref := rpc.Field(m.Params, "ref")
	params := m.Params
	switch typ := rpc.StringField(ref, "type"); typ {
	case "ref/prompt":
		name := rpc.StringField(ref, "name")
		rq.Name = name
		it, ok := st.Catalog.Lookup(catalog.Prompts, name)
		if !ok {
			return nil, g.fail(rq, rpc.Errorf(rpc.CodeInvalidParams, "mcpgw: unknown prompt %q", name))
		}
		rq.Backend = it.Backend
		if !g.allowed(ctx, st, rq, Action{Method: m.Method, Backend: it.Backend, Name: name}) {
			return nil, g.denied(rq)
		}
		if it.Original != name {
			ref2, err := rpc.SetField(ref, "name", rpc.Quote(it.Original))
			if err == nil {
				params, err = rpc.SetField(params, "ref", ref2)
			}
			if err != nil {
				return nil, g.fail(rq, rpc.Errorf(rpc.CodeInvalidParams, "mcpgw: %v", err))
			}
		}
	case "ref/resource":
		uri := rpc.StringField(ref, "uri")
		rq.Name = uri
		it, ok := st.Catalog.Resource(uri)
		if !ok {
			return nil, g.fail(rq, rpc.Errorf(rpc.CodeInvalidParams, "mcpgw: no backend serves resource %q", uri))
		}
		rq.Backend = it.Backend
		if !g.allowed(ctx, st, rq, Action{Method: m.Method, Backend: it.Backend, Name: uri}) {
			return nil, g.denied(rq)
		}
	default:
		return nil, g.fail(rq, rpc.Errorf(rpc.CodeInvalidParams, "mcpgw: unknown completion reference type %q", typ))
	}
	return g.forward(ctx, st, sess, rq.Backend, m.Method, params, out, rq)
}

// setLevel records the session's log level. Backends share upstream
// sessions, so the edge asks them for every level once and filters per
// client session itself.
func (g *Gateway) setLevel(ctx context.Context, st *state.State, sess *session.Session, m *message, rq *Request) (json.RawMessage, json.RawMessage) {
	if !g.allowed(ctx, st, rq, Action{Method: m.Method}) {
		return nil, g.denied(rq)
	}
	level := rpc.StringField(m.Params, "level")
	if sess == nil {
		return nil, g.fail(rq, rpc.Errorf(rpc.CodeInvalidRequest, "mcpgw: logging needs a session"))
	}
	if err := sess.SetLogLevel(level); err != nil {
		return nil, g.fail(rq, rpc.Errorf(rpc.CodeInvalidParams, "mcpgw: %v", err))
	}
	g.enableLogging(ctx, st)
	return json.RawMessage("{}"), nil
}

// enableLogging asks every backend for all log levels, once per edge. A
// caller that comes while the first is still asking waits for it: a client
// told its level is set may call a tool at once, and a backend not yet
// asked would not log that call. Backends that come up later are asked by
// BackendUp.
func (g *Gateway) enableLogging(ctx context.Context, st *state.State) {
	g.loggingOnce.Do(func() {
		g.upstreamLogging.Store(true)
		if st == nil {
			return
		}
		for _, b := range st.Backends {
			g.enableUpstreamLogging(ctx, b.Backend)
		}
	})
}

func (g *Gateway) enableUpstreamLogging(ctx context.Context, b *upstream.Backend) {
	if !b.Healthy() || len(rpc.Field(rpc.Field(b.InitializeResult(), "capabilities"), "logging")) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if _, err := b.Call(ctx, "logging/setLevel", json.RawMessage(`{"level":"debug"}`), nil); err != nil {
		g.log.Warn("enabling backend logging", "backend", b.Name(), "err", err)
	}
}

// forward sends the request to its backend and maps the outcome. A failed
// upstream call is always an error to the client, never an empty success.
func (g *Gateway) forward(ctx context.Context, st *state.State, sess *session.Session, backend, method string, params json.RawMessage, out Outbound, rq *Request) (json.RawMessage, json.RawMessage) {
	b := st.Backend(backend)
	if b == nil {
		rq.Status = StatusUnavailable
		return nil, g.fail(rq, rpc.Errorf(rpc.CodeBackendUnavailable, "mcpgw: backend %q is not configured", backend))
	}
	var sink upstream.Sink
	switch o := out.(type) {
	case *modernOut:
		sink = &modernSink{out: o, level: o.level, g: g, backend: backend}
	case nil:
	case *replyWriter:
		if sess != nil {
			// A POST's reply writer has room for its call's sink.
			o.sink = callSink{sess: sess, out: out, g: g, backend: backend}
			sink = &o.sink
		}
	default:
		if sess != nil {
			sink = &callSink{sess: sess, out: out, g: g, backend: backend}
		}
	}
	ub := b.Backend
	if method != "resources/subscribe" && method != "resources/unsubscribe" {
		// A per_principal backend carries each principal's calls on its
		// own session; subscriptions stay on the shared one, which
		// delivers the updates.
		ub = ub.For(rq.Principal.Name)
	}
	t0 := time.Now()
	var resp upstream.Response
	var err error
	mo, modernClient := ctx.Value(modernKey{}).(*modernCall)
	switch {
	// The era is the server's, so the shared connection says it even when a
	// principal's own session is still opening.
	case modernClient && b.ModernVersion() == "":
		// Era bridge: a modern client, a legacy backend (bridge_modern.go).
		mout, _ := out.(*modernOut)
		resp, err = g.callLegacy(ctx, ub, method, params, mout, mo, rq)
	case !modernClient && sess != nil && bridgedMethod(method) && b.ModernVersion() != "":
		// Era bridge: a legacy client, a modern backend (bridge_legacy.go).
		resp, err = g.callModernBackend(ctx, st, ub, sess, rq.Name, method, params, sink)
	case modernClient:
		var name string
		switch method {
		case "tools/call", "prompts/get":
			name = rpc.StringField(params, "name")
		case "resources/read":
			name = mo.m.uri()
		}
		resp, err = ub.CallModern(ctx, method, params, sink, upstream.Modern{Version: mo.version, Name: name, Params: mo.params})
	default:
		resp, err = ub.Call(ctx, method, params, sink)
	}
	rq.UpstreamLatency = time.Since(t0)
	if err != nil {
		switch {
		case errors.Is(err, upstream.ErrTimeout):
			rq.Status = StatusTimeout
		case ctx.Err() != nil || errors.Is(err, session.ErrCancelled):
			rq.Status = StatusCancelled
		default:
			rq.Status = StatusUnavailable
		}
		return nil, g.fail(rq, rpc.Errorf(rpc.CodeBackendUnavailable, "mcpgw: %v", err))
	}
	if len(resp.Error) > 0 {
		rq.Status = StatusError
		rq.Error = rpc.StringField(resp.Error, "message")
		return nil, resp.Error
	}
	if method == "resources/read" {
		return privateScope(resp.Result), nil
	}
	if method == "tools/call" {
		// A task-augmented call answers with the task it created.
		resp.Result = g.adoptCreated(backend, rq, resp.Result)
	}
	// Only a result that mentions isError is decoded to check it.
	if method == "tools/call" && bytes.Contains(resp.Result, []byte(`"isError"`)) && string(rpc.Field(resp.Result, "isError")) == "true" {
		rq.Status = StatusError
		rq.Error = "tool reported an error"
	}
	return resp.Result, nil
}

// callSink relays what a backend sends during one call to the client that
// made it.
type callSink struct {
	sess    *session.Session
	out     Outbound
	g       *Gateway
	backend string
}

func (s *callSink) Notify(method string, params json.RawMessage) {
	if method == "notifications/message" && !s.sess.WantsLog(rpc.StringField(params, "level")) {
		return
	}
	if method == "notifications/tasks/status" {
		mapped, _, ok := s.g.taskStatus(s.backend, params)
		if !ok {
			return
		}
		params = mapped
	}
	_ = s.out.Send(rpc.AppendNotification(nil, method, params))
}

func (s *callSink) Request(ctx context.Context, method string, params json.RawMessage) (upstream.Response, error) {
	var has bool
	switch method {
	case "sampling/createMessage":
		has = s.sess.Caps.Sampling
	case "elicitation/create":
		has = s.sess.Caps.Elicitation
	case "roots/list":
		has = s.sess.Caps.Roots
	default:
		has = true
	}
	if !has {
		// The edge declared the capability to the shared backend on behalf
		// of all its clients; this client lacks it, so refuse per call.
		return upstream.Response{}, rpc.Errorf(rpc.CodeMethodNotFound, "mcpgw: the client did not declare the capability %s needs", method)
	}
	// A request made for a task (while the client waits in tasks/result)
	// names it in _meta with the backend's id.
	params = s.g.mapRelated(s.backend, params)
	m, err := s.sess.Request(ctx, method, params, s.out.Send)
	if err != nil {
		return upstream.Response{}, err
	}
	return upstream.Response{Result: m.Result, Error: m.Error}, nil
}

// ListsChanged implements state.Notifier: tell every initialized session.
func (g *Gateway) ListsChanged(kinds []catalog.Kind) {
	var msgs [][]byte
	seen := map[string]bool{}
	for _, k := range kinds {
		n := k.ChangedNotification()
		if !seen[n] {
			seen[n] = true
			msgs = append(msgs, rpc.AppendNotification(nil, n, json.RawMessage("{}")))
		}
	}
	g.sessions.Range(func(s *session.Session) bool {
		if s.Initialized() {
			for _, m := range msgs {
				s.Outbox.Push(m)
			}
		}
		return true
	})
	for _, k := range kinds {
		g.notifyListeners(k.ChangedNotification(), json.RawMessage("{}"), func(l *listener) bool {
			switch k {
			case catalog.Tools:
				return l.tools
			case catalog.Prompts:
				return l.prompt
			default:
				return l.res
			}
		})
	}
}

// BackendNotification implements state.Notifier.
func (g *Gateway) BackendNotification(backend, method string, params json.RawMessage) {
	switch method {
	case "notifications/resources/updated":
		uri := rpc.StringField(params, "uri")
		msg := rpc.AppendNotification(nil, method, params)
		g.sessions.Range(func(s *session.Session) bool {
			if s.Subscribed(uri) {
				s.Outbox.Push(msg)
			}
			return true
		})
		g.notifyListeners(method, params, func(l *listener) bool { return l.uris[uri] })
	case "notifications/tasks/status":
		g.taskStatusNotification(backend, params)
	case "notifications/message":
		level := rpc.StringField(params, "level")
		msg := rpc.AppendNotification(nil, method, params)
		g.sessions.Range(func(s *session.Session) bool {
			if s.WantsLog(level) {
				s.Outbox.Push(msg)
			}
			return true
		})
	default:
		g.log.Debug("ignoring backend notification", "backend", backend, "method", method)
	}
}

// BackendUp implements state.Notifier.
func (g *Gateway) BackendUp(b *upstream.Backend) {
	if g.upstreamLogging.Load() {
		g.enableUpstreamLogging(context.Background(), b)
	}
}

// notification handles a client notification.
func (g *Gateway) notification(st *state.State, sess *session.Session, m *message) {
	switch m.Method {
	case "notifications/initialized":
		sess.SetInitialized()
	case "notifications/cancelled":
		sess.Cancel(m.env.RequestID)
	case "notifications/roots/list_changed":
		if st == nil {
			return
		}
		for _, b := range st.Backends {
			if b.Healthy() {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				_ = b.Notify(ctx, m.Method, m.Params)
				cancel()
			}
		}
	}
}

// privateScope turns a "public" cache hint on a relayed result into
// "private": what one caller may read, policy may deny another, so a shared
// cache in front of the edge must never serve it across callers.
func privateScope(result json.RawMessage) json.RawMessage {
	if !bytes.Contains(result, []byte(`"cacheScope"`)) {
		return result
	}
	out, err := rpc.SetField(result, "cacheScope", json.RawMessage(`"private"`))
	if err != nil {
		return result
	}
	return out
}
