package upstream

import "context"

// Trace is the W3C trace context (traceparent, tracestate) of the client
// request a call serves. HTTP backends get it as headers, so a trace
// started by the client continues through the edge; the edge validated it
// and does not take part in it (it sends the client's traceparent as is).
type Trace struct {
	Parent string // traceparent, already validated
	State  string // tracestate, "" when none
}

type traceKey struct{}

// WithTrace returns ctx carrying t for the calls made under it.
func WithTrace(ctx context.Context, t Trace) context.Context {
	return context.WithValue(ctx, traceKey{}, t)
}
