package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mcpgw/mcpgw/dataplane/rpc"
	"github.com/mcpgw/mcpgw/dataplane/session"
	"github.com/mcpgw/mcpgw/dataplane/state"
	"github.com/mcpgw/mcpgw/dataplane/upstream"
)

// Header values set on every reply, allocated once.
var (
	hdrJSON       = []string{"application/json"}
	hdrEventStrm  = []string{"text/event-stream"}
	hdrNoCache    = []string{"no-cache"}
	hdrNoSniff    = []string{"nosniff"}
	hdrAllowVerbs = []string{"GET, POST, DELETE"}
)

// ServeHTTP serves the Streamable HTTP transport (mount it at /mcp).
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// DNS rebinding defence: a page on an attacker's domain that resolves
	// to this edge still sends its own Host and Origin.
	if !g.hostAllowed(r.Host) {
		g.refuseText(w, r, nil, http.StatusForbidden, StatusDenied, "mcpgw: Host "+strconv.Quote(r.Host)+" is not allowed")
		return
	}
	if origin := r.Header.Get("Origin"); origin != "" && !g.originAllowed(origin) {
		g.refuseText(w, r, nil, http.StatusForbidden, StatusDenied, "mcpgw: Origin "+strconv.Quote(origin)+" is not allowed")
		return
	}
	switch r.Method {
	case http.MethodPost:
		g.servePost(w, r)
	case http.MethodGet:
		g.serveGet(w, r)
	case http.MethodDelete:
		g.serveDelete(w, r)
	default:
		w.Header()["Allow"] = hdrAllowVerbs
		g.refuseText(w, r, nil, http.StatusMethodNotAllowed, StatusError, "mcpgw: method not allowed")
	}
}

func (g *Gateway) hostAllowed(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	allowed := g.opts.AllowedHosts
	if len(allowed) == 0 {
		allowed = []string{"localhost", "127.0.0.1", "::1"}
	}
	for _, a := range allowed {
		if a == "*" || strings.EqualFold(a, host) {
			return true
		}
	}
	return false
}

func (g *Gateway) originAllowed(origin string) bool {
	if len(g.opts.AllowedOrigins) == 0 {
		u, err := url.Parse(origin)
		return err == nil && u.Host != "" && g.hostAllowed(u.Host)
	}
	for _, a := range g.opts.AllowedOrigins {
		if a == "*" || strings.EqualFold(a, origin) {
			return true
		}
	}
	return false
}

