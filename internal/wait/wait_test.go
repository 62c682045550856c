package wait

import (
	"context"
	"testing"
	"time"
)

func TestFor(t *testing.T) {
	start := time.Now()
	if !For(context.Background(), 20*time.Millisecond) || time.Since(start) < 20*time.Millisecond {
		t.Fatal("For did not sleep its duration")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start = time.Now()
	if For(ctx, time.Hour) || time.Since(start) > time.Second {
		t.Fatal("For with an ended context must return false at once")
	}
	if For(ctx, 0) || !For(context.Background(), -time.Second) {
		t.Fatal("a non-positive duration reports the context's state without sleeping")
	}
}
