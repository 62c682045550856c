// Command mcpgw-load drives MCP sessions over Streamable HTTP against an
// endpoint (the edge, the reference proxy, the echo backend or any MCP
// server with a tool to call) and prints a JSON summary of throughput,
// latency and errors. It can also serve the echo backend and the reference
// reverse proxy, so each part of a benchmark can run as its own process.
//
//	mcpgw-load -serve-echo 127.0.0.1:9100
//	mcpgw-load -serve-proxy 127.0.0.1:9101 -backend http://127.0.0.1:9100/mcp
//	mcpgw-load -url http://127.0.0.1:9101/mcp -sessions 64 -duration 10s
//
// It exits 1 when any call or session failed, 2 on bad usage.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/mcpgw/mcpgw/internal/loadgen"
)

func main() {
	var (
		cfg        loadgen.Config
		args       string
		serveEcho  = flag.String("serve-echo", "", "serve the echo MCP backend on `addr` (at /mcp) until interrupted")
		serveProxy = flag.String("serve-proxy", "", "serve the reference reverse proxy on `addr` until interrupted (needs -backend)")
		backend    = flag.String("backend", "", "`url` the reference proxy forwards to")
		conns      = flag.Int("conns", 64, "idle connection pool of the reference proxy")
	)
	flag.StringVar(&cfg.URL, "url", "", "MCP endpoint to load, e.g. http://127.0.0.1:8080/mcp")
	flag.IntVar(&cfg.Sessions, "sessions", 16, "concurrent MCP sessions")
	flag.DurationVar(&cfg.Duration, "duration", 10*time.Second, "how long to call (0: until -calls)")
	flag.Int64Var(&cfg.Calls, "calls", 0, "stop after this many calls in all (0: until -duration; with -calls alone, -duration is an hour)")
	flag.StringVar(&cfg.Tool, "tool", loadgen.EchoTool, "tool to call")
	flag.StringVar(&args, "args", `{"text":"hello"}`, "tool arguments (a JSON object)")
	flag.DurationVar(&cfg.CallTimeout, "timeout", 10*time.Second, "timeout of each request")
	flag.BoolVar(&cfg.KeepSessions, "keep-sessions", false, "leave sessions open at the end (no DELETE)")
	flag.Parse()
	durationSet := false
	flag.Visit(func(f *flag.Flag) { durationSet = durationSet || f.Name == "duration" })
	if cfg.Calls > 0 && !durationSet {
		cfg.Duration = loadgen.MaxDuration // the count ends the run; this only bounds it
	}
	// The key comes from the environment so it does not show in ps.
	cfg.Key = os.Getenv("MCPGW_LOAD_KEY")
	cfg.Arguments = []byte(args)
	if flag.NArg() > 0 || !json.Valid(cfg.Arguments) {
		flag.Usage()
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg, *serveEcho, *serveProxy, *backend, *conns); err != nil {
		fmt.Fprintln(os.Stderr, "mcpgw-load:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, cfg loadgen.Config, echoAddr, proxyAddr, backend string, conns int) error {
	switch {
	case echoAddr != "":
		return serve(ctx, echoAddr, loadgen.NewEcho())
	case proxyAddr != "":
		u, err := url.Parse(backend)
		if err != nil || u.Host == "" {
			return fmt.Errorf("-backend %q: want an http URL", backend)
		}
		return serve(ctx, proxyAddr, loadgen.NewReverseProxy(u, conns))
	}
	sum, err := loadgen.Run(ctx, cfg)
	if sum.Hist != nil {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		if jerr := enc.Encode(sum); jerr != nil {
			return jerr
		}
	}
	if err != nil {
		return err
	}
	if sum.Errors > 0 || sum.SessionErrors > 0 {
		return fmt.Errorf("%d calls and %d sessions failed; first: %s", sum.Errors, sum.SessionErrors, sum.FirstError)
	}
	return nil
}

func serve(ctx context.Context, addr string, h http.Handler) error {
	s, err := loadgen.Listen(addr, h)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "mcpgw-load: serving %s\n", s.URL())
	return s.Run(ctx)
}
