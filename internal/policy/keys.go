package policy

import (
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"strings"
	"time"
)

// API keys look like mcpgw_<id>_<secret> (DESIGN §5). The id is a short
// public handle (it may appear in logs and listings); the secret is never
// stored, only the SHA-256 of the whole key string.
const keyPrefix = "mcpgw_"

// Limits of the key shape. The id has no '_' so the key splits unambiguously;
// the secret is base64url and so may contain '_' and '-'.
const (
	maxKeyIDLen     = 64
	minKeySecretLen = 16
	maxKeySecretLen = 256
)

// HashKey returns the SHA-256 of the whole key string, the value stored at
// rest and looked up by Authenticate.
func HashKey(key string) [32]byte { return sha256.Sum256([]byte(key)) }

// ParseKey checks that key has the shape mcpgw_<id>_<secret> and returns the
// id. Errors never include the secret.
func ParseKey(key string) (id string, err error) {
	rest, ok := strings.CutPrefix(key, keyPrefix)
	if !ok {
		return "", fmt.Errorf("API key must start with %q", keyPrefix)
	}
	id, secret, ok := strings.Cut(rest, "_")
	if !ok {
		return "", fmt.Errorf("API key must look like mcpgw_<id>_<secret>")
	}
	if id == "" || len(id) > maxKeyIDLen || !allBytes(id, isAlnum) {
		return "", fmt.Errorf("API key id must be 1 to %d letters or digits", maxKeyIDLen)
	}
	if len(secret) < minKeySecretLen || len(secret) > maxKeySecretLen || !allBytes(secret, isSecretByte) {
		return "", fmt.Errorf("API key secret must be %d to %d characters of A-Z a-z 0-9 _ -", minKeySecretLen, maxKeySecretLen)
	}
	return id, nil
}

// GenerateKey makes a new key with a random id and a 256-bit secret read from
// rand (crypto/rand.Reader in production; a fixed reader in tests).
func GenerateKey(rand io.Reader) (string, error) {
	var b [8 + 32]byte
	if _, err := io.ReadFull(rand, b[:]); err != nil {
		return "", fmt.Errorf("reading randomness for an API key: %w", err)
	}
	const alnum = "abcdefghijklmnopqrstuvwxyz0123456789"
	id := make([]byte, 8)
	for i, v := range b[:8] {
		id[i] = alnum[int(v)%len(alnum)]
	}
	return keyPrefix + string(id) + "_" + base64.RawURLEncoding.EncodeToString(b[8:]), nil
}

func allBytes(s string, ok func(byte) bool) bool {
	for i := 0; i < len(s); i++ {
		if !ok(s[i]) {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

func isSecretByte(c byte) bool { return isAlnum(c) || c == '_' || c == '-' }

// Authenticate returns the principal whose key hashes to sum. Expired keys
// (ExpiresAt at or before now) are refused. The lookup is by hash, so no
// secret is compared byte by byte.
func (p *Policy) Authenticate(sum [32]byte, now time.Time) (principal string, ok bool) {
	if p == nil {
		return "", false
	}
	k, found := p.keys[sum]
	if !found {
		return "", false
	}
	if !k.expiresAt.IsZero() && !now.Before(k.expiresAt) {
		return "", false
	}
	return k.principal, true
}
