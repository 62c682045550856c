package mcpwire

import (
	"strings"
)

// The splice helpers rewrite one member of a scanned message and copy every
// other byte verbatim, so what the backend or client receives is what was
// sent except for the one value the gateway owns (an id, a progress token, a
// cursor, a _meta key). Each appends the new message to dst and returns it.
//
// They assume env came from a successful Scan of exactly this body (checked:
// a mismatch is an error, not a corrupt message) and that dst does not
// overlap body. New raw values are validated as single JSON values of the
// type the member must have, so a caller cannot splice in a fragment such as
// `1,"method":"x"` that would change the message's meaning.

// Replace replaces the value of field f, which must be present.
func Replace(dst, body []byte, env *Envelope, f Field, newRaw []byte) ([]byte, error) {
	if err := checkEnv(body, env); err != nil {
		return dst, err
	}
	if f >= fieldParams {
		return dst, &Error{Code: CodeInvalidRequest, Msg: "cannot replace " + f.String()}
	}
	old := env.value(f)
	if old == nil {
		return dst, &Error{Code: CodeInvalidRequest, Msg: f.String() + " is absent"}
	}
	want := wantString
	switch f {
	case FieldID, FieldParamsProgressToken, FieldRequestID, FieldProgressToken:
		want = wantIDLike
	}
	if err := validateRaw(newRaw, want, f.String()); err != nil {
		return dst, err
	}
	start := env.pos[f]
	return splice(dst, body, start, start+len(old), newRaw), nil
}

// ReplaceID replaces the id of a request or response with newID, a string or
// integer token.
func ReplaceID(dst, body []byte, env *Envelope, newID []byte) ([]byte, error) {
	return Replace(dst, body, env, FieldID, newID)
}

// SetMeta sets params._meta[key] of a request or notification to raw (any
// JSON value): it replaces the member's value when the key is there and adds
// it otherwise, creating _meta, and params, when they are absent. It is how
// the edge adds the 2026-07-28 per-request keys (MetaProtocolVersion, ...)
// when it bridges a legacy client to a modern backend.
func SetMeta(dst, body []byte, env *Envelope, key string, raw []byte) ([]byte, error) {
	if err := checkEnv(body, env); err != nil {
		return dst, err
	}
	if env.Kind != KindRequest && env.Kind != KindNotification {
		return dst, &Error{Code: CodeInvalidRequest, Msg: "SetMeta needs a request or notification, not a " + env.Kind.String()}
	}
	if err := checkNewKey(key, knownKeys[objMeta]); err != nil {
		return dst, err
	}
	want := wantAny
	switch key {
	case "progressToken":
		want = wantIDLike
	case MetaProtocolVersion, MetaLogLevel:
		want = wantString
	case MetaClientCapabilities, MetaClientInfo:
		want = wantObject
	}
	if err := validateRaw(raw, want, "a params._meta member"); err != nil {
		return dst, err
	}
	if key == "progressToken" && env.ProgressToken != nil {
		// Known position: no need to look for it.
		start := env.pos[FieldProgressToken]
		return splice(dst, body, start, start+len(env.ProgressToken), raw), nil
	}
	if env.Meta != nil {
		return setMember(dst, body, env.pos[fieldMeta], env.Meta, key, raw)
	}
	if env.Params != nil {
		if env.Params[0] != '{' {
			return dst, &Error{Code: CodeInvalidRequest, Offset: env.pos[fieldParams], Msg: "cannot add _meta to array params"}
		}
		at := env.pos[fieldParams] + 1
		dst = append(dst, body[:at]...)
		dst = append(dst, `"_meta":{`...)
		dst = appendMember(dst, key, raw)
		dst = append(dst, '}')
		if !emptyObject(env.Params) {
			dst = append(dst, ',')
		}
		return append(dst, body[at:]...), nil
	}
	// No params: add them before the closing brace of the message, which is
	// the last byte that is not whitespace.
	end := len(body) - 1
	for body[end] != '}' {
		end--
	}
	dst = append(dst, body[:end]...)
	dst = append(dst, `,"params":{"_meta":{`...)
	dst = appendMember(dst, key, raw)
	dst = append(dst, "}}"...)
	return append(dst, body[end:]...), nil
}

// SetResultField sets result[key] of a result response whose result is an
// object to raw (any JSON value), replacing or adding the member; the edge
// uses it to put its own pagination cursor in result.nextCursor.
func SetResultField(dst, body []byte, env *Envelope, key string, raw []byte) ([]byte, error) {
	if err := checkEnv(body, env); err != nil {
		return dst, err
	}
	if env.Kind != KindResult || env.Result[0] != '{' {
		return dst, &Error{Code: CodeInvalidRequest, Msg: "SetResultField needs a result response with an object result"}
	}
	if err := checkNewKey(key, knownKeys[objResult]); err != nil {
		return dst, err
	}
	want, f, tracked := wantAny, Field(0), false
	switch key {
	case "nextCursor":
		want, f, tracked = wantString, FieldNextCursor, true
	case "resultType":
		want, f, tracked = wantString, FieldResultType, true
	case "requestState":
		want = wantString
	case "inputRequests":
		want = wantObject
	}
	if err := validateRaw(raw, want, "a result member"); err != nil {
		return dst, err
	}
	if tracked {
		// Scan recorded where the member is, or that it is absent; either
		// way the result need not be searched.
		if old := env.value(f); old != nil {
			start := env.pos[f]
			return splice(dst, body, start, start+len(old), raw), nil
		}
		return insertMember(dst, body, env.pos[fieldResult], env.Result, key, raw), nil
	}
	return setMember(dst, body, env.pos[fieldResult], env.Result, key, raw)
}

