package enforce_test

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/mcpgw/mcpgw/dataplane/enforce"
	"github.com/mcpgw/mcpgw/dataplane/gateway"
	"github.com/mcpgw/mcpgw/dataplane/state"
	"github.com/mcpgw/mcpgw/internal/policy"
)

const policyYAML = `
roles:
  - name: developer
    rules:
      - {id: dev-github, effect: allow, tools: ["github__*"], prompts: ["*"], resources: ["file:///docs/*"]}
      - {id: dev-no-delete, effect: deny, tools: ["github__delete_*"]}
bindings:
  - {role: developer, subjects: ["user:alice", "user:local"]}
principals:
  - {name: alice, api_key_sha256: ALICESUM}
  - {name: bob}
`

// holderWith returns a Holder with policyYAML applied (alice's key given)
// plus extra YAML.
func holderWith(t *testing.T, aliceSum, extra string) *enforce.Holder {
	t.Helper()
	h := enforce.NewHolder(slog.New(slog.DiscardHandler), nil)
	if err := h.Apply(parseDoc(t, strings.ReplaceAll(policyYAML, "ALICESUM", aliceSum)+extra)); err != nil {
		t.Fatal(err)
	}
	return h
}

func httpCreds(values ...string) gateway.Credentials {
	h := http.Header{}
	for _, v := range values {
		h.Add("Authorization", v)
	}
	return gateway.Credentials{Transport: "http", Header: h}
}

func TestAuthenticateHTTP(t *testing.T) {
	key, sum := newKey(t)
	other, _ := newKey(t)
	ctx := context.Background()
	for _, anon := range []bool{false, true} {
		extra := ""
		if anon {
			extra = "auth: {anonymous: {principal: local}}\n"
		}
		a, err := enforce.NewAuthenticator(holderWith(t, sum, extra), enforce.AuthOptions{})
		if err != nil {
			t.Fatal(err)
		}
		noCred := ""
		if anon {
			noCred = "local"
		}
		for _, tc := range []struct {
			name  string
			creds gateway.Credentials
			want  string // "" = refused
		}{
			{"the key", httpCreds("Bearer " + key), "alice"},
			{"scheme in any case", httpCreds("bEaReR " + key), "alice"},
			{"no credential", httpCreds(), noCred},
			{"an unknown key", httpCreds("Bearer " + other), ""},
			{"the key with one byte changed", httpCreds("Bearer " + key[:len(key)-1] + flip(key[len(key)-1])), ""},
			{"a malformed key", httpCreds("Bearer mcpgw_x"), ""},
			{"an empty bearer", httpCreds("Bearer "), ""},
			{"an empty header", httpCreds(""), ""},
			{"another scheme", httpCreds("Basic YWxpY2U6eA=="), ""},
			{"the key without a scheme", httpCreds(key), ""},
			{"two headers", httpCreds("Bearer "+key, "Bearer "+key), ""},
		} {
			p, err := a.Authenticate(ctx, tc.creds)
			if tc.want == "" {
				// Every refusal is the same error, whatever was wrong; a bad
				// key is never downgraded to anonymous.
				if err != enforce.ErrUnauthenticated || p.Name != "" {
					t.Errorf("anonymous=%v, %s: got %q, %v; want ErrUnauthenticated", anon, tc.name, p.Name, err)
				}
				continue
			}
			if err != nil || p.Name != tc.want {
				t.Errorf("anonymous=%v, %s: got %q, %v; want %q", anon, tc.name, p.Name, err, tc.want)
			}
		}
	}
}

func flip(c byte) string {
	if c == 'A' {
		return "B"
	}
	return "A"
}

