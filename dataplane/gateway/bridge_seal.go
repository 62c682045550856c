package gateway

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// A requestState the edge hands a modern client names a call the edge holds
// open on a legacy backend's session. It is sealed with AES-GCM under a key
// only this edge process knows, with the request it belongs to (principal,
// backend, method, exposed name, arguments) as associated data: a client
// cannot read it, forge one, or use it for another caller or another
// request. It carries the call's round, so a state already answered is not
// accepted twice, and an expiry.

// sealVersion prefixes every sealed state, so a later format can be told
// apart.
const sealVersion = 1

// stateBinding is what a requestState is valid for.
type stateBinding struct {
	principal, backend, method, name string
	args                             []byte
}

// digest condenses the binding into the associated data of the seal.
func (b stateBinding) digest() []byte {
	h := sha256.New()
	for _, s := range []string{"mcpgw/requestState/v1", b.principal, b.backend, b.method, b.name} {
		var n [4]byte
		binary.BigEndian.PutUint32(n[:], uint32(len(s)))
		h.Write(n[:])
		h.Write([]byte(s))
	}
	h.Write(b.args)
	return h.Sum(nil)
}

// sealedState is the plaintext of a requestState.
type sealedState struct {
	call    string // the parked call's id (16 random bytes)
	round   uint32
	expires time.Time
}

// Errors opening a requestState; the client sees one message for the
// first (never which check failed) and a distinct one for expiry.
var (
	errStateInvalid = errors.New("requestState is invalid or belongs to another request")
	errStateExpired = errors.New("requestState has expired")
)

// sealer seals and opens requestStates with a per-edge random key.
type sealer struct {
	aead cipher.AEAD
}

func newSealer() (*sealer, error) {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("generating the requestState key: %w", err)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("requestState cipher: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("requestState cipher: %w", err)
	}
	return &sealer{aead: aead}, nil
}

// seal returns the state as an opaque URL-safe string.
func (s *sealer) seal(st sealedState, b stateBinding) string {
	pt := make([]byte, 0, 1+len(st.call)+4+8)
	pt = append(pt, sealVersion)
	pt = append(pt, st.call...)
	pt = binary.BigEndian.AppendUint32(pt, st.round)
	pt = binary.BigEndian.AppendUint64(pt, uint64(st.expires.UnixNano()))
	out := make([]byte, s.aead.NonceSize(), s.aead.NonceSize()+len(pt)+s.aead.Overhead())
	if _, err := rand.Read(out); err != nil {
		panic("crypto/rand failed: " + err.Error()) // never returns an error on Linux
	}
	out = s.aead.Seal(out, out, pt, b.digest())
	return base64.RawURLEncoding.EncodeToString(out)
}

// open checks a state against the request it came back with.
func (s *sealer) open(state string, b stateBinding, now time.Time) (sealedState, error) {
	raw, err := base64.RawURLEncoding.DecodeString(state)
	ns := s.aead.NonceSize()
	if err != nil || len(raw) < ns+s.aead.Overhead() {
		return sealedState{}, errStateInvalid
	}
	pt, err := s.aead.Open(nil, raw[:ns], raw[ns:], b.digest())
	if err != nil || len(pt) != 1+16+4+8 || pt[0] != sealVersion {
		return sealedState{}, errStateInvalid
	}
	st := sealedState{
		call:    string(pt[1:17]),
		round:   binary.BigEndian.Uint32(pt[17:21]),
		expires: time.Unix(0, int64(binary.BigEndian.Uint64(pt[21:29]))),
	}
	if !now.Before(st.expires) {
		return sealedState{}, errStateExpired
	}
	return st, nil
}