// writeRPCError answers with an HTTP status and a JSON-RPC error body.
func writeRPCError(w http.ResponseWriter, status int, id json.RawMessage, e *rpc.Error) {
	body := rpc.AppendErrorResponse(nil, id, e)
	h := w.Header()
	h["Content-Type"] = hdrJSON
	h["Content-Length"] = []string{strconv.Itoa(len(body))}
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// writeRPCErrorRaw answers with an HTTP status and a ready error body.
func writeRPCErrorRaw(w http.ResponseWriter, status int, body []byte) {
	h := w.Header()
	h["Content-Type"] = hdrJSON
	h["Content-Length"] = []string{strconv.Itoa(len(body))}
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// authChallenge is the WWW-Authenticate value of every 401 (RFC 6750 §3):
// it names the scheme and nothing about what was wrong.
const authChallenge = `Bearer realm="mcpgw"`

// authenticate sets rq.Principal, or marks rq denied and returns false;
// the caller records the attempt and then answers with unauthorized.
func (g *Gateway) authenticate(r *http.Request, rq *Request) bool {
	p, err := g.opts.Auth.Authenticate(r.Context(), Credentials{Transport: "http", Header: r.Header, RemoteAddr: r.RemoteAddr})
	if err != nil {
		rq.Status = StatusDenied
		rq.Error = err.Error()
		return false
	}
	rq.Principal = p
	return true
}

// unauthorized answers a refused credential, once the attempt is
// recorded: 401 with the challenge and the event id.
func (g *Gateway) unauthorized(w http.ResponseWriter, r *http.Request, rq *Request) {
	msg := "mcpgw: unauthenticated: " + rq.Error
	g.recordRefusal(w, r, rq, http.StatusUnauthorized, StatusDenied, msg)
	w.Header()["Www-Authenticate"] = []string{authChallenge}
	writeRPCError(w, http.StatusUnauthorized, nil, &rpc.Error{Code: rpc.CodeInvalidRequest, Message: msg})
}

// Refusals. An HTTP request the edge turns away before serving it is a
// request all the same: it yields one audit event (DESIGN §6, rejected
// attempts included), written before the refusal goes out, whose id the
// client gets in Mcpgw-Audit-Id. This is the slow path; nothing here runs
// for a request that is served.

// refuse records rq (nil: made now) as refused with outcome and answers
// with the HTTP status and a JSON-RPC error body.
func (g *Gateway) refuse(w http.ResponseWriter, r *http.Request, rq *Request, status int, outcome Status, id json.RawMessage, e *rpc.Error) {
	g.recordRefusal(w, r, rq, status, outcome, e.Message)
	writeRPCError(w, status, id, e)
}

// refuseText is refuse with a plain-text body, for refusals that are not
// about a JSON-RPC message (a GET or DELETE, a foreign Host).
func (g *Gateway) refuseText(w http.ResponseWriter, r *http.Request, rq *Request, status int, outcome Status, msg string) {
	g.recordRefusal(w, r, rq, status, outcome, msg)
	http.Error(w, msg, status)
}

// recordRefusal records the refused request and sets its Mcpgw-Audit-Id
// (not when the event could not be written: the refusal still goes out,
// it had no effect to withhold). The event's status vocabulary is coarser
// than HTTP's, so its error text starts with the HTTP status; its method is
// the HTTP method when no JSON-RPC method was read.
func (g *Gateway) recordRefusal(w http.ResponseWriter, r *http.Request, rq *Request, status int, outcome Status, msg string) {
	if rq == nil {
		rq = &Request{Start: time.Now(), Transport: "http"}
	}
	if rq.AuditID == "" {
		g.opts.Record.Begin(rq)
	}
	if rq.Method == "" {
		rq.Method = r.Method
	}
	if rq.TraceID == "" {
		withTrace(r.Context(), rq, traceOf(r.Header, nil))
	}
	rq.Status = outcome
	rq.Error = "HTTP " + strconv.Itoa(status) + ": " + msg
	g.finish(r.Context(), rq.ID, rq, nil)
	if rq.AuditID != "" && !rq.unrecorded {
		w.Header()["Mcpgw-Audit-Id"] = rq.auditHeader()
	}
}

// maxPresentedSession bounds the session id a refused request presented
// that goes into its audit event: real ids are 32 characters.
const maxPresentedSession = 128

// lookupSession finds the request's session or, having recorded the
// refusal, answers 400 (no id) or 404 (unknown, expired, or another
// principal's: never reveal which to the client; the audit event does).
func (g *Gateway) lookupSession(w http.ResponseWriter, r *http.Request, rq *Request) *session.Session {
	sid := r.Header.Get("Mcp-Session-Id")
	if sid == "" {
		g.refuse(w, r, rq, http.StatusBadRequest, StatusError, rq.ID, rpc.Errorf(rpc.CodeInvalidRequest, "mcpgw: missing Mcp-Session-Id header (initialize first)"))
		return nil
	}
	s := g.sessions.Get(sid)
	if s == nil || s.Principal != rq.Principal.Name {
		if len(sid) <= maxPresentedSession {
			rq.SessionID = sid
		}
		const msg = "mcpgw: unknown or expired session; initialize a new one"
		if s == nil {
			g.recordRefusal(w, r, rq, http.StatusNotFound, StatusError, msg)
		} else {
			// A session id used by a principal it does not belong to is
			// worth an operator's attention; the client must not learn it
			// exists.
			g.recordRefusal(w, r, rq, http.StatusNotFound, StatusDenied, msg+" (the session belongs to another principal)")
		}
		writeRPCError(w, http.StatusNotFound, rq.ID, rpc.Errorf(rpc.CodeInvalidRequest, msg))
		return nil
	}
	if v := r.Header.Get("Mcp-Protocol-Version"); v != "" && v != s.Version {
		rq.SessionID, rq.ProtocolVersion = s.ID, s.Version
		g.refuse(w, r, rq, http.StatusBadRequest, StatusError, rq.ID, rpc.Errorf(rpc.CodeInvalidRequest, "mcpgw: MCP-Protocol-Version %q does not match the session's negotiated %q", v, s.Version))
		return nil
	}
	return s
}

// post is what serving one POST allocates, in one piece: the request's
// record, its message, its reply writer and the call's canceler were
// four allocations.
type post struct {
	rq Request
	m  message
	rw replyWriter
	cc upstream.Canceler
}

func (g *Gateway) servePost(w http.ResponseWriter, r *http.Request) {
	p := &post{rq: Request{Start: time.Now(), Transport: "http"}}
	rq := &p.rq
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(strings.ToLower(ct), "application/json") {
		g.refuse(w, r, rq, http.StatusUnsupportedMediaType, StatusError, nil, rpc.Errorf(rpc.CodeInvalidRequest, "mcpgw: Content-Type must be application/json, got %q", ct))
		return
	}
	body, err := readBody(w, r, g.opts.MaxBodyBytes)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			g.refuse(w, r, rq, http.StatusRequestEntityTooLarge, StatusError, nil, rpc.Errorf(rpc.CodeInvalidRequest, "mcpgw: request body exceeds %d bytes", g.opts.MaxBodyBytes))
			return
		}
		g.refuse(w, r, rq, http.StatusBadRequest, StatusError, nil, rpc.Errorf(rpc.CodeParseError, "mcpgw: reading body: %v", err))
		return
	}
	rq.RequestBytes = len(body)
	m := &p.m
	if badID, perr := parseInto(m, body); perr != nil {
		g.refuse(w, r, rq, http.StatusBadRequest, StatusError, badID, perr)
		return
	}
	rq.Method, rq.ID = m.Method, m.ID
	if m.IsRequest() {
		g.opts.Record.Begin(rq)
	}
	if t := traceOf(r.Header, &m.env); t.Parent != "" {
		r = r.WithContext(withTrace(r.Context(), rq, t))
	}
	if !g.authenticate(r, rq) {
		g.unauthorized(w, r, rq)
		return
	}
	st := g.state.Load()
	if m.IsRequest() {
		if err := g.admit(); err != nil {
			g.log.Warn("refusing a request: audit unavailable", "method", m.Method, "err", err)
			writeRPCError(w, http.StatusServiceUnavailable, m.ID, errAuditUnavailable)
			return
		}
	}

	if m.Method == "initialize" && m.IsRequest() {
		g.serveInitialize(w, r, st, m, rq)
		return
	}
	if r.Header.Get("Mcp-Session-Id") == "" && (m.env.ProtocolVersion.IsSet() || isModernVersion(r.Header.Get("Mcp-Protocol-Version")) || strings.HasPrefix(r.Header.Get("Mcp-Protocol-Version"), "2026")) {
		g.serveModern(w, r, st, m, rq)
		return
	}
	sess := g.lookupSession(w, r, rq)
	if sess == nil {
		return
	}
	sess.Hold()
	defer sess.Release()
	switch {
	case m.IsNotification():
		g.notification(st, sess, m)
		w.WriteHeader(http.StatusAccepted)
		return
	case m.IsResponse():
		if !sess.Deliver(&m.Message) {
			g.log.Debug("client answered a request the edge is not waiting on", "id", string(m.ID))
		}
		w.WriteHeader(http.StatusAccepted)
		return
	}
	rw := &p.rw
	rw.init(w, acceptsSSE(r), g.opts.KeepAlive)
	rw.sess = sess
	// In the legacy era a dropped connection is not a cancellation
	// (2025-11-25 basic/transports): the call runs to its end unless the
	// client sends notifications/cancelled or the session ends, so a
	// half-done tool call is not cut off by a network blip.
	resp := g.serve(context.WithoutCancel(r.Context()), st, sess, m, rw, rq, &p.cc)
	rw.finishStatus(resp, rq.auditHeader(), rq.unrecorded)
}

