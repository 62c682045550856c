package loadgen

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"
)

// Bounds on a run, so a typo cannot start an unbounded one.
const (
	MaxSessions = 10000
	MaxDuration = time.Hour
)

// Config describes one closed-loop load run: Sessions concurrent MCP
// sessions, each sending tools/call as soon as its previous call returned,
// until Duration has passed or Calls calls were made (whichever comes
// first; at least one of the two must be set).
type Config struct {
	URL      string        // the MCP endpoint, e.g. http://127.0.0.1:8080/mcp
	Sessions int           // concurrent sessions (1..MaxSessions)
	Duration time.Duration // how long to send calls (0 = until Calls)
	Calls    int64         // how many calls in all (0 = until Duration)
	Key      string        // bearer key, sent as "Authorization: Bearer <key>"
	Tool     string        // tool to call (default EchoTool)
	// Arguments is the raw JSON object passed as tools/call arguments
	// (default {"text":"hello"}).
	Arguments []byte
	// CallTimeout bounds every single request (default 10s).
	CallTimeout time.Duration
	// Client, when set, is used for all requests; otherwise Run makes one
	// over NewTransport(Sessions) and closes its idle connections at the end.
	Client *http.Client
	// KeepSessions leaves the sessions open at the end instead of ending
	// them with DELETE.
	KeepSessions bool
}

// Summary is the JSON report of a run. Calls = OK + Errors. Throughput and
// latencies count successful calls only, so a target that fails fast does
// not look fast; failures are always reported in Errors.
type Summary struct {
	Target        string  `json:"target"`
	Sessions      int     `json:"sessions"`
	Calls         int64   `json:"calls"`
	OK            int64   `json:"ok"`
	Errors        int64   `json:"errors"`
	SessionErrors int64   `json:"session_errors"` // failed initialize or DELETE
	DurationS     float64 `json:"duration_s"`
	CallsPerS     float64 `json:"calls_per_s"`
	P50us         float64 `json:"p50_us"`
	P90us         float64 `json:"p90_us"`
	P99us         float64 `json:"p99_us"`
	MaxUs         float64 `json:"max_us"`
	FirstError    string  `json:"first_error,omitempty"`

	// Hist holds the latencies of the successful calls.
	Hist *Histogram `json:"-"`
}

func (c *Config) validate() error {
	u, err := url.Parse(c.URL)
	if err != nil {
		return fmt.Errorf("url: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("url %q: want http or https", c.URL)
	}
	if c.Sessions < 1 || c.Sessions > MaxSessions {
		return fmt.Errorf("sessions %d: want 1..%d", c.Sessions, MaxSessions)
	}
	if c.Duration <= 0 && c.Calls <= 0 {
		return errors.New("set a duration or a number of calls")
	}
	if c.Duration > MaxDuration {
		return fmt.Errorf("duration %v: at most %v", c.Duration, MaxDuration)
	}
	if c.Calls < 0 {
		return fmt.Errorf("calls %d: must not be negative", c.Calls)
	}
	return nil
}

// NewTransport returns the one tuned transport a load run (or the reference
// proxy) uses: its idle pool covers conns concurrent requests, so no request
// pays a new connection (the default keeps only 2 idle per host); no
// compression, no proxy from the environment, HTTP/1.1 as MCP clients use.
func NewTransport(conns int) *http.Transport {
	return &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        2 * conns,
		MaxIdleConnsPerHost: 2 * conns,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
	}
}

// worker is one session's state during a run, owned by its goroutine.
type worker struct {
	sess     *Session
	hist     Histogram
	ok, errs int64
	sessErrs int64
	firstErr error
}

func (w *worker) fail(err error) {
	if w.firstErr == nil {
		w.firstErr = err
	}
}

