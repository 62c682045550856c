package document

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/mcpgw/mcpgw/internal/policy"
)

func fe(path, msg string) FieldError { return FieldError{Path: path, Msg: msg} }

func timeNow() time.Time { return time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC) }

func TestValidateReportsEverything(t *testing.T) {
	d := &Document{
		Backends: []Backend{
			{Name: "Bad Name", Stdio: &StdioTransport{Command: []string{"x"}}},
			{Name: "none"},
			{Name: "both", Stdio: &StdioTransport{Command: []string{"x"}}, HTTP: &HTTPTransport{URL: "http://x"}},
			{Name: "nocmd", Stdio: &StdioTransport{Command: []string{""}, Env: map[string]string{"OK": "${env:A}${env:B}", "1BAD": "x", "REF": "${env:}", "OTHER": "${HOME}"}}},
			{Name: "relurl", HTTP: &HTTPTransport{URL: "/mcp"}},
			{Name: "ftp", HTTP: &HTTPTransport{URL: "ftp://x/mcp"}},
			{Name: "creds", HTTP: &HTTPTransport{URL: "https://user:hunter2@x/mcp", Headers: map[string]string{"Bad Header": "v", "X-Key": "${env:KEY"}}},
			{Name: "nourl", HTTP: &HTTPTransport{}, Sessions: "per_user", Prefix: ptr("bad prefix"), Timeout: -1},
			{Name: "both", HTTP: &HTTPTransport{URL: "https://ok/mcp"}},
		},
		Roles:    []policy.Role{{Name: "r", Rules: []policy.Rule{{Effect: "permit"}}}},
		Bindings: []policy.Binding{{Role: "r", Subjects: []string{"user:a"}}, {Role: "r", Subjects: []string{"user:b"}}},
		Auth:     &Auth{Anonymous: &AnonymousAuth{}},
		Audit:    &Audit{Durability: "fsync", OnFull: "block", Fsync: "sometimes", MaxFileBytes: -1, SpoolMaxBytes: -2, PostgresURL: "mysql://u:secretpw@h/db"},
	}
	err := d.Validate()
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("err = %T %v", err, err)
	}
	want := []FieldError{
		fe(`backends[0] "Bad Name"`, `bad name "Bad Name": lowercase letters, digits, _ and -, at most 32, starting with a letter or digit`),
		fe(`backends[1] "none"`, `one of stdio or http is required`),
		fe(`backends[2] "both"`, `set only one of stdio and http`),
		fe(`backends[3] "nocmd": stdio.command`, `command is required: the program and its arguments, e.g. [github-mcp-server, stdio]`),
		fe(`backends[3] "nocmd": stdio.env`, `bad variable name "1BAD": letters, digits and _, not starting with a digit`),
		fe(`backends[3] "nocmd": stdio.env.OTHER`, `bad reference: only ${env:NAME} is supported (write $${ for a literal "${")`),
		fe(`backends[3] "nocmd": stdio.env.REF`, `bad reference: ${env:NAME} needs a variable name of letters, digits and _, not starting with a digit`),
		fe(`backends[4] "relurl": http.url`, `URL "/mcp" must be absolute http:// or https://`),
		fe(`backends[5] "ftp": http.url`, `URL "ftp://x/mcp" must be absolute http:// or https://`),
		fe(`backends[6] "creds": http.url`, `URL must not carry credentials; use a header with ${env:NAME}`),
		fe(`backends[6] "creds": http.headers`, `bad header name "Bad Header"`),
		fe(`backends[6] "creds": http.headers.X-Key`, `bad reference: only ${env:NAME} is supported (write $${ for a literal "${")`),
		fe(`backends[7] "nourl": prefix`, `bad prefix "bad prefix": letters, digits, _ and -, at most 32 ("" exposes names unprefixed)`),
		fe(`backends[7] "nourl": http.url`, `url is required, e.g. http://127.0.0.1:9000/mcp`),
		fe(`backends[7] "nourl": timeout`, `must not be negative`),
		fe(`backends[7] "nourl": sessions`, `bad value "per_user": shared (default) or per_principal`),
		fe(`backends[8] "both"`, `duplicate backend "both" (also backends[2])`),
		fe(`bindings[1]`, `role "r" is already bound by bindings[0]; list all its subjects in one binding`),
		fe(`auth.anonymous.principal`, `is required: the principal that requests without a key act as`),
		fe(`audit.durability`, `bad value "fsync": sync (default) or async`),
		fe(`audit.on_full`, `bad value "block": refuse (default) or drop`),
		fe(`audit.fsync`, `bad value "sometimes": interval (default), always or never`),
		fe(`audit.max_file_bytes`, `must not be negative`),
		fe(`audit.spool_max_bytes`, `must not be negative`),
		fe(`audit.postgres_url`, `must be a postgres:// or postgresql:// URL`),
		fe(`roles[0] "r": rules[0].effect`, `bad effect "permit": must be allow or deny`),
	}
	if !reflect.DeepEqual(ve.Errors, want) {
		t.Errorf("got %d errors, want %d", len(ve.Errors), len(want))
		for i := range max(len(want), len(ve.Errors)) {
			var g, w FieldError
			if i < len(ve.Errors) {
				g = ve.Errors[i]
			}
			if i < len(want) {
				w = want[i]
			}
			if g != w {
				t.Errorf("%d:\n got  %s\n want %s", i, g, w)
			}
		}
	}
	for _, secret := range []string{"hunter2", "secretpw"} {
		if strings.Contains(err.Error(), secret) {
			t.Errorf("error leaks %q:\n%v", secret, err)
		}
	}
}

