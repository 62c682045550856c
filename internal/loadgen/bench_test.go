package loadgen

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"runtime"
	"runtime/pprof"
	"slices"
	"sync"
	"testing"
	"time"
)

// The benchmarks measure tools/call throughput and latency through each
// target in one run (DESIGN §11). The machines here are shared and noisy,
// so the targets are interleaved: every benchmark iteration runs rounds of
// direct, proxy and edge back to back (rotating which goes first), and the
// ratios are medians of per-round ratios, each taken under the same load.
//
// Every in-process server runs under a pprof label "hop" (client, echo,
// proxy, edge) that its connection goroutines inherit, so one -cpuprofile
// splits by component:
//
//	go tool pprof -tagfocus=hop=edge -top cpu.out
//
// docs/benchmarks.md gives the commands and the recorded figures.

// sessionCounts are the concurrency levels DESIGN §11 budgets.
var sessionCounts = []int{1, 16, 64}

// rounds is how many times each benchmark iteration visits every target.
const rounds = 5

// serveLabelled runs h like serve, with its goroutines labelled hop=label.
func serveLabelled(tb testing.TB, label string, h http.Handler) *Server {
	tb.Helper()
	s, err := Listen("127.0.0.1:0", h)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		pprof.Do(ctx, pprof.Labels("hop", label), func(ctx context.Context) {
			if err := s.Run(ctx); err != nil {
				tb.Errorf("%s server: %v", label, err)
			}
		})
	})
	tb.Cleanup(func() { cancel(); wg.Wait() })
	return s
}

// benchTarget is one thing a load run is pointed at.
type benchTarget struct {
	name string
	url  string
	tool string
	// proc is the hop's process when it runs as one; its CPU time per call
	// is then reported too.
	proc *hopProcess
}

// runResult is one run against one target.
type runResult struct {
	Summary
	// CPUus is the CPU time the hop process spent per successful call, in
	// µs; zero when the target runs in-process.
	CPUus float64
	// Allocs and Bytes are heap allocations per call of this whole process
	// (client, backend and any in-process hop) during the run; minus the
	// direct run's they are the hop's own, a figure the machine's load
	// does not move.
	Allocs, Bytes float64
}

// BenchmarkToolsCall measures closed-loop tools/call at 1, 16 and 64
// sessions directly against the echo backend, through the reference proxy
// and through the edge, all three in this process.
func BenchmarkToolsCall(b *testing.B) {
	backend := serveLabelled(b, "echo", NewEcho())
	u, err := url.Parse(backend.URL())
	if err != nil {
		b.Fatal(err)
	}
	proxy := NewReverseProxy(u, slices.Max(sessionCounts))
	b.Cleanup(proxy.Transport.(*http.Transport).CloseIdleConnections)
	targets := []benchTarget{
		{name: "direct", url: backend.URL(), tool: EchoTool},
		{name: "proxy", url: serveLabelled(b, "proxy", proxy).URL(), tool: EchoTool},
		{name: "edge", url: startEdge(b, backend.URL()), tool: edgeTool},
	}
	benchSessions(b, targets)
}

// BenchmarkHopCPU runs the reference proxy and the edge each as a process
// of its own in front of the in-process echo backend, as they would be
// deployed, and reports besides throughput the CPU time each hop process
// spends per call (from /proc/<pid>/stat, 10 ms resolution: use runs of
// seconds). Throughput on a shared 2-core machine moves with whatever else
// runs; CPU per call moves much less, so edge/proxy-cpu is the steadier way
// to see whether the edge does more work per call than the bare hop.
func BenchmarkHopCPU(b *testing.B) {
	backend := serveLabelled(b, "echo", NewEcho())
	proxy := startProxyProcess(b, backend.URL())
	edge := startEdgeProcess(b, backend.URL())
	targets := []benchTarget{
		{name: "proxy", url: proxy.url, tool: EchoTool, proc: proxy},
		{name: "edge", url: edge.url, tool: edgeTool, proc: edge},
	}
	benchSessions(b, targets)
}

// benchSessions runs the interleaved measurement at every session count,
// with one client (transport sized for the count) per count.
func benchSessions(b *testing.B, targets []benchTarget) {
	for _, n := range sessionCounts {
		tr := NewTransport(n)
		b.Cleanup(tr.CloseIdleConnections)
		client := &http.Client{Transport: tr}
		b.Run(fmt.Sprintf("sessions=%d", n), func(b *testing.B) {
			benchInterleaved(b, targets, n, client)
		})
	}
}

