package upstream

import (
	"bufio"
	"bytes"
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
)

// headLines returns a rendered request's request line, its header lines
// sorted (order carries no meaning), and its body.
func headLines(t *testing.T, raw []byte) (string, []string, string) {
	t.Helper()
	head, body, ok := bytes.Cut(raw, []byte("\r\n\r\n"))
	if !ok {
		t.Fatalf("no end of head in %q", raw)
	}
	lines := strings.Split(string(head), "\r\n")
	fields := slices.Clone(lines[1:])
	slices.Sort(fields)
	return lines[0], fields, string(body)
}

// The hot path renders a POST itself (appendPost) instead of building an
// *http.Request: for every kind of call it must put on the wire what
// newRequest, callHeaders and appendRequest did, configured headers a call
// replaces included.
func TestAppendPostMatchesRequestPath(t *testing.T) {
	configured := map[string]string{
		"Authorization":        "Bearer x",
		"user-agent":           "custom/1",
		"Accept":               "text/plain",         // every POST replaces it
		"Mcp-Session-Id":       "configured-session", // replaced, or dropped when modern
		"Mcp-Protocol-Version": "1999-01-01",
		"Traceparent":          "configured-trace",
		"Tracestate":           "configured-state",
		"Mcp-Name":             "configured-name",
		"Mcp-Param-A":          "configured-a",
		"Mcp-Param-B":          "configured-b",
		"Connection":           "close", // framing is ours
	}
	trace := Trace{Parent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", State: "k=v"}
	msg := []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{}}`)
	for _, tc := range []struct {
		name      string
		headers   map[string]string
		session   string
		version   string
		trace     *Trace
		send      bool
		modern    *Modern
		wantError string
	}{
		{name: "bare", headers: nil},
		{name: "legacy session", headers: configured, session: "s-1", version: "2025-11-25"},
		{name: "legacy no session", headers: configured},
		{name: "trace", headers: configured, session: "s-1", trace: &trace},
		{name: "trace without state", headers: configured, trace: &Trace{Parent: trace.Parent}},
		{name: "send has no trace", headers: configured, session: "s-1", trace: &trace, send: true},
		{name: "modern", headers: configured, session: "s-1", version: "2025-11-25", trace: &trace,
			modern: &Modern{Version: "2026-07-28", Name: "echo", Params: map[string]string{"Mcp-Param-A": "1", "Mcp-Param-C": "3"}}},
		{name: "modern without name", headers: configured, modern: &Modern{Version: "2026-07-28"}},
		{name: "injected session id", session: "a\r\nX-Injected: 1", wantError: "invalid value"},
		{name: "bad configured name", headers: map[string]string{"Bad Name": "x"}, wantError: "invalid HTTP header name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rt := newH1Transport(newStdTransport(1), 1)
			b, err := New(Config{Name: "b", HTTP: &HTTPConfig{URL: "http://backend.test:8080/mcp?k=v", Headers: tc.headers}},
				Options{Client: &http.Client{Transport: rt}})
			if err != nil {
				t.Fatal(err)
			}
			ht, err := newHTTPTransport(b)
			if err != nil {
				t.Fatal(err)
			}
			if ht.h1 == nil {
				t.Fatal("a plain-http backend over an h1Transport must take the fast path")
			}
			if tc.session != "" {
				ht.setSession(tc.session)
			}
			ht.setVersion(tc.version)
			ctx := context.Background()
			if tc.trace != nil {
				ctx = WithTrace(ctx, *tc.trace)
			}
			var cl *call
			if !tc.send {
				cl = &call{method: "tools/call", modern: tc.modern}
			}

			fast, ferr := ht.appendPost(nil, ctx, cl, msg)
			req, err := ht.newRequest(ctx, http.MethodPost, msg)
			if err != nil {
				t.Fatal(err)
			}
			if cl != nil {
				ht.callHeaders(ctx, cl, req.Header)
			}
			slow, serr := appendRequest(nil, req)
			if tc.wantError != "" {
				if ferr == nil || !strings.Contains(ferr.Error(), tc.wantError) || serr == nil {
					t.Fatalf("fast path error %v, request path error %v; want both, with %q", ferr, serr, tc.wantError)
				}
				return
			}
			if ferr != nil || serr != nil {
				t.Fatalf("fast path error %v, request path error %v", ferr, serr)
			}
			fl, ff, fb := headLines(t, fast)
			sl, sf, sb := headLines(t, slow)
			if fl != sl || fb != sb || !slices.Equal(ff, sf) {
				t.Fatalf("fast path:\n%s\n%s\n%s\nrequest path:\n%s\n%s\n%s", fl, strings.Join(ff, "\n"), fb, sl, strings.Join(sf, "\n"), sb)
			}
			// And a server reads it as one well-formed request.
			if _, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(fast))); err != nil {
				t.Fatalf("rendered request does not parse: %v", err)
			}
		})
	}
}
