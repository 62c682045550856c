package mcpwire

import (
	"encoding/json"
	"strconv"
	"testing"
	"unicode/utf8"
)

func TestAppendString(t *testing.T) {
	cases := []string{
		"", "plain", `quote " backslash \ slash /`, "ctl \x00\x01\x1f\x7f \n\r\t\b\f",
		"é 😀 \u2028\u2029", "bad \xff utf8 \xed\xa0\x80", "<html>&amp;",
	}
	for _, s := range cases {
		got := AppendString([]byte("x"), s)
		if got[0] != 'x' {
			t.Fatalf("AppendString lost dst prefix")
		}
		got = got[1:]
		var back string
		if err := json.Unmarshal(got, &back); err != nil {
			t.Errorf("AppendString(%q) = %s: not JSON: %v", s, got, err)
			continue
		}
		want := string([]rune(s)) // invalid UTF-8 becomes U+FFFD per byte, as encoding/json
		if !utf8.ValidString(s) {
			want = ""
			for i := 0; i < len(s); {
				r, n := utf8.DecodeRuneInString(s[i:])
				want += string(r)
				i += n
			}
		}
		if back != want {
			t.Errorf("AppendString(%q) round-trips to %q, want %q", s, back, want)
		}
		// Scan must accept it and decode the same value.
		body := `{"jsonrpc":"2.0","id":1,"method":` + string(got) + `}`
		var env Envelope
		if err := Scan([]byte(body), &env); err != nil {
			t.Errorf("Scan rejects AppendString output %s: %v", got, err)
		} else if env.MethodString() != want {
			t.Errorf("Scan decodes %s to %q, want %q", got, env.MethodString(), want)
		}
	}
	if got := string(AppendString(nil, "a\u2028b\x01")); got != `"a\u2028b\u0001"` {
		t.Errorf("escapes: got %s", got)
	}
}

func TestWriters(t *testing.T) {
	cases := []struct {
		name string
		got  []byte
		want string
		kind Kind
	}{
		{"result", AppendResult(nil, []byte(`"a"`), []byte(`{"content":[]}`)), `{"jsonrpc":"2.0","id":"a","result":{"content":[]}}`, KindResult},
		{"result nil", AppendResult(nil, []byte(`7`), nil), `{"jsonrpc":"2.0","id":7,"result":{}}`, KindResult},
		{"error", AppendError(nil, []byte(`1`), -32602, `bad "name"`, nil), `{"jsonrpc":"2.0","id":1,"error":{"code":-32602,"message":"bad \"name\""}}`, KindError},
		{"error null id data", AppendError(nil, nil, CodeParseError, "Parse error", []byte(`{"offset":3}`)), `{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"Parse error","data":{"offset":3}}}`, KindError},
		{"request", AppendRequest(nil, strconv.AppendInt(nil, 99, 10), "tools/call", []byte(`{"name":"x"}`)), `{"jsonrpc":"2.0","id":99,"method":"tools/call","params":{"name":"x"}}`, KindRequest},
		{"request no params", AppendRequest(nil, []byte(`"r"`), "ping", nil), `{"jsonrpc":"2.0","id":"r","method":"ping"}`, KindRequest},
		{"notification", AppendNotification(nil, "notifications/progress", []byte(`{"progressToken":1,"progress":2}`)), `{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":1,"progress":2}}`, KindNotification},
		{"notification no params", AppendNotification([]byte("keep"), "notifications/initialized", nil)[4:], `{"jsonrpc":"2.0","method":"notifications/initialized"}`, KindNotification},
	}
	for _, tc := range cases {
		if string(tc.got) != tc.want {
			t.Errorf("%s: got %s, want %s", tc.name, tc.got, tc.want)
		}
		var env Envelope
		if err := Scan(tc.got, &env); err != nil || env.Kind != tc.kind {
			t.Errorf("%s: Scan = %v, kind %v, want %v", tc.name, err, env.Kind, tc.kind)
		}
	}
}

func TestWritersZeroAllocs(t *testing.T) {
	buf := make([]byte, 0, 512)
	id := []byte(`12`)
	res := []byte(`{"content":[{"type":"text","text":"ok"}]}`)
	if n := testing.AllocsPerRun(100, func() {
		b := AppendResult(buf[:0], id, res)
		b = AppendError(b, id, -32000, "upstream unavailable", nil)
		b = AppendRequest(b, id, "tools/call", res)
		_ = AppendNotification(b, "notifications/cancelled", res)
	}); n != 0 {
		t.Errorf("writers: %v allocs/op with a large enough dst, want 0", n)
	}
}
