package mcpwire

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func mustScan(t testing.TB, body string) (*Envelope, []byte) {
	t.Helper()
	b := []byte(body)
	env := new(Envelope)
	if err := Scan(b, env); err != nil {
		t.Fatalf("Scan(%s): %v", body, err)
	}
	return env, b
}

func TestReplace(t *testing.T) {
	const call = ` {"jsonrpc":"2.0", "id" : 5,"method":"tools/call","params":{"name":"a\u0062c","cursor":"c1","requestState":"s","progressToken":3,"requestId":"r","_meta":{"progressToken":"tok"}}} `
	const res = `{"jsonrpc":"2.0","id":"x","result":{"tools":[],"nextCursor":"up-1","resultType":"complete"}}`
	cases := []struct {
		body  string
		f     Field
		raw   string
		want  string
		check func(*Envelope) string
	}{
		{call, FieldID, `"gw-1"`, strings.Replace(call, `5`, `"gw-1"`, 1), func(e *Envelope) string { return string(e.ID) }},
		{call, FieldID, `-12`, strings.Replace(call, `5`, `-12`, 1), func(e *Envelope) string { return string(e.ID) }},
		{call, FieldName, `"backend_tool"`, strings.Replace(call, `"a\u0062c"`, `"backend_tool"`, 1), func(e *Envelope) string { return e.NameString() }},
		{call, FieldCursor, `"c2"`, strings.Replace(call, `"c1"`, `"c2"`, 1), func(e *Envelope) string { return e.Cursor.String() }},
		{call, FieldRequestState, `"t"`, strings.Replace(call, `"s"`, `"t"`, 1), func(e *Envelope) string { return e.RequestState.String() }},
		{call, FieldParamsProgressToken, `"p9"`, strings.Replace(call, `"progressToken":3`, `"progressToken":"p9"`, 1), func(e *Envelope) string { return string(e.ParamsProgressToken) }},
		{call, FieldRequestID, `44`, strings.Replace(call, `"r"`, `44`, 1), func(e *Envelope) string { return string(e.RequestID) }},
		{call, FieldProgressToken, `17`, strings.Replace(call, `"tok"`, `17`, 1), func(e *Envelope) string { return string(e.ProgressToken) }},
		{res, FieldNextCursor, `"gw:abc"`, strings.Replace(res, `"up-1"`, `"gw:abc"`, 1), func(e *Envelope) string { return e.NextCursor.String() }},
		{res, FieldResultType, `"input_required"`, strings.Replace(res, `"complete"`, `"input_required"`, 1), func(e *Envelope) string { return e.ResultType.String() }},
		{res, FieldID, `3`, strings.Replace(res, `"x"`, `3`, 1), func(e *Envelope) string { return string(e.ID) }},
	}
	for _, tc := range cases {
		env, body := mustScan(t, tc.body)
		prefix := []byte("keep:")
		out, err := Replace(prefix, body, env, tc.f, []byte(tc.raw))
		if err != nil {
			t.Errorf("Replace(%v, %s): %v", tc.f, tc.raw, err)
			continue
		}
		if !bytes.HasPrefix(out, prefix) {
			t.Errorf("Replace dropped dst")
		}
		out = out[len(prefix):]
		if string(out) != tc.want {
			t.Errorf("Replace(%v, %s):\n got %s\nwant %s", tc.f, tc.raw, out, tc.want)
		}
		env2, _ := mustScan(t, string(out))
		want := tc.raw
		if tc.raw[0] == '"' && tc.f != FieldID && tc.f != FieldParamsProgressToken && tc.f != FieldProgressToken {
			want = tc.raw[1 : len(tc.raw)-1]
		}
		if got := tc.check(env2); got != want {
			t.Errorf("after Replace(%v): value %q, want %q", tc.f, got, want)
		}
	}
}

func TestReplaceErrors(t *testing.T) {
	env, body := mustScan(t, `{"jsonrpc":"2.0","method":"notifications/x","params":{"name":"n","_meta":{}}}`)
	other := append([]byte(nil), body...)
	cases := []struct {
		name string
		body []byte
		f    Field
		raw  string
		msg  string
	}{
		{"absent id", body, FieldID, `1`, "id is absent"},
		{"absent cursor", body, FieldCursor, `"c"`, "params.cursor is absent"},
		{"other body", other, FieldName, `"x"`, "not scanned from this body"},
		{"not a string", body, FieldName, `7`, "must be a string"},
		{"injection", body, FieldName, `"x","name":"y"`, "not one JSON value"},
		{"not JSON", body, FieldName, `"x`, "not JSON"},
		{"empty", body, FieldName, ``, "empty"},
		{"whitespace", body, FieldName, ` "x"`, "not JSON"},
		{"not a field", body, fieldMeta, `{}`, "cannot replace"},
	}
	for _, tc := range cases {
		_, err := Replace(nil, tc.body, env, tc.f, []byte(tc.raw))
		var we *Error
		if !errors.As(err, &we) || !strings.Contains(we.Msg, tc.msg) {
			t.Errorf("%s: err = %v, want one containing %q", tc.name, err, tc.msg)
		}
	}
	renv, rbody := mustScan(t, `{"jsonrpc":"2.0","id":1,"result":{}}`)
	for _, raw := range []string{`1.5`, `true`, `null`, `{}`} {
		if _, err := ReplaceID(nil, rbody, renv, []byte(raw)); err == nil {
			t.Errorf("ReplaceID(%s) accepted an id that is neither string nor integer", raw)
		}
	}
	var zero Envelope
	if _, err := Replace(nil, body, &zero, FieldName, []byte(`"x"`)); err == nil {
		t.Error("Replace with an unscanned envelope succeeded")
	}
}