func TestValidateAcceptsMinimal(t *testing.T) {
	for _, d := range []*Document{
		{},
		{Backends: []Backend{{Name: "a", HTTP: &HTTPTransport{URL: "https://a.example/mcp"}, Sessions: SessionsShared, Prefix: ptr("")}}},
		{Auth: &Auth{}, Audit: &Audit{Durability: DurabilityAsync, OnFull: OnFullDrop, PostgresURL: "postgres://u@h/db"}},
		{Audit: &Audit{File: "a.jsonl", Fsync: FsyncAlways}},
		{Audit: &Audit{File: "a.jsonl", Fsync: FsyncInterval, FsyncInterval: Duration(100 * time.Millisecond)}},
	} {
		if err := d.Validate(); err != nil {
			t.Errorf("Validate(%+v): %v", d, err)
		}
	}
}

func TestExpandEnv(t *testing.T) {
	env := map[string]string{"TOKEN": "s3cr3t", "EMPTY": "", "A_1": "x"}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	tests := []struct {
		in, want, err string
	}{
		{"plain", "plain", ""},
		{"", "", ""},
		{"$HOME and $", "$HOME and $", ""},
		{"${env:TOKEN}", "s3cr3t", ""},
		{"Bearer ${env:TOKEN}!", "Bearer s3cr3t!", ""},
		{"${env:A_1}${env:EMPTY}${env:A_1}", "xx", ""},
		{"$${env:TOKEN}", "${env:TOKEN}", ""},
		{"$${ and ${env:A_1}", "${ and x", ""},
		{"${env:MISSING}", "", "environment variable MISSING is not set"},
		{"${env:TOKEN", "", `bad reference: only ${env:NAME} is supported (write $${ for a literal "${")`},
		{"${TOKEN}", "", `bad reference: only ${env:NAME} is supported (write $${ for a literal "${")`},
		{"${ENV:TOKEN}", "", `bad reference: only ${env:NAME} is supported (write $${ for a literal "${")`},
		{"${env:9X}", "", "bad reference: ${env:NAME} needs a variable name of letters, digits and _, not starting with a digit"},
		{"${env:a-b}", "", "bad reference: ${env:NAME} needs a variable name of letters, digits and _, not starting with a digit"},
	}
	for _, tt := range tests {
		got, err := ExpandEnv(tt.in, lookup)
		if tt.err != "" {
			if err == nil || err.Error() != tt.err {
				t.Errorf("ExpandEnv(%q) error = %v, want %q", tt.in, err, tt.err)
			}
			if err != nil && strings.Contains(err.Error(), "s3cr3t") {
				t.Errorf("error leaks the value: %v", err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ExpandEnv(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	refs, err := EnvRefs("a ${env:X} b ${env:Y_2} $${env:Z}")
	if err != nil || strings.Join(refs, ",") != "X,Y_2" {
		t.Errorf("EnvRefs = %v, %v", refs, err)
	}
}

func TestBackendResolve(t *testing.T) {
	env := map[string]string{"TOKEN": "s3cr3t"}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	b := Backend{Name: "gh", Stdio: &StdioTransport{Command: []string{"x"}, Env: map[string]string{"GITHUB_TOKEN": "${env:TOKEN}", "PLAIN": "p"}}}
	r, err := b.Resolve(lookup)
	if err != nil {
		t.Fatal(err)
	}
	if r.Stdio.Env["GITHUB_TOKEN"] != "s3cr3t" || r.Stdio.Env["PLAIN"] != "p" {
		t.Errorf("resolved env = %v", r.Stdio.Env)
	}
	if b.Stdio.Env["GITHUB_TOKEN"] != "${env:TOKEN}" {
		t.Error("Resolve changed the original")
	}
	h := Backend{Name: "s", HTTP: &HTTPTransport{URL: "http://x", Headers: map[string]string{"Authorization": "Bearer ${env:MISSING}"}}}
	if _, err := h.Resolve(lookup); err == nil || err.Error() != `backend "s": http.headers.Authorization: environment variable MISSING is not set` {
		t.Errorf("err = %v", err)
	}
	h.HTTP.Headers["Authorization"] = "Bearer ${env:TOKEN}"
	r, err = h.Resolve(lookup)
	if err != nil || r.HTTP.Headers["Authorization"] != "Bearer s3cr3t" {
		t.Errorf("resolved headers = %v, %v", r.HTTP.Headers, err)
	}
}
