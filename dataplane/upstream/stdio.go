package upstream

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// maxLine bounds one stdio message so a misbehaving child cannot make the
// edge buffer without limit.
const maxLine = 64 << 20

// stdioTransport writes newline-delimited JSON to a child's stdin.
type stdioTransport struct {
	// mu guards w so concurrent messages are never interleaved.
	mu sync.Mutex
	w  *os.File
}

// stdinWriteTimeout bounds a write when the caller set no deadline.
const stdinWriteTimeout = 30 * time.Second

func (t *stdioTransport) send(ctx context.Context, msg []byte) error {
	buf := make([]byte, 0, len(msg)+1)
	buf = append(append(buf, msg...), '\n')
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(stdinWriteTimeout)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	// A child that stops reading stdin fills the pipe; the deadline turns
	// that into an error for this call instead of a hang for every caller.
	_ = t.w.SetWriteDeadline(deadline)
	if _, err := t.w.Write(buf); err != nil {
		// Part of a message may be in the pipe: nothing written after it
		// would parse. Closing stdin ends the child, which Run restarts.
		t.w.Close()
		return fmt.Errorf("writing to backend stdin: %w", err)
	}
	return nil
}

func (t *stdioTransport) request(ctx context.Context, _ *conn, _ *call, msg []byte) error {
	return t.send(ctx, msg)
}

// copiesRequest implements transport: send writes msg before it returns.
func (t *stdioTransport) copiesRequest() bool { return true }

// answersInline implements transport: responses arrive on the child's
// stdout, read by Run's reader, after request returned.
func (t *stdioTransport) answersInline() bool { return false }

// process is one running child with the edge's ends of its pipes.
type process struct {
	cmd    *exec.Cmd
	stdin  *os.File
	stdout *os.File
	stderr *os.File
	exited chan struct{} // closed once Wait returned
}

func (b *Backend) startProcess() (*process, error) {
	sc := b.cfg.Stdio
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("creating stdin pipe: %w", err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return nil, fmt.Errorf("creating stdout pipe: %w", err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		outR.Close()
		outW.Close()
		return nil, fmt.Errorf("creating stderr pipe: %w", err)
	}
	// Plain *os.File pipes: exec starts no copying goroutines and Wait
	// leaves the edge's ends alone, so reads never race with Wait.
	cmd := exec.Command(sc.Command[0], sc.Command[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = inR, outW, errW
	cmd.Env = append(os.Environ(), sc.Env...)
	cmd.Dir = sc.Dir
	cmd.SysProcAttr = procAttr()
	err = cmd.Start()
	inR.Close()
	outW.Close()
	errW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		errR.Close()
		return nil, fmt.Errorf("starting %q: %w", sc.Command[0], err)
	}
	return &process{cmd: cmd, stdin: inW, stdout: outR, stderr: errR, exited: make(chan struct{})}, nil
}

// runStdio runs one child process until it exits or ctx ends.
func (b *Backend) runStdio(ctx context.Context) error {
	p, err := b.startProcess()
	if err != nil {
		return err
	}
	pid := p.cmd.Process.Pid
	b.log.Info("backend process started", "pid", pid)
	c := newConn(b, &stdioTransport{w: p.stdin}, true)
	c.pid = pid

	connCtx, cancelConn := context.WithCancel(ctx)
	var wg, inbound sync.WaitGroup
	var waitErr error
	wg.Go(func() {
		waitErr = p.cmd.Wait()
		close(p.exited)
		c.close(fmt.Errorf("backend process %d exited: %w", pid, exitError(waitErr)))
	})
	wg.Go(func() { b.logStderr(p.stderr) })
	wg.Go(func() {
		err := readLines(p.stdout, func(line []byte) { c.dispatch(connCtx, line, nil, &inbound) })
		c.close(fmt.Errorf("backend stdout closed: %w", err))
	})

	initErr := c.initialize(connCtx)
	if initErr == nil {
		b.setConn(c)
		b.opts.Observer.BackendUp(b)
		select {
		case <-ctx.Done():
		case <-c.done:
		}
		b.setConn(nil)
		b.opts.Observer.BackendDown(b, c.closedErr())
	}
	c.close(ErrConnectionLost)
	b.stopProcess(p)
	cancelConn()
	inbound.Wait()
	wg.Wait()
	p.stdout.Close()
	p.stderr.Close()
	b.log.Info("backend process ended", "pid", pid, "status", exitError(waitErr))
	if initErr != nil {
		return initErr
	}
	return c.closedErr()
}

func exitError(err error) error {
	if err == nil {
		return errors.New("exit status 0")
	}
	return err
}

// stopProcess ends the child the polite way first: close stdin (the MCP
// stdio shutdown signal), then SIGTERM the process group, then SIGKILL it.
// It returns only after Wait, so no zombie is left, and it always kills the
// group at the end so no grandchild outlives its backend.
func (b *Backend) stopProcess(p *process) {
	pgid := p.cmd.Process.Pid
	p.stdin.Close()
	grace := b.cfg.Stdio.StopGrace
	if !waitExit(p.exited, grace) {
		b.log.Info("backend did not exit after stdin closed; sending SIGTERM", "pid", pgid)
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		if !waitExit(p.exited, grace) {
			b.log.Warn("backend ignored SIGTERM; sending SIGKILL", "pid", pgid)
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			<-p.exited
		}
	}
	_ = syscall.Kill(-pgid, syscall.SIGKILL) // stragglers in the group; ESRCH when none
}

func waitExit(exited <-chan struct{}, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-exited:
		return true
	case <-t.C:
		return false
	}
}

// logStderr puts each stderr line of the child into the edge's log.
func (b *Backend) logStderr(r io.Reader) {
	s := bufio.NewScanner(r)
	s.Buffer(make([]byte, 0, 4096), 64<<10)
	for s.Scan() {
		b.log.Info("backend stderr", "line", s.Text())
	}
	if err := s.Err(); err != nil {
		// A line over 64 KiB: keep draining so the child never blocks.
		b.log.Warn("backend stderr line too long; discarding the rest", "err", err)
		_, _ = io.Copy(io.Discard, r)
	}
}

// readLines calls fn with each newline-terminated message (without the
// newline; empty lines skipped) until r ends. fn owns the slice.
func readLines(r io.Reader, fn func([]byte)) error {
	br := bufio.NewReaderSize(r, 64<<10)
	var acc []byte
	for {
		chunk, err := br.ReadSlice('\n')
		switch {
		case err == nil:
			var line []byte
			if acc != nil {
				line = append(acc, chunk...)
				acc = nil
			} else {
				line = bytes.Clone(chunk)
			}
			if line = bytes.TrimSpace(line); len(line) > 0 {
				fn(line)
			}
		case errors.Is(err, bufio.ErrBufferFull):
			if len(acc)+len(chunk) > maxLine {
				return fmt.Errorf("message longer than %d bytes", maxLine)
			}
			acc = append(acc, chunk...)
		default:
			if err == io.EOF {
				return io.EOF
			}
			return fmt.Errorf("reading backend stdout: %w", err)
		}
	}
}
