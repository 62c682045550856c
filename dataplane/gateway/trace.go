package gateway

import (
	"bytes"
	"context"
	"net/http"

	"github.com/mcpgw/mcpgw/dataplane/rpc"
	"github.com/mcpgw/mcpgw/dataplane/upstream"
	"github.com/mcpgw/mcpgw/internal/mcpwire"
)

// Trace context (W3C Trace Context, traceparent and tracestate). A client
// may send it in params._meta (the MCP convention of SEP-414: the keys
// traceparent and tracestate, exempt from _meta's DNS prefixing, which also
// works on stdio) or, over HTTP, in the traceparent header. The edge takes
// the trace id for the audit event and hands the context on to HTTP
// backends as headers; a malformed value is ignored, never an error, as
// the W3C spec asks of a receiver.

// traceOf returns the trace context of a request: _meta's when it holds a
// valid traceparent (it names this message, where a header names only the
// HTTP request that carried it), else the header's. h is nil on stdio, e
// nil when no message was read. The zero Trace means none.
func traceOf(h http.Header, e *mcpwire.Envelope) upstream.Trace {
	if e != nil && len(e.Meta) > 0 && !metaOnlyKnown(e) && bytes.Contains(e.Meta, []byte(`"traceparent"`)) {
		meta := e.Meta
		if tp := rpc.StringField(meta, "traceparent"); validTraceparent(tp) {
			return upstream.Trace{Parent: tp, State: validTracestate(rpc.StringField(meta, "tracestate"))}
		}
	}
	if v := h["Traceparent"]; len(v) == 1 && validTraceparent(v[0]) {
		// More than one traceparent header is invalid (W3C §3.2).
		var state string
		if s := h["Tracestate"]; len(s) > 0 {
			state = validTracestate(s[0])
		}
		return upstream.Trace{Parent: v[0], State: state}
	}
	return upstream.Trace{}
}

// withTrace records t's trace id in rq and returns ctx carrying t to the
// backends (ctx itself when there is no trace).
func withTrace(ctx context.Context, rq *Request, t upstream.Trace) context.Context {
	if t.Parent == "" {
		return ctx
	}
	rq.TraceID = t.Parent[3:35]
	return upstream.WithTrace(ctx, t)
}

// validTraceparent checks version-traceid-parentid-flags (W3C Trace
// Context §3.2): lowercase hex fields of 2, 32, 16 and 2 digits, version
// ff and all-zero ids invalid; version 00 is exactly 55 characters, a later
// version may append fields after a dash.
func validTraceparent(s string) bool {
	if len(s) < 55 || (len(s) > 55 && (s[:2] == "00" || s[55] != '-')) {
		return false
	}
	if s[2] != '-' || s[35] != '-' || s[52] != '-' || s[:2] == "ff" {
		return false
	}
	for _, f := range [...]string{s[:2], s[3:35], s[36:52], s[53:55]} {
		for i := 0; i < len(f); i++ {
			if c := f[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
				return false
			}
		}
	}
	return !allZero(s[3:35]) && !allZero(s[36:52])
}

// metaOnlyKnown reports whether _meta consists of nothing but the members
// the envelope scanner already found, written compactly, so it cannot hold
// a traceparent: the common 2026-07-28 _meta is settled by arithmetic
// instead of a search. Anything else (another key, whitespace, an escaped
// key) makes the lengths differ and the caller searches.
func metaOnlyKnown(e *mcpwire.Envelope) bool {
	members := [...]struct {
		key string
		val []byte
	}{
		{"progressToken", e.ProgressToken},
		{mcpwire.MetaProtocolVersion, e.ProtocolVersion},
		{mcpwire.MetaClientCapabilities, e.ClientCapabilities},
		{mcpwire.MetaClientInfo, e.ClientInfo},
		{mcpwire.MetaLogLevel, e.LogLevel},
	}
	n, k := 2, 0 // the braces; the members
	for _, m := range members {
		if m.val != nil {
			n += len(m.key) + 3 + len(m.val) // "key":value
			k++
		}
	}
	if k > 1 {
		n += k - 1 // commas
	}
	return n == len(e.Meta)
}

func allZero(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] != '0' {
			return false
		}
	}
	return true
}

// maxTracestate bounds a forwarded tracestate: 32 members of at most 256
// characters each, plus separators (W3C §3.3.1.1 allows a vendor to drop
// the rest; we drop the whole header rather than parse it).
const maxTracestate = 32*257 - 1

// validTracestate returns s if it is plausible to forward (printable ASCII,
// bounded), else "" — a header value from a client must not inject lines
// or megabytes into the upstream request.
func validTracestate(s string) string {
	if len(s) > maxTracestate {
		return ""
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < 0x20 && c != '\t') || c > 0x7e {
			return ""
		}
	}
	return s
}
