package loadgen

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"runtime/pprof"
	"slices"
	"sync"
	"testing"
)

// The benchmarks measure tools/call throughput and latency through each
// target in one run, so the ratios compare figures taken under the same
// machine load (DESIGN §11). Every server runs in-process under a pprof
// label "hop" (client, echo, proxy, edge) that its connection goroutines
// inherit, so one -cpuprofile splits by component:
//
//	go tool pprof -tagfocus=hop=edge -top cpu.out
//
// docs/benchmarks.md gives the command and the recorded figures.

// sessionCounts are the concurrency levels DESIGN §11 budgets.
var sessionCounts = []int{1, 16, 64}

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
}

// benchResults keeps the summaries of the runs of one benchmark, by target
// name, for the ratio sub-benchmarks. Sub-benchmarks run one after another,
// so no lock is needed, but -count repeats each leaf: the ratios use medians.
type benchResults map[string][]runResult

// runResult is one run of one target.
type runResult struct {
	Summary
	// CPUus is the CPU time the hop process spent per successful call,
	// in µs; zero when the hop runs in-process.
	CPUus float64
}

// median returns the median of f over the runs of target recorded so far,
// and how many runs it used. Only runs with at least half the largest call
// count count: the testing package calls every benchmark with b.N = 1 and
// then with growing guesses before the run it reports, and those short runs
// are mostly noise (and below the 10 ms resolution of process CPU time).
// Call counts, unlike durations, do not stretch when the machine is busy.
func (r benchResults) median(target string, f func(runResult) float64) (float64, int) {
	var most int64
	for _, s := range r[target] {
		most = max(most, s.Calls)
	}
	var vals []float64
	for _, s := range r[target] {
		if 2*s.Calls >= most {
			vals = append(vals, f(s))
		}
	}
	if len(vals) == 0 {
		return 0, 0
	}
	slices.Sort(vals)
	return vals[len(vals)/2], len(vals)
}

