package mcpwire

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// scanCase: body, the JSON-RPC error code Scan must fail with (0: accept),
// and lines the summary must contain (for failures, substrings of it).
type scanCase struct {
	name string
	in   string
	code int
	want []string
}

var scanCases = []scanCase{
	// Accepted messages and what the gateway reads from them.
	{"tools/call", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"x":[1,{"y":null}]},"_meta":{"progressToken":"p1"}}}`, 0,
		[]string{"kind: request", "id: 1", `method: "tools/call"`, `name: "echo"`, `arguments: {"x":[1,{"y":null}]}`, `progressToken: "p1"`, `meta: {"progressToken":"p1"}`}},
	{"whitespace everywhere", " \t\r\n{ \"jsonrpc\" : \"2.0\" , \"id\" : \"a\" , \"method\" : \"ping\" } \n", 0,
		[]string{"kind: request", `id: "a"`, `method: "ping"`}},
	{"notification", `{"jsonrpc":"2.0","method":"notifications/initialized"}`, 0,
		[]string{"kind: notification", `method: "notifications/initialized"`}},
	{"notification progress", `{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":7,"progress":1}}`, 0,
		[]string{"kind: notification", "params.progressToken: 7"}},
	{"notification cancelled", `{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"r-9","reason":"user"}}`, 0,
		[]string{`requestId: "r-9"`}},
	{"result", `{"jsonrpc":"2.0","id":"x","result":{"tools":[],"nextCursor":"c2","resultType":"complete"}}`, 0,
		[]string{"kind: result", `id: "x"`, `nextCursor: "c2"`, `resultType: "complete"`}},
	{"non-object result passes", `{"jsonrpc":"2.0","id":3,"result":[1,2]}`, 0, []string{"kind: result", "result: [1,2]"}},
	{"error with null id", `{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"Parse error"}}`, 0,
		[]string{"kind: error", "id: null", "error.code: -32700", `error.message: "Parse error"`}},
	{"error without id", `{"jsonrpc":"2.0","error":{"code":-32600,"message":"bad","data":{"k":1}}}`, 0, []string{"kind: error"}},
	{"negative and big integer id", `{"jsonrpc":"2.0","id":-123456789012345678901234567890,"method":"ping"}`, 0, []string{"id: -123456789012345678901234567890"}},
	{"unknown top-level member passes", `{"jsonrpc":"2.0","id":1,"method":"ping","x-trace":"t"}`, 0, []string{"kind: request"}},
	{"params array", `{"jsonrpc":"2.0","id":1,"method":"legacy","params":[1,2]}`, 0, []string{"params: [1,2]"}},
	// The policy reads decoded values: escapes cannot hide a name.
	{"escaped name", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"github\u005f_delete"}}`, 0, []string{`name: "github__delete"`}},
	{"escaped method", `{"jsonrpc":"2.0","id":1,"method":"tools\/\u0063all"}`, 0, []string{`method: "tools/call"`}},
	{"escaped key is the key", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"\u006eame":"x"}}`, 0, []string{`name: "x"`}},
	{"surrogate pair", `{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///\ud83d\ude00"}}`, 0, []string{`uri: "file:///😀"`}},
	{"lone surrogate decodes to U+FFFD", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a\ud800b"}}`, 0, []string{"name: \"a\ufffdb\""}},
	{"escaped jsonrpc", `{"jsonrpc":"\u0032.0","id":1,"method":"ping"}`, 0, []string{"kind: request"}},
	{"resources/list cursor", `{"jsonrpc":"2.0","id":2,"method":"resources/list","params":{"cursor":"abc"}}`, 0, []string{`cursor: "abc"`}},
	// 2026-07-28: per-request _meta (spec 2026-07-28, basic, "_meta").
	{"modern meta", `{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{"elicitation":{}},"io.modelcontextprotocol/clientInfo":{"name":"c","version":"1"},"io.modelcontextprotocol/logLevel":"info"}}}`, 0,
		[]string{`protocolVersion: "2026-07-28"`, `clientCapabilities: {"elicitation":{}}`, `clientInfo: {"name":"c","version":"1"}`, `logLevel: "info"`}},
	// 2026-07-28: MRTR retry carries inputResponses and requestState in params
	// (spec 2026-07-28, basic/patterns/mrtr).
	{"mrtr retry", `{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"deploy","arguments":{},"inputResponses":{"confirm":{"action":"accept"}},"requestState":"opaque"}}`, 0,
		[]string{`inputResponses: {"confirm":{"action":"accept"}}`, `requestState: "opaque"`}},
	{"input_required result", `{"jsonrpc":"2.0","id":5,"result":{"resultType":"input_required","inputRequests":{"confirm":{"method":"elicitation/create","params":{}}},"requestState":"s1"}}`, 0,
		[]string{`resultType: "input_required"`, `inputRequests: {"confirm":{"method":"elicitation/create","params":{}}}`, `result.requestState: "s1"`}},
	{"duplicates inside arguments pass through", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"n","arguments":{"a":1,"a":2}}}`, 0, []string{"kind: request"}},
	{"depth 128", `{"jsonrpc":"2.0","id":1,"method":"m","params":` + strings.Repeat("[", 127) + strings.Repeat("]", 127) + `}`, 0, []string{"kind: request"}},

	// Not JSON: parse error.
	{"empty", ``, CodeParseError, []string{"empty body"}},
	{"only whitespace", " \n", CodeParseError, []string{"empty body"}},
	{"bom", "\xEF\xBB\xBF{\"jsonrpc\":\"2.0\",\"method\":\"ping\"}", CodeParseError, []string{"byte order mark"}},
	{"trailing garbage", `{"jsonrpc":"2.0","method":"ping"}x`, CodeParseError, []string{"data after"}},
	{"two objects", `{"jsonrpc":"2.0","method":"ping"} {}`, CodeParseError, []string{"data after"}},
	{"invalid utf-8", "{\"jsonrpc\":\"2.0\",\"method\":\"p\xffing\"}", CodeParseError, []string{"invalid UTF-8"}},
	{"utf-8 surrogate", "{\"jsonrpc\":\"2.0\",\"method\":\"\xed\xa0\x80\"}", CodeParseError, []string{"invalid UTF-8"}},
	{"invalid utf-8 in key", "{\"jsonrpc\":\"2.0\",\"method\":\"p\",\"\xc0\x80\":1}", CodeParseError, []string{"invalid UTF-8"}},
	{"control character", "{\"jsonrpc\":\"2.0\",\"method\":\"a\nb\"}", CodeParseError, []string{"control character"}},
	{"bad escape", `{"jsonrpc":"2.0","method":"a\x41"}`, CodeParseError, []string{"invalid escape"}},
	{"bad unicode escape", `{"jsonrpc":"2.0","method":"a\u12G4"}`, CodeParseError, []string{`\u escape`}},
	{"leading zero", `{"jsonrpc":"2.0","id":01,"method":"ping"}`, CodeParseError, []string{"expected ','"}},
	{"bare fraction", `{"jsonrpc":"2.0","id":1.,"method":"ping"}`, CodeParseError, []string{"after '.'"}},
	{"bare minus", `{"jsonrpc":"2.0","id":-,"method":"ping"}`, CodeParseError, []string{"invalid number"}},
	{"bad exponent", `{"jsonrpc":"2.0","x":1e+,"method":"ping"}`, CodeParseError, []string{"exponent"}},
	{"unterminated string", `{"jsonrpc":"2.0","method":"ping`, CodeParseError, []string{"unterminated string"}},
	{"unterminated object", `{"jsonrpc":"2.0","method":"ping"`, CodeParseError, []string{"expected ','"}},
	{"trailing comma", `{"jsonrpc":"2.0","method":"ping",}`, CodeParseError, []string{"object key"}},
	{"trailing comma in array", `{"jsonrpc":"2.0","method":"ping","params":[1,]}`, CodeParseError, []string{"want a JSON value"}},
	{"single quotes", `{'jsonrpc':'2.0'}`, CodeParseError, []string{"object key"}},
	{"NaN", `{"jsonrpc":"2.0","id":NaN,"method":"ping"}`, CodeParseError, []string{"want a JSON value"}},
	{"bad literal", `{"jsonrpc":"2.0","method":"ping","params":{"a":tru}}`, CodeParseError, []string{"want true"}},
	{"comment", `{"jsonrpc":"2.0",/*c*/"method":"ping"}`, CodeParseError, []string{"object key"}},
	{"depth 129", `{"jsonrpc":"2.0","id":1,"method":"m","params":` + strings.Repeat("[", 128) + strings.Repeat("]", 128) + `}`, CodeParseError, []string{"nesting deeper"}},
	{"parse error outranks invalid request", `{"jsonrpc":"1.0","id":{},"method":`, CodeParseError, []string{"unexpected end"}},
	{"malformed batch is a parse error", `[{"jsonrpc":"2.0",}]`, CodeParseError, []string{"object key"}},

	// JSON but not a valid message: invalid request.
	{"batch", `[{"jsonrpc":"2.0","id":1,"method":"ping"}]`, CodeInvalidRequest, []string{"batch: true"}},
	{"top-level string", `"hello"`, CodeInvalidRequest, []string{"not a JSON object"}},
	{"top-level number", `42`, CodeInvalidRequest, []string{"not a JSON object"}},
	{"missing jsonrpc", `{"id":1,"method":"ping"}`, CodeInvalidRequest, []string{`missing "jsonrpc"`}},
	{"jsonrpc 1.0", `{"jsonrpc":"1.0","id":1,"method":"ping"}`, CodeInvalidRequest, []string{`must be "2.0"`}},
	{"jsonrpc number", `{"jsonrpc":2.0,"id":1,"method":"ping"}`, CodeInvalidRequest, []string{"must be a string"}},
	{"jsonrpc with space", `{"jsonrpc":"2.0 ","id":1,"method":"ping"}`, CodeInvalidRequest, []string{`must be "2.0"`}},
	{"duplicate method", `{"jsonrpc":"2.0","id":1,"method":"tools/list","method":"tools/call"}`, CodeInvalidRequest, []string{`duplicate key "method"`}},
	{"duplicate via escape", `{"jsonrpc":"2.0","id":1,"method":"a","m\u0065thod":"b"}`, CodeInvalidRequest, []string{`duplicate key "method"`}},
	{"case-variant method", `{"jsonrpc":"2.0","id":1,"method":"tools/list","Method":"tools/call"}`, CodeInvalidRequest, []string{"only in case"}},
	{"case-variant alone", `{"jsonrpc":"2.0","id":1,"METHOD":"tools/call"}`, CodeInvalidRequest, []string{"only in case"}},
	{"duplicate id", `{"jsonrpc":"2.0","id":1,"id":2,"method":"ping"}`, CodeInvalidRequest, []string{`duplicate key "id"`}},
	{"duplicate jsonrpc", `{"jsonrpc":"2.0","jsonrpc":"2.0","id":1,"method":"ping"}`, CodeInvalidRequest, []string{`duplicate key "jsonrpc"`}},
	{"duplicate unknown top-level key", `{"jsonrpc":"2.0","id":1,"method":"ping","x":1,"x":2}`, CodeInvalidRequest, []string{`duplicate key "x"`}},
	{"case-variant unknown top-level key", `{"jsonrpc":"2.0","id":1,"method":"ping","foo":1,"FOO":2}`, CodeInvalidRequest, []string{`duplicate key "FOO"`}},
	{"id object", `{"jsonrpc":"2.0","id":{},"method":"ping"}`, CodeInvalidRequest, []string{"id must be a string or an integer"}},
	{"id array", `{"jsonrpc":"2.0","id":[1],"method":"ping"}`, CodeInvalidRequest, []string{"id must be"}},
	{"id bool", `{"jsonrpc":"2.0","id":true,"method":"ping"}`, CodeInvalidRequest, []string{"id must be"}},
	{"id fraction", `{"jsonrpc":"2.0","id":1.5,"method":"ping"}`, CodeInvalidRequest, []string{"id must be"}},
	{"id exponent", `{"jsonrpc":"2.0","id":1e3,"method":"ping"}`, CodeInvalidRequest, []string{"id must be"}},
	{"request id null", `{"jsonrpc":"2.0","id":null,"method":"ping"}`, CodeInvalidRequest, []string{"must not be null"}},
	{"method not string", `{"jsonrpc":"2.0","id":1,"method":7}`, CodeInvalidRequest, []string{`"method" must be a string`}},
	{"method with result", `{"jsonrpc":"2.0","id":1,"method":"ping","result":{}}`, CodeInvalidRequest, []string{"cannot carry"}},
	{"method with error", `{"jsonrpc":"2.0","id":1,"method":"ping","error":{"code":1,"message":"m"}}`, CodeInvalidRequest, []string{"cannot carry"}},
	{"result and error", `{"jsonrpc":"2.0","id":1,"result":{},"error":{"code":1,"message":"m"}}`, CodeInvalidRequest, []string{"both"}},
	{"params without method", `{"jsonrpc":"2.0","id":1,"params":{},"result":{}}`, CodeInvalidRequest, []string{`"params" without "method"`}},
	{"nothing", `{"jsonrpc":"2.0","id":1}`, CodeInvalidRequest, []string{"none of"}},
	{"result without id", `{"jsonrpc":"2.0","result":{}}`, CodeInvalidRequest, []string{"needs a string or integer id"}},
	{"result with null id", `{"jsonrpc":"2.0","id":null,"result":{}}`, CodeInvalidRequest, []string{"needs a string or integer id"}},
	{"params string", `{"jsonrpc":"2.0","id":1,"method":"m","params":"x"}`, CodeInvalidRequest, []string{"object or an array"}},
	{"params null", `{"jsonrpc":"2.0","id":1,"method":"m","params":null}`, CodeInvalidRequest, []string{"object or an array"}},
	{"error not object", `{"jsonrpc":"2.0","id":1,"error":"boom"}`, CodeInvalidRequest, []string{`"error" must be an object`}},
	{"error without code", `{"jsonrpc":"2.0","id":1,"error":{"message":"m"}}`, CodeInvalidRequest, []string{`integer "code"`}},
	{"error fractional code", `{"jsonrpc":"2.0","id":1,"error":{"code":1.5,"message":"m"}}`, CodeInvalidRequest, []string{`integer "code"`}},
	{"result case-variant nextCursor", `{"jsonrpc":"2.0","id":1,"result":{"nextCursor":"a","NextCursor":"b"}}`, CodeInvalidRequest, []string{"only in case"}},
	{"result long-s variant", `{"jsonrpc":"2.0","id":1,"result":{"re\u017FultType":"complete"}}`, CodeInvalidRequest, []string{"only in case"}},
	{"result nextCursor number", `{"jsonrpc":"2.0","id":1,"result":{"nextCursor":1}}`, CodeInvalidRequest, []string{"nextCursor must be a string"}},

	// params members the gateway reads: invalid params.
	{"duplicate name", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"safe","name":"github__delete"}}`, CodeInvalidParams, []string{`duplicate key "name"`}},
	{"case-variant name", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"safe","NAME":"github__delete"}}`, CodeInvalidParams, []string{"only in case"}},
	{"case-variant name alone", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"Name":"github__delete"}}`, CodeInvalidParams, []string{"only in case"}},
	{"escaped case-variant", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","\u004eame":"b"}}`, CodeInvalidParams, []string{"only in case"}},
	{"kelvin sign variant", `{"jsonrpc":"2.0","id":1,"method":"m","params":{"_meta":{"progressTo\u212Aen":1}}}`, CodeInvalidParams, []string{"only in case"}},
	{"raw long s variant", "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"m\",\"params\":{\"cur\u017for\":\"c\"}}", CodeInvalidParams, []string{"only in case"}},
	{"name not string", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":7}}`, CodeInvalidParams, []string{"params.name must be a string"}},
	{"uri object", `{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":{}}}`, CodeInvalidParams, []string{"params.uri must be a string"}},
	{"cursor null", `{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"cursor":null}}`, CodeInvalidParams, []string{"params.cursor must be a string"}},
	{"arguments array", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"n","arguments":[]}}`, CodeInvalidParams, []string{"params.arguments must be an object"}},
	{"meta array", `{"jsonrpc":"2.0","id":1,"method":"m","params":{"_meta":[]}}`, CodeInvalidParams, []string{"_meta must be an object"}},
	{"progressToken bool", `{"jsonrpc":"2.0","id":1,"method":"m","params":{"_meta":{"progressToken":true}}}`, CodeInvalidParams, []string{"progressToken must be"}},
	{"progressToken null", `{"jsonrpc":"2.0","id":1,"method":"m","params":{"_meta":{"progressToken":null}}}`, CodeInvalidParams, []string{"progressToken must be"}},
	{"progressToken fraction", `{"jsonrpc":"2.0","id":1,"method":"m","params":{"_meta":{"progressToken":0.5}}}`, CodeInvalidParams, []string{"progressToken must be"}},
	{"duplicate progressToken", `{"jsonrpc":"2.0","id":1,"method":"m","params":{"_meta":{"progressToken":1,"progressToken":2}}}`, CodeInvalidParams, []string{`duplicate key "progressToken"`}},
	{"duplicate unknown meta key", `{"jsonrpc":"2.0","id":1,"method":"m","params":{"_meta":{"a/b":1,"A/B":2}}}`, CodeInvalidParams, []string{"duplicate key"}},
	{"protocolVersion number", `{"jsonrpc":"2.0","id":1,"method":"m","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":20260728}}}`, CodeInvalidParams, []string{"protocolVersion must be a string"}},
	{"protocolVersion variant", `{"jsonrpc":"2.0","id":1,"method":"m","params":{"_meta":{"IO.modelcontextprotocol/protocolVersion":"x"}}}`, CodeInvalidParams, []string{"only in case"}},
	{"clientCapabilities string", `{"jsonrpc":"2.0","id":1,"method":"m","params":{"_meta":{"io.modelcontextprotocol/clientCapabilities":"all"}}}`, CodeInvalidParams, []string{"clientCapabilities must be an object"}},
	{"requestId object", `{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":{}}}`, CodeInvalidParams, []string{"requestId must be"}},
	{"first problem wins", `{"jsonrpc":"2.0","id":{},"method":"m","params":{"name":1}}`, CodeInvalidRequest, []string{"id must be"}},
}

