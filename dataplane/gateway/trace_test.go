package gateway

import (
	"net/http"
	"strings"
	"testing"
)

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

func TestTraceOf(t *testing.T) {
	const (
		hdr  = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
		meta = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	)
	h := http.Header{"Traceparent": {hdr}, "Tracestate": {"congo=t61rcWkgMzE"}}
	if tr := traceOf(h, nil); tr.Parent != hdr || tr.State != "congo=t61rcWkgMzE" {
		t.Errorf("header only: %+v", tr)
	}
	if tr := traceOf(h, []byte(`{"traceparent":"`+meta+`","tracestate":"rojo=00f067aa0ba902b7"}`)); tr.Parent != meta || tr.State != "rojo=00f067aa0ba902b7" {
		t.Errorf("_meta and header: %+v", tr)
	}
	if tr := traceOf(h, []byte(`{"traceparent":"bogus"}`)); tr.Parent != hdr {
		t.Errorf("malformed _meta falls back to the header: %+v", tr)
	}
	if tr := traceOf(http.Header{"Traceparent": {hdr, meta}}, nil); tr.Parent != "" {
		t.Errorf("two traceparent headers: %+v", tr)
	}
	if tr := traceOf(http.Header{"Traceparent": {hdr}, "Tracestate": {"a=b\r\nX-Evil: 1"}}, nil); tr.Parent != hdr || tr.State != "" {
		t.Errorf("a tracestate with control characters is dropped: %+v", tr)
	}
	if tr := traceOf(nil, []byte(`{"progressToken":1}`)); tr.Parent != "" {
		t.Errorf("nothing: %+v", tr)
	}
}
