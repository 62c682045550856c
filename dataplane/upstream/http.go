package upstream

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
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
}

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
	return &httpTransport{b: b, url: b.cfg.HTTP.URL, u: u, headers: h}, nil
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
	req, err := t.newRequest(ctx, http.MethodPost, msg)
	if err != nil {
		return err
	}
	resp, err := t.roundTrip(req)
	if err != nil {
		return fmt.Errorf("POST %s: %w", t.url, err)
	}
	defer drain(resp.Body)
	switch {
	case resp.StatusCode == http.StatusNotFound && t.session() != "":
		return errSessionExpired
	case resp.StatusCode >= 300:
		return fmt.Errorf("POST %s: HTTP %d: %s", t.url, resp.StatusCode, snippet(resp.Body))
	}
	return nil
}

func (t *httpTransport) request(ctx context.Context, c *conn, cl *call, msg []byte) error {
	req, err := t.newRequest(ctx, http.MethodPost, msg)
	if err != nil {
		return err
	}
	setTrace(ctx, req.Header)
	if m := cl.modern; m != nil {
		// A 2026-07-28 request stands alone: no legacy session, its own
		// version, and the headers a server checks against the body.
		delete(req.Header, "Mcp-Session-Id")
		req.Header["Mcp-Protocol-Version"] = []string{m.Version}
		req.Header["Mcp-Method"] = []string{cl.method}
		if m.Name != "" {
			req.Header["Mcp-Name"] = []string{m.Name}
		}
		for k, v := range m.Params {
			req.Header[k] = []string{v}
		}
	}
	resp, err := t.do(ctx, c, req)
	if err != nil {
		return err
	}
	// Closed, not drained: an SSE body may stay open after our response,
	// and reading on would block.
	defer resp.Body.Close()
	if s := resp.Header.Get("Mcp-Session-Id"); s != "" && t.session() == "" {
		t.setSession(s)
	}
	ct := mediaType(resp.Header.Get("Content-Type"))
	switch {
	case resp.StatusCode == http.StatusNotFound && t.session() != "" && cl.modern == nil:
		return errSessionExpired
	case ct == "text/event-stream" && resp.StatusCode == http.StatusOK:
		return t.readStream(ctx, c, cl, resp.Body)
	case ct == "application/json":
		// Also taken for 4xx replies that carry a JSON-RPC error.
		body, err := readReply(resp)
		if err != nil {
			return fmt.Errorf("reading reply from %s: %w", t.url, err)
		}
		c.dispatch(ctx, body, cl, nil)
		if len(cl.resp) == 0 {
			return fmt.Errorf("HTTP %d from %s without a JSON-RPC response: %.200s", resp.StatusCode, t.url, body)
		}
		return nil
	default:
		return fmt.Errorf("HTTP %d (%s) from %s: %s", resp.StatusCode, ct, t.url, snippet(resp.Body))
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
			return len(cl.resp) == 0
		})
		if len(cl.resp) > 0 {
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
func readReply(resp *http.Response) ([]byte, error) {
	if n := resp.ContentLength; n >= 0 && n <= maxJSONBody {
		buf := make([]byte, n)
		if _, err := io.ReadFull(resp.Body, buf); err != nil {
			return nil, err
		}
		return buf, nil
	}
	return io.ReadAll(io.LimitReader(resp.Body, maxJSONBody))
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
func mediaType(v string) string {
	if i := strings.IndexByte(v, ';'); i >= 0 {
		v = v[:i]
	}
	return strings.ToLower(strings.TrimSpace(v))
}