func (g *Gateway) serveInitialize(w http.ResponseWriter, r *http.Request, st *state.State, m *message, rq *Request) {
	sess := session.New(session.NewID(), rq.Principal.Name, "http")
	result := g.initialize(st, sess, m.Params)
	rq.Method, rq.ID = m.Method, m.ID
	rq.SessionID, rq.ProtocolVersion = sess.ID, sess.Version
	rq.ClientName, rq.ClientVersion = sess.ClientName, sess.ClientVersion
	if !g.allowed(r.Context(), st, rq, Action{Method: m.Method}) {
		resp := g.finish(r.Context(), m.ID, rq, rpc.AppendResponse(nil, m.ID, nil, g.denied(rq)))
		writeJSON(w, resp, rq.auditHeader())
		return
	}
	rq.Status = StatusOK
	resp := g.finish(r.Context(), m.ID, rq, rpc.AppendResponse(nil, m.ID, result, nil))
	if rq.unrecorded {
		writeRPCError(w, http.StatusServiceUnavailable, m.ID, errAuditUnavailable)
		return
	}
	g.sessions.Add(sess)
	w.Header()["Mcp-Session-Id"] = []string{sess.ID}
	writeJSON(w, resp, rq.auditHeader())
}

// autoLength is the largest reply net/http gives a Content-Length itself
// (its buffer before chunking, 2 KiB) when the handler writes it in one go
// and returns; it formats the number without allocating.
const autoLength = 2000