// benchInterleaved makes b.N calls against each target, in rounds, and
// reports each target's median throughput, p50 and p99 (and hop CPU per
// call), the per-round ratios edge/proxy and proxy/direct, and the p50
// latency each hop adds over a direct call.
func benchInterleaved(b *testing.B, targets []benchTarget, sessions int, client *http.Client) {
	per := max(b.N/rounds, 1)
	res := make(map[string][]runResult, len(targets))
	start := time.Now()
	for i := range rounds {
		for j := range targets {
			t := targets[(i+j)%len(targets)] // rotate who goes first
			var c0 time.Duration
			if t.proc != nil {
				c0 = t.proc.cpu(b)
			}
			var m0, m1 runtime.MemStats
			runtime.ReadMemStats(&m0)
			r := runResult{Summary: loadRun(b, Config{URL: t.url, Tool: t.tool, Key: benchKey, Sessions: sessions, Calls: int64(per), Client: client})}
			runtime.ReadMemStats(&m1)
			if r.OK > 0 {
				r.Allocs = float64(m1.Mallocs-m0.Mallocs) / float64(r.OK)
				r.Bytes = float64(m1.TotalAlloc-m0.TotalAlloc) / float64(r.OK)
			}
			if t.proc != nil && r.OK > 0 {
				r.CPUus = float64((t.proc.cpu(b) - c0).Microseconds()) / float64(r.OK)
			}
			res[t.name] = append(res[t.name], r)
		}
	}
	// ns/op: wall time per call, all targets together.
	b.ReportMetric(float64(time.Since(start).Nanoseconds())/float64(per*rounds*len(targets)), "ns/op")

	for _, t := range targets {
		rs := res[t.name]
		b.ReportMetric(median(rs, func(r runResult) float64 { return r.CallsPerS }), t.name+"-calls/s")
		b.ReportMetric(median(rs, func(r runResult) float64 { return r.P50us }), t.name+"-p50-us")
		b.ReportMetric(median(rs, func(r runResult) float64 { return r.P99us }), t.name+"-p99-us")
		if t.proc != nil {
			b.ReportMetric(median(rs, func(r runResult) float64 { return r.CPUus }), t.name+"-cpu-us/call")
		}
	}
	paired := func(x, y string, f func(a, b runResult) float64) (float64, bool) {
		xs, ys := res[x], res[y]
		if len(xs) == 0 || len(ys) == 0 {
			return 0, false
		}
		vals := make([]float64, len(xs))
		for i := range xs {
			vals[i] = f(xs[i], ys[i])
		}
		slices.Sort(vals)
		return vals[len(vals)/2], true
	}
	ratio := func(a, b runResult) float64 { return a.CallsPerS / b.CallsPerS }
	added := func(a, b runResult) float64 { return a.P50us - b.P50us }
	if v, ok := paired("edge", "proxy", ratio); ok {
		b.ReportMetric(v, "edge/proxy")
	}
	if v, ok := paired("edge", "proxy", func(a, b runResult) float64 { return a.CPUus / b.CPUus }); ok && res["proxy"][0].CPUus > 0 {
		b.ReportMetric(v, "edge/proxy-cpu")
	}
	if v, ok := paired("proxy", "direct", ratio); ok {
		b.ReportMetric(v, "proxy/direct")
	}
	if v, ok := paired("proxy", "direct", added); ok {
		b.ReportMetric(v, "proxy-added-p50-us")
	}
	if v, ok := paired("edge", "direct", added); ok {
		b.ReportMetric(v, "edge-added-p50-us")
	}
	// The hops' own allocations, when they run in this process.
	for _, hop := range []string{"proxy", "edge"} {
		if v, ok := paired(hop, "direct", func(a, b runResult) float64 { return a.Allocs - b.Allocs }); ok && res[hop][0].CPUus == 0 {
			b.ReportMetric(v, hop+"-allocs/call")
		}
		if v, ok := paired(hop, "direct", func(a, b runResult) float64 { return a.Bytes - b.Bytes }); ok && res[hop][0].CPUus == 0 {
			b.ReportMetric(v, hop+"-B/call")
		}
	}
}

// median returns the median of f over rs.
func median(rs []runResult, f func(runResult) float64) float64 {
	vals := make([]float64, len(rs))
	for i, r := range rs {
		vals[i] = f(r)
	}
	slices.Sort(vals)
	return vals[len(vals)/2]
}

// loadRun runs the load generator with its goroutines labelled hop=client
// and fails the benchmark on any error: a fast but failing target must not
// produce a figure.
func loadRun(b *testing.B, cfg Config) Summary {
	var (
		sum Summary
		err error
	)
	pprof.Do(b.Context(), pprof.Labels("hop", "client"), func(ctx context.Context) {
		sum, err = Run(ctx, cfg)
	})
	if err != nil {
		b.Fatal(err)
	}
	if sum.Errors > 0 || sum.SessionErrors > 0 {
		b.Fatalf("%s: %d of %d calls failed, %d session errors; first: %s", cfg.URL, sum.Errors, sum.Calls, sum.SessionErrors, sum.FirstError)
	}
	return sum
}
