package upstream

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// h1Transport is the edge's client for plain-http backends: HTTP/1.1 over
// a pool of keep-alive connections, with the request written and the
// response read by the calling goroutine itself. http.Transport runs two
// goroutines per connection and hands every request and response between
// them and the caller over channels; on the hot path (one small JSON
// request and reply per call) those hand-offs cost more CPU than the
// reading and writing, and more than a bare reverse proxy spends per call.
// Requests it does not handle (https, a body without a known length) go to
// fallback, an http.Transport.
//
// A POST is never retried here: if a reused connection turns out dead,
// the call fails (the backend may have run the tool). To keep that rare, a
// connection idle for more than probeIdle is checked (one non-blocking
// peek) before it is reused, so one a backend closed while idle is
// dropped instead of written to.
type h1Transport struct {
	fallback    http.RoundTripper
	dialer      net.Dialer
	maxIdle     int           // idle connections kept per backend address
	idleTimeout time.Duration // idle connections older than this are closed, not reused

	mu   sync.Mutex
	idle map[string][]*h1Conn // by host:port, most recently used last
}

// probeIdle is how long a connection may sit idle before it is checked
// for a close by the backend prior to reuse. Under load connections are
// reused within microseconds and never checked.
const probeIdle = 50 * time.Millisecond

type h1Conn struct {
	t         *h1Transport
	key       string
	nc        net.Conn
	rc        syscall.RawConn // nil if nc has none
	br        *bufio.Reader
	wbuf      []byte
	idleSince time.Time
	// interrupt unblocks a read or write in progress when the call's
	// context ends; made once per connection, not per call.
	interrupt func()
	// reply is the reply being read on the connection (exchange): it
	// lives here, so the hot path allocates nothing per reply.
	reply h1Reply
}

func newH1Transport(fallback http.RoundTripper, maxIdle int) *h1Transport {
	return &h1Transport{
		fallback:    fallback,
		dialer:      net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second},
		maxIdle:     maxIdle,
		idleTimeout: 90 * time.Second,
		idle:        map[string][]*h1Conn{},
	}
}

// RoundTrip implements http.RoundTripper.
func (t *h1Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if !h1Serves(req.URL) || (req.Body != nil && req.Body != http.NoBody && req.ContentLength <= 0) {
		return t.fallback.RoundTrip(req)
	}
	ctx := req.Context()
	key := hostPort(req.URL.Host)
	pc, err := t.get(ctx, key)
	if err != nil {
		closeBody(req)
		return nil, err
	}
	pc.wbuf, err = appendRequest(pc.wbuf[:0], req)
	if err != nil {
		t.put(pc)
		return nil, err
	}
	// The hot path (exchange) leaves a call's deadline on the
	// connection; a stream read here may outlive it.
	pc.nc.SetDeadline(time.Time{})
	// The call's context ending (timeout, cancellation) unblocks the
	// read or write in progress; the connection is then not reused.
	stop := context.AfterFunc(ctx, pc.interrupt)
	if _, err := pc.nc.Write(pc.wbuf); err != nil {
		stop()
		pc.close()
		return nil, ctxErr(ctx, err)
	}
	resp, err := readResponse(pc.br, req)
	if err != nil {
		stop()
		pc.close()
		return nil, ctxErr(ctx, err)
	}
	b := &h1Body{body: resp.Body, pc: pc, stop: stop, reuse: !resp.Close, left: resp.ContentLength}
	if resp.Body == http.NoBody {
		b.eof = true
		b.release()
		return resp, nil
	}
	resp.Body = b
	return resp, nil
}

// h1Serves reports whether the h1 client talks to u itself: plain http
// without credentials in the URL (those, and https, go to the fallback).
func h1Serves(u *url.URL) bool { return u.Scheme == "http" && u.User == nil }

// readResponse reads the final response, skipping informational (1xx)
// ones a server may send first.
func readResponse(br *bufio.Reader, req *http.Request) (*http.Response, error) {
	for {
		resp, err := http.ReadResponse(br, req)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			return resp, nil
		}
	}
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}

// ctxErr prefers the context's error: a read failing because the call
// was cancelled or timed out should say so.
func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	return err
}