// writeJSON writes a whole JSON reply with its Content-Length and its
// Mcpgw-Audit-Id (auditID, from Request.auditHeader; nil for none) and
// returns; callers write nothing after it.
func writeJSON(w http.ResponseWriter, body []byte, auditID []string) {
	h := w.Header()
	h["Content-Type"] = hdrJSON
	if len(body) > autoLength {
		h["Content-Length"] = []string{strconv.Itoa(len(body))}
	}
	if auditID != nil {
		h["Mcpgw-Audit-Id"] = auditID
	}
	_, _ = w.Write(body)
}

// bodyReadTimeout bounds reading one request body, so a client that
// trickles its body cannot hold a handler forever. (A server-wide
// ReadTimeout would also cut long-lived response streams.)
const bodyReadTimeout = 30 * time.Second

// readBody reads the whole body once into memory, bounded in size and time.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	rc := http.NewResponseController(w)
	if rc.SetReadDeadline(time.Now().Add(bodyReadTimeout)) == nil {
		defer rc.SetReadDeadline(time.Time{})
	}
	if r.ContentLength > limit {
		return nil, &http.MaxBytesError{Limit: limit}
	}
	if r.ContentLength > 0 {
		buf := make([]byte, r.ContentLength)
		// net/http never yields more than the declared length (HTTP/1.1
		// limits the body reader to it; HTTP/2 rejects extra DATA), so
		// there is nothing to check after it, and no MaxBytesReader to
		// allocate: the length was checked against the limit above.
		if _, err := io.ReadFull(r.Body, buf); err != nil {
			return nil, err
		}
		return buf, nil
	}
	return io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
}

func acceptsSSE(r *http.Request) bool {
	for _, v := range r.Header.Values("Accept") {
		if strings.Contains(v, "text/event-stream") || strings.Contains(v, "*/*") {
			return true
		}
	}
	return false
}

// replyWriter answers one POST: as a single JSON body when nothing but the
// response is sent, upgraded to an SSE stream as soon as a notification or
// a server→client request has to go out first (or a keep-alive is due on
// a long call).
//
// Messages sent during the call come from the goroutine reading the
// backend, which may serve many callers (a shared stdio process), so Send
// never blocks on this client's connection: it queues, and a writer
// goroutine (started on the first Send, joined by finish) writes. A client
// too slow to drain the queue loses notifications, not other callers'
// responses.
type replyWriter struct {
	w http.ResponseWriter
	// rc flushes an SSE reply; it is made by upgrade, since a JSON reply
	// (the common case) never flushes.
	rc     *http.ResponseController
	canSSE bool
	every  time.Duration

	// mu guards done, started, keepAlive and the sending side of queue.
	mu        sync.Mutex
	done      bool
	started   bool
	keepAlive *keepAliveTimer
	queue     chan []byte   // nil entry: a keep-alive comment
	written   chan struct{} // closed when the writer goroutine is done
	// sse and replay are set by whoever writes the SSE header: the writer
	// goroutine while it runs, finish after it is joined.
	sse bool
	// sess, when set, records the stream so a client can resume it.
	sess   *session.Session
	replay *session.Replay
	// sink is the call's upstream sink (set by forward), kept here so it
	// is not an allocation of its own.
	sink callSink
}

// replyQueue bounds the messages waiting for a slow client.
const replyQueue = 256

