package upstream

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// countingServer is an httptest server that counts the connections it
// accepted and the requests it served.
type countingServer struct {
	*httptest.Server
	conns, reqs atomic.Int64
}

func newCountingServer(t *testing.T, h http.HandlerFunc, configure ...func(*http.Server)) *countingServer {
	t.Helper()
	s := &countingServer{}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.reqs.Add(1)
		h(w, r)
	}))
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			s.conns.Add(1)
		}
	}
	for _, f := range configure {
		f(s.Config)
	}
	s.Start()
	t.Cleanup(s.Close)
	return s
}

func post(t *testing.T, rt http.RoundTripper, ctx context.Context, url, body string) (*http.Response, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	return rt.RoundTrip(req)
}

func readAll(t *testing.T, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return string(b)
}

func TestH1ReusesOneConnection(t *testing.T) {
	s := newCountingServer(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Write(b)
	})
	rt := newH1Transport(newStdTransport(4), 4)
	defer rt.CloseIdleConnections()
	for i := range 200 {
		resp, err := post(t, rt, context.Background(), s.URL+"/mcp?x=1", `{"i":`+string(rune('0'+i%10))+`}`)
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		// Read exactly the declared length, as readReply does: the
		// connection must be reusable without an EOF having been seen.
		buf := make([]byte, resp.ContentLength)
		if _, err := io.ReadFull(resp.Body, buf); err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if want := `{"i":` + string(rune('0'+i%10)) + `}`; string(buf) != want {
			t.Fatalf("call %d: got %q, want %q", i, buf, want)
		}
	}
	if n := s.conns.Load(); n != 1 {
		t.Fatalf("200 sequential calls used %d connections, want 1", n)
	}
}

// A backend that closes an idle keep-alive connection: the next call,
// after the probe interval, goes out on a new connection and succeeds.
func TestH1DropsConnectionTheBackendClosed(t *testing.T) {
	s := newCountingServer(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") },
		func(c *http.Server) { c.IdleTimeout = 100 * time.Millisecond })
	rt := newH1Transport(newStdTransport(4), 4)
	defer rt.CloseIdleConnections()
	for i := range 3 {
		resp, err := post(t, rt, context.Background(), s.URL, "{}")
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		if got := readAll(t, resp); got != "ok" {
			t.Fatalf("call %d: %q", i, got)
		}
		time.Sleep(probeIdle + 200*time.Millisecond) // the server closed the idle connection meanwhile
	}
	if n, r := s.conns.Load(), s.reqs.Load(); n != 3 || r != 3 {
		t.Fatalf("%d connections, %d requests; want 3 and 3 (a new connection after each idle close)", n, r)
	}
}

// A POST that dies on its connection is not sent again: the backend may
// have acted on it.
func TestH1NeverRetriesAPost(t *testing.T) {
	var hits atomic.Int64
	s := newCountingServer(t, func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		hj, _ := w.(http.Hijacker)
		c, _, _ := hj.Hijack()
		c.Close() // no response at all
	})
	rt := newH1Transport(newStdTransport(4), 4)
	defer rt.CloseIdleConnections()
	if _, err := post(t, rt, context.Background(), s.URL, "{}"); err == nil {
		t.Fatal("a connection closed without a response must be an error")
	}
	if n := hits.Load(); n != 1 {
		t.Fatalf("the backend saw the POST %d times, want 1", n)
	}
}

// An SSE reply is streamed: events arrive before the response ends, and
// closing the body early neither hangs nor returns the connection.
func TestH1StreamsAndAbandonsSSE(t *testing.T) {
	release := make(chan struct{})
	s := newCountingServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: one\n\n")
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	defer close(release)
	rt := newH1Transport(newStdTransport(4), 4)
	defer rt.CloseIdleConnections()
	resp, err := post(t, rt, context.Background(), s.URL, "{}")
	if err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil || line != "data: one\n" {
		t.Fatalf("first event line %q, %v", line, err)
	}
	done := make(chan struct{})
	go func() { resp.Body.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("closing an unfinished SSE body hung")
	}
	resp2, err := post(t, rt, context.Background(), s.URL, "{}")
	if err != nil {
		t.Fatal(err)
	}
	resp2.Body.Close()
	if n := s.conns.Load(); n != 2 {
		t.Fatalf("%d connections; the abandoned stream's must not be reused", n)
	}
}

// The call's context ending unblocks a read from a backend that does not
// answer, with the context's cause as the error: through RoundTrip and
// through the hot path's exchange.
func TestH1CancelUnblocksTheRead(t *testing.T) {
	s := newCountingServer(t, func(w http.ResponseWriter, r *http.Request) {
		io.ReadAll(r.Body) // so the server notices the client closing
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
	})
	for name, call := range map[string]func(*h1Transport, context.Context) error{
		"RoundTrip": func(rt *h1Transport, ctx context.Context) error {
			_, err := post(t, rt, ctx, s.URL, "{}")
			return err
		},
		"exchange": func(rt *h1Transport, ctx context.Context) error {
			_, err := exchange(t, rt, ctx, s.URL, "{}")
			return err
		},
	} {
		t.Run(name, func(t *testing.T) {
			rt := newH1Transport(newStdTransport(4), 4)
			defer rt.CloseIdleConnections()
			ctx, cancel := context.WithTimeoutCause(context.Background(), 100*time.Millisecond, ErrTimeout)
			defer cancel()
			start := time.Now()
			err := call(rt, ctx)
			if !errors.Is(err, ErrTimeout) || time.Since(start) > 3*time.Second {
				t.Fatalf("got %v after %v, want the timeout cause after ~100ms", err, time.Since(start))
			}
		})
	}
}

