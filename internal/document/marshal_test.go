package document

import (
	"bytes"
	"reflect"
	"strings"
	"testing"

	"github.com/mcpgw/mcpgw/internal/policy"
)

func TestMarshalRoundTrip(t *testing.T) {
	docs := []*Document{
		{},
		designDoc(),
		{
			Backends: []Backend{{Name: "weird", Stdio: &StdioTransport{
				Command: []string{"sh", "-c", "echo 'hi': # not a comment\n", "", "- x", "yes", "null", "0x10"},
				Env:     map[string]string{"Z": "1", "A": "true", "E": ""},
				Dir:     "/tmp/a b",
			}, Prefix: ptr("X"), Sessions: SessionsPerPrincipal, Timeout: Duration(1500e6)}},
			Roles: []policy.Role{{Name: "r", Description: "multi\nline: text", Rules: []policy.Rule{{ID: "x/1", Effect: "deny", Methods: []string{"tools/*"}}}}},
			Auth:  &Auth{},
			Audit: &Audit{Durability: "async", OnFull: "drop", MaxFileBytes: 1 << 40, SpoolDir: "~/x", SpoolMaxBytes: 1, PostgresURL: "postgres://h/db"},
		},
	}
	for i, d := range docs {
		out, err := Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		back, err := Parse(bytes.NewReader(out), "marshalled")
		if err != nil {
			t.Fatalf("doc %d: Parse(Marshal) failed: %v\n%s", i, err, out)
		}
		if !reflect.DeepEqual(back, d) {
			t.Fatalf("doc %d: round trip changed the document\n got  %#v\n want %#v\n%s", i, back, d, out)
		}
		again, _ := Marshal(back)
		if !bytes.Equal(out, again) {
			t.Fatalf("doc %d: Marshal is not stable:\n%s\n---\n%s", i, out, again)
		}
	}
}

func TestMarshalReadable(t *testing.T) {
	out, err := Marshal(designDoc())
	if err != nil {
		t.Fatal(err)
	}
	s := string(out)
	// Sections in the documented order, short lists inline, the empty
	// prefix kept (it means "unprefixed", not "default").
	for _, want := range []string{
		"backends:\n  - name: github\n    stdio:\n      command: [github-mcp-server, stdio]\n",
		"    prefix: \"\"\n",
		"        tools: [github__delete_*]\n",
		"    subjects: ['user:alice', 'group:eng']\n",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("Marshal output lacks %q:\n%s", want, s)
		}
	}
	order := []string{"backends:", "roles:", "bindings:", "principals:", "audit:"}
	last := -1
	for _, k := range order {
		i := strings.Index(s, "\n"+k)
		if k == "backends:" {
			i = strings.Index(s, k)
		}
		if i <= last {
			t.Errorf("%s out of order:\n%s", k, s)
		}
		last = i
	}
	if out, _ := Marshal(nil); string(out) != "{}\n" {
		t.Errorf("Marshal(nil) = %q", out)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(designYAML))
	f.Add([]byte("---\n---\nbackends: [{name: a, http: {url: 'http://a'}}]\n---\nroles: [{name: r, rules: [{effect: allow, tools: []}]}]\n"))
	f.Add([]byte("backends:\n  - name: a\n    prefix: \"\"\n    timeout: 1h\n    stdio: {command: [x], env: {A: b}}\n"))
	f.Add([]byte("a: &x [*x]\n"))
	f.Add([]byte("audit: {file: x}\n---\naudit: {file: y}\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		d, err := Parse(bytes.NewReader(in), "fuzz")
		if err != nil {
			return
		}
		_ = d.Validate()
		out, err := Marshal(d)
		if err != nil {
			t.Fatalf("Marshal of a parsed document: %v", err)
		}
		back, err := Parse(bytes.NewReader(out), "marshalled")
		if err != nil {
			t.Fatalf("Parse(Marshal(d)): %v\n%s", err, out)
		}
		if !reflect.DeepEqual(back, d) {
			t.Fatalf("round trip changed the document\n got  %#v\n want %#v\n%s", back, d, out)
		}
	})
}