func newReplyWriter(w http.ResponseWriter, canSSE bool, keepAlive time.Duration) *replyWriter {
	rw := &replyWriter{}
	rw.init(w, canSSE, keepAlive)
	return rw
}

// init readies a zero replyWriter (one that is part of a bigger
// allocation, see post).
func (rw *replyWriter) init(w http.ResponseWriter, canSSE bool, keepAlive time.Duration) {
	rw.w, rw.canSSE, rw.every = w, canSSE, keepAlive
	if canSSE {
		k := keepAlives.Get().(*keepAliveTimer)
		k.rw.Store(rw)
		rw.keepAlive = k
		k.t.Reset(keepAlive)
	}
}

// keepAliveTimer pings the reply it is lent to. Every POST that can take
// SSE arms one, and almost none fires: a new timer (and the closure that
// binds it to the reply) per call was two allocations, so they are
// pooled. A timer goes back to the pool only when Stop reports it had not
// fired, after which its function does not run for that reply; one that
// fired (a call longer than KeepAlive) is left to the collector.
type keepAliveTimer struct {
	t  *time.Timer
	rw atomic.Pointer[replyWriter] // nil while in the pool
}

var keepAlives = sync.Pool{New: func() any {
	k := &keepAliveTimer{}
	k.t = time.AfterFunc(time.Hour, k.fire)
	k.t.Stop()
	return k
}}

func (k *keepAliveTimer) fire() {
	if rw := k.rw.Load(); rw != nil {
		rw.ping()
	}
}

// stopKeepAlive disarms the keep-alive for good. rw.mu must be held.
func (rw *replyWriter) stopKeepAlive() {
	k := rw.keepAlive
	if k == nil {
		return
	}
	rw.keepAlive = nil
	if k.t.Stop() {
		k.rw.Store(nil)
		keepAlives.Put(k)
	}
}

var errNoSSE = errors.New("the client does not accept an SSE reply to this request")

// upgrade switches to SSE. Only the goroutine that owns the writer (the
// writer goroutine, or finish once it is joined) calls it.
func (rw *replyWriter) upgrade() {
	if rw.sse {
		return
	}
	h := rw.w.Header()
	h["Content-Type"] = hdrEventStrm
	h["Cache-Control"] = hdrNoCache
	h["X-Content-Type-Options"] = hdrNoSniff
	rw.w.WriteHeader(http.StatusOK)
	rw.sse = true
	rw.rc = http.NewResponseController(rw.w)
	if rw.sess != nil {
		// Prime the client with an event id, so a dropped connection can
		// be resumed even before the first message (2025-11-25).
		rw.replay = rw.sess.NewReplay()
		_, _ = io.WriteString(rw.w, "id: "+rw.replay.ID()+"-0\ndata: \n\n")
	}
}

// event writes one message, recording it for resumption first.
func (rw *replyWriter) event(msg []byte) error {
	id := ""
	if rw.replay != nil {
		id = rw.replay.Add(msg)
	}
	return writeEvent(rw.w, id, msg)
}

// enqueueLocked queues msg, starting the writer if needed. rw.mu must be
// held.
func (rw *replyWriter) enqueueLocked(msg []byte) error {
	if !rw.started {
		rw.started = true
		rw.queue = make(chan []byte, replyQueue)
		rw.written = make(chan struct{})
		go rw.writer()
	}
	select {
	case rw.queue <- msg:
		return nil
	default:
		return errors.New("the client is not reading its reply stream fast enough")
	}
}

// writer writes queued messages as SSE events until the queue closes.
func (rw *replyWriter) writer() {
	defer close(rw.written)
	broken := false
	for msg := range rw.queue {
		if broken {
			// The client is gone; keep recording for a resume.
			if msg != nil && rw.replay != nil {
				rw.replay.Add(msg)
			}
			continue
		}
		rw.upgrade()
		var err error
		if msg == nil {
			_, err = io.WriteString(rw.w, ": keep-alive\n\n")
		} else {
			err = rw.event(msg)
		}
		if err == nil && len(rw.queue) == 0 {
			err = rw.rc.Flush()
		}
		broken = err != nil
	}
}

// Send implements Outbound.
func (rw *replyWriter) Send(msg []byte) error {
	rw.mu.Lock()
	defer rw.mu.Unlock()
	if rw.done {
		return errors.New("the reply is already complete")
	}
	if !rw.canSSE {
		return errNoSSE
	}
	return rw.enqueueLocked(msg)
}

