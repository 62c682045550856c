package upstream

import (
	"context"
	"log/slog"
	"os"
	"testing"
	"time"
)

// A per-principal backend opens a connection (here a process) per
// principal on first use, reuses it, and closes it after PrincipalIdle
// without calls; the shared connection stays.
func TestPerPrincipalConnections(t *testing.T) {
	cfg := stdioConfig()
	cfg.PerPrincipal = true
	b, err := New(cfg, Options{
		Logger:        slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Observer:      &recorder{},
		PrincipalIdle: 300 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	waitHealthy(t, b, nil)
	if b.For("") != b {
		t.Error("For(\"\") is not the shared backend")
	}
	alice := b.For("alice")
	if alice == b || b.For("alice") != alice || b.For("bob") == alice {
		t.Fatal("For does not give each principal its own backend")
	}
	if got := callText(t, alice, "test_simple_text", nil, ""); got == "" {
		t.Fatal("empty result from alice's connection")
	}
	ac := alice.cur.Load()
	if ac == nil || ac == b.cur.Load() {
		t.Fatal("alice's call did not use a connection of its own")
	}
	if ac.pid == b.cur.Load().pid {
		t.Errorf("alice's connection is the shared process %d", ac.pid)
	}
	if n := b.Principals(); n != 2 {
		t.Errorf("Principals() = %d, want 2", n)
	}
	deadline := time.Now().Add(5 * time.Second)
	for b.Principals() > 0 || alice.Healthy() {
		if time.Now().After(deadline) {
			t.Fatalf("idle per-principal connections not closed: %d open, alice healthy %v", b.Principals(), alice.Healthy())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !b.Healthy() {
		t.Error("the shared connection went down with the idle ones")
	}
	// A new call after expiry opens a fresh connection.
	if got := callText(t, b.For("alice"), "test_simple_text", nil, ""); got == "" {
		t.Fatal("empty result after reopening")
	}
}