// A header value with a line break (say, a session id a backend made up)
// never reaches the wire as an extra header.
func TestH1RefusesHeaderInjection(t *testing.T) {
	s := newCountingServer(t, func(w http.ResponseWriter, r *http.Request) {})
	rt := newH1Transport(newStdTransport(4), 4)
	defer rt.CloseIdleConnections()
	req, _ := http.NewRequest(http.MethodPost, s.URL, strings.NewReader("{}"))
	req.Header["Mcp-Session-Id"] = []string{"abc\r\nX-Injected: 1"}
	if _, err := rt.RoundTrip(req); err == nil || !strings.Contains(err.Error(), "invalid value") {
		t.Fatalf("got %v, want an invalid header value error", err)
	}
	if n := s.reqs.Load(); n != 0 {
		t.Fatalf("the backend got %d requests", n)
	}
}

// Informational responses are skipped; a chunked reply is read whole; a
// reply with Connection: close is not pooled.
func TestH1ResponseShapes(t *testing.T) {
	s := newCountingServer(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/early":
			w.Header().Set("Link", "</x>; rel=preload")
			w.WriteHeader(http.StatusEarlyHints)
			io.WriteString(w, "final")
		case "/chunked":
			for range 3 {
				io.WriteString(w, strings.Repeat("x", 1000))
				w.(http.Flusher).Flush()
			}
		case "/close":
			w.Header().Set("Connection", "close")
			io.WriteString(w, "bye")
		}
	})
	rt := newH1Transport(newStdTransport(4), 4)
	defer rt.CloseIdleConnections()
	resp, err := post(t, rt, context.Background(), s.URL+"/early", "{}")
	if err != nil || resp.StatusCode != 200 || readAll(t, resp) != "final" {
		t.Fatalf("after early hints: %v %v", resp, err)
	}
	resp, err = post(t, rt, context.Background(), s.URL+"/chunked", "{}")
	if err != nil || resp.ContentLength != -1 || len(readAll(t, resp)) != 3000 {
		t.Fatalf("chunked: %v %v", resp, err)
	}
	// The first call may go out on the pooled connection; none after a
	// Connection: close reply may.
	before := s.conns.Load()
	for range 3 {
		resp, err = post(t, rt, context.Background(), s.URL+"/close", "{}")
		if err != nil || readAll(t, resp) != "bye" {
			t.Fatalf("close: %v %v", resp, err)
		}
	}
	if n := s.conns.Load() - before; n < 2 {
		t.Fatalf("replies with Connection: close reused a connection (%d new for 3 calls)", n)
	}
}

// https is not ours: it goes through the fallback http.Transport.
func TestH1LeavesHTTPSToTheFallback(t *testing.T) {
	s := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "tls") }))
	defer s.Close()
	std := s.Client().Transport.(*http.Transport)
	rt := newH1Transport(std, 4)
	resp, err := post(t, rt, context.Background(), s.URL, "{}")
	if err != nil || readAll(t, resp) != "tls" {
		t.Fatalf("https through the fallback: %v", err)
	}
}

func idleCount(rt *h1Transport) int {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	n := 0
	for _, l := range rt.idle {
		n += len(l)
	}
	return n
}