// appendRequest writes req's request line, headers and body to dst.
func appendRequest(dst []byte, req *http.Request) ([]byte, error) {
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	dst = appendRequestLine(dst, req.Method, req.URL.RequestURI(), host, req.Header)
	for k, vs := range req.Header {
		if framingHeader(k) {
			continue
		}
		if err := checkHeader(k, vs); err != nil {
			return dst, err
		}
		for _, v := range vs {
			dst = appendHeader(dst, k, v)
		}
	}
	n := req.ContentLength
	if req.Body == nil || req.Body == http.NoBody {
		n = 0
	}
	if n > 0 || req.Method == http.MethodPost || req.Method == http.MethodPut {
		dst = append(dst, "Content-Length: "...)
		dst = strconv.AppendInt(dst, n, 10)
		dst = append(dst, "\r\n"...)
	}
	dst = append(dst, "\r\n"...)
	if n > 0 {
		at := len(dst)
		dst = append(dst, make([]byte, n)...)
		_, err := io.ReadFull(req.Body, dst[at:])
		req.Body.Close()
		if err != nil {
			return dst, fmt.Errorf("reading request body: %w", err)
		}
	}
	return dst, nil
}

// appendRequestLine writes the request line, Host and, unless h sets
// one, the edge's User-Agent.
func appendRequestLine(dst []byte, method, uri, host string, h http.Header) []byte {
	dst = append(dst, method...)
	dst = append(dst, ' ')
	dst = append(dst, uri...)
	dst = append(dst, " HTTP/1.1\r\nHost: "...)
	dst = append(dst, host...)
	dst = append(dst, "\r\n"...)
	if _, ok := h["User-Agent"]; !ok {
		dst = append(dst, "User-Agent: mcpgw\r\n"...)
	}
	return dst
}

// framingHeader reports whether k is a header the request's framing
// owns: the writer sets it (Host, Content-Length) or never sends it.
func framingHeader(k string) bool {
	return k == "Host" || k == "Content-Length" || k == "Transfer-Encoding" || k == "Connection"
}

// checkHeader refuses a header net/http would refuse to send.
func checkHeader(k string, vs []string) error {
	if !validHeaderName(k) {
		return fmt.Errorf("invalid HTTP header name %q", k)
	}
	for _, v := range vs {
		if !validHeaderValue(v) {
			return fmt.Errorf("invalid value for HTTP header %q", k)
		}
	}
	return nil
}

func appendHeader(dst []byte, k, v string) []byte {
	dst = append(dst, k...)
	dst = append(dst, ": "...)
	dst = append(dst, v...)
	return append(dst, "\r\n"...)
}

func validHeaderName(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if c <= ' ' || c >= 0x7f || c == ':' {
			return false
		}
	}
	return true
}

// validHeaderValue refuses what would end or split a header line: a value
// from a backend (a session id) must not inject headers into the next
// request.
func validHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c == '\r' || c == '\n' || c == 0 {
			return false
		}
	}
	return true
}

func hostPort(host string) string {
	if _, _, err := net.SplitHostPort(host); err == nil {
		return host
	}
	return net.JoinHostPort(host, "80")
}

// get returns an idle connection to key, or dials one.
func (t *h1Transport) get(ctx context.Context, key string) (*h1Conn, error) {
	for {
		t.mu.Lock()
		list := t.idle[key]
		var pc *h1Conn
		if n := len(list); n > 0 {
			pc = list[n-1]
			list[n-1] = nil
			t.idle[key] = list[:n-1]
		}
		t.mu.Unlock()
		if pc == nil {
			break
		}
		idle := time.Since(pc.idleSince)
		if idle > t.idleTimeout || (idle > probeIdle && !pc.alive()) {
			pc.close()
			continue
		}
		return pc, nil
	}
	nc, err := t.dialer.DialContext(ctx, "tcp", key)
	if err != nil {
		return nil, err
	}
	pc := &h1Conn{t: t, key: key, nc: nc, br: bufio.NewReaderSize(nc, 4096)}
	pc.interrupt = func() { nc.SetDeadline(time.Unix(1, 0)) }
	pc.reply.pc = pc
	if sc, ok := nc.(syscall.Conn); ok {
		pc.rc, _ = sc.SyscallConn()
	}
	return pc, nil
}

// put returns pc to the idle pool, or closes it when the pool is full.
func (t *h1Transport) put(pc *h1Conn) {
	pc.idleSince = time.Now()
	if len(pc.wbuf) > 64<<10 {
		pc.wbuf = nil // do not keep a huge request's buffer per idle connection
	}
	if h := &pc.reply.head; cap(h.vals)+cap(h.long) > 8<<10 {
		h.vals, h.long = nil, nil // nor a huge reply head's
	}
	t.mu.Lock()
	list := t.idle[pc.key]
	if len(list) >= t.maxIdle {
		t.mu.Unlock()
		pc.close()
		return
	}
	t.idle[pc.key] = append(list, pc)
	t.mu.Unlock()
}

