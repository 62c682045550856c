package gateway

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"github.com/mcpgw/mcpgw/dataplane/catalog"
	"github.com/mcpgw/mcpgw/dataplane/rpc"
	"github.com/mcpgw/mcpgw/dataplane/session"
	"github.com/mcpgw/mcpgw/dataplane/state"
	"github.com/mcpgw/mcpgw/dataplane/upstream"
)

// The 2026-07-28 ("modern") era on the same endpoint: no initialize, no
// session; every request carries its protocol version, client capabilities
// and client info in params._meta (spec 2026-07-28, basic/lifecycle and
// transports). A request is modern when its _meta names a version; anything
// else without a session is treated as legacy.

// _meta keys of 2026-07-28 the envelope scanner does not name.
const (
	metaServerInfo     = "io.modelcontextprotocol/serverInfo"
	metaSubscriptionID = "io.modelcontextprotocol/subscriptionId"
)

// modernVersions are the stateless versions the edge serves, newest first.
var modernVersions = []string{"2026-07-28"}

func isModernVersion(v string) bool {
	for _, m := range modernVersions {
		if v == m {
			return true
		}
	}
	return false
}

// supportedVersions lists every version the edge speaks, newest first.
func supportedVersions() []string {
	return append(append([]string{}, modernVersions...), legacyVersions...)
}

// headerError is the 2026-07-28 header-mismatch error (answered with 400).
func headerError(format string, args ...any) *rpc.Error {
	return rpc.Errorf(rpc.CodeHeaderMismatch, "mcpgw: "+format, args...)
}

// checkModernHeaders validates the standard headers against the body: the
// headers exist so intermediaries can route and authorize without parsing
// JSON, which is only safe if they cannot disagree with it.
func checkModernHeaders(r *http.Request, m *message, version string) *rpc.Error {
	if hv := r.Header.Get("Mcp-Protocol-Version"); hv != "" && hv != version {
		return headerError("MCP-Protocol-Version header %q does not match _meta protocol version %q", hv, version)
	}
	if !m.IsRequest() && !m.IsNotification() {
		return nil
	}
	hm := r.Header.Get("Mcp-Method")
	if hm == "" {
		return headerError("missing Mcp-Method header")
	}
	if hm != m.Method {
		return headerError("Mcp-Method header %q does not match body method %q", hm, m.Method)
	}
	var want string
	switch m.Method {
	case "tools/call", "prompts/get":
		want = m.name()
	case "resources/read":
		want = m.uri()
	default:
		return nil
	}
	hn := r.Header.Get("Mcp-Name")
	if hn == "" {
		return headerError("missing Mcp-Name header for %s", m.Method)
	}
	if hn != want {
		return headerError("Mcp-Name header %q does not match body value %q", hn, want)
	}
	return nil
}

// serveModern serves one stateless 2026-07-28 message.
func (g *Gateway) serveModern(w http.ResponseWriter, r *http.Request, st *state.State, m *message, rq *Request) {
	version := m.env.ProtocolVersion.String()
	if version == "" {
		version = r.Header.Get("Mcp-Protocol-Version")
	}
	rq.ProtocolVersion = version
	rq.ClientName = rpc.StringField(m.env.ClientInfo, "name")
	rq.ClientVersion = rpc.StringField(m.env.ClientInfo, "version")
	rq.Method, rq.ID = m.Method, m.ID
	if !isModernVersion(version) {
		data, _ := json.Marshal(map[string]any{"supported": supportedVersions(), "requested": version})
		g.refuse(w, r, rq, http.StatusBadRequest, StatusError, m.ID, &rpc.Error{Code: rpc.CodeUnsupportedVersion, Message: "mcpgw: unsupported protocol version " + version, Data: data})
		return
	}
	if e := checkModernHeaders(r, m, version); e != nil {
		g.refuse(w, r, rq, http.StatusBadRequest, StatusError, m.ID, e)
		return
	}
	if !m.IsRequest() {
		// Notifications (cancellation is a closed stream now) and stray
		// responses need nothing from a stateless server.
		w.WriteHeader(http.StatusAccepted)
		return
	}

	caps := m.env.ClientCapabilities

	rw := newReplyWriter(w, acceptsSSE(r), g.opts.KeepAlive)
	var resp []byte
	switch {
	case st == nil:
		rq.Status = StatusUnavailable
		resp = rpc.AppendResponse(nil, m.ID, nil, g.fail(rq, rpc.Errorf(rpc.CodeInternalError, "mcpgw: the edge has no configuration yet")))
		resp = g.finish(r.Context(), m.ID, rq, resp)
	case m.Method == "server/discover":
		var res, rerr json.RawMessage
		if g.allowed(r.Context(), st, rq, Action{Method: m.Method}) {
			rq.Status = StatusOK
			res = g.discover(st)
		} else {
			rerr = g.denied(rq)
		}
		resp = g.finish(r.Context(), m.ID, rq, rpc.AppendResponse(nil, m.ID, res, rerr))
	case m.Method == "subscriptions/listen":
		g.listen(r.Context(), st, m, rw, rq)
		return
	case m.Method == "initialize":
		// Unreachable: initialize is always legacy.
		fallthrough
	default:
		out := &modernOut{out: rw, caps: caps, level: m.env.LogLevel.String()}
		var params map[string]string
		for k, v := range r.Header {
			if strings.HasPrefix(k, "Mcp-Param-") && len(v) > 0 {
				if params == nil {
					params = map[string]string{}
				}
				params[k] = v[0]
			}
		}
		resp = g.serveStateless(r.Context(), st, m, out, rq, version, params)
	}
	rw.finishStatus(resp, rq.auditHeader(), rq.unrecorded)
}