func TestAuthenticateWithoutPolicyRefusesEveryone(t *testing.T) {
	key, _ := newKey(t)
	a, err := enforce.NewAuthenticator(enforce.NewHolder(nil, nil), enforce.AuthOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []gateway.Credentials{httpCreds(), httpCreds("Bearer " + key)} {
		if _, err := a.Authenticate(context.Background(), c); err != enforce.ErrUnauthenticated {
			t.Errorf("no policy: %v", err)
		}
	}
}

// Keys from a control plane's key store arrive in a precompiled policy and
// may expire.
func TestAuthenticateExpiredKey(t *testing.T) {
	key, sum := newKey(t)
	now := time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)
	doc := parseDoc(t, "principals:\n  - {name: alice}\n")
	p, err := policy.Compile(policy.Spec{Principals: doc.Principals, Keys: []policy.Key{{Principal: "alice", SHA256: sum, ExpiresAt: now.Add(time.Hour)}}}, 42)
	if err != nil {
		t.Fatal(err)
	}
	g, err := enforce.Prepare(doc, state.Meta{Revision: 42, Policy: p})
	if err != nil {
		t.Fatal(err)
	}
	h := enforce.NewHolder(nil, nil)
	h.Commit(g)
	clock := now
	a, err := enforce.NewAuthenticator(h, enforce.AuthOptions{Now: func() time.Time { return clock }})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := a.Authenticate(context.Background(), httpCreds("Bearer "+key)); err != nil || got.Name != "alice" {
		t.Fatalf("before expiry: %q, %v", got.Name, err)
	}
	clock = now.Add(time.Hour)
	if _, err := a.Authenticate(context.Background(), httpCreds("Bearer "+key)); err != enforce.ErrUnauthenticated {
		t.Errorf("after expiry: %v", err)
	}
	if h.Load().Revision != 42 {
		t.Errorf("revision %d, want the control plane's 42", h.Load().Revision)
	}
}

func TestAuthenticateStdio(t *testing.T) {
	key, sum := newKey(t)
	other, _ := newKey(t)
	stdio := gateway.Credentials{Transport: "stdio"}
	ctx := context.Background()
	h := holderWith(t, sum, "")
	hAnon := holderWith(t, sum, "auth: {anonymous: {principal: local}}\n")
	for _, tc := range []struct {
		name string
		h    *enforce.Holder
		o    enforce.AuthOptions
		want string
	}{
		{"--principal", h, enforce.AuthOptions{StdioPrincipal: "bob"}, "bob"},
		{"MCPGW_API_KEY", h, enforce.AuthOptions{StdioKey: key}, "alice"},
		{"an unknown MCPGW_API_KEY", hAnon, enforce.AuthOptions{StdioKey: other}, ""},
		{"anonymous", hAnon, enforce.AuthOptions{}, "local"},
		{"nothing configured", h, enforce.AuthOptions{}, ""},
	} {
		a, err := enforce.NewAuthenticator(tc.h, tc.o)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		p, err := a.Authenticate(ctx, stdio)
		if tc.want == "" {
			if err == nil {
				t.Errorf("%s: authenticated as %q", tc.name, p.Name)
			} else if strings.Contains(err.Error(), other) {
				t.Errorf("%s: the error shows the key: %v", tc.name, err)
			}
			continue
		}
		if err != nil || p.Name != tc.want {
			t.Errorf("%s: %q, %v; want %q", tc.name, p.Name, err, tc.want)
		}
	}
	secret := "mcpgw_abc_" + strings.Repeat("s", 4) // too short a secret
	_, err := enforce.NewAuthenticator(h, enforce.AuthOptions{StdioKey: secret})
	if err == nil || strings.Contains(err.Error(), secret) {
		t.Errorf("a malformed MCPGW_API_KEY: %v", err)
	}
	if _, err := enforce.NewAuthenticator(h, enforce.AuthOptions{StdioKey: key, StdioPrincipal: "bob"}); err == nil {
		t.Error("both a principal and a key were accepted")
	}
}

func TestAnonymousIsLoggedLoudly(t *testing.T) {
	var buf bytes.Buffer
	h := enforce.NewHolder(slog.New(slog.NewTextHandler(&buf, nil)), nil)
	if err := h.Apply(parseDoc(t, "auth: {anonymous: {principal: local}}\n")); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "level=WARN") || !strings.Contains(buf.String(), "ANONYMOUS ACCESS IS ON") || !strings.Contains(buf.String(), "local") {
		t.Errorf("anonymous access not warned about:\n%s", buf.String())
	}
}

func TestWithChallenge(t *testing.T) {
	h := enforce.WithChallenge(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/deny" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		_, _ = w.Write([]byte("data: x\n\n"))
		if err := http.NewResponseController(w).Flush(); err != nil {
			t.Errorf("flushing through the wrapper: %v", err)
		}
	}))
	for path, want := range map[string]string{"/deny": enforce.Challenge, "/ok": ""} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, path, nil))
		if got := rec.Header().Get("WWW-Authenticate"); got != want {
			t.Errorf("%s: WWW-Authenticate %q, want %q", path, got, want)
		}
	}
}