// PruneIdle closes, every interval until ctx ends, the pooled connections
// of rt (from NewTransport) that a backend closed or that sat idle longer
// than the idle timeout. Without it, a connection nobody reuses (its
// backend was removed, or is idle) would stay open, half-closed by the
// backend, until the process exits: h1Transport has no read goroutine per
// connection to notice. At the end it closes every idle connection.
func PruneIdle(ctx context.Context, rt http.RoundTripper, every time.Duration) {
	t, ok := rt.(*h1Transport)
	if !ok {
		return
	}
	defer t.CloseIdleConnections()
	tk := time.NewTicker(every)
	defer tk.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tk.C:
			t.prune()
		}
	}
}

// prune checks the connections idle for longer than probeIdle (taken out
// of the pool meanwhile, so no caller gets one being checked) and puts back
// those still usable.
func (t *h1Transport) prune() {
	now := time.Now()
	var check []*h1Conn
	t.mu.Lock()
	for key, list := range t.idle {
		keep := list[:0]
		for _, pc := range list {
			if now.Sub(pc.idleSince) > probeIdle {
				check = append(check, pc)
			} else {
				keep = append(keep, pc)
			}
		}
		clear(list[len(keep):])
		if len(keep) == 0 {
			delete(t.idle, key)
		} else {
			t.idle[key] = keep
		}
	}
	t.mu.Unlock()
	for _, pc := range check {
		if now.Sub(pc.idleSince) > t.idleTimeout || !pc.alive() {
			pc.close()
			continue
		}
		t.mu.Lock()
		if list := t.idle[pc.key]; len(list) < t.maxIdle {
			// Oldest first: callers take from the end.
			t.idle[pc.key] = append([]*h1Conn{pc}, list...)
			pc = nil
		}
		t.mu.Unlock()
		if pc != nil {
			pc.close()
		}
	}
}

// CloseIdleConnections closes the pooled connections (and the fallback's).
func (t *h1Transport) CloseIdleConnections() {
	t.mu.Lock()
	idle := t.idle
	t.idle = map[string][]*h1Conn{}
	t.mu.Unlock()
	for _, list := range idle {
		for _, pc := range list {
			pc.close()
		}
	}
	if ci, ok := t.fallback.(interface{ CloseIdleConnections() }); ok {
		ci.CloseIdleConnections()
	}
}

func (pc *h1Conn) close() { pc.nc.Close() }

// alive reports whether an idle connection is still open with nothing
// unread: a peek that does not block. EOF means the backend closed it;
// bytes mean it sent something unasked; both make it unusable.
func (pc *h1Conn) alive() bool {
	if pc.br.Buffered() > 0 {
		return false
	}
	if pc.rc == nil {
		return true
	}
	ok := false
	var b [1]byte
	err := pc.rc.Read(func(fd uintptr) bool {
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		ok = n < 0 && (errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EWOULDBLOCK))
		return true // never wait for readiness
	})
	return err == nil && ok
}

// h1Body is a response body that returns its connection to the pool once
// read to the end, and closes it if abandoned before.
type h1Body struct {
	body  io.ReadCloser
	pc    *h1Conn
	stop  func() bool
	reuse bool
	left  int64 // bytes of a Content-Length body not yet read; -1: unknown
	eof   bool
	done  bool
}

func (b *h1Body) Read(p []byte) (int, error) {
	if b.eof {
		return 0, io.EOF
	}
	if b.done {
		return 0, errors.New("read on a closed response body")
	}
	n, err := b.body.Read(p)
	if b.left > 0 {
		b.left -= int64(n)
		if b.left == 0 {
			// All of it: a reader that asked for exactly the declared
			// length (readReply) never sees EOF, and the connection is
			// free now.
			err = io.EOF
		}
	}
	if err == io.EOF {
		b.eof = true
		b.release()
	}
	return n, err
}

func (b *h1Body) Close() error {
	if b.done {
		return nil
	}
	if !b.eof {
		// Unread bytes (an SSE stream left open, say): the connection
		// cannot carry another request. Closing it first also keeps the
		// body's Close from draining a stream that never ends.
		b.pc.close()
		b.body.Close()
		b.done = true
		b.stop()
		return nil
	}
	b.release()
	return nil
}

// release hands the connection back once the body was read to its end.
func (b *h1Body) release() {
	if b.done {
		return
	}
	b.done = true
	if !b.stop() || !b.reuse {
		// The context ended meanwhile: its deadline may be set on the
		// connection already.
		b.pc.close()
		return
	}
	b.pc.t.put(b.pc)
}

