package mcpwire

import (
	"bytes"
	"unicode"
	"unicode/utf8"
)

// Str is a raw JSON string token (quotes and escapes included) sliced from a
// scanned body, or nil when the member is absent. Its methods decode escapes
// (\uXXXX and surrogate pairs included) so that a policy compares the value
// every JSON decoder sees, never the spelling: "github\u005f_delete" is
// "github__delete". Methods assume the token came from a successful Scan.
type Str []byte

// IsSet reports whether the member was present.
func (s Str) IsSet() bool { return len(s) >= 2 }

// Raw returns the token as it appears in the body, quotes included.
func (s Str) Raw() []byte { return s }

// Unquoted returns the bytes between the quotes and true when the token
// contains no escape, so they are the decoded value itself (zero-copy);
// otherwise nil and false, and the caller must decode with Append.
func (s Str) Unquoted() ([]byte, bool) {
	if len(s) < 2 {
		return nil, true
	}
	in := s[1 : len(s)-1]
	if bytes.IndexByte(in, '\\') >= 0 {
		return nil, false
	}
	return in, true
}

// Append appends the decoded value to dst.
func (s Str) Append(dst []byte) []byte {
	if len(s) < 2 {
		return dst
	}
	in := s[1 : len(s)-1]
	i := bytes.IndexByte(in, '\\')
	if i < 0 {
		return append(dst, in...)
	}
	dst = append(dst, in[:i]...)
	for i < len(in) {
		c := in[i]
		if c != '\\' {
			dst = append(dst, c)
			i++
			continue
		}
		r, n := decodeEscape(in, i)
		dst = utf8.AppendRune(dst, r)
		i += n
	}
	return dst
}

// String returns the decoded value (a copy).
func (s Str) String() string {
	if u, ok := s.Unquoted(); ok {
		return string(u)
	}
	var buf [128]byte
	return string(s.Append(buf[:0]))
}

// Equal reports whether the decoded value is v, without allocating for values
// up to 128 bytes.
func (s Str) Equal(v string) bool {
	if !s.IsSet() {
		return false
	}
	if u, ok := s.Unquoted(); ok {
		return string(u) == v
	}
	var buf [128]byte
	return string(s.Append(buf[:0])) == v
}

// decodeEscape decodes the escape sequence at in[i] (a backslash) of an
// already validated string body, returning the rune and the bytes consumed.
// A lone surrogate decodes to U+FFFD, as encoding/json does.
func decodeEscape(in []byte, i int) (rune, int) {
	switch in[i+1] {
	case '"':
		return '"', 2
	case '\\':
		return '\\', 2
	case '/':
		return '/', 2
	case 'b':
		return '\b', 2
	case 'f':
		return '\f', 2
	case 'n':
		return '\n', 2
	case 'r':
		return '\r', 2
	case 't':
		return '\t', 2
	}
	// 'u': validated by Scan to have four hex digits.
	r := hex4(in[i+2 : i+6])
	if r >= 0xD800 && r < 0xDC00 {
		if i+12 <= len(in) && in[i+6] == '\\' && in[i+7] == 'u' {
			lo := hex4(in[i+8 : i+12])
			if lo >= 0xDC00 && lo < 0xE000 {
				return (r-0xD800)<<10 | (lo - 0xDC00) + 0x10000, 12
			}
		}
		return utf8.RuneError, 6
	}
	if r >= 0xDC00 && r < 0xE000 {
		return utf8.RuneError, 6
	}
	return r, 6
}

func hex4(b []byte) rune {
	var r rune
	for _, c := range b[:4] {
		r <<= 4
		switch {
		case c >= '0' && c <= '9':
			r |= rune(c - '0')
		case c >= 'a' && c <= 'f':
			r |= rune(c - 'a' + 10)
		case c >= 'A' && c <= 'F':
			r |= rune(c - 'A' + 10)
		}
	}
	return r
}

// nextRune decodes the rune at in[i] of a validated string body (between the
// quotes), escapes included.
func nextRune(in []byte, i int) (rune, int) {
	c := in[i]
	if c == '\\' {
		return decodeEscape(in, i)
	}
	if c < utf8.RuneSelf {
		return rune(c), 1
	}
	return utf8.DecodeRune(in[i:])
}

// foldEqual reports whether two validated string bodies decode to values
// equal under Unicode simple case folding, the rule encoding/json (and
// bytes.EqualFold) uses to match object keys to field names. That includes
// the non-ASCII folds: U+017F (long s) matches "s" and U+212A (Kelvin sign)
// matches "k".
func foldEqual(a, b []byte) bool {
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		ra, na := nextRune(a, i)
		rb, nb := nextRune(b, j)
		i += na
		j += nb
		if ra == rb || canonFold(ra) == canonFold(rb) {
			continue
		}
		return false
	}
	return i == len(a) && j == len(b)
}

// decodedEqual reports whether the validated string body a decodes to
// exactly b (which has no escapes).
func decodedEqual(a []byte, b string) bool {
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		ra, na := nextRune(a, i)
		rb, nb := utf8.DecodeRuneInString(b[j:])
		if ra != rb {
			return false
		}
		i += na
		j += nb
	}
	return i == len(a) && j == len(b)
}

// canonFold maps r to the smallest rune of its simple case-folding orbit, so
// two runes fold together exactly when their canonFold values are equal.
func canonFold(r rune) rune {
	if r < utf8.RuneSelf {
		if 'a' <= r && r <= 'z' {
			return r - ('a' - 'A')
		}
		return r
	}
	m := r
	for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
		if f < m {
			m = f
		}
	}
	return m
}

// foldEqualString is foldEqual against a plain (unescaped) string.
func foldEqualString(a []byte, b string) bool {
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		ra, na := nextRune(a, i)
		rb, nb := utf8.DecodeRuneInString(b[j:])
		i += na
		j += nb
		if ra == rb || canonFold(ra) == canonFold(rb) {
			continue
		}
		return false
	}
	return i == len(a) && j == len(b)
}
