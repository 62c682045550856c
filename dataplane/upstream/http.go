package upstream

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// NewTransport returns the one client transport an edge uses for all HTTP
// backends: plain-http backends through h1Transport (the calling goroutine
// writes and reads), https ones through an http.Transport. Both keep an
// idle pool at least as large as the expected concurrency (so busy
// backends never churn connections); no transparent compression (MCP
// bodies are small and latency matters more) and no proxy from the
// environment (a gateway must not be silently rerouted).
func NewTransport(concurrency int) http.RoundTripper {
	return newH1Transport(newStdTransport(concurrency), max(concurrency, 64))
}

func newStdTransport(concurrency int) *http.Transport {
	return &http.Transport{
		Proxy:                 nil,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          max(concurrency*2, 256),
		MaxIdleConnsPerHost:   max(concurrency, 64),
		IdleConnTimeout:       90 * time.Second,
		DisableCompression:    true,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: 0,
		ForceAttemptHTTP2:     false,
	}
}

var (
	hdrJSON     = []string{"application/json"}
	hdrAccept   = []string{"application/json, text/event-stream"}
	hdrAcceptEv = []string{"text/event-stream"}
)

// maxJSONBody bounds a backend's JSON reply.
const maxJSONBody = 64 << 20

// httpTransport is one Streamable HTTP session (or none, for stateless
// servers) with a backend.
type httpTransport struct {
	b   *Backend
	url string
	// u is url parsed once, and headers the configured headers with
	// canonical keys: every request shares them (net/http only reads a
	// request's URL and header values), instead of parsing and
	// canonicalizing per call.
	u       *url.URL
	headers http.Header
	// sessionID and version are set by initialize before the conn is
	// published and read by every request after, as ready header values.
	sessionID atomic.Pointer[[]string]
	version   atomic.Pointer[[]string]

	// h1 is set when POSTs may skip *http.Request and http.ReadResponse
	// (postH1): the backend is plain http and the edge's Transport is an
	// h1Transport. h1Key is its pool key.
	h1    *h1Transport
	h1Key string
	// h1Fixed is the part of every such POST no call changes, rendered
	// once: request line, Host, User-Agent and the configured headers.
	// h1Over are configured headers a call may replace (a session id,
	// say), sent only when it does not. h1Err is a configured header
	// net/http would refuse, returned by every request as before.
	h1Fixed []byte
	h1Over  []headerField
	h1Err   error
}

type headerField struct{ name, value string }

