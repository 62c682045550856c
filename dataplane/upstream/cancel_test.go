package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// blockingSink holds every server→client request until its context ends.
type blockingSink struct{ asked chan struct{} }

func (blockingSink) Notify(string, json.RawMessage) {}
func (s blockingSink) Request(ctx context.Context, _ string, _ json.RawMessage) (Response, error) {
	select {
	case s.asked <- struct{}{}:
	default:
	}
	<-ctx.Done()
	return Response{}, context.Cause(ctx)
}

// A call is bounded by the backend's timeout (ErrTimeout) and can be
// cancelled through the Canceler its context carries, even one cancelled
// before the call began.
func TestCallTimeoutAndCanceler(t *testing.T) {
	cfg := stdioConfig()
	cfg.Timeout = 300 * time.Millisecond
	b, _ := startBackend(t, cfg)
	params := json.RawMessage(`{"name":"test_sampling","arguments":{"prompt":"x"}}`)

	start := time.Now()
	_, err := b.Call(context.Background(), "tools/call", params, blockingSink{asked: make(chan struct{}, 1)})
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("blocked call: %v, want ErrTimeout", err)
	}
	if d := time.Since(start); d < 250*time.Millisecond || d > 5*time.Second {
		t.Errorf("timed out after %v, want about 300ms", d)
	}

	b.cfg.Timeout = 20 * time.Second
	errMine := errors.New("cancelled by the test")
	var c Canceler
	sink := blockingSink{asked: make(chan struct{}, 1)}
	go func() {
		<-sink.asked
		c.Cancel(errMine)
	}()
	_, err = b.Call(WithCanceler(context.Background(), &c), "tools/call", params, sink)
	if !errors.Is(err, errMine) {
		t.Fatalf("cancelled call: %v, want the Canceler's cause", err)
	}
	// Cancelled before it starts: the call ends at once.
	start = time.Now()
	_, err = b.Call(WithCanceler(context.Background(), &c), "tools/call", params, blockingSink{asked: make(chan struct{}, 1)})
	if !errors.Is(err, errMine) || time.Since(start) > 2*time.Second {
		t.Fatalf("call with a cancelled Canceler: %v after %v", err, time.Since(start))
	}
}

