package mcpwire

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// fuzzSeeds adds the table and golden inputs, so the fuzzer starts from every
// rule the tests name.
func fuzzSeeds(f *testing.F, add func(body []byte)) {
	for _, tc := range scanCases {
		add([]byte(tc.in))
	}
	paths, _ := filepath.Glob(filepath.Join("testdata", "golden", "*.txtar"))
	for _, p := range paths {
		raw, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		for _, file := range parseArchive(raw).files {
			if file.name == "input.json" {
				add(bytes.TrimSuffix(file.data, []byte("\n")))
			}
		}
	}
}

// stdEnvelope is how encoding/json reads the fields the policy reads.
type stdEnvelope struct {
	ID     json.RawMessage `json:"id"`
	Method string          `json:"method"`
	Params json.RawMessage `json:"params"`
}

type stdParams struct {
	Name string `json:"name"`
	URI  string `json:"uri"`
}

// FuzzScan: Scan never panics; what it accepts is JSON that encoding/json
// reads the same way (method, id, params.name, params.uri); what json.Valid
// rejects, Scan rejects.
func FuzzScan(f *testing.F) {
	fuzzSeeds(f, func(b []byte) { f.Add(b) })
	f.Fuzz(func(t *testing.T, body []byte) {
		var env Envelope
		err := Scan(body, &env)
		valid := json.Valid(body)
		if err != nil {
			if _, ok := err.(*Error); !ok {
				t.Fatalf("Scan returned %T, want *Error", err)
			}
			if env.Kind != KindInvalid {
				t.Fatalf("failed Scan left kind %v", env.Kind)
			}
			return
		}
		if !valid {
			t.Fatalf("Scan accepted what json.Valid rejects: %q", body)
		}
		if env.Kind == KindInvalid {
			t.Fatalf("successful Scan left no kind")
		}
		var std stdEnvelope
		if err := json.Unmarshal(body, &std); err != nil {
			t.Fatalf("encoding/json cannot read an envelope Scan accepted: %v\n%q", err, body)
		}
		if got := env.MethodString(); got != std.Method {
			t.Fatalf("method: Scan %q, encoding/json %q\n%q", got, std.Method, body)
		}
		if !bytes.Equal(env.ID, std.ID) {
			t.Fatalf("id: Scan %s, encoding/json %s\n%q", env.ID, std.ID, body)
		}
		if len(std.Params) > 0 && std.Params[0] == '{' {
			var p stdParams
			if err := json.Unmarshal(std.Params, &p); err != nil {
				t.Fatalf("encoding/json cannot read params Scan accepted: %v\n%q", err, body)
			}
			if got := env.NameString(); got != p.Name {
				t.Fatalf("name: Scan %q, encoding/json %q\n%q", got, p.Name, body)
			}
			if got := env.URIString(); got != p.URI {
				t.Fatalf("uri: Scan %q, encoding/json %q\n%q", got, p.URI, body)
			}
		}
		for _, s := range []Str{env.Method, env.Name, env.URI, env.Cursor, env.NextCursor, env.ResultType, env.ProtocolVersion} {
			if s == nil {
				continue
			}
			var v string
			if err := json.Unmarshal(s, &v); err != nil || v != s.String() || !s.Equal(v) {
				t.Fatalf("Str %s decodes to %q, encoding/json to %q (%v)", s, s.String(), v, err)
			}
		}
	})
}

// FuzzRewrite: every splice of a scanned message yields JSON that Scan
// accepts and that reads back the new value.
func FuzzRewrite(f *testing.F) {
	fuzzSeeds(f, func(b []byte) { f.Add(b, "github__create_issue", "vendor/key") })
	f.Add([]byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"}}`), "a\"b\\c\u2028\x01\xff", "progressToken")
	f.Fuzz(func(t *testing.T, body []byte, value, key string) {
		var env Envelope
		if Scan(body, &env) != nil {
			return
		}
		str := AppendString(nil, value)
		var want string
		if err := json.Unmarshal(str, &want); err != nil {
			t.Fatalf("AppendString(%q) = %s, not JSON: %v", value, str, err)
		}
		check := func(what string, out []byte, err error, read func(*Envelope) bool) {
			t.Helper()
			if err != nil {
				return // refusals are covered by the unit tests
			}
			if !json.Valid(out) {
				t.Fatalf("%s: output is not JSON: %q", what, out)
			}
			var e2 Envelope
			if err := Scan(out, &e2); err != nil {
				t.Fatalf("%s: Scan rejects the output: %v\nin:  %q\nout: %q", what, err, body, out)
			}
			if e2.Kind != env.Kind {
				t.Fatalf("%s: kind %v became %v", what, env.Kind, e2.Kind)
			}
			if !read(&e2) {
				t.Fatalf("%s: new value not read back\nout: %q", what, out)
			}
		}
		if env.ID != nil && string(env.ID) != "null" {
			out, err := ReplaceID(nil, body, &env, str)
			if err != nil {
				t.Fatalf("ReplaceID(%s) refused: %v", str, err)
			}
			check("ReplaceID", out, err, func(e *Envelope) bool { return bytes.Equal(e.ID, str) })
		}
		if env.Name != nil {
			out, err := Replace(nil, body, &env, FieldName, str)
			if err != nil {
				t.Fatalf("Replace(name, %s) refused: %v", str, err)
			}
			check("Replace name", out, err, func(e *Envelope) bool { return e.NameString() == want })
		}
		if env.Kind == KindRequest || env.Kind == KindNotification {
			out, err := SetMeta(nil, body, &env, key, str)
			check("SetMeta", out, err, func(e *Envelope) bool {
				switch key {
				case MetaProtocolVersion:
					return e.ProtocolVersion.String() == want
				case "progressToken":
					return bytes.Equal(e.ProgressToken, str)
				}
				return e.Meta != nil
			})
			out, err = SetMeta(nil, body, &env, MetaProtocolVersion, str)
			if env.Params != nil && env.Params[0] == '[' {
				if err == nil {
					t.Fatal("SetMeta on array params succeeded")
				}
			} else if err != nil {
				t.Fatalf("SetMeta(protocolVersion) refused: %v", err)
			}
			check("SetMeta protocolVersion", out, err, func(e *Envelope) bool { return e.ProtocolVersion.String() == want })
		}
		if env.Kind == KindResult && env.Result[0] == '{' {
			out, err := SetResultField(nil, body, &env, "nextCursor", str)
			if err != nil {
				t.Fatalf("SetResultField(nextCursor) refused: %v", err)
			}
			check("SetResultField", out, err, func(e *Envelope) bool { return e.NextCursor.String() == want })
		}
	})
}