// The janitor drops pooled connections a backend closed (nobody would
// reuse them to find out) and keeps live ones; at the end it closes all.
func TestH1PruneDropsClosedConnections(t *testing.T) {
	closing := newCountingServer(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") },
		func(c *http.Server) { c.IdleTimeout = 50 * time.Millisecond })
	live := newCountingServer(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	rt := newH1Transport(newStdTransport(4), 4)
	for _, s := range []*countingServer{closing, live} {
		resp, err := post(t, rt, context.Background(), s.URL, "{}")
		if err != nil {
			t.Fatal(err)
		}
		readAll(t, resp)
	}
	if n := idleCount(rt); n != 2 {
		t.Fatalf("%d idle connections after two calls, want 2", n)
	}
	time.Sleep(probeIdle + 200*time.Millisecond) // the closing server has closed its one
	rt.prune()
	if n := idleCount(rt); n != 1 {
		t.Fatalf("%d idle connections after pruning, want 1 (the live backend's)", n)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { PruneIdle(ctx, rt, time.Hour); close(done) }()
	cancel()
	<-done
	if n := idleCount(rt); n != 0 {
		t.Fatalf("%d idle connections after PruneIdle ended, want 0", n)
	}
}

// exchange sends a POST of body to url over rt's pool the way the hot path
// does (postH1) and returns the reply.
func exchange(t *testing.T, rt *h1Transport, ctx context.Context, url, body string) (*h1Reply, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	pc, err := rt.get(ctx, hostPort(req.URL.Host))
	if err != nil {
		return nil, err
	}
	if pc.wbuf, err = appendRequest(pc.wbuf[:0], req); err != nil {
		t.Fatal(err)
	}
	return pc.exchange(ctx)
}

func readReplyBody(t *testing.T, r *h1Reply) string {
	t.Helper()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	return string(b)
}

// The hot path's replies: informational ones skipped, chunked bodies read
// whole (trailer included, so the connection carries the next request),
// Content-Length bodies free the connection without an EOF read, and
// Connection: close or an abandoned body are not pooled.
func TestH1ExchangeShapes(t *testing.T) {
	s := newCountingServer(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/early":
			w.WriteHeader(http.StatusEarlyHints)
			io.WriteString(w, "final")
		case "/chunked":
			w.Header().Set("Trailer", "X-Sum")
			for range 3 {
				io.WriteString(w, strings.Repeat("x", 1000))
				w.(http.Flusher).Flush()
			}
			w.Header().Set("X-Sum", "3000")
		case "/close":
			w.Header().Set("Connection", "close")
			io.WriteString(w, "bye")
		case "/json":
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Mcp-Session-Id", "sess-1")
			io.WriteString(w, `{"ok":true}`)
		case "/empty":
			w.WriteHeader(http.StatusAccepted)
		}
	})
	rt := newH1Transport(newStdTransport(4), 4)
	defer rt.CloseIdleConnections()
	ctx := context.Background()

	for i := range 3 {
		r, err := exchange(t, rt, ctx, s.URL+"/json", "{}")
		if err != nil {
			t.Fatal(err)
		}
		if r.head.status != 200 || string(r.head.contentType()) != "application/json" || string(r.head.sessionID()) != "sess-1" {
			t.Fatalf("call %d: head %+v", i, r.head)
		}
		buf := make([]byte, r.head.contentLength)
		if _, err := io.ReadFull(r, buf); err != nil || string(buf) != `{"ok":true}` {
			t.Fatalf("call %d: body %q, %v", i, buf, err)
		}
		r.Close()
	}
	r, err := exchange(t, rt, ctx, s.URL+"/early", "{}")
	if err != nil || r.head.status != 200 || readReplyBody(t, r) != "final" {
		t.Fatalf("after early hints: %v", err)
	}
	r, err = exchange(t, rt, ctx, s.URL+"/chunked", "{}")
	if err != nil || !r.head.chunked || len(readReplyBody(t, r)) != 3000 {
		t.Fatalf("chunked: %v", err)
	}
	r, err = exchange(t, rt, ctx, s.URL+"/empty", "{}")
	if err != nil || r.head.status != 202 || readReplyBody(t, r) != "" {
		t.Fatalf("202: %v", err)
	}
	if n := s.conns.Load(); n != 1 {
		t.Fatalf("%d connections for replies that each left it reusable, want 1", n)
	}

	before := s.conns.Load()
	for range 3 {
		r, err = exchange(t, rt, ctx, s.URL+"/close", "{}")
		if err != nil || readReplyBody(t, r) != "bye" {
			t.Fatalf("close: %v", err)
		}
	}
	if n := s.conns.Load() - before; n < 2 {
		t.Fatalf("replies with Connection: close reused a connection (%d new for 3 calls)", n)
	}

	// Abandoned half-read: the connection goes.
	before = s.conns.Load()
	r, err = exchange(t, rt, ctx, s.URL+"/chunked", "{}")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Read(make([]byte, 10)); err != nil {
		t.Fatal(err)
	}
	r.Close()
	r, err = exchange(t, rt, ctx, s.URL+"/json", "{}")
	if err != nil {
		t.Fatal(err)
	}
	readReplyBody(t, r)
	if n := s.conns.Load() - before; n != 2 {
		t.Fatalf("%d new connections; the abandoned reply's must not be reused", n)
	}
}

// A backend that answers with a malformed head fails the call, and the
// connection is not reused for the next.
func TestH1ExchangeRefusesMalformedReply(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var accepted atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					io.Copy(io.Discard, req.Body)
					if req.URL.Path == "/bad" {
						io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc")
					} else {
						io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
					}
				}
			}()
		}
	}()
	url := "http://" + ln.Addr().String()
	rt := newH1Transport(newStdTransport(4), 4)
	defer rt.CloseIdleConnections()
	if _, err := exchange(t, rt, context.Background(), url+"/bad", "{}"); err == nil || !strings.Contains(err.Error(), "Content-Length") {
		t.Fatalf("got %v, want a Content-Length error", err)
	}
	r, err := exchange(t, rt, context.Background(), url+"/good", "{}")
	if err != nil || readReplyBody(t, r) != "ok" {
		t.Fatalf("next call: %v", err)
	}
	if n := accepted.Load(); n != 2 {
		t.Fatalf("%d connections, want 2: the one with the bad reply is not reused", n)
	}
}
