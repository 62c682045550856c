package upstream

import (
	"context"
	"encoding/json"
	"errors"
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