// ping queues a keep-alive comment so proxies do not cut a long call.
func (rw *replyWriter) ping() {
	rw.mu.Lock()
	defer rw.mu.Unlock()
	if rw.done {
		return
	}
	_ = rw.enqueueLocked(nil)
	rw.keepAlive.t.Reset(rw.every)
}

// finish writes the response and ends the reply. A nil resp (the client
// cancelled the request) ends the reply without one: an SSE stream closes
// empty; a client that cannot take SSE gets 202 and no body.
func (rw *replyWriter) finish(resp []byte, auditID []string) { rw.finishStatus(resp, auditID, false) }

// finishStatus is finish; unavailable answers a reply that has not started
// streaming with HTTP 503 (the outcome could not be recorded).
func (rw *replyWriter) finishStatus(resp []byte, auditID []string, unavailable bool) {
	rw.mu.Lock()
	rw.done = true
	rw.stopKeepAlive()
	started := rw.started
	rw.mu.Unlock()
	if started {
		close(rw.queue)
		<-rw.written
	}
	defer func() {
		if rw.replay != nil {
			rw.replay.Finish()
		}
	}()
	if resp == nil {
		switch {
		case rw.sse:
		case rw.canSSE:
			rw.upgrade()
		default:
			rw.w.WriteHeader(http.StatusAccepted)
		}
		return
	}
	if !rw.sse {
		if unavailable {
			writeRPCErrorRaw(rw.w, http.StatusServiceUnavailable, resp)
			return
		}
		writeJSON(rw.w, resp, auditID)
		return
	}
	_ = rw.event(resp)
	_ = rw.rc.Flush()
}

func writeEvent(w io.Writer, id string, data []byte) error {
	buf := make([]byte, 0, len(data)+32)
	if id != "" {
		buf = append(buf, "id: "...)
		buf = append(buf, id...)
		buf = append(buf, '\n')
	}
	buf = append(buf, "event: message\ndata: "...)
	buf = append(buf, data...)
	buf = append(buf, "\n\n"...)
	_, err := w.Write(buf)
	return err
}

// serveGet streams the session's server-initiated messages (list_changed,
// resources/updated, logs) with event ids, replaying after Last-Event-ID.
func (g *Gateway) serveGet(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Mcp-Session-Id") == "" {
		// Without a session there is no stream to open: 2026-07-28 has
		// none (subscriptions/listen replaces it).
		w.Header()["Allow"] = []string{"POST"}
		g.refuseText(w, r, nil, http.StatusMethodNotAllowed, StatusError, "mcpgw: GET needs an Mcp-Session-Id (2026-07-28 clients use subscriptions/listen)")
		return
	}
	if !acceptsSSE(r) {
		g.refuseText(w, r, nil, http.StatusNotAcceptable, StatusError, "mcpgw: GET needs Accept: text/event-stream")
		return
	}
	rq := &Request{Start: time.Now(), Transport: "http"}
	if !g.authenticate(r, rq) {
		g.unauthorized(w, r, rq)
		return
	}
	sess := g.lookupSession(w, r, rq)
	if sess == nil {
		return
	}
	release := sess.Acquire()
	defer release()
	rq.SessionID, rq.ProtocolVersion = sess.ID, sess.Version
	rq.ClientName, rq.ClientVersion = sess.ClientName, sess.ClientVersion
	if v := r.Header.Get("Last-Event-ID"); strings.Contains(v, "-") {
		g.resumeReply(w, r, sess, rq, v)
		return
	}
	mine := sess.ClaimStream()
	after := sess.Outbox.Sent()
	if v := r.Header.Get("Last-Event-ID"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			g.refuseText(w, r, rq, http.StatusBadRequest, StatusError, "mcpgw: bad Last-Event-ID")
			return
		}
		after = n
	}
	if !g.recordSessionRequest(w, r, rq) {
		return
	}
	h := w.Header()
	h["Content-Type"] = hdrEventStrm
	h["Cache-Control"] = hdrNoCache
	h["X-Content-Type-Options"] = hdrNoSniff
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	// A comment first, so the client sees the stream is open at once.
	_, _ = io.WriteString(w, ": stream open\n\n")
	_ = rc.Flush()
	ka := time.NewTicker(g.opts.KeepAlive)
	defer ka.Stop()
	for {
		if !mine() {
			return // a newer GET stream took over
		}
		evs, wake, lost, closed := sess.Outbox.Since(after)
		if lost {
			g.log.Warn("GET stream resumed past the replay window; some events are lost", "session", sess.ID)
		}
		for _, e := range evs {
			if err := writeEvent(w, strconv.FormatUint(e.ID, 10), e.Data); err != nil {
				return
			}
			after = e.ID
		}
		if len(evs) > 0 {
			if rc.Flush() != nil {
				return
			}
			sess.Outbox.MarkSent(after)
		}
		if closed {
			return
		}
		select {
		case <-r.Context().Done():
			return
		case <-wake:
		case <-ka.C:
			if _, err := io.WriteString(w, ": keep-alive\n\n"); err != nil || rc.Flush() != nil {
				return
			}
		}
	}
}

