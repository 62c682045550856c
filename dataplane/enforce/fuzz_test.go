package enforce_test

import (
	"context"
	"strings"
	"testing"

	"github.com/mcpgw/mcpgw/dataplane/enforce"
)

// FuzzAuthorization: no Authorization value authenticates except the
// real key (in any scheme case, with surrounding blanks), none panics, and
// every refusal is the one uninformative error.
func FuzzAuthorization(f *testing.F) {
	const key = "mcpgw_fuzz01_0123456789abcdefghijklmnop"
	for _, s := range []string{"Bearer " + key, "bearer " + key, "Bearer", "Bearer ", "Basic x", key, "Bearer mcpgw_fuzz01_", "Bearer mcpgw__x", "Bearer " + key + "x", "\x00", "Bearer \u00a0" + key, "Bearer \t" + key + " "} {
		f.Add(s)
	}
	h := enforce.NewHolder(nil, nil)
	doc, err := parseDocErr("principals:\n  - {name: alice, api_key_sha256: " + hashHex(key) + "}\n")
	if err != nil {
		f.Fatal(err)
	}
	if err := h.Apply(doc); err != nil {
		f.Fatal(err)
	}
	a, err := enforce.NewAuthenticator(h, enforce.AuthOptions{})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, v string) {
		p, err := a.Authenticate(context.Background(), httpCreds(v))
		if err != nil {
			if err != enforce.ErrUnauthenticated || p.Name != "" {
				t.Fatalf("%q: refused with %v (principal %q)", v, err, p.Name)
			}
			return
		}
		if p.Name != "alice" || !presentsKey(v, key) {
			t.Fatalf("%q authenticated as %q", v, p.Name)
		}
	})
}

// presentsKey reports whether v is "Bearer <key>" up to the scheme's case
// and blanks around the key.
func presentsKey(v, key string) bool {
	return len(v) > 7 && strings.EqualFold(v[:7], "Bearer ") && strings.Trim(v[7:], " \t") == key
}
