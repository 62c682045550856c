package loadgen

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"
)

// Server serves one handler (the echo backend or the reference proxy) on a
// listener until the context given to Run ends.
type Server struct {
	ln  net.Listener
	srv *http.Server
}

// Listen binds addr (use 127.0.0.1:0 for an ephemeral loopback port).
func Listen(addr string, h http.Handler) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	return &Server{ln: ln, srv: &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}}, nil
}

// Addr is the bound address, host:port.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// URL is the MCP endpoint on this server, http://<addr>/mcp.
func (s *Server) URL() string { return "http://" + s.Addr() + "/mcp" }

// Run serves until ctx ends, then shuts down, giving in-flight requests
// up to a second before it closes what is left. That is short on purpose:
// net/http waits up to five seconds for a connection a client opened but
// never used (transports dial spares), and a harness that is done has no
// reason to wait for those. Connection goroutines are started by this
// goroutine, so they inherit its pprof labels: the benchmarks use that to
// tell the backend's CPU from the hop's in one profile.
func (s *Server) Run(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- s.srv.Serve(s.ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	defer cancel()
	if err := s.srv.Shutdown(sctx); err != nil {
		s.srv.Close()
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