func newHTTPTransport(b *Backend) (*httpTransport, error) {
	u, err := url.Parse(b.cfg.HTTP.URL)
	if err != nil {
		return nil, fmt.Errorf("backend %q: http.url: %w", b.cfg.Name, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("backend %q: http.url %q is not an http(s) URL", b.cfg.Name, b.cfg.HTTP.URL)
	}
	h := make(http.Header, len(b.cfg.HTTP.Headers))
	for k, v := range b.cfg.HTTP.Headers {
		h.Set(k, v)
	}
	t := &httpTransport{b: b, url: b.cfg.HTTP.URL, u: u, headers: h}
	if rt, ok := b.opts.Client.Transport.(*h1Transport); ok && h1Serves(u) {
		t.h1, t.h1Key = rt, hostPort(u.Host)
		t.h1Fixed, t.h1Over, t.h1Err = renderPostHead(u, h)
	}
	return t, nil
}

// renderPostHead renders what every POST to u carries: the request line,
// Host, the configured headers h and the default User-Agent, as
// appendRequest would write them. Configured headers a call may replace
// are returned apart; those every POST replaces (Content-Type, Accept) or
// that framing owns are dropped, as appendRequest and newRequest did.
func renderPostHead(u *url.URL, h http.Header) ([]byte, []headerField, error) {
	dst := appendRequestLine(nil, http.MethodPost, u.RequestURI(), u.Host, h)
	var over []headerField
	for _, k := range slices.Sorted(maps.Keys(h)) {
		if framingHeader(k) || k == "Content-Type" || k == "Accept" {
			continue
		}
		if err := checkHeader(k, h[k]); err != nil {
			return nil, nil, err
		}
		for _, v := range h[k] {
			if perCallHeader(k) {
				over = append(over, headerField{k, v})
				continue
			}
			dst = appendHeader(dst, k, v)
		}
	}
	return dst, over, nil
}

// perCallHeader reports whether a call may set header k itself.
func perCallHeader(k string) bool {
	switch k {
	case "Mcp-Protocol-Version", "Mcp-Session-Id", "Traceparent", "Tracestate", "Mcp-Method", "Mcp-Name":
		return true
	}
	return strings.HasPrefix(k, "Mcp-Param-")
}

// ownHeaders appends to dst the headers a POST sets over the configured
// ones: the protocol version and the legacy session id, and for a call
// (cl nil for send: a notification or a response) its trace and, for a
// 2026-07-28 call, its own version, method, name and params. A modern
// call stands alone: dropSession says a configured Mcp-Session-Id must
// not be sent either. Both POST paths (appendPost, callHeaders) take the
// rule from here.
func (t *httpTransport) ownHeaders(dst []headerField, ctx context.Context, cl *call) (own []headerField, dropSession bool) {
	var m *Modern
	if cl != nil {
		m = cl.modern
	}
	switch {
	case m != nil:
		dst = append(dst, headerField{"Mcp-Protocol-Version", m.Version})
	default:
		if v := t.version.Load(); v != nil {
			dst = append(dst, headerField{"Mcp-Protocol-Version", (*v)[0]})
		}
		if s := t.sessionID.Load(); s != nil {
			dst = append(dst, headerField{"Mcp-Session-Id", (*s)[0]})
		}
	}
	if cl == nil {
		return dst, false
	}
	if tr, _ := ctx.Value(traceKey{}).(Trace); tr.Parent != "" {
		dst = append(dst, headerField{"Traceparent", tr.Parent})
		if tr.State != "" {
			dst = append(dst, headerField{"Tracestate", tr.State})
		}
	}
	if m != nil {
		dst = append(dst, headerField{"Mcp-Method", cl.method})
		if m.Name != "" {
			dst = append(dst, headerField{"Mcp-Name", m.Name})
		}
		for k, v := range m.Params {
			dst = append(dst, headerField{k, v})
		}
	}
	return dst, m != nil
}

// appendPost renders a POST of body for the call cl (nil for send) with
// the headers newRequest and callHeaders would give it.
func (t *httpTransport) appendPost(dst []byte, ctx context.Context, cl *call, body []byte) ([]byte, error) {
	if t.h1Err != nil {
		return dst, t.h1Err
	}
	dst = append(dst, t.h1Fixed...)
	dst = append(dst, "Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n"...)
	var buf [8]headerField
	own, dropSession := t.ownHeaders(buf[:0], ctx, cl)
	for _, f := range t.h1Over {
		if (dropSession && f.name == "Mcp-Session-Id") || slices.ContainsFunc(own, func(o headerField) bool { return o.name == f.name }) {
			continue
		}
		dst = appendHeader(dst, f.name, f.value)
	}
	for _, f := range own {
		// Values come from backends (a session id) and clients (modern
		// params): none may end or split a header line.
		if !validHeaderName(f.name) {
			return dst, fmt.Errorf("invalid HTTP header name %q", f.name)
		}
		if !validHeaderValue(f.value) {
			return dst, fmt.Errorf("invalid value for HTTP header %q", f.name)
		}
		dst = appendHeader(dst, f.name, f.value)
	}
	dst = append(dst, "Content-Length: "...)
	dst = strconv.AppendInt(dst, int64(len(body)), 10)
	dst = append(dst, "\r\n\r\n"...)
	return append(dst, body...), nil
}

// copiesRequest implements transport: the hot path (postH1) copies a
// request into its connection's buffer; an http.Transport may still read
// the body (or retry it with GetBody) after RoundTrip returns.
func (t *httpTransport) copiesRequest() bool { return t.h1 != nil }

// answersInline implements transport: request reads the call's response
// from the POST's own reply before it returns.
func (t *httpTransport) answersInline() bool { return true }

// reply is what send and request read of a POST's response, from either
// path. The byte fields are valid until body is closed.
type reply struct {
	status        int
	contentLength int64 // -1: unknown
	contentType   []byte
	sessionID     []byte
	body          io.ReadCloser
}

// post sends msg as a POST for the call cl (nil for send) and returns the
// reply; the caller closes its body. With c set, a network failure (not
// our own cancellation) closes the conn, as do does.
func (t *httpTransport) post(ctx context.Context, c *conn, cl *call, msg []byte) (reply, error) {
	if t.h1 == nil {
		req, err := t.newRequest(ctx, http.MethodPost, msg)
		if err != nil {
			return reply{}, err
		}
		if cl != nil {
			t.callHeaders(ctx, cl, req.Header)
		}
		resp, err := t.do(ctx, c, req)
		if err != nil {
			return reply{}, err
		}
		return reply{
			status:        resp.StatusCode,
			contentLength: resp.ContentLength,
			contentType:   []byte(resp.Header.Get("Content-Type")),
			sessionID:     []byte(resp.Header.Get("Mcp-Session-Id")),
			body:          resp.Body,
		}, nil
	}
	r, err := t.postH1(ctx, cl, msg)
	if err != nil {
		if ctx.Err() == nil && c != nil {
			c.close(fmt.Errorf("HTTP backend unreachable: %w", err))
		}
		return reply{}, fmt.Errorf("POST %s: %w", t.url, err)
	}
	return reply{
		status:        r.head.status,
		contentLength: r.head.contentLength,
		contentType:   r.head.contentType(),
		sessionID:     r.head.sessionID(),
		body:          r,
	}, nil
}

// postH1 is post over an h1Transport connection without an *http.Request:
// the request is rendered into the connection's buffer and the reply's
// head read by readHead.
func (t *httpTransport) postH1(ctx context.Context, cl *call, msg []byte) (*h1Reply, error) {
	pc, err := t.h1.get(ctx, t.h1Key)
	if err != nil {
		return nil, err
	}
	pc.wbuf, err = t.appendPost(pc.wbuf[:0], ctx, cl, msg)
	if err != nil {
		t.h1.put(pc)
		return nil, err
	}
	return pc.exchange(ctx)
}

// roundTrip sends req on the edge's Transport directly, as a reverse
// proxy does: an MCP backend's reply is never a redirect to follow (a
// gateway must not be silently rerouted), and http.Client's redirect
// bookkeeping copies every request's headers.
func (t *httpTransport) roundTrip(req *http.Request) (*http.Response, error) {
	rt := t.b.opts.Client.Transport
	if rt == nil {
		rt = http.DefaultTransport
	}
	return rt.RoundTrip(req)
}

func (t *httpTransport) session() string {
	if p := t.sessionID.Load(); p != nil {
		return (*p)[0]
	}
	return ""
}

func (t *httpTransport) setSession(id string) { t.sessionID.Store(&[]string{id}) }

func (t *httpTransport) setVersion(v string) {
	if v == "" {
		t.version.Store(nil)
		return
	}
	t.version.Store(&[]string{v})
}

func (t *httpTransport) newRequest(ctx context.Context, method string, body []byte) (*http.Request, error) {
	h := make(http.Header, 6+len(t.headers))
	for k, v := range t.headers {
		h[k] = v
	}
	if body != nil {
		h["Content-Type"] = hdrJSON
		h["Accept"] = hdrAccept
	} else {
		h["Accept"] = hdrAcceptEv
	}
	if v := t.version.Load(); v != nil {
		h["Mcp-Protocol-Version"] = *v
	}
	if s := t.sessionID.Load(); s != nil {
		h["Mcp-Session-Id"] = *s
	}
	req := (&http.Request{
		Method:     method,
		URL:        t.u,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     h,
		Host:       t.u.Host,
	}).WithContext(ctx)
	if body != nil {
		// An in-memory body with its length lets net/http write headers
		// and body in one go; GetBody lets it retry on a stale
		// keep-alive connection.
		req.ContentLength = int64(len(body))
		req.Body = io.NopCloser(bytes.NewReader(body))
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	}
	return req, nil
}

// do sends req; a network failure (not our own cancellation) closes the
// conn so Run reconnects and the backend shows as down meanwhile.
func (t *httpTransport) do(ctx context.Context, c *conn, req *http.Request) (*http.Response, error) {
	resp, err := t.roundTrip(req)
	if err != nil {
		if ctx.Err() == nil && c != nil {
			c.close(fmt.Errorf("HTTP backend unreachable: %w", err))
		}
		return nil, fmt.Errorf("%s %s: %w", req.Method, t.url, err)
	}
	return resp, nil
}

func (t *httpTransport) send(ctx context.Context, msg []byte) error {
	r, err := t.post(ctx, nil, nil, msg)
	if err != nil {
		return err
	}
	defer drain(r.body)
	switch {
	case r.status == http.StatusNotFound && t.session() != "":
		return errSessionExpired
	case r.status >= 300:
		return fmt.Errorf("POST %s: HTTP %d: %s", t.url, r.status, snippet(r.body))
	}
	return nil
}

// callHeaders sets on h, a request newRequest made, the headers that are
// the call's own.
func (t *httpTransport) callHeaders(ctx context.Context, cl *call, h http.Header) {
	own, dropSession := t.ownHeaders(nil, ctx, cl)
	if dropSession {
		delete(h, "Mcp-Session-Id")
	}
	for _, f := range own {
		h[f.name] = []string{f.value}
	}
}

func (t *httpTransport) request(ctx context.Context, c *conn, cl *call, msg []byte) error {
	r, err := t.post(ctx, c, cl, msg)
	if err != nil {
		return err
	}
	// Closed, not drained: an SSE body may stay open after our response,
	// and reading on would block.
	defer r.body.Close()
	if s := r.sessionID; len(s) > 0 && t.session() == "" {
		t.setSession(string(s))
	}
	ct := mediaType(r.contentType)
	switch {
	case r.status == http.StatusNotFound && t.session() != "" && cl.modern == nil:
		return errSessionExpired
	case string(ct) == "text/event-stream" && r.status == http.StatusOK:
		return t.readStream(ctx, c, cl, r.body)
	case string(ct) == "application/json":
		// Also taken for 4xx replies that carry a JSON-RPC error.
		body, err := readReply(r.body, r.contentLength)
		if err != nil {
			return fmt.Errorf("reading reply from %s: %w", t.url, err)
		}
		c.dispatch(ctx, body, cl, nil)
		if !c.answered(cl) {
			return fmt.Errorf("HTTP %d from %s without a JSON-RPC response: %.200s", r.status, t.url, body)
		}
		return nil
	default:
		return fmt.Errorf("HTTP %d (%s) from %s: %s", r.status, ct, t.url, snippet(r.body))
	}
}

// readStream reads a POST's SSE reply until the call's response is in. If
// the server closes the stream early after giving event ids, the stream is
// resumed with GET and Last-Event-ID (2025-11-25 resumability), a few times.
func (t *httpTransport) readStream(ctx context.Context, c *conn, cl *call, body io.Reader) error {
	var last string
	for resumes := 0; ; resumes++ {
		err := readSSE(body, &last, func(ev sseEvent) bool {
			c.dispatch(ctx, ev.data, cl, nil)
			return !c.answered(cl)
		})
		if c.answered(cl) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%w: %w", ErrConnectionLost, err)
		}
		if last == "" || resumes >= 5 || ctx.Err() != nil {
			return fmt.Errorf("%w: response stream ended without a response", ErrConnectionLost)
		}
		req, err := t.newRequest(ctx, http.MethodGet, nil)
		if err != nil {
			return err
		}
		req.Header.Set("Last-Event-ID", last)
		resp, err := t.do(ctx, c, req)
		if err != nil {
			return fmt.Errorf("%w: resuming stream: %w", ErrConnectionLost, err)
		}
		if resp.StatusCode != http.StatusOK {
			drain(resp.Body)
			return fmt.Errorf("%w: resuming stream: HTTP %d", ErrConnectionLost, resp.StatusCode)
		}
		body = resp.Body
		defer resp.Body.Close()
	}
}