func TestSetMeta(t *testing.T) {
	pv := MetaProtocolVersion
	cases := []struct {
		name, body, key, raw, want string
	}{
		{"no params", `{"jsonrpc":"2.0","id":1,"method":"tools/list"} `, pv, `"2026-07-28"`,
			`{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}} `},
		{"empty params", `{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{ }}`, pv, `"2026-07-28"`,
			`{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"} }}`},
		{"params without meta", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"}}`, MetaClientCapabilities, `{"sampling":{}}`,
			`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"_meta":{"io.modelcontextprotocol/clientCapabilities":{"sampling":{}}},"name":"x"}}`},
		{"empty meta", `{"jsonrpc":"2.0","id":1,"method":"m","params":{"_meta":{}}}`, "progressToken", `1`,
			`{"jsonrpc":"2.0","id":1,"method":"m","params":{"_meta":{"progressToken":1}}}`},
		{"add to meta", `{"jsonrpc":"2.0","id":1,"method":"m","params":{"_meta":{"progressToken":1}}}`, MetaClientInfo, `{"name":"mcpgw"}`,
			`{"jsonrpc":"2.0","id":1,"method":"m","params":{"_meta":{"io.modelcontextprotocol/clientInfo":{"name":"mcpgw"},"progressToken":1}}}`},
		{"replace known", `{"jsonrpc":"2.0","id":1,"method":"m","params":{"_meta":{"progressToken":1,"x":2}}}`, "progressToken", `"gw-7"`,
			`{"jsonrpc":"2.0","id":1,"method":"m","params":{"_meta":{"progressToken":"gw-7","x":2}}}`},
		{"replace escaped key", `{"jsonrpc":"2.0","id":1,"method":"m","params":{"_meta":{"a":1,"io.modelcontextprotocol\/protocolVersion" : "2025-11-25" }}}`, pv, `"2026-07-28"`,
			`{"jsonrpc":"2.0","id":1,"method":"m","params":{"_meta":{"a":1,"io.modelcontextprotocol\/protocolVersion" : "2026-07-28" }}}`},
		{"replace unknown", `{"jsonrpc":"2.0","method":"n","params":{"_meta":{"vendor/x":[1],"y":2}}}`, "vendor/x", `"v"`,
			`{"jsonrpc":"2.0","method":"n","params":{"_meta":{"vendor/x":"v","y":2}}}`},
		{"key needing escapes", `{"jsonrpc":"2.0","method":"n"}`, "a\"b", `null`,
			`{"jsonrpc":"2.0","method":"n","params":{"_meta":{"a\"b":null}}}`},
	}
	for _, tc := range cases {
		env, body := mustScan(t, tc.body)
		out, err := SetMeta(nil, body, env, tc.key, []byte(tc.raw))
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if string(out) != tc.want {
			t.Errorf("%s:\n got %s\nwant %s", tc.name, out, tc.want)
		}
		if err := Scan(out, env); err != nil {
			t.Errorf("%s: result does not scan: %v", tc.name, err)
		}
	}
	// The values Scan reads back.
	env, body := mustScan(t, `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`)
	out, _ := SetMeta(nil, body, env, MetaProtocolVersion, []byte(`"2026-07-28"`))
	env, body = mustScan(t, string(out))
	out, _ = SetMeta(nil, body, env, MetaClientCapabilities, []byte(`{}`))
	env, _ = mustScan(t, string(out))
	if env.ProtocolVersion.String() != "2026-07-28" || string(env.ClientCapabilities) != `{}` {
		t.Errorf("after two SetMeta: version %q, capabilities %s", env.ProtocolVersion.String(), env.ClientCapabilities)
	}
}

