// Package loadgen is the edge's performance harness (DESIGN §11): a cheap
// hand-written Streamable HTTP MCP echo backend, a closed-loop load generator
// that drives N concurrent MCP sessions with tools/call and summarises
// throughput and latency, and the reference hop the edge is measured
// against, a bare httputil.ReverseProxy configured as a careful operator
// would configure it.
//
// Everything here is built to cost little on the client side, because on a
// small machine the load generator, the backend and the hop under test share
// the same cores: whatever the harness spends is taken from the thing being
// measured. Latencies go into a fixed log-bucketed histogram per session
// (no locks, no growing sample), the echo backend decodes only the envelope,
// and requests reuse one tuned http.Transport.
//
// The benchmarks in this package (bench_test.go) measure direct, proxied and
// edge figures in one run; docs/benchmarks.md records the command and the
// results.
package loadgen
