package gateway

import (
	"net/http"
	"strings"
	"testing"

	"github.com/mcpgw/mcpgw/internal/mcpwire"
)

// envelopeWithMeta scans a ping whose params._meta is meta.
func envelopeWithMeta(t testing.TB, meta string) *mcpwire.Envelope {
	t.Helper()
	e := &mcpwire.Envelope{}
	if err := mcpwire.Scan([]byte(`{"jsonrpc":"2.0","id":1,"method":"ping","params":{"_meta":`+meta+`}}`), e); err != nil {
		t.Fatal(err)
	}
	return e
}

// W3C Trace Context §3.2: what a receiver must accept and must ignore.
func TestTraceparentValidation(t *testing.T) {
	const ok = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	for _, tt := range []struct {
		tp   string
		want bool
	}{
		{ok, true},
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", true},
		{"cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-holds", true},
		{"cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", true},
		{"", false},
		{ok[:54], false},
		{ok + "-", false},            // version 00 is exactly 55 characters
		{"cc" + ok[2:] + "x", false}, // a later version's extra fields follow a dash
		{strings.ToUpper(ok), false}, // lowercase only
		{"ff" + ok[2:], false},       // version ff is invalid
		{"0g" + ok[2:], false},       // not hex
		{"00-00000000000000000000000000000000-00f067aa0ba902b7-01", false},
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", false},
		{"00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", false},
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0z", false},
		{"00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01", false},
	} {
		if got := validTraceparent(tt.tp); got != tt.want {
			t.Errorf("validTraceparent(%q) = %v, want %v", tt.tp, got, tt.want)
		}
	}
}

const modernMeta = `{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientInfo":{"name":"raw","version":"1"},"io.modelcontextprotocol/clientCapabilities":{"elicitation":{}}}`

// The shortcut that spares a typical _meta the search must never skip one
// that could hold a traceparent.
func TestMetaOnlyKnown(t *testing.T) {
	for _, tt := range []struct {
		meta string
		want bool
	}{
		{modernMeta, true},
		{`{"progressToken":7}`, true},
		{`{"progressToken":"a","io.modelcontextprotocol/logLevel":"info"}`, true},
		{`{}`, true},
		{`{"traceparent":"x"}`, false},
		{modernMeta[:len(modernMeta)-1] + `,"traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}`, false},
		{`{"progressToken":7,"x":1}`, false},
		{`{ "progressToken":7}`, false},
		{`{"\u0070rogressToken":7}`, false},
	} {
		if got := metaOnlyKnown(envelopeWithMeta(t, tt.meta)); got != tt.want {
			t.Errorf("metaOnlyKnown(%s) = %v, want %v", tt.meta, got, tt.want)
		}
	}
}

func TestTraceOf(t *testing.T) {
	const (
		hdr  = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
		meta = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	)
	h := http.Header{"Traceparent": {hdr}, "Tracestate": {"congo=t61rcWkgMzE"}}
	if tr := traceOf(h, nil); tr.Parent != hdr || tr.State != "congo=t61rcWkgMzE" {
		t.Errorf("header only: %+v", tr)
	}
	if tr := traceOf(h, envelopeWithMeta(t, `{"traceparent":"`+meta+`","tracestate":"rojo=00f067aa0ba902b7"}`)); tr.Parent != meta || tr.State != "rojo=00f067aa0ba902b7" {
		t.Errorf("_meta and header: %+v", tr)
	}
	if tr := traceOf(h, envelopeWithMeta(t, `{"traceparent":"bogus"}`)); tr.Parent != hdr {
		t.Errorf("malformed _meta falls back to the header: %+v", tr)
	}
	if tr := traceOf(http.Header{"Traceparent": {hdr, meta}}, nil); tr.Parent != "" {
		t.Errorf("two traceparent headers: %+v", tr)
	}
	if tr := traceOf(http.Header{"Traceparent": {hdr}, "Tracestate": {"a=b\r\nX-Evil: 1"}}, nil); tr.Parent != hdr || tr.State != "" {
		t.Errorf("a tracestate with control characters is dropped: %+v", tr)
	}
	if tr := traceOf(nil, envelopeWithMeta(t, `{"progressToken":1}`)); tr.Parent != "" {
		t.Errorf("nothing: %+v", tr)
	}
}

// What every served POST pays for trace context when it carries none
// (a modern request's _meta, a legacy header set), and when it does.
func BenchmarkTraceOf(b *testing.B) {
	meta := envelopeWithMeta(b, modernMeta)
	h := http.Header{"Content-Type": {"application/json"}, "Accept": {"application/json, text/event-stream"}, "Mcp-Session-Id": {"0123456789abcdef0123456789abcdef"}}
	b.Run("none", func(b *testing.B) {
		for b.Loop() {
			_ = traceOf(h, meta)
		}
	})
	traced := http.Header{"Traceparent": {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}}
	b.Run("header", func(b *testing.B) {
		for b.Loop() {
			_ = traceOf(traced, meta)
		}
	})
}