// exchange writes pc.wbuf, a whole request, and reads the reply's head
// with readHead instead of http.ReadResponse. The caller owns the reply
// until its Close, which returns the connection to the pool or closes it.
// On an error the connection is closed.
func (pc *h1Conn) exchange(ctx context.Context) (*h1Reply, error) {
	r := &pc.reply
	r.stop, r.cc = nil, nil
	watched := ctx
	if cc, ok := ctx.(*callCtx); ok {
		// A call's own timeout is the connection's deadline, and a
		// cancellation through its Canceler interrupts the connection
		// directly (callCtx.watch): only the caller's context is left to
		// watch, with the connection's ready-made interrupt.
		r.cc, watched = cc, cc.parent
		pc.nc.SetDeadline(cc.deadline)
		cc.watch(pc.nc)
	} else {
		pc.nc.SetDeadline(time.Time{}) // a previous call's may be set still
	}
	if watched.Done() != nil {
		// As in RoundTrip: the context ending unblocks the write or read
		// in progress.
		r.stop = context.AfterFunc(watched, pc.interrupt)
	}
	fail := func(err error) (*h1Reply, error) {
		r.unwatch()
		pc.close()
		return nil, ctxErr(ctx, err)
	}
	if _, err := pc.nc.Write(pc.wbuf); err != nil {
		return fail(err)
	}
	if err := readHead(pc.br, &r.head); err != nil {
		return fail(err)
	}
	r.left = r.head.contentLength
	r.eof = r.left == 0
	r.closed = false
	r.chunks = nil
	if r.head.chunked {
		r.chunks = httputil.NewChunkedReader(pc.br)
	}
	return r, nil
}

// h1Reply is a reply read by exchange: its head, and its body as an
// io.ReadCloser. It is valid until Close, exactly once: after that its
// connection (and so the reply) may be serving another call.
type h1Reply struct {
	pc     *h1Conn
	head   respHead
	stop   func() bool // ends the watch on the caller's context; nil if none
	cc     *callCtx    // the call, when it watches the connection itself
	chunks io.Reader   // the chunked decoder, for a chunked body
	left   int64       // bytes of a Content-Length body not yet read; -1: not so framed
	eof    bool
	closed bool
}

func (r *h1Reply) Read(p []byte) (int, error) {
	if r.closed {
		return 0, errors.New("read on a closed response body")
	}
	if r.eof {
		return 0, io.EOF
	}
	var n int
	var err error
	switch {
	case r.chunks != nil:
		n, err = r.chunks.Read(p)
		if err == io.EOF {
			if terr := skipTrailer(r.pc.br, &r.head); terr != nil {
				r.head.close = true
				err = terr
			}
		}
	case r.left > 0:
		if int64(len(p)) > r.left {
			p = p[:r.left]
		}
		n, err = r.pc.br.Read(p)
		r.left -= int64(n)
		switch {
		case r.left == 0:
			// All of it: a reader that asked for exactly the declared
			// length (readReply) never needs to see EOF to free the
			// connection.
			err = io.EOF
		case err == io.EOF:
			err = io.ErrUnexpectedEOF
		}
	default:
		// Delimited by the server closing the connection.
		n, err = r.pc.br.Read(p)
	}
	if err == io.EOF {
		r.eof = true
	}
	return n, err
}

// Close hands the connection back if the body was read to its end and
// the connection may carry another request, and closes it otherwise: an
// SSE stream left open, say, cannot be reused, and closing it first keeps
// Close from waiting on a stream that never ends.
func (r *h1Reply) Close() error {
	if r.closed {
		return nil
	}
	r.closed = true
	if !r.unwatch() || !r.eof || r.head.close {
		// unwatch false: the context ended meanwhile, and its deadline
		// may be on the connection already.
		r.pc.close()
		return nil
	}
	r.pc.t.put(r.pc)
	return nil
}

// unwatch ends the watches exchange set up; false if one of them fired.
func (r *h1Reply) unwatch() bool {
	clean := true
	if r.stop != nil && !r.stop() {
		clean = false
	}
	if r.cc != nil && !r.cc.unwatch() {
		clean = false
	}
	return clean
}

// skipTrailer reads the trailer section after a chunked body's last
// chunk, up to its empty line, so the next reply starts where it should.
// The edge uses no trailer field.
func skipTrailer(br *bufio.Reader, h *respHead) error {
	budget := maxHeadBytes
	for {
		line, err := readHeadLine(br, h, &budget)
		if err != nil {
			return fmt.Errorf("reading trailer: %w", eofUnexpected(err))
		}
		if len(line) == 0 {
			return nil
		}
		if colon := bytes.IndexByte(line, ':'); colon <= 0 || !isToken(line[:colon]) {
			return fmt.Errorf("%w: malformed trailer line", errMalformedHead)
		}
	}
}