func TestSetMetaErrors(t *testing.T) {
	cases := []struct{ name, body, key, raw, msg string }{
		{"response", `{"jsonrpc":"2.0","id":1,"result":{}}`, "k", `1`, "needs a request"},
		{"array params", `{"jsonrpc":"2.0","id":1,"method":"m","params":[]}`, "k", `1`, "array params"},
		{"case variant of known", `{"jsonrpc":"2.0","id":1,"method":"m"}`, "ProgressToken", `1`, "only in case"},
		{"case variant present", `{"jsonrpc":"2.0","id":1,"method":"m","params":{"_meta":{"Vendor":1}}}`, "vendor", `1`, "only in case"},
		{"bad raw", `{"jsonrpc":"2.0","id":1,"method":"m"}`, "k", `{"a":}`, "not JSON"},
		{"typed known", `{"jsonrpc":"2.0","id":1,"method":"m"}`, MetaProtocolVersion, `20260728`, "must be a string"},
		{"typed token", `{"jsonrpc":"2.0","id":1,"method":"m"}`, "progressToken", `{}`, "string or an integer"},
		{"typed capabilities", `{"jsonrpc":"2.0","id":1,"method":"m"}`, MetaClientCapabilities, `[]`, "must be an object"},
	}
	for _, tc := range cases {
		env, body := mustScan(t, tc.body)
		_, err := SetMeta(nil, body, env, tc.key, []byte(tc.raw))
		var we *Error
		if !errors.As(err, &we) || !strings.Contains(we.Msg, tc.msg) {
			t.Errorf("%s: err = %v, want one containing %q", tc.name, err, tc.msg)
		}
	}
}

func TestSetResultField(t *testing.T) {
	cases := []struct{ name, body, key, raw, want string }{
		{"replace nextCursor", `{"jsonrpc":"2.0","id":1,"result":{"tools":[],"nextCursor":"b1"}}`, "nextCursor", `"gw:1"`,
			`{"jsonrpc":"2.0","id":1,"result":{"tools":[],"nextCursor":"gw:1"}}`},
		{"add nextCursor", `{"jsonrpc":"2.0","id":1,"result":{"tools":[]}}`, "nextCursor", `"gw:1"`,
			`{"jsonrpc":"2.0","id":1,"result":{"nextCursor":"gw:1","tools":[]}}`},
		{"add to empty", `{"jsonrpc":"2.0","id":1,"result":{}}`, "resultType", `"complete"`,
			`{"jsonrpc":"2.0","id":1,"result":{"resultType":"complete"}}`},
		{"replace other", `{"jsonrpc":"2.0","id":1,"result":{"ttlMs":5,"x":1}}`, "ttlMs", `0`,
			`{"jsonrpc":"2.0","id":1,"result":{"ttlMs":0,"x":1}}`},
		{"add other", `{"jsonrpc":"2.0","id":1,"result":{"x":1}}`, "cacheScope", `"private"`,
			`{"jsonrpc":"2.0","id":1,"result":{"cacheScope":"private","x":1}}`},
	}
	for _, tc := range cases {
		env, body := mustScan(t, tc.body)
		out, err := SetResultField(nil, body, env, tc.key, []byte(tc.raw))
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if string(out) != tc.want {
			t.Errorf("%s:\n got %s\nwant %s", tc.name, out, tc.want)
		}
		if err := Scan(out, env); err != nil {
			t.Errorf("%s: result does not scan: %v", tc.name, err)
		}
	}
	for _, tc := range []struct{ name, body, key, raw string }{
		{"request", `{"jsonrpc":"2.0","id":1,"method":"m"}`, "nextCursor", `"c"`},
		{"array result", `{"jsonrpc":"2.0","id":1,"result":[]}`, "nextCursor", `"c"`},
		{"cursor not string", `{"jsonrpc":"2.0","id":1,"result":{}}`, "nextCursor", `1`},
		{"variant", `{"jsonrpc":"2.0","id":1,"result":{}}`, "NextCursor", `"c"`},
		{"variant present", `{"jsonrpc":"2.0","id":1,"result":{"TTL":1}}`, "ttl", `2`},
	} {
		env, body := mustScan(t, tc.body)
		if _, err := SetResultField(nil, body, env, tc.key, []byte(tc.raw)); err == nil {
			t.Errorf("%s: SetResultField succeeded", tc.name)
		}
	}
}

func TestSpliceZeroAllocs(t *testing.T) {
	env, body := mustScan(t, `{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"x","_meta":{"progressToken":"p"}}}`)
	renv, rbody := mustScan(t, `{"jsonrpc":"2.0","id":9,"result":{"tools":[],"nextCursor":"n"}}`)
	buf := make([]byte, 0, 1024)
	if n := testing.AllocsPerRun(100, func() {
		if _, err := ReplaceID(buf[:0], body, env, []byte(`"gw-1"`)); err != nil {
			t.Fatal(err)
		}
		if _, err := Replace(buf[:0], body, env, FieldProgressToken, []byte(`12`)); err != nil {
			t.Fatal(err)
		}
		if _, err := SetMeta(buf[:0], body, env, MetaProtocolVersion, []byte(`"2026-07-28"`)); err != nil {
			t.Fatal(err)
		}
		if _, err := SetResultField(buf[:0], rbody, renv, "nextCursor", []byte(`"gw"`)); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("splices: %v allocs/op with a large enough dst, want 0", n)
	}
}