func TestScan(t *testing.T) {
	for _, tc := range scanCases {
		t.Run(tc.name, func(t *testing.T) {
			var env Envelope
			err := Scan([]byte(tc.in), &env)
			got := summary(&env, err)
			if tc.code == 0 {
				if err != nil {
					t.Fatalf("Scan(%s) = %v, want success", tc.in, err)
				}
				for _, w := range tc.want {
					if !containsLine(got, w) {
						t.Errorf("Scan(%s): summary lacks line %q; got:\n%s", tc.in, w, got)
					}
				}
				return
			}
			var we *Error
			if !errors.As(err, &we) {
				t.Fatalf("Scan(%s) = %v, want *Error code %d", tc.in, err, tc.code)
			}
			if we.Code != tc.code {
				t.Errorf("Scan(%s): code %d (%v), want %d", tc.in, we.Code, err, tc.code)
			}
			if env.Kind != KindInvalid {
				t.Errorf("Scan(%s) failed but left kind %v", tc.in, env.Kind)
			}
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("Scan(%s): error %q lacks %q", tc.in, got, w)
				}
			}
		})
	}
}

func containsLine(s, line string) bool {
	for l := range strings.Lines(s) {
		if strings.TrimSuffix(l, "\n") == line {
			return true
		}
	}
	return false
}