// listen keeps the session's GET stream open for server-initiated messages
// (list_changed, resources/updated) until ctx ends. A server that does not
// offer the stream (405) is left alone; 404 means the session is gone.
func (t *httpTransport) listen(ctx context.Context, c *conn, wg *sync.WaitGroup) {
	var last string
	for attempt := 0; ctx.Err() == nil; attempt++ {
		req, err := t.newRequest(ctx, http.MethodGet, nil)
		if err != nil {
			return
		}
		if last != "" {
			req.Header.Set("Last-Event-ID", last)
		}
		resp, err := t.do(ctx, c, req)
		if err != nil {
			return // do closed the conn unless we are shutting down
		}
		switch {
		case resp.StatusCode == http.StatusMethodNotAllowed:
			drain(resp.Body)
			return
		case resp.StatusCode == http.StatusNotFound:
			drain(resp.Body)
			c.close(errSessionExpired)
			return
		case resp.StatusCode != http.StatusOK:
			drain(resp.Body)
			t.b.log.Warn("backend GET stream refused", "status", resp.StatusCode)
			return
		}
		attempt = 0
		err = readSSE(resp.Body, &last, func(ev sseEvent) bool {
			c.dispatch(ctx, ev.data, nil, wg)
			return true
		})
		resp.Body.Close()
		if ctx.Err() != nil {
			return
		}
		t.b.log.Debug("backend GET stream ended; reopening", "err", err)
		d := backoff(t.b.opts.MinBackoff, 5*time.Second, attempt)
		select {
		case <-ctx.Done():
			return
		case <-time.After(d):
		}
	}
}