// serveStateless runs a modern request through the chain.
func (g *Gateway) serveStateless(ctx context.Context, st *state.State, m *message, out *modernOut, rq *Request, version string, params map[string]string) []byte {
	ctx, cancel := context.WithCancel(ctx) // a closed stream cancels upstream
	defer cancel()
	var result, rerr json.RawMessage
	switch m.Method {
	case "ping":
		if g.allowed(ctx, st, rq, Action{Method: m.Method}) {
			result = json.RawMessage(`{"resultType":"complete"}`)
		} else {
			rerr = g.denied(rq)
		}
	case "tools/list", "prompts/list", "resources/list", "resources/templates/list":
		k, _ := catalog.KindOfList(m.Method)
		result, rerr = g.list(ctx, st, k, m.cursor(), rq)
		if rerr == nil {
			result = withResultType(result)
		}
	case "logging/setLevel", "resources/subscribe", "resources/unsubscribe":
		rerr = g.fail(rq, rpc.Errorf(rpc.CodeMethodNotFound, "mcpgw: %s does not exist in protocol version %s (use _meta logLevel / subscriptions/listen)", m.Method, version))
	default:
		mo := &modernCall{version: version, m: m, params: params}
		result, rerr = g.dispatchModern(ctx, st, m, out, rq, mo)
	}
	if rq.Status == "" {
		rq.Status = StatusOK
	}
	return g.finish(ctx, m.ID, rq, rpc.AppendResponse(nil, m.ID, result, rerr))
}

// modernCall carries what forward needs to send a request upstream as a
// 2026-07-28 request.
type modernCall struct {
	version string
	m       *message
	params  map[string]string // Mcp-Param-* headers, canonical names
}

// dispatchModern routes item requests like dispatch, forwarding them as
// modern requests so the backend's multi-round-trip results
// (resultType input_required) pass through to the client untouched.
func (g *Gateway) dispatchModern(ctx context.Context, st *state.State, m *message, out *modernOut, rq *Request, mo *modernCall) (json.RawMessage, json.RawMessage) {
	ctx = context.WithValue(ctx, modernKey{}, mo)
	return g.dispatch(ctx, st, nil, m, out, rq)
}

type modernKey struct{}

// modernOut relays progress and logs of a stateless call on its own reply
// stream. Server→client requests do not exist in this era; a legacy
// backend raising one gets an error (bridging eras is a later issue).
type modernOut struct {
	out   Outbound
	caps  json.RawMessage
	level string
}

func (o *modernOut) Send(msg []byte) error { return o.out.Send(msg) }

// discover answers server/discover.
func (g *Gateway) discover(st *state.State) json.RawMessage {
	b := make([]byte, 0, 512)
	b = append(b, `{"resultType":"complete","supportedVersions":`...)
	v, _ := json.Marshal(supportedVersions())
	b = append(b, v...)
	b = append(b, `,"capabilities":`...)
	b = append(b, g.serverCapabilities(st)...)
	b = append(b, `,"_meta":{"`+metaServerInfo+`":{"name":`...)
	b = append(b, rpc.Quote(g.opts.ServerName)...)
	b = append(b, `,"version":`...)
	b = append(b, rpc.Quote(g.opts.ServerVersion)...)
	b = append(b, `}},"ttlMs":0,"cacheScope":"private"}`...)
	return b
}