// BenchmarkToolsCall measures closed-loop tools/call through each target at
// 1, 16 and 64 sessions, then reports the ratios of the same run.
func BenchmarkToolsCall(b *testing.B) {
	echo := NewEcho()
	backend := serveLabelled(b, "echo", echo)
	u, err := url.Parse(backend.URL())
	if err != nil {
		b.Fatal(err)
	}
	proxy := NewReverseProxy(u, slices.Max(sessionCounts))
	b.Cleanup(proxy.Transport.(*http.Transport).CloseIdleConnections)
	targets := []benchTarget{
		{"direct", backend.URL(), EchoTool},
		{"proxy", serveLabelled(b, "proxy", proxy).URL(), EchoTool},
		{"edge", startEdge(b, backend.URL()), edgeTool},
	}

	for _, n := range sessionCounts {
		results := benchResults{}
		tr := NewTransport(n)
		b.Cleanup(tr.CloseIdleConnections)
		client := &http.Client{Transport: tr}
		b.Run(fmt.Sprintf("sessions=%d", n), func(b *testing.B) {
			for _, t := range targets {
				b.Run(t.name, func(b *testing.B) {
					sum := loadRun(b, Config{URL: t.url, Tool: t.tool, Sessions: n, Calls: int64(b.N), Client: client})
					results[t.name] = append(results[t.name], runResult{Summary: sum})
					if sum.OK > 0 {
						b.ReportMetric(sum.DurationS*1e9/float64(sum.OK), "ns/op")
					}
					b.ReportMetric(sum.CallsPerS, "calls/s")
					b.ReportMetric(sum.P50us, "p50-us")
					b.ReportMetric(sum.P99us, "p99-us")
				})
			}
			b.Run("ratio", func(b *testing.B) { reportRatios(b, results) })
		})
	}
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

// reportRatios reports, from the medians of the runs so far at this
// concurrency, the figures DESIGN §11 budgets: throughput of each hop as a
// fraction of the bare proxy's (and of direct), and the p50 latency each hop
// adds over a direct call.
func reportRatios(b *testing.B, r benchResults) {
	b.ReportMetric(0, "ns/op")
	cps := func(s runResult) float64 { return s.CallsPerS }
	p50 := func(s runResult) float64 { return s.P50us }
	direct, _ := r.median("direct", cps)
	proxy, _ := r.median("proxy", cps)
	directP50, _ := r.median("direct", p50)
	proxyP50, _ := r.median("proxy", p50)
	if direct == 0 || proxy == 0 {
		return // the target leaves were filtered out by -bench
	}
	b.ReportMetric(direct, "direct-calls/s")
	b.ReportMetric(proxy, "proxy-calls/s")
	b.ReportMetric(proxy/direct, "proxy/direct")
	b.ReportMetric(proxyP50-directP50, "proxy-added-p50-us")
	if edge, runs := r.median("edge", cps); edge > 0 {
		edgeP50, _ := r.median("edge", p50)
		edgeP99, _ := r.median("edge", func(s runResult) float64 { return s.P99us })
		b.ReportMetric(edge, "edge-calls/s")
		b.ReportMetric(edge/proxy, "edge/proxy")
		b.ReportMetric(edgeP50-directP50, "edge-added-p50-us")
		b.ReportMetric(edgeP99, "edge-p99-us")
		b.ReportMetric(float64(runs), "edge-runs")
	}
}

// BenchmarkHopCPU runs the reference proxy and the edge each as a process of
// its own in front of the in-process echo backend, and reports besides
// throughput the CPU time each hop process spends per call (from
// /proc/<pid>/stat, so 10 ms resolution: use runs of a second or more).
// Throughput on a shared 2-core machine moves with whatever else runs;
// CPU per call moves much less, so edge/proxy CPU is the steadier way to
// see whether the edge does more work per call than the bare hop.
func BenchmarkHopCPU(b *testing.B) {
	backend := serveLabelled(b, "echo", NewEcho())
	type hop struct {
		name, tool string
		p          *hopProcess
	}
	hops := []hop{
		{"proxy", EchoTool, startProxyProcess(b, backend.URL())},
		{"edge", edgeTool, startEdgeProcess(b, backend.URL())},
	}
	for _, n := range sessionCounts {
		results := benchResults{}
		tr := NewTransport(n)
		b.Cleanup(tr.CloseIdleConnections)
		client := &http.Client{Transport: tr}
		b.Run(fmt.Sprintf("sessions=%d", n), func(b *testing.B) {
			for _, h := range hops {
				b.Run(h.name, func(b *testing.B) {
					c0 := h.p.cpu(b)
					sum := loadRun(b, Config{URL: h.p.url, Tool: h.tool, Sessions: n, Calls: int64(b.N), Client: client})
					cpu := h.p.cpu(b) - c0
					r := runResult{Summary: sum}
					if sum.OK > 0 {
						r.CPUus = float64(cpu.Microseconds()) / float64(sum.OK)
						b.ReportMetric(sum.DurationS*1e9/float64(sum.OK), "ns/op")
					}
					results[h.name] = append(results[h.name], r)
					b.ReportMetric(sum.CallsPerS, "calls/s")
					b.ReportMetric(sum.P50us, "p50-us")
					b.ReportMetric(sum.P99us, "p99-us")
					b.ReportMetric(r.CPUus, "hop-cpu-us/call")
				})
			}
			b.Run("ratio", func(b *testing.B) {
				b.ReportMetric(0, "ns/op")
				cps := func(s runResult) float64 { return s.CallsPerS }
				cpu := func(s runResult) float64 { return s.CPUus }
				proxy, _ := results.median("proxy", cps)
				edge, _ := results.median("edge", cps)
				proxyCPU, _ := results.median("proxy", cpu)
				edgeCPU, _ := results.median("edge", cpu)
				if proxy == 0 || edge == 0 || proxyCPU == 0 {
					return // a hop was filtered out by -bench
				}
				b.ReportMetric(edge/proxy, "edge/proxy")
				b.ReportMetric(edgeCPU/proxyCPU, "edge/proxy-cpu")
			})
		})
	}
}
