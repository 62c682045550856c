package policy

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
	"time"
)

func hexSum(key string) string {
	s := sha256.Sum256([]byte(key))
	return hex.EncodeToString(s[:])
}

func TestAuthenticate(t *testing.T) {
	now := time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)
	aliceKey := "mcpgw_alice1_aaaaaaaaaaaaaaaaaaaaaaaa"
	botKey := "mcpgw_bot1_bbbbbbbbbbbbbbbbbbbbbbbb"
	oldKey := "mcpgw_old1_cccccccccccccccccccccccc"
	spec := designSpec()
	spec.Principals[0].APIKeySHA256 = hexSum(aliceKey)
	spec.Keys = []Key{
		{Principal: "ci-bot", SHA256: hexSum(botKey), ExpiresAt: now.Add(time.Hour)},
		{Principal: "bob", SHA256: hexSum(oldKey), ExpiresAt: now},
	}
	p := mustCompile(t, spec, 1)
	tests := []struct {
		key  string
		at   time.Time
		who  string
		want bool
	}{
		{aliceKey, now, "alice", true},
		{aliceKey, now.Add(100 * 365 * 24 * time.Hour), "alice", true},
		{botKey, now, "ci-bot", true},
		{botKey, now.Add(time.Hour), "", false},
		{oldKey, now, "", false},
		{oldKey, now.Add(-time.Nanosecond), "bob", true},
		{"mcpgw_alice1_aaaaaaaaaaaaaaaaaaaaaaab", now, "", false},
		{"", now, "", false},
	}
	for _, tt := range tests {
		who, ok := p.Authenticate(HashKey(tt.key), tt.at)
		if who != tt.who || ok != tt.want {
			t.Errorf("Authenticate(%q at %v) = %q %v, want %q %v", tt.key, tt.at, who, ok, tt.who, tt.want)
		}
	}
	if !p.HasPrincipal("ci-bot") || p.HasPrincipal("nobody") {
		t.Error("HasPrincipal disagrees with keys")
	}
}

func TestDuplicateKeyHashAcrossPrincipalsAndKeys(t *testing.T) {
	spec := designSpec()
	spec.Principals[1].APIKeySHA256 = hexSum("k")
	spec.Keys = []Key{{Principal: "x", SHA256: hexSum("k")}}
	_, err := Compile(spec, 1)
	if err == nil || !strings.Contains(err.Error(), `keys[0]: sha256: key hash already used by principals[1] "bob"`) {
		t.Fatalf("err = %v", err)
	}
}

func TestPastedKeyInsteadOfHash(t *testing.T) {
	key := "mcpgw_abc_0123456789abcdefSECRET"
	_, err := Compile(Spec{Principals: []Principal{{Name: "a", APIKeySHA256: key}}}, 1)
	if err == nil || !strings.Contains(err.Error(), "this is an API key, not its hash") || strings.Contains(err.Error(), "SECRET") {
		t.Fatalf("err = %v", err)
	}
}

func TestParseKey(t *testing.T) {
	good := []struct{ key, id string }{
		{"mcpgw_abc123_0123456789abcdef", "abc123"},
		{"mcpgw_A_0123456789abcdef_-_-_-", "A"},
	}
	for _, g := range good {
		id, err := ParseKey(g.key)
		if err != nil || id != g.id {
			t.Errorf("ParseKey(%q) = %q, %v; want %q", g.key, id, err, g.id)
		}
	}
	bad := []string{
		"",
		"mcpgw_",
		"mcpgw_abc",
		"mcpgw__0123456789abcdef",
		"mcpgw_abc_short",
		"mcpgw_ab-c_0123456789abcdef",
		"MCPGW_abc_0123456789abcdef",
		"mcpgw_abc_0123456789abcdef!",
		"mcpgw_abc_" + strings.Repeat("s", 257),
		"mcpgw_" + strings.Repeat("i", 65) + "_0123456789abcdef",
	}
	for _, k := range bad {
		id, err := ParseKey(k)
		if err == nil {
			t.Errorf("ParseKey(%q) = %q, want an error", k, id)
			continue
		}
		if secret, ok := strings.CutPrefix(k, "mcpgw_abc_"); ok && strings.Contains(err.Error(), secret) {
			t.Errorf("error %q leaks the secret", err)
		}
	}
}

func TestGenerateKey(t *testing.T) {
	k1, err := GenerateKey(bytes.NewReader(bytes.Repeat([]byte{7}, 40)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseKey(k1); err != nil {
		t.Fatalf("generated key %q does not parse: %v", k1, err)
	}
	k2, err := GenerateKey(bytes.NewReader(bytes.Repeat([]byte{8}, 40)))
	if err != nil || k1 == k2 {
		t.Fatalf("keys from different randomness: %q %q %v", k1, k2, err)
	}
	if _, err := GenerateKey(bytes.NewReader(nil)); err == nil {
		t.Fatal("GenerateKey with no randomness succeeded")
	}
}