func withResultType(result json.RawMessage) json.RawMessage {
	if len(result) < 2 || result[0] != '{' {
		return result
	}
	out := make([]byte, 0, len(result)+26)
	out = append(out, `{"resultType":"complete"`...)
	if len(result) > 2 {
		out = append(out, ',')
	}
	return append(out, result[1:]...)
}

// listener is one subscriptions/listen stream.
type listener struct {
	id     json.RawMessage
	tools  bool
	prompt bool
	res    bool
	uris   map[string]bool
	outbox *session.Outbox
}

// listenStream carries one subscriptions/listen: an SSE reply on HTTP, the
// stdio pipe (where the notifications carry the subscription id so the
// client can tell them apart).
type listenStream interface {
	Send(msg []byte) error
	// finish ends the stream with resp (nil: no response, the client
	// cancelled).
	finish(resp []byte, auditID []string)
}

// stdioListen is a listen on the stdio front door: it ends when the
// client sends notifications/cancelled for it (2026-07-28 stdio), and a
// cancelled request gets no response.
type stdioListen struct{ out Outbound }

func (s stdioListen) Send(msg []byte) error { return s.out.Send(msg) }

func (s stdioListen) finish(resp []byte, _ []string) {
	if resp != nil {
		_ = s.out.Send(resp)
	}
}

// listen serves subscriptions/listen: acknowledge what the edge honours,
// then stream the matching notifications until the client goes away.
func (g *Gateway) listen(ctx context.Context, st *state.State, m *message, rw listenStream, rq *Request) {
	subs := rpc.Field(m.Params, "notifications")
	if len(subs) == 0 {
		rq.Status = StatusError
		rw.finish(g.finish(ctx, m.ID, rq, rpc.AppendErrorResponse(nil, m.ID, rpc.Errorf(rpc.CodeInvalidParams, "mcpgw: params.notifications is required"))), nil)
		return
	}
	if !g.allowed(ctx, st, rq, Action{Method: m.Method}) {
		rw.finish(g.finish(ctx, m.ID, rq, rpc.AppendResponse(nil, m.ID, nil, g.denied(rq))), nil)
		return
	}
	l := &listener{
		id:     m.ID,
		tools:  string(rpc.Field(subs, "toolsListChanged")) == "true",
		prompt: string(rpc.Field(subs, "promptsListChanged")) == "true",
		res:    string(rpc.Field(subs, "resourcesListChanged")) == "true",
		uris:   map[string]bool{},
		outbox: session.NewOutbox(256),
	}
	var uris []string
	_ = json.Unmarshal(rpc.Field(subs, "resourceSubscriptions"), &uris)
	var honoured []string
	for _, uri := range uris {
		it, ok := st.Catalog.Resource(uri)
		if !ok || !g.opts.Decider.Decide(ctx, st, rq.Principal, Action{Method: "resources/read", Backend: it.Backend, Name: uri}).Allow {
			continue
		}
		key := subKey{it.Backend, uri}
		g.subsMu.Lock()
		g.subs[key]++
		first := g.subs[key] == 1
		g.subsMu.Unlock()
		if first {
			b := st.Backend(it.Backend)
			if _, err := b.Call(ctx, "resources/subscribe", json.RawMessage(`{"uri":`+string(rpc.Quote(uri))+`}`), nil); err != nil {
				g.release(key)
				continue
			}
		}
		l.uris[uri] = true
		honoured = append(honoured, uri)
		defer g.unsubscribeUpstream(st, key)
	}
	g.listeners.Store(l, struct{}{})
	defer g.listeners.Delete(l)

	ack := map[string]any{}
	if l.tools {
		ack["toolsListChanged"] = true
	}
	if l.prompt {
		ack["promptsListChanged"] = true
	}
	if l.res {
		ack["resourcesListChanged"] = true
	}
	if len(honoured) > 0 {
		ack["resourceSubscriptions"] = honoured
	}
	ackJSON, _ := json.Marshal(map[string]any{"notifications": ack, "_meta": map[string]any{metaSubscriptionID: l.id}})
	if err := rw.Send(rpc.AppendNotification(nil, "notifications/subscriptions/acknowledged", ackJSON)); err != nil {
		rq.Status = StatusError
		rq.Error = err.Error()
		g.finish(ctx, m.ID, rq, nil)
		rw.finish(rpc.AppendErrorResponse(nil, m.ID, rpc.Errorf(rpc.CodeInvalidRequest, "mcpgw: subscriptions/listen needs an SSE reply (Accept: text/event-stream)")), nil)
		return
	}
	var after uint64
	for {
		evs, wake, _, closed := l.outbox.Since(after)
		for _, e := range evs {
			if rw.Send(e.Data) != nil {
				rw.finish(nil, nil)
				return
			}
			after = e.ID
		}
		if closed {
			rw.finish(nil, nil)
			return
		}
		select {
		case <-ctx.Done():
			// The client closed the stream: that is how a listen ends.
			rq.Status = StatusCancelled
			g.finish(ctx, m.ID, rq, nil)
			rw.finish(nil, nil)
			return
		case <-wake:
		}
	}
}