// runHTTP initializes one upstream session and keeps it until it fails or
// ctx ends; on shutdown it deletes the session on the server.
func (b *Backend) runHTTP(ctx context.Context) error {
	t, err := newHTTPTransport(b)
	if err != nil {
		return err
	}
	c := newConn(b, t, false)
	if err := c.initialize(ctx); err != nil {
		c.close(err)
		return err
	}
	c.modern = c.discoverEra(ctx) // era bridging: see era.go
	b.setConn(c)
	b.opts.Observer.BackendUp(b)
	b.log.Info("backend session initialized", "session", t.session() != "", "modern", c.modern)

	listenCtx, cancel := context.WithCancel(ctx)
	var wg, inbound sync.WaitGroup
	if t.session() != "" {
		wg.Go(func() { t.listen(listenCtx, c, &inbound) })
	}
	if _, perPrincipal := b.opts.Observer.(principalObserver); c.modern != "" && !perPrincipal {
		// A principal's own connection has nothing to deliver outside
		// calls; the shared one listens.
		wg.Go(func() { t.listenModern(listenCtx, c) })
	}
	select {
	case <-ctx.Done():
	case <-c.done:
	}
	b.setConn(nil)
	c.close(ErrConnectionLost)
	b.opts.Observer.BackendDown(b, c.closedErr())
	cancel()
	wg.Wait()
	inbound.Wait()
	if ctx.Err() != nil {
		t.deleteSession(ctx)
		return nil
	}
	return c.closedErr()
}

