package mcpwire

import (
	"strconv"
	"unicode/utf8"
)

// The writers below append a whole JSON-RPC message to dst. Raw arguments
// (id, result, params, data) must be valid JSON values, typically sub-slices
// of a scanned body or built by AppendString / strconv.AppendInt; they are
// copied as they are, not checked, because the writers run on the hot path
// with values that are valid by construction. A nil raw value is written as
// null (id), {} (result) or left out (params, data).

const header = `{"jsonrpc":"2.0"`

// AppendResult appends a result response.
func AppendResult(dst, id, result []byte) []byte {
	dst = append(dst, header+`,"id":`...)
	dst = appendRaw(dst, id, "null")
	dst = append(dst, `,"result":`...)
	dst = appendRaw(dst, result, "{}")
	return append(dst, '}')
}

// AppendError appends an error response. A nil id is written as null, which
// is what JSON-RPC asks for when the request's id could not be read.
func AppendError(dst, id []byte, code int, message string, data []byte) []byte {
	dst = append(dst, header+`,"id":`...)
	dst = appendRaw(dst, id, "null")
	dst = append(dst, `,"error":{"code":`...)
	dst = strconv.AppendInt(dst, int64(code), 10)
	dst = append(dst, `,"message":`...)
	dst = AppendString(dst, message)
	if data != nil {
		dst = append(dst, `,"data":`...)
		dst = append(dst, data...)
	}
	return append(dst, "}}"...)
}

// AppendRequest appends a request. id must be a string or integer token.
func AppendRequest(dst, id []byte, method string, params []byte) []byte {
	dst = append(dst, header+`,"id":`...)
	dst = appendRaw(dst, id, "null")
	return appendCall(dst, method, params)
}

// AppendNotification appends a notification.
func AppendNotification(dst []byte, method string, params []byte) []byte {
	return appendCall(append(dst, header...), method, params)
}

func appendCall(dst []byte, method string, params []byte) []byte {
	dst = append(dst, `,"method":`...)
	dst = AppendString(dst, method)
	if params != nil {
		dst = append(dst, `,"params":`...)
		dst = append(dst, params...)
	}
	return append(dst, '}')
}

func appendRaw(dst, raw []byte, absent string) []byte {
	if raw == nil {
		return append(dst, absent...)
	}
	return append(dst, raw...)
}

const hexDigits = "0123456789abcdef"

// AppendString appends s as a JSON string. It escapes what RFC 8259 requires
// (quote, backslash, control characters), replaces invalid UTF-8 with U+FFFD
// as encoding/json does, and escapes U+2028 and U+2029, which JavaScript
// peers would otherwise read as line breaks. It does not HTML-escape: these
// bytes never reach a browser as markup.
func AppendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
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
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += n
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += n
			start = i
			continue
		}
		i += n
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
