package gateway

import (
	"bytes"
	"errors"
)

// The bridge rewrites a few top-level members of params and results (the
// 2026-07-28 _meta keys, resultType) on every bridged call. Decoding the
// whole object into a map and encoding it again cost more than the rest of
// the bridge together, so these helpers walk the raw object and copy every
// member they keep byte for byte. The input is JSON a scanner already
// accepted (the client's body, the backend's message); on anything
// unexpected they report an error and the caller keeps what it had.

var errNotObject = errors.New("not a JSON object")

// member is one top-level member of a raw object: its key token (quotes
// included, escapes as written) and its value.
type member struct {
	key, val []byte
}

// members splits a raw JSON object into its top-level members.
func members(obj []byte) ([]member, error) {
	i := skipSpace(obj, 0)
	if i >= len(obj) || obj[i] != '{' {
		return nil, errNotObject
	}
	var out []member
	i = skipSpace(obj, i+1)
	if i < len(obj) && obj[i] == '}' {
		return out, nil
	}
	for i < len(obj) {
		ks := i
		ke, err := skipValue(obj, i)
		if err != nil || obj[ks] != '"' {
			return nil, errNotObject
		}
		i = skipSpace(obj, ke)
		if i >= len(obj) || obj[i] != ':' {
			return nil, errNotObject
		}
		vs := skipSpace(obj, i+1)
		ve, err := skipValue(obj, vs)
		if err != nil {
			return nil, err
		}
		out = append(out, member{key: obj[ks:ke], val: obj[vs:ve]})
		i = skipSpace(obj, ve)
		if i < len(obj) && obj[i] == ',' {
			i = skipSpace(obj, i+1)
			continue
		}
		if i < len(obj) && obj[i] == '}' {
			return out, nil
		}
		return nil, errNotObject
	}
	return nil, errNotObject
}

// appendObject writes members as an object.
func appendObject(dst []byte, ms []member) []byte {
	dst = append(dst, '{')
	for i, m := range ms {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, m.key...)
		dst = append(dst, ':')
		dst = append(dst, m.val...)
	}
	return append(dst, '}')
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipValue returns the end of the JSON value starting at i.
func skipValue(b []byte, i int) (int, error) {
	if i >= len(b) {
		return 0, errNotObject
	}
	switch b[i] {
	case '"':
		for j := i + 1; j < len(b); j++ {
			switch b[j] {
			case '\\':
				j++
			case '"':
				return j + 1, nil
			}
		}
		return 0, errNotObject
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				e, err := skipValue(b, j)
				if err != nil {
					return 0, err
				}
				j = e - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1, nil
				}
			}
		}
		return 0, errNotObject
	default:
		j := i
	scan:
		for ; j < len(b); j++ {
			switch b[j] {
			case ',', '}', ']', ' ', '\t', '\r', '\n':
				break scan
			}
		}
		if j == i {
			return 0, errNotObject
		}
		return j, nil
	}
}

const modernMetaPrefix = `"io.modelcontextprotocol/`

// withoutModernMeta returns a _meta object without its
// io.modelcontextprotocol/ keys, or nil when nothing else is left.
func withoutModernMeta(meta []byte) ([]byte, error) {
	ms, err := members(meta)
	if err != nil {
		return nil, err
	}
	keep := ms[:0]
	for _, m := range ms {
		if !bytes.HasPrefix(m.key, []byte(modernMetaPrefix)) {
			keep = append(keep, m)
		}
	}
	if len(keep) == 0 {
		return nil, nil
	}
	return appendObject(nil, keep), nil
}

// modernParams returns params with the 2026-07-28 per-request _meta keys
// set (kv: key, raw value pairs), replacing any the client sent and keeping
// its other _meta keys (a progress token).
func modernParams(params []byte, kv ...[]byte) ([]byte, error) {
	if len(params) == 0 {
		params = []byte("{}")
	}
	ms, err := members(params)
	if err != nil {
		return nil, err
	}
	var meta []member
	at := -1
	for i, m := range ms {
		if string(m.key) == `"_meta"` {
			at = i
			if meta, err = members(m.val); err != nil {
				return nil, err
			}
			keep := meta[:0]
			for _, x := range meta {
				if !bytes.HasPrefix(x.key, []byte(modernMetaPrefix)) {
					keep = append(keep, x)
				}
			}
			meta = keep
		}
	}
	for i := 0; i+1 < len(kv); i += 2 {
		if len(kv[i+1]) > 0 {
			meta = append(meta, member{key: kv[i], val: kv[i+1]})
		}
	}
	mv := appendObject(make([]byte, 0, 256), meta)
	if at >= 0 {
		ms[at].val = mv
	} else {
		ms = append(ms, member{key: []byte(`"_meta"`), val: mv})
	}
	return appendObject(make([]byte, 0, len(params)+len(mv)+16), ms), nil
}
