package gateway

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/mcpgw/mcpgw/dataplane/rpc"
	"github.com/mcpgw/mcpgw/dataplane/session"
)

// maxStdioLine bounds one message read from stdin.
const maxStdioLine = 64 << 20

// stdioOut writes newline-delimited messages to the client.
type stdioOut struct {
	// mu guards w so concurrent messages never interleave.
	mu sync.Mutex
	w  io.Writer
}

func (o *stdioOut) Send(msg []byte) error {
	buf := make([]byte, 0, len(msg)+1)
	buf = append(append(buf, msg...), '\n')
	o.mu.Lock()
	defer o.mu.Unlock()
	_, err := o.w.Write(buf)
	return err
}

// ServeStdio speaks MCP with one client over r (its stdout) and w (its
// stdin) until r ends or ctx is done: one session, requests served
// concurrently so a call can wait on a sampling answer that arrives on r.
// Nothing else may write to w.
func (g *Gateway) ServeStdio(ctx context.Context, r io.Reader, w io.Writer) error {
	out := &stdioOut{w: w}
	p, err := g.opts.Auth.Authenticate(ctx, Credentials{Transport: "stdio"})
	if err != nil {
		return fmt.Errorf("authenticating the stdio client: %w", err)
	}
	sess := session.New(session.NewID(), p.Name, "stdio")
	g.sessions.Add(sess)
	// The stdio session lives as long as the pipe, never idles out.
	defer sess.Acquire()()
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		g.sessions.Remove(sess.ID)
		wg.Wait()
	}()
	// Pump server-initiated messages (list_changed, updates, logs).
	wg.Go(func() {
		var after uint64
		for {
			evs, wake, _, closed := sess.Outbox.Since(after)
			for _, e := range evs {
				if out.Send(e.Data) != nil {
					return
				}
				after = e.ID
			}
			if closed {
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-wake:
			}
		}
	})

	lines := make(chan []byte)
	readErr := make(chan error, 1)
	wg.Go(func() {
		readErr <- readStdioLines(ctx, r, lines)
	})
	for {
		var line []byte
		select {
		case <-ctx.Done():
			return nil
		case err := <-readErr:
			if err != nil && !errors.Is(err, io.EOF) {
				return fmt.Errorf("reading stdin: %w", err)
			}
			return nil
		case line = <-lines:
		}
		g.serveStdioLine(ctx, sess, p, out, line, &wg)
	}
}

func readStdioLines(ctx context.Context, r io.Reader, lines chan<- []byte) error {
	br := bufio.NewReaderSize(r, 64<<10)
	for {
		line, err := br.ReadBytes('\n')
		if len(line) > maxStdioLine {
			return fmt.Errorf("message longer than %d bytes", maxStdioLine)
		}
		if line = bytes.TrimSpace(line); len(line) > 0 {
			select {
			case lines <- line:
			case <-ctx.Done():
				return nil
			}
		}
		if err != nil {
			return err
		}
	}
}

func (g *Gateway) serveStdioLine(ctx context.Context, sess *session.Session, p Principal, out *stdioOut, line []byte, wg *sync.WaitGroup) {
	m, badID, perr := parse(line)
	if perr != nil {
		// A line that is not a well-formed message is a refused request,
		// audited like any other (DESIGN §6).
		rq := &Request{Start: time.Now(), Transport: "stdio", Principal: p, SessionID: sess.ID, ID: badID, RequestBytes: len(line), Status: StatusError, Error: perr.Message}
		g.opts.Record.Begin(rq)
		_ = out.Send(g.finish(ctx, badID, rq, rpc.AppendErrorResponse(nil, badID, perr)))
		return
	}
	st := g.state.Load()
	switch {
	case m.IsNotification():
		g.notification(st, sess, m)
		return
	case m.IsResponse():
		sess.Deliver(&m.Message)
		return
	}
	if err := g.admit(); err != nil {
		_ = out.Send(rpc.AppendErrorResponse(nil, m.ID, errAuditUnavailable))
		return
	}
	rq := &Request{Start: time.Now(), Transport: "stdio", Principal: p, RequestBytes: len(line)}
	g.opts.Record.Begin(rq)
	ctx = withTrace(ctx, rq, traceOf(nil, &m.env))
	if m.Method == "initialize" {
		result := g.initialize(st, sess, m.Params)
		rq.Method, rq.ID, rq.SessionID, rq.ProtocolVersion = m.Method, m.ID, sess.ID, sess.Version
		rq.ClientName, rq.ClientVersion = sess.ClientName, sess.ClientVersion
		var resp []byte
		if g.allowed(ctx, st, rq, Action{Method: m.Method}) {
			rq.Status = StatusOK
			resp = rpc.AppendResponse(nil, m.ID, result, nil)
		} else {
			resp = rpc.AppendResponse(nil, m.ID, nil, g.denied(rq))
		}
		_ = out.Send(g.finish(ctx, m.ID, rq, resp))
		return
	}
	if m.env.ProtocolVersion.IsSet() {
		wg.Go(func() {
			if resp := g.serveStdioModern(ctx, st, sess, m, out, rq); resp != nil {
				_ = out.Send(resp)
			}
		})
		return
	}
	wg.Go(func() {
		if resp := g.serve(ctx, st, sess, m, out, rq, nil); resp != nil {
			_ = out.Send(resp)
		}
	})
}
