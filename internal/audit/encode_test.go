package audit

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
	"unicode/utf8"
)

// canonicalString is the canonical JSON string encoding spelled out rune
// by rune, the reference appendString must match byte for byte (the
// encoding is hashed and chained, so equivalent JSON is not enough): '"',
// '\\', \n, \r and \t backslash-escaped, other control characters and
// U+2028/U+2029 as lower-case \uXXXX, an invalid UTF-8 byte as \ufffd,
// everything else as it is.
func canonicalString(s string) []byte {
	out := []byte{'"'}
	for s != "" {
		r, n := utf8.DecodeRuneInString(s)
		switch {
		case r == utf8.RuneError && n == 1:
			out = append(out, `\ufffd`...)
		case r == '"' || r == '\\':
			out = append(out, '\\', byte(r))
		case r == '\n':
			out = append(out, `\n`...)
		case r == '\r':
			out = append(out, `\r`...)
		case r == '\t':
			out = append(out, `\t`...)
		case r < 0x20 || r == '\u2028' || r == '\u2029':
			out = fmt.Appendf(out, `\u%04x`, r)
		default:
			out = append(out, s[:n]...)
		}
		s = s[n:]
	}
	return append(out, '"')
}

func TestAppendStringIsCanonical(t *testing.T) {
	// Every byte value at every offset of a word, in plain surroundings.
	for c := range 256 {
		for at := range 17 {
			b := bytes.Repeat([]byte("abcdefgh"), 3)
			b[at] = byte(c)
			checkSameString(t, string(b))
		}
	}
	// Random strings drawn mostly from the bytes that need attention.
	alphabet := []byte("ab \"\\\x00\x1f\x7f\x80\xbf\xc3\xa9\xe2\x80\xa8\xa9\xf0\x9f\x8e\x89\xff\n\t")
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		b := make([]byte, rng.IntN(40))
		for i := range b {
			b[i] = alphabet[rng.IntN(len(alphabet))]
		}
		checkSameString(t, string(b))
	}
}

func checkSameString(t *testing.T, s string) {
	t.Helper()
	if got, want := appendString(nil, s), canonicalString(s); !bytes.Equal(got, want) {
		t.Fatalf("appendString(%q) = %s, want %s", s, got, want)
	}
}

func TestAppendTimeMatchesAppendFormat(t *testing.T) {
	times := []time.Time{
		{},
		time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(9999, 12, 31, 23, 59, 59, 999999000, time.UTC),
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(2024, 2, 29, 12, 0, 0, 1000, time.UTC),
		time.Date(2026, 11, 26, 23, 40, 1, 123456000, time.UTC),
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for range 20000 {
		times = append(times, time.UnixMicro(rng.Int64N(1<<56)-1<<55).UTC())
	}
	for _, ts := range times {
		if got, want := appendTime(nil, ts), ts.AppendFormat(nil, TimeFormat); !bytes.Equal(got, want) {
			t.Fatalf("appendTime(%v) = %s, want %s", ts, got, want)
		}
	}
}