func checkEnv(body []byte, env *Envelope) error {
	if env.Kind == KindInvalid || len(env.body) != len(body) || len(body) == 0 || &env.body[0] != &body[0] {
		return &Error{Code: CodeInvalidRequest, Msg: "envelope was not scanned from this body"}
	}
	return nil
}

// checkNewKey refuses a key that Scan would reject next to (or instead of) a
// known key of the level: one that differs from it only in case.
func checkNewKey(key string, known []string) error {
	for _, k := range known {
		if key != k && strings.EqualFold(key, k) {
			return &Error{Code: CodeInvalidRequest, Msg: "key " + strconvQuote(key) + " differs from " + strconvQuote(k) + " only in case"}
		}
	}
	return nil
}

// setMember replaces the value of key in the object obj found at offset at of
// body, or inserts the member when the object has no such key.
func setMember(dst, body []byte, at int, obj []byte, key string, raw []byte) ([]byte, error) {
	vs, ve, exact, found := findKey(obj, key)
	switch {
	case found && exact:
		return splice(dst, body, at+vs, at+ve, raw), nil
	case found:
		return dst, &Error{Code: CodeInvalidRequest, Offset: at, Msg: "object has a key that differs from " + strconvQuote(key) + " only in case"}
	}
	return insertMember(dst, body, at, obj, key, raw), nil
}

// insertMember inserts "key":raw as the first member of the object obj found
// at offset at of body.
func insertMember(dst, body []byte, at int, obj []byte, key string, raw []byte) []byte {
	dst = append(dst, body[:at+1]...)
	dst = appendMember(dst, key, raw)
	if !emptyObject(obj) {
		dst = append(dst, ',')
	}
	return append(dst, body[at+1:]...)
}

func appendMember(dst []byte, key string, raw []byte) []byte {
	dst = AppendString(dst, key)
	dst = append(dst, ':')
	return append(dst, raw...)
}

func splice(dst, body []byte, start, end int, raw []byte) []byte {
	dst = append(dst, body[:start]...)
	dst = append(dst, raw...)
	return append(dst, body[end:]...)
}

// emptyObject reports whether the validated object obj has no member.
func emptyObject(obj []byte) bool {
	for _, c := range obj[1:] {
		switch c {
		case ' ', '\t', '\n', '\r':
		default:
			return c == '}'
		}
	}
	return true
}

// findKey looks in the validated object obj for a key that decodes to key,
// or folds to it; it returns the offsets of the member's value in obj.
func findKey(obj []byte, key string) (vs, ve int, exact, found bool) {
	s := scanner{b: obj}
	i := s.ws(1)
	if obj[i] == '}' {
		return 0, 0, false, false
	}
	for {
		ks := i
		ke, _, _ := s.str(i)
		vs = s.ws(s.ws(ke) + 1)
		ve, _ = s.value(vs, 1)
		k := obj[ks+1 : ke-1]
		if foldEqualString(k, key) {
			return vs, ve, decodedEqual(k, key), true
		}
		i, _ = s.next(ve)
		if obj[i-1] == '}' {
			return 0, 0, false, false
		}
	}
}

type wantType uint8

const (
	wantAny wantType = iota
	wantString
	wantIDLike // a string or an integer
	wantObject
)

// validateRaw checks that raw is exactly one JSON value of the wanted type,
// with no surrounding whitespace.
func validateRaw(raw []byte, want wantType, what string) error {
	s := scanner{b: raw}
	if len(raw) == 0 {
		return &Error{Code: CodeInvalidRequest, Msg: "new value for " + what + " is empty"}
	}
	end, err := s.value(0, 0)
	if err != nil {
		return &Error{Code: CodeInvalidRequest, Msg: "new value for " + what + " is not JSON: " + err.(*Error).Msg}
	}
	if end != len(raw) {
		return &Error{Code: CodeInvalidRequest, Offset: end, Msg: "new value for " + what + " is not one JSON value"}
	}
	switch want {
	case wantString:
		if raw[0] != '"' {
			return &Error{Code: CodeInvalidRequest, Msg: "new value for " + what + " must be a string"}
		}
	case wantObject:
		if raw[0] != '{' {
			return &Error{Code: CodeInvalidRequest, Msg: "new value for " + what + " must be an object"}
		}
	case wantIDLike:
		if raw[0] == '"' {
			return nil
		}
		if raw[0] == '-' || (raw[0] >= '0' && raw[0] <= '9') {
			if _, isInt, _ := s.number(0); isInt {
				return nil
			}
		}
		return &Error{Code: CodeInvalidRequest, Msg: "new value for " + what + " must be a string or an integer"}
	}
	return nil
}

func strconvQuote(s string) string { return string(AppendString(nil, s)) }