func (g *Gateway) unsubscribeUpstream(st *state.State, key subKey) {
	if !g.release(key) {
		return
	}
	if b := st.Backend(key.backend); b != nil && b.Healthy() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, _ = b.Call(ctx, "resources/unsubscribe", json.RawMessage(`{"uri":`+string(rpc.Quote(key.uri))+`}`), nil)
	}
}

// notifyListeners pushes a notification to listen streams that asked for
// it, tagged with their subscription id.
func (g *Gateway) notifyListeners(method string, params json.RawMessage, want func(*listener) bool) {
	g.listeners.Range(func(k, _ any) bool {
		l := k.(*listener)
		if want(l) {
			p, err := rpc.SetMetaField(params, metaSubscriptionID, l.id)
			if err == nil {
				l.outbox.Push(rpc.AppendNotification(nil, method, p))
			}
		}
		return true
	})
}

// modernSink relays what a backend sends during a stateless call.
type modernSink struct {
	out     *modernOut
	level   string
	g       *Gateway
	backend string
}

func (s *modernSink) Notify(method string, params json.RawMessage) {
	if method == "notifications/message" {
		if s.level == "" || session.LevelIndex(rpc.StringField(params, "level")) < session.LevelIndex(s.level) {
			return
		}
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

func (s *modernSink) Request(_ context.Context, method string, _ json.RawMessage) (upstream.Response, error) {
	return upstream.Response{}, rpc.Errorf(rpc.CodeInternalError,
		"mcpgw: the backend sent %s in the course of a 2026-07-28 request, which has no server-to-client requests (the backend should answer input_required)", method)
}

// serveStdioModern serves a 2026-07-28 request arriving on the stdio front
// door (a modern client probes with server/discover first and falls back
// to initialize on an error, spec 2026-07-28 stdio backward compatibility).
func (g *Gateway) serveStdioModern(ctx context.Context, st *state.State, sess *session.Session, m *message, out Outbound, rq *Request) []byte {
	version := m.env.ProtocolVersion.String()
	rq.Method, rq.ID, rq.ProtocolVersion = m.Method, m.ID, version
	rq.ClientName = rpc.StringField(m.env.ClientInfo, "name")
	rq.ClientVersion = rpc.StringField(m.env.ClientInfo, "version")
	if !isModernVersion(version) {
		data, _ := json.Marshal(map[string]any{"supported": supportedVersions(), "requested": version})
		return g.finish(ctx, m.ID, rq, rpc.AppendErrorResponse(nil, m.ID, &rpc.Error{Code: rpc.CodeUnsupportedVersion, Message: "mcpgw: unsupported protocol version " + version, Data: data}))
	}
	switch {
	case st == nil:
		rq.Status = StatusUnavailable
		return g.finish(ctx, m.ID, rq, rpc.AppendResponse(nil, m.ID, nil, g.fail(rq, rpc.Errorf(rpc.CodeInternalError, "mcpgw: the edge has no configuration yet"))))
	case m.Method == "server/discover":
		if !g.allowed(ctx, st, rq, Action{Method: m.Method}) {
			return g.finish(ctx, m.ID, rq, rpc.AppendResponse(nil, m.ID, nil, g.denied(rq)))
		}
		rq.Status = StatusOK
		return g.finish(ctx, m.ID, rq, rpc.AppendResponse(nil, m.ID, g.discover(st), nil))
	case m.Method == "subscriptions/listen":
		// The stream is the pipe; the client ends it with
		// notifications/cancelled naming this request.
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		sess.Track(m.ID, cancelFunc(cancel))
		defer sess.Untrack(m.ID)
		g.listen(ctx, st, m, stdioListen{out: out}, rq)
		return nil
	}
	return g.serveStateless(ctx, st, m, &modernOut{out: out, caps: m.env.ClientCapabilities, level: m.env.LogLevel.String()}, rq, version, nil)
}

// cancelFunc lets a plain CancelFunc be tracked in a session, which
// cancels with a cause the listen stream has no use for.
type cancelFunc context.CancelFunc

func (f cancelFunc) Cancel(error) { f() }
