package gateway

import (
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// A reply that outlasts KeepAlive gets keep-alive comments on an SSE
// stream, then its response.
func TestReplyKeepAlive(t *testing.T) {
	rec := httptest.NewRecorder()
	rw := newReplyWriter(rec, true, 5*time.Millisecond)
	time.Sleep(60 * time.Millisecond)
	rw.finish([]byte(`{"jsonrpc":"2.0","id":1,"result":{}}`), nil)
	body := rec.Body.String()
	if ct := rec.Header().Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type %q, want an SSE stream", ct)
	}
	if !strings.Contains(body, ": keep-alive\n\n") || !strings.HasSuffix(body, "data: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n\n") {
		t.Fatalf("body %q: want keep-alives, then the response", body)
	}
}

// Keep-alive timers are pooled: a timer armed for one reply must never
// ping the reply it is lent to next. Replies with a 1ms keep-alive finish
// around the time their timers fire (so Stop often loses the race with a
// firing), while replies armed with an hour, which take the pooled
// timers, must each finish as plain JSON.
func TestKeepAliveTimerReuseNeverPingsAnotherReply(t *testing.T) {
	resp := []byte(`{"jsonrpc":"2.0","id":1,"result":{}}`)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	// repeat runs reply twice, in two goroutines, until stop.
	repeat := func(reply func()) {
		for range 2 {
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					reply()
				}
			})
		}
	}
	repeat(func() {
		rw := newReplyWriter(httptest.NewRecorder(), true, time.Millisecond)
		time.Sleep(time.Millisecond)
		rw.finish(resp, nil)
	})
	var bad sync.Once
	repeat(func() {
		rec := httptest.NewRecorder()
		rw := newReplyWriter(rec, true, time.Hour)
		time.Sleep(100 * time.Microsecond)
		rw.finish(resp, nil)
		if got := rec.Body.String(); got != string(resp) {
			bad.Do(func() { t.Errorf("body %q, want the plain JSON response: a reused timer pinged the reply", got) })
		}
	})
	time.Sleep(500 * time.Millisecond)
	close(stop)
	wg.Wait()
}
