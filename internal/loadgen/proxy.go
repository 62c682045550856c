package loadgen

import (
	"log"
	"net/http"
	"net/http/httputil"
	"net/url"
)

// NewReverseProxy returns the reference hop of DESIGN §11: a bare
// httputil.ReverseProxy to backend (scheme and host; the request path is
// kept) configured as a careful operator would: the default FlushInterval
// (it already flushes SSE replies at once and lets JSON replies be written
// in one go), a BufferPool so copy buffers are not allocated per request,
// and a transport from NewTransport whose idle pool covers conns concurrent
// requests, without compression. It does nothing MCP-aware: it is the floor
// of one extra HTTP hop on this machine, which the edge is measured against.
func NewReverseProxy(backend *url.URL, conns int) *httputil.ReverseProxy {
	target := &url.URL{Scheme: backend.Scheme, Host: backend.Host}
	return &httputil.ReverseProxy{
		Rewrite:    func(r *httputil.ProxyRequest) { r.SetURL(target) },
		Transport:  NewTransport(conns),
		BufferPool: newBufferPool(2 * conns),
		ErrorLog:   log.New(log.Writer(), "reference proxy: ", 0),
	}
}

// bufferPool is a bounded free list of 32 KiB copy buffers. A channel rather
// than sync.Pool because the BufferPool interface passes []byte by value,
// and putting a slice into a sync.Pool allocates its header every time.
type bufferPool chan []byte

func newBufferPool(n int) bufferPool { return make(bufferPool, n) }

func (p bufferPool) Get() []byte {
	select {
	case b := <-p:
		return b
	default:
		return make([]byte, 32<<10)
	}
}

func (p bufferPool) Put(b []byte) {
	select {
	case p <- b:
	default: // full: let the GC have it
	}
}

var _ httputil.BufferPool = bufferPool(nil)
var _ http.Handler = (*httputil.ReverseProxy)(nil)