func (g *Gateway) serveDelete(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Mcp-Session-Id") == "" {
		w.Header()["Allow"] = []string{"POST"}
		g.refuseText(w, r, nil, http.StatusMethodNotAllowed, StatusError, "mcpgw: DELETE needs an Mcp-Session-Id; 2026-07-28 has no sessions")
		return
	}
	rq := &Request{Start: time.Now(), Transport: "http"}
	if !g.authenticate(r, rq) {
		g.unauthorized(w, r, rq)
		return
	}
	sess := g.lookupSession(w, r, rq)
	if sess == nil {
		return
	}
	rq.SessionID, rq.ProtocolVersion = sess.ID, sess.Version
	rq.ClientName, rq.ClientVersion = sess.ClientName, sess.ClientVersion
	if !g.recordSessionRequest(w, r, rq) {
		return
	}
	g.sessions.Remove(sess.ID)
	w.WriteHeader(http.StatusNoContent)
}

// recordSessionRequest records a GET (a stream opened) or DELETE (a
// session ended) about to be served, and sets its Mcpgw-Audit-Id. Policy
// has no say in these (they are about the caller's own session, which
// only its principal can name), so the event says allow with no rule. An
// event that cannot be written refuses the request (503), as for calls.
func (g *Gateway) recordSessionRequest(w http.ResponseWriter, r *http.Request, rq *Request) bool {
	g.opts.Record.Begin(rq)
	rq.Method = r.Method
	withTrace(r.Context(), rq, traceOf(r.Header, nil))
	rq.Decision = Decision{Allow: true}
	rq.Status = StatusOK
	g.finish(r.Context(), nil, rq, nil)
	if rq.unrecorded {
		writeRPCError(w, http.StatusServiceUnavailable, nil, errAuditUnavailable)
		return false
	}
	if rq.AuditID != "" {
		w.Header()["Mcpgw-Audit-Id"] = rq.auditHeader()
	}
	return true
}

// resumeReply continues a POST reply stream after Last-Event-ID: what the
// client missed, then the rest as it comes, ending with the response.
func (g *Gateway) resumeReply(w http.ResponseWriter, r *http.Request, sess *session.Session, rq *Request, lastID string) {
	rp, seq, ok := sess.FindReplay(lastID)
	if !ok {
		g.refuseText(w, r, rq, http.StatusBadRequest, StatusError, "mcpgw: cannot resume "+strconv.Quote(lastID)+": unknown or expired stream")
		return
	}
	if !g.recordSessionRequest(w, r, rq) {
		return
	}
	h := w.Header()
	h["Content-Type"] = hdrEventStrm
	h["Cache-Control"] = hdrNoCache
	h["X-Content-Type-Options"] = hdrNoSniff
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	ka := time.NewTicker(g.opts.KeepAlive)
	defer ka.Stop()
	for {
		evs, wake, done := rp.Since(seq)
		for _, msg := range evs {
			seq++
			if writeEvent(w, rp.ID()+"-"+strconv.Itoa(seq), msg) != nil {
				return
			}
		}
		if rc.Flush() != nil || done {
			return
		}
		select {
		case <-r.Context().Done():
			return
		case <-sess.Done():
			return
		case <-wake:
		case <-ka.C:
			if _, err := io.WriteString(w, ": keep-alive\n\n"); err != nil {
				return
			}
		}
	}
}