// deleteSession tells the server we are done (DELETE; 405 is fine).
func (t *httpTransport) deleteSession(ctx context.Context) {
	if t.session() == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	req, err := t.newRequest(ctx, http.MethodDelete, nil)
	if err != nil {
		return
	}
	resp, err := t.roundTrip(req)
	if err != nil {
		return
	}
	drain(resp.Body)
}

// readReply reads a JSON reply: into a buffer of exactly its size when the
// server declared one (the common case), instead of growing one.
func readReply(body io.Reader, n int64) ([]byte, error) {
	if n >= 0 && n <= maxJSONBody {
		buf := make([]byte, n)
		if _, err := io.ReadFull(body, buf); err != nil {
			return nil, err
		}
		return buf, nil
	}
	return io.ReadAll(io.LimitReader(body, maxJSONBody))
}

func drain(r io.ReadCloser) {
	_, _ = io.Copy(io.Discard, io.LimitReader(r, 64<<10))
	r.Close()
}

func snippet(r io.Reader) string {
	b, _ := io.ReadAll(io.LimitReader(r, 200))
	return string(bytes.TrimSpace(b))
}

// mediaType returns the lower-cased media type of a Content-Type value
// without its parameters (cheaper than mime.ParseMediaType, which builds a
// map on every reply).
func mediaType(v []byte) []byte {
	if i := bytes.IndexByte(v, ';'); i >= 0 {
		v = v[:i]
	}
	v = bytes.TrimSpace(v)
	for _, c := range v {
		if 'A' <= c && c <= 'Z' {
			return bytes.ToLower(v) // rare: copy rather than change the reply's bytes
		}
	}
	return v
}