// Run opens cfg.Sessions sessions (initialize + notifications/initialized;
// not timed), then lets them all call at once in a closed loop and reports
// what happened. It returns an error only when the run could not be made at
// all (bad config, no session could be opened); failed calls are counted in
// the summary. Cancelling ctx stops the run early.
func Run(ctx context.Context, cfg Config) (Summary, error) {
	if err := cfg.validate(); err != nil {
		return Summary{}, err
	}
	if cfg.Tool == "" {
		cfg.Tool = EchoTool
	}
	if cfg.Arguments == nil {
		cfg.Arguments = []byte(`{"text":"hello"}`)
	}
	if cfg.CallTimeout <= 0 {
		cfg.CallTimeout = 10 * time.Second
	}
	client := cfg.Client
	if client == nil {
		tr := NewTransport(cfg.Sessions)
		defer tr.CloseIdleConnections()
		client = &http.Client{Transport: tr}
	}

	workers := make([]*worker, cfg.Sessions)
	var wg sync.WaitGroup
	// Sessions open concurrently, but at most 64 at a time so a large run
	// does not stampede the target with handshakes.
	gate := make(chan struct{}, 64)
	for i := range workers {
		w := &worker{sess: NewSession(client, cfg.URL, cfg.Key)}
		workers[i] = w
		wg.Go(func() {
			gate <- struct{}{}
			defer func() { <-gate }()
			cctx, cancel := context.WithTimeout(ctx, cfg.CallTimeout)
			defer cancel()
			if err := w.sess.Initialize(cctx); err != nil {
				w.sessErrs++
				w.fail(err)
				w.sess = nil
			}
		})
	}
	wg.Wait()

	var (
		stop    atomic.Bool
		claimed atomic.Int64
	)
	if cfg.Duration > 0 {
		t := time.AfterFunc(cfg.Duration, func() { stop.Store(true) })
		defer t.Stop()
	}
	start := time.Now()
	for _, w := range workers {
		if w.sess == nil {
			continue
		}
		wg.Go(func() { w.loop(ctx, &cfg, &stop, &claimed) })
	}
	wg.Wait()
	elapsed := time.Since(start)

	if !cfg.KeepSessions {
		for _, w := range workers {
			if w.sess == nil {
				continue
			}
			wg.Go(func() {
				gate <- struct{}{}
				defer func() { <-gate }()
				// Not ctx: sessions are ended even when the run was cancelled.
				cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.CallTimeout)
				defer cancel()
				if err := w.sess.Close(cctx); err != nil {
					w.sessErrs++
					w.fail(err)
				}
			})
		}
		wg.Wait()
	}

	sum := Summary{Target: cfg.URL, Sessions: cfg.Sessions, Hist: &Histogram{}}
	opened := 0
	for _, w := range workers {
		if w.sess != nil {
			opened++
		}
		sum.Hist.Merge(&w.hist)
		sum.OK += w.ok
		sum.Errors += w.errs
		sum.SessionErrors += w.sessErrs
		if w.firstErr != nil && sum.FirstError == "" {
			sum.FirstError = w.firstErr.Error()
		}
	}
	sum.Calls = sum.OK + sum.Errors
	sum.DurationS = elapsed.Seconds()
	if elapsed > 0 {
		sum.CallsPerS = round(float64(sum.OK)/elapsed.Seconds(), 1)
	}
	us := func(d time.Duration) float64 { return round(float64(d)/1e3, 1) }
	sum.P50us = us(sum.Hist.Quantile(0.50))
	sum.P90us = us(sum.Hist.Quantile(0.90))
	sum.P99us = us(sum.Hist.Quantile(0.99))
	sum.MaxUs = us(sum.Hist.Max())
	sum.DurationS = round(sum.DurationS, 3)
	if opened == 0 {
		return sum, fmt.Errorf("no session could be opened: %s", sum.FirstError)
	}
	return sum, nil
}

func (w *worker) loop(ctx context.Context, cfg *Config, stop *atomic.Bool, claimed *atomic.Int64) {
	for ctx.Err() == nil && !stop.Load() {
		if cfg.Calls > 0 && claimed.Add(1) > cfg.Calls {
			return
		}
		cctx, cancel := context.WithTimeout(ctx, cfg.CallTimeout)
		t0 := time.Now()
		_, err := w.sess.CallTool(cctx, cfg.Tool, cfg.Arguments)
		d := time.Since(t0)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return // cancelled mid-call: not the target's failure
			}
			w.errs++
			w.fail(err)
			continue
		}
		w.ok++
		w.hist.Record(d)
	}
}

func round(v float64, digits int) float64 {
	p := math.Pow(10, float64(digits))
	return math.Round(v*p) / p
}
