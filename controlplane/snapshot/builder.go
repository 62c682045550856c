package snapshot

import (
	"context"
	"log/slog"
	"time"

	"golang.org/x/sync/errgroup"

	mcpgwv1 "github.com/mcpgw/mcpgw/gen/mcpgw/v1"
	"github.com/mcpgw/mcpgw/internal/wait"
)

// Source is where a Builder reads config from; controlplane/store's
// NodeStore implements it.
type Source interface {
	// HeadRevision returns the latest committed revision; it is polled.
	HeadRevision(ctx context.Context) (int64, error)
	// LoadSnapshotResources returns the whole config at one revision.
	LoadSnapshotResources(ctx context.Context) (int64, time.Time, *mcpgwv1.SnapshotResources, error)
	// ListenConfig calls onRevision for every change notification until
	// ctx ends (nil) or the listening connection fails (an error).
	ListenConfig(ctx context.Context, onRevision func(int64)) error
}

// BuilderConfig tunes a Builder. Zero values take the defaults.
type BuilderConfig struct {
	// Debounce is the minimum time between two rebuilds, so a burst of
	// commits costs one rebuild per Debounce. A change after a quiet period
	// is built at once. Default 50ms.
	Debounce time.Duration
	// PollInterval is how often the head revision is compared with the
	// cache's, in case a notification was lost (listener reconnecting,
	// another replica's NOTIFY during a network blip). Default 2s.
	PollInterval time.Duration
	Logger       *slog.Logger
}

// Builder keeps a Cache at the store's latest revision.
type Builder struct {
	src   Source
	cache *Cache
	cfg   BuilderConfig
	// kick carries "something may have changed" to the build loop; one
	// pending kick is as good as many.
	kick chan struct{}
}

// NewBuilder returns a Builder that publishes into cache.
func NewBuilder(src Source, cache *Cache, cfg BuilderConfig) *Builder {
	if cfg.Debounce <= 0 {
		cfg.Debounce = 50 * time.Millisecond
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = 2 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Builder{src: src, cache: cache, cfg: cfg, kick: make(chan struct{}, 1)}
}

// Run loads the current config, publishes it, and keeps publishing every
// newer revision until ctx ends. A store outage is logged and retried; the
// cache keeps serving what it has meanwhile.
func (b *Builder) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return b.listen(ctx) })
	g.Go(func() error { return b.poll(ctx) })
	g.Go(func() error { return b.build(ctx) })
	return g.Wait()
}

func (b *Builder) wake() {
	select {
	case b.kick <- struct{}{}:
	default:
	}
}

func (b *Builder) listen(ctx context.Context) error {
	backoff := 100 * time.Millisecond
	for {
		err := b.src.ListenConfig(ctx, func(rev int64) {
			if rev == 0 || rev > b.cache.Revision() {
				b.wake()
			}
		})
		if ctx.Err() != nil {
			return nil
		}
		b.cfg.Logger.Warn("config change listener failed; polling covers meanwhile", "err", err, "retry_in", backoff)
		if !wait.For(ctx, backoff) {
			return nil
		}
		backoff = min(2*backoff, 10*time.Second)
	}
}

func (b *Builder) poll(ctx context.Context) error {
	t := time.NewTicker(b.cfg.PollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		rev, err := b.src.HeadRevision(ctx)
		if err != nil {
			if ctx.Err() == nil {
				b.cfg.Logger.Warn("polling config revision failed", "err", err)
			}
			continue
		}
		if rev > b.cache.Revision() {
			b.wake()
		}
	}
}

func (b *Builder) build(ctx context.Context) error {
	b.wake() // initial load
	const minRetry, maxRetry = 200 * time.Millisecond, 5 * time.Second
	retryIn := minRetry
	var retry <-chan time.Time
	var lastBuild time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-b.kick:
		case <-retry:
		}
		retry = nil
		// Leading-edge debounce: the first change after a quiet spell is
		// built at once (no added push latency); changes that follow within
		// Debounce wait for the window to end and share one rebuild.
		if !wait.For(ctx, b.cfg.Debounce-time.Since(lastBuild)) {
			return nil
		}
		select { // kicks that arrived while waiting are covered by this load
		case <-b.kick:
		default:
		}
		lastBuild = time.Now()
		if err := b.refresh(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			b.cfg.Logger.Warn("building config snapshots failed; serving the previous ones", "err", err, "retry_in", retryIn)
			retry = time.After(retryIn)
			retryIn = min(2*retryIn, maxRetry)
			continue
		}
		retryIn = minRetry
	}
}

func (b *Builder) refresh(ctx context.Context) error {
	rev, commit, res, err := b.src.LoadSnapshotResources(ctx)
	if err != nil {
		return err
	}
	// Revision 0 is "no config yet": edges keep denying everything until
	// there is something to send.
	if rev == 0 || rev <= b.cache.Revision() {
		return nil
	}
	if err := b.cache.Publish(rev, commit, res); err != nil {
		return err
	}
	b.cfg.Logger.Info("config snapshots published", "revision", rev)
	return nil
}
