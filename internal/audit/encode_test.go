package audit

import (
	"bytes"
	"math/rand/v2"
	"testing"
	"time"
	"unicode/utf8"
)

// appendStringByByte is appendString as it was before it skipped eight
// plain bytes at a time: the canonical encoding is hashed and chained, so
// the faster one must produce exactly its bytes.
func appendStringByByte(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			i++
			continue
		}
		if c < utf8.RuneSelf {
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i++
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

func TestAppendStringMatchesByteByByte(t *testing.T) {
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
	if got, want := appendString(nil, s), appendStringByByte(nil, s); !bytes.Equal(got, want) {
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
