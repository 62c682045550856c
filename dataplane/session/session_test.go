package session

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/mcpgw/mcpgw/dataplane/rpc"
)

func TestOutboxReplay(t *testing.T) {
	o := NewOutbox(3)
	for _, m := range []string{"a", "b", "c", "d"} {
		o.Push([]byte(m))
	}
	evs, _, lost, closed := o.Since(0)
	if !lost || closed || len(evs) != 3 || string(evs[0].Data) != "b" || evs[0].ID != 2 {
		t.Fatalf("Since(0) = %v lost=%v closed=%v; want b,c,d (ids 2..4) and lost", evs, lost, closed)
	}
	evs, wake, lost, _ := o.Since(3)
	if lost || len(evs) != 1 || string(evs[0].Data) != "d" {
		t.Fatalf("Since(3) = %v lost=%v; want d", evs, lost)
	}
	select {
	case <-wake:
		t.Fatal("woken without a new event")
	default:
	}
	o.Push([]byte("e"))
	select {
	case <-wake:
	default:
		t.Fatal("not woken by a new event")
	}
	o.Close()
	if _, _, _, closed := o.Since(5); !closed {
		t.Error("closed outbox reports open")
	}
}

func TestRequestDeliverAndCancel(t *testing.T) {
	s := New(NewID(), "alice", "http")
	var sent []string
	done := make(chan rpc.Message, 1)
	go func() {
		m, err := s.Request(context.Background(), "roots/list", nil, func(b []byte) error {
			msg, _ := rpc.Parse(b)
			go s.Deliver(&rpc.Message{ID: msg.ID, Result: json.RawMessage(`{"roots":[]}`)})
			return nil
		})
		if err != nil {
			t.Error(err)
		}
		done <- m
	}()
	if m := <-done; string(m.Result) != `{"roots":[]}` {
		t.Errorf("answer = %s", m.Result)
	}
	// A cancelled request is withdrawn at the client; when its stream is
	// gone, on the GET stream.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	failing := func(b []byte) error {
		if len(sent) == 0 {
			sent = append(sent, string(b))
			return nil
		}
		return errors.New("stream closed")
	}
	if _, err := s.Request(ctx, "elicitation/create", nil, failing); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled request: %v", err)
	}
	evs, _, _, _ := s.Outbox.Since(0)
	if len(evs) != 1 || !strings.Contains(string(evs[0].Data), "notifications/cancelled") {
		t.Fatalf("outbox has %v, want the withdrawal", evs)
	}
}

func TestStoreExpires(t *testing.T) {
	var st Store
	var closed []string
	st.OnClose = func(s *Session, _ map[string]string) { closed = append(closed, s.ID) }
	idle := New("idle", "p", "http")
	busy := New("busy", "p", "http")
	st.Add(idle)
	st.Add(busy)
	release := busy.Acquire()
	defer release()
	idle.lastUsed.Store(time.Now().Add(-time.Hour).UnixNano())
	busy.lastUsed.Store(time.Now().Add(-time.Hour).UnixNano())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- st.Run(ctx, 10*time.Millisecond) }()
	deadline := time.Now().Add(5 * time.Second)
	for st.Get("idle") != nil && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if st.Get("idle") != nil {
		t.Fatal("idle session never expired")
	}
	if st.Get("busy") == nil {
		t.Fatal("a session in use expired")
	}
	select {
	case <-idle.Done():
	default:
		t.Error("expired session not closed")
	}
	cancel()
	<-done
	if st.Len() != 0 || len(closed) != 2 {
		t.Errorf("after shutdown: %d sessions, %d closed", st.Len(), len(closed))
	}
}