// stallingBackend is a minimal Streamable HTTP MCP server: it answers
// initialize (and refuses server/discover: a legacy server), accepts
// notifications, and holds every other request
// until the client goes away. It counts the cancellations it is sent.
func stallingBackend(t *testing.T) (url string, cancelled *atomic.Int64) {
	t.Helper()
	cancelled = &atomic.Int64{}
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var m struct {
			ID     json.RawMessage `json:"id"`
			Method string          `json:"method"`
		}
		json.Unmarshal(body, &m)
		switch {
		case r.Method != http.MethodPost:
			w.WriteHeader(http.StatusMethodNotAllowed)
		case m.Method == "initialize":
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":{"protocolVersion":"2025-11-25","capabilities":{},"serverInfo":{"name":"stall","version":"1"}}}`, m.ID)
		case m.Method == "server/discover":
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"error":{"code":-32601,"message":"method not found"}}`, m.ID)
		case m.ID == nil:
			if m.Method == "notifications/cancelled" {
				cancelled.Add(1)
			}
			w.WriteHeader(http.StatusAccepted)
		default:
			<-r.Context().Done()
		}
	}))
	t.Cleanup(s.Close)
	return s.URL, cancelled
}

// Over a plain-http backend a call blocked reading its reply (the hot
// path, which watches the connection instead of making contexts) ends
// with ErrTimeout at the backend's timeout, with the Canceler's cause when
// cancelled through it, and with the caller's cause when its own context
// ends; each time the backend is told (notifications/cancelled).
func TestHTTPCallTimeoutAndCancel(t *testing.T) {
	url, cancelled := stallingBackend(t)
	b, _ := startBackend(t, Config{Name: "stall", HTTP: &HTTPConfig{URL: url}, Timeout: 300 * time.Millisecond})
	params := json.RawMessage(`{"name":"x","arguments":{}}`)

	start := time.Now()
	_, err := b.Call(context.Background(), "tools/call", params, nil)
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("stalled call: %v, want ErrTimeout", err)
	}
	if d := time.Since(start); d < 250*time.Millisecond || d > 5*time.Second {
		t.Errorf("timed out after %v, want about 300ms", d)
	}

	b.cfg.Timeout = 20 * time.Second
	errMine := errors.New("cancelled by the test")
	var c Canceler
	time.AfterFunc(200*time.Millisecond, func() { c.Cancel(errMine) })
	start = time.Now()
	_, err = b.Call(WithCanceler(context.Background(), &c), "tools/call", params, nil)
	if !errors.Is(err, errMine) || time.Since(start) > 5*time.Second {
		t.Fatalf("call cancelled through its Canceler: %v after %v", err, time.Since(start))
	}

	errCaller := errors.New("the caller went away")
	ctx, cancel := context.WithCancelCause(context.Background())
	time.AfterFunc(200*time.Millisecond, func() { cancel(errCaller) })
	_, err = b.Call(ctx, "tools/call", params, nil)
	if !errors.Is(err, errCaller) {
		t.Fatalf("call whose caller's context ended: %v", err)
	}

	deadline := time.Now().Add(5 * time.Second)
	for cancelled.Load() < 3 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := cancelled.Load(); n != 3 {
		t.Fatalf("the backend was told of %d cancellations, want 3", n)
	}
	// The backend is still usable: a connection a cancellation
	// interrupted was not put back in the pool.
	if !b.Healthy() {
		t.Fatal("backend down after cancelled calls")
	}
}

// callCtx makes its standard context only when asked, and behaves as
// the WithCancelCause-plus-timer it replaces: Err then Cause report a
// passed deadline as ErrTimeout, a Canceler's cause wins when first, Done
// closes on cancellation, and the context reads as cancelled after end.
func TestCallCtx(t *testing.T) {
	t.Run("deadline noticed by Err", func(t *testing.T) {
		c := newCallCtx(context.Background(), 20*time.Millisecond)
		defer c.end()
		if c.Err() != nil || c.inner.Load() != nil {
			t.Fatal("a fresh call is live and made nothing")
		}
		time.Sleep(30 * time.Millisecond)
		if !errors.Is(c.Err(), context.Canceled) || !errors.Is(context.Cause(c), ErrTimeout) {
			t.Fatalf("after the deadline: Err %v, Cause %v", c.Err(), context.Cause(c))
		}
	})
	t.Run("deadline closes Done", func(t *testing.T) {
		c := newCallCtx(context.Background(), 20*time.Millisecond)
		defer c.end()
		select {
		case <-c.Done():
		case <-time.After(5 * time.Second):
			t.Fatal("Done never closed")
		}
		if !errors.Is(context.Cause(c), ErrTimeout) {
			t.Fatalf("Cause %v", context.Cause(c))
		}
	})
	t.Run("canceler", func(t *testing.T) {
		var cc Canceler
		errMine := errors.New("mine")
		c := newCallCtx(WithCanceler(context.Background(), &cc), time.Minute)
		defer c.end()
		derived, stop := context.WithCancel(c) // makes inner: a child must see the cancel
		defer stop()
		cc.Cancel(errMine)
		if c.Err() == nil || !errors.Is(context.Cause(c), errMine) {
			t.Fatalf("Err %v, Cause %v", c.Err(), context.Cause(c))
		}
		select {
		case <-derived.Done():
		case <-time.After(5 * time.Second):
			t.Fatal("a context derived from the call was not cancelled")
		}
	})
	t.Run("canceled before the call", func(t *testing.T) {
		var cc Canceler
		errMine := errors.New("mine")
		cc.Cancel(errMine)
		c := newCallCtx(WithCanceler(context.Background(), &cc), time.Minute)
		defer c.end()
		if c.Err() == nil || !errors.Is(context.Cause(c), errMine) {
			t.Fatalf("Err %v, Cause %v", c.Err(), context.Cause(c))
		}
	})
	t.Run("parent", func(t *testing.T) {
		errParent := errors.New("parent")
		p, cancel := context.WithCancelCause(context.WithValue(context.Background(), traceKey{}, Trace{Parent: "p"}))
		c := newCallCtx(p, time.Minute)
		defer c.end()
		if d, ok := c.Deadline(); ok {
			t.Fatalf("Deadline %v: the backend's timeout is not the caller's deadline", d)
		}
		if tr, _ := c.Value(traceKey{}).(Trace); tr.Parent != "p" {
			t.Fatal("values of the parent are not seen")
		}
		cancel(errParent)
		if c.Err() == nil || !errors.Is(context.Cause(c), errParent) {
			t.Fatalf("Err %v, Cause %v", c.Err(), context.Cause(c))
		}
	})
	t.Run("end", func(t *testing.T) {
		var cc Canceler
		c := newCallCtx(WithCanceler(context.Background(), &cc), time.Minute)
		c.end()
		if c.Err() == nil {
			t.Fatal("an ended call reads as live")
		}
		cc.Cancel(errors.New("late")) // reaches no call, and does not panic
		if c.inner.Load() != nil {
			t.Fatal("a cancel after end made a context")
		}
	})
}