func TestScanBatchIsSentinel(t *testing.T) {
	var env Envelope
	if err := Scan([]byte(` [ {"jsonrpc":"2.0","method":"ping"} ] `), &env); err != ErrBatch {
		t.Fatalf("Scan(batch) = %v, want ErrBatch", err)
	}
}

// Past pairKeys unknown keys in one object the duplicate check moves to a
// map; it must still see a duplicate of an early key and of a late one.
func TestScanManyUnknownKeys(t *testing.T) {
	var sb strings.Builder
	sb.WriteString(`{"jsonrpc":"2.0","id":1,"method":"m","params":{`)
	for i := range 3 * pairKeys {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(`"k` + strings.Repeat("x", i) + `":1`)
	}
	ok := sb.String() + `,"name":"n"}}`
	var env Envelope
	if err := Scan([]byte(ok), &env); err != nil {
		t.Fatalf("many distinct keys: %v", err)
	}
	if got := env.NameString(); got != "n" {
		t.Fatalf("name = %q", got)
	}
	for _, dup := range []string{`"K"`, `"kx"`, `"K` + strings.Repeat("X", 3*pairKeys-1) + `"`} {
		body := sb.String() + `,` + dup + `:2}}`
		err := Scan([]byte(body), &env)
		var we *Error
		if !errors.As(err, &we) || we.Code != CodeInvalidParams || !strings.Contains(we.Msg, "duplicate key") {
			t.Errorf("duplicate %s after %d keys: err = %v", dup, 3*pairKeys, err)
		}
	}
}

func TestScanZeroAllocs(t *testing.T) {
	bodies := [][]byte{
		[]byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"gh\u005f_x","arguments":{"a":[1,2,{"b":"c"}]},"_meta":{"progressToken":"p","io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}`),
		[]byte(`{"jsonrpc":"2.0","id":"r","result":{"content":[{"type":"text","text":"hi"}],"nextCursor":"n","resultType":"complete"}}`),
	}
	var env Envelope
	for _, b := range bodies {
		if n := testing.AllocsPerRun(100, func() {
			if err := Scan(b, &env); err != nil {
				t.Fatal(err)
			}
			if !env.Method.Equal("tools/call") && !env.NextCursor.Equal("n") {
				t.Fatal("bad value")
			}
			_ = env.Name.Equal("gh__x")
			var buf [64]byte
			_ = env.AppendName(buf[:0])
		}); n != 0 {
			t.Errorf("Scan(%s): %v allocs/op, want 0", b, n)
		}
	}
}

func TestStrAccessors(t *testing.T) {
	body := []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"github\u005f_delete","uri":"file:///a%20b","cursor":"\ud83d\ude00\"\\\/\b\f\n\r\t"}}`)
	var env Envelope
	if err := Scan(body, &env); err != nil {
		t.Fatal(err)
	}
	if got := env.NameString(); got != "github__delete" {
		t.Errorf("NameString = %q", got)
	}
	if got := string(env.AppendName([]byte("x:"))); got != "x:github__delete" {
		t.Errorf("AppendName = %q", got)
	}
	if !env.Name.Equal("github__delete") || env.Name.Equal("github\\u005f_delete") || env.Name.Equal("github__delet") {
		t.Error("Name.Equal compares the spelling, not the value")
	}
	if _, ok := env.Name.Unquoted(); ok {
		t.Error("Unquoted claims an escaped name is unescaped")
	}
	if got := env.MethodString(); got != "tools/call" {
		t.Errorf("MethodString = %q", got)
	}
	if got := string(env.AppendMethod(nil)); got != "tools/call" {
		t.Errorf("AppendMethod = %q", got)
	}
	u, ok := env.Method.Unquoted()
	if !ok || string(u) != "tools/call" || &u[0] != &body[bytes.Index(body, []byte("tools/call"))] {
		t.Error("Unquoted must alias the body when there is no escape")
	}
	if got := env.URIString(); got != "file:///a%20b" {
		t.Errorf("URIString = %q", got)
	}
	if got := string(env.AppendURI(nil)); got != "file:///a%20b" {
		t.Errorf("AppendURI = %q", got)
	}
	if got := env.Cursor.String(); got != "😀\"\\/\b\f\n\r\t" {
		t.Errorf("Cursor = %q", got)
	}
	var absent Str
	if absent.IsSet() || absent.String() != "" || absent.Equal("") || len(absent.Append(nil)) != 0 {
		t.Error("absent Str must read as unset and empty")
	}
	long := `{"jsonrpc":"2.0","id":1,"method":"` + strings.Repeat(`\u0061`, 300) + `"}`
	if err := Scan([]byte(long), &env); err != nil {
		t.Fatal(err)
	}
	if !env.Method.Equal(strings.Repeat("a", 300)) || env.MethodString() != strings.Repeat("a", 300) {
		t.Error("long escaped value decoded wrong")
	}
}

func TestKindAndInputRequired(t *testing.T) {
	var env Envelope
	if err := Scan([]byte(`{"jsonrpc":"2.0","id":1,"result":{"resultType":"input_\u0072equired"}}`), &env); err != nil {
		t.Fatal(err)
	}
	if !env.InputRequired() || env.Kind.String() != "result" {
		t.Errorf("InputRequired = %v, kind %v", env.InputRequired(), env.Kind)
	}
	if err := Scan([]byte(`{"jsonrpc":"2.0","id":1,"result":{"resultType":"complete"}}`), &env); err != nil || env.InputRequired() {
		t.Errorf("complete result: InputRequired = %v, err %v", env.InputRequired(), err)
	}
	for k, want := range map[Kind]string{KindInvalid: "invalid", KindRequest: "request", KindNotification: "notification", KindResult: "result", KindError: "error"} {
		if k.String() != want {
			t.Errorf("Kind(%d) = %q, want %q", k, k, want)
		}
	}
}

// An Envelope is reused across messages on the hot path: nothing of the
// previous message may survive a Scan, successful or not.
func TestScanResetsEnvelope(t *testing.T) {
	var env Envelope
	if err := Scan([]byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","_meta":{"progressToken":1}}}`), &env); err != nil {
		t.Fatal(err)
	}
	if err := Scan([]byte(`{"jsonrpc":"2.0","id":2,"result":{}}`), &env); err != nil {
		t.Fatal(err)
	}
	if env.Name != nil || env.Method != nil || env.ProgressToken != nil || env.Params != nil || env.Kind != KindResult {
		t.Errorf("fields of the previous message survived: %+v", env)
	}
	if err := Scan([]byte(`{`), &env); err == nil || env.Kind != KindInvalid || env.Result != nil || env.ID != nil {
		t.Errorf("failed Scan kept the previous message: err %v, %+v", err, env)
	}
}

// The id left in the envelope after a failure is what a server echoes in its
// error answer: never one read from a body that is not JSON, never one of an
// invalid type.
func TestScanErrorID(t *testing.T) {
	cases := []struct{ in, id string }{
		{`{"jsonrpc":"2.0","id":7,"method":"m","params":"x"}`, "7"},
		{`{"jsonrpc":"2.0","id":"a","Method":"m"}`, `"a"`},
		{`{"jsonrpc":"2.0","id":null,"method":"m"}`, "null"},
		{`{"jsonrpc":"2.0","id":7,"method":"m",`, ""},
		{`{"jsonrpc":"2.0","id":{"x":1},"method":"m"}`, ""},
		{`{"jsonrpc":"2.0","id":1.5,"method":"m"}`, ""},
		{`{"jsonrpc":"2.0","id":true,"method":"m"}`, ""},
	}
	for _, tc := range cases {
		var env Envelope
		if err := Scan([]byte(tc.in), &env); err == nil {
			t.Errorf("Scan(%s) succeeded", tc.in)
		}
		if string(env.ID) != tc.id || (tc.id == "") != (env.ID == nil) {
			t.Errorf("Scan(%s): ID %q, want %q", tc.in, env.ID, tc.id)
		}
	}
}
