package mcpwire

import (
	"encoding/binary"
	"math"
	"math/bits"
	"unicode/utf8"
)

// MaxDepth is the deepest nesting of objects and arrays Scan accepts. MCP
// messages are shallow; the limit bounds the scanner's recursion on hostile
// input.
const MaxDepth = 128

// objKind names the object levels whose keys the gateway reads; at these
// levels keys are matched after unescaping and checked for duplicates and
// case variants.
type objKind uint8

const (
	objTop objKind = iota
	objParams
	objMeta
	objResult
	objError
)

// Known keys per level; the index of a key is its bit in the object's seen
// set, and the constants below name the indices the scanner switches on.
var knownKeys = [...][]string{
	objTop:    {"jsonrpc", "id", "method", "params", "result", "error"},
	objParams: {"name", "uri", "cursor", "arguments", "_meta", "inputResponses", "requestState", "progressToken", "requestId"},
	objMeta:   {"progressToken", MetaProtocolVersion, MetaClientCapabilities, MetaClientInfo, MetaLogLevel},
	objResult: {"nextCursor", "resultType", "inputRequests", "requestState"},
	objError:  {"code", "message", "data"},
}

// qualified holds the dotted path of each known key, for error messages,
// built once so that the accepting path does not concatenate strings.
var qualified = func() (q [len(knownKeys)][]string) {
	prefix := [...]string{objTop: "", objParams: "params.", objMeta: "params._meta.", objResult: "result.", objError: "error."}
	for k, keys := range knownKeys {
		for _, key := range keys {
			q[k] = append(q[k], prefix[k]+key)
		}
	}
	return q
}()

const (
	topJSONRPC = iota
	topID
	topMethod
	topParams
	topResult
	topError
)

const (
	parName = iota
	parURI
	parCursor
	parArguments
	parMeta
	parInputResponses
	parRequestState
	parProgressToken
	parRequestID
)

const (
	metaProgressToken = iota
	metaProtocolVersion
	metaClientCapabilities
	metaClientInfo
	metaLogLevel
)

const (
	resNextCursor = iota
	resResultType
	resInputRequests
	resRequestState
)

const (
	errCode = iota
	errMessage
	errData
)

// pairKeys is how many unknown keys per tracked object are checked for
// duplicates pairwise on the stack; beyond that a map takes over, which
// allocates but keeps the check complete (and linear) for odd messages.
const pairKeys = 16

// keyFoldVariant is returned by lookupKey for a key that folds to a known key
// without being it.
const keyFoldVariant = -2

// Word-at-a-time string scanning: a byte needs a closer look when it is a
// quote, a backslash, a control character or non-ASCII. The lowest flagged
// byte of a word is exact, because the borrows that can raise false flags
// only run towards higher bytes, which come later in the text.
const (
	lsb = 0x0101010101010101
	msb = 0x8080808080808080
)

// strSafe marks the bytes a JSON string may contain unescaped that need no
// further look: printable ASCII except the quote and the backslash.
var strSafe = func() (t [256]bool) {
	for c := 0x20; c < 0x80; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

type scanner struct {
	b []byte
	// env is filled in place and copied out by Scan: held by value, the
	// caller's Envelope does not escape (escape analysis does not tell a
	// scanner's fields apart, and b's content leaks into errors).
	env Envelope

	// keys holds the spans (start and end of the key between its quotes) of
	// the unknown keys seen so far in the tracked objects being scanned; a
	// nested tracked object uses the slots after its parent's.
	keys  [3 * pairKeys][2]int32
	nkeys int

	idNull     bool
	sawJSONRPC bool
	errOff     int // offset of the error member, for messages about it
	// The first structural (not syntactic) problem. Scanning goes on after
	// one so that a body that is not even JSON gets a parse error, which
	// JSON-RPC ranks before invalid request.
	badCode int
	badMsg  string
	badOff  int
}

// Scan validates body as one strict RFC 8259 JSON document holding a JSON-RPC
// 2.0 message and fills env with sub-slices of body; it neither copies nor
// allocates on success. Strict means: no byte order mark, nothing but
// whitespace after the value, valid UTF-8 in strings, nesting at most
// MaxDepth, and at the envelope levels (top level, params, params._meta,
// result, error) no duplicate key and no key that differs from a known key
// only in case. A top-level array yields ErrBatch. Other failures are *Error.
//
// Below those levels (arguments, the content of a result) values are
// validated as JSON but duplicate keys are not looked for: the gateway
// decides nothing on them and passes them through. Code that does decide on
// arguments (a future CEL condition, say) must apply the same rule there.
//
// On failure env may be partly filled and its Kind is KindInvalid. Its ID is
// then the id to answer with: the request's id when the body is JSON and the
// id a string, an integer or null; nil (answer with null) after a parse error
// or when the id itself is of an invalid type.
func Scan(body []byte, env *Envelope) error {
	s := scanner{b: body}
	err := s.scan()
	*env = s.env
	if err != nil {
		if e, ok := err.(*Error); ok && e.Code == CodeParseError {
			// JSON-RPC answers a parse error with id null: an id read
			// before the body turned out not to be JSON is not to be
			// trusted.
			env.ID = nil
		}
	}
	return err
}

func (s *scanner) scan() error {
	b := s.b
	if len(b) > math.MaxInt32 {
		return &Error{Code: CodeInvalidRequest, Msg: "body larger than 2 GiB"}
	}
	if len(b) >= 3 && b[0] == 0xEF && b[1] == 0xBB && b[2] == 0xBF {
		return s.syntax(0, "byte order mark before JSON text")
	}
	i := s.ws(0)
	if i == len(b) {
		return s.syntax(i, "empty body")
	}
	var end int
	var err error
	switch b[i] {
	case '{':
		end, err = s.object(i, 0, objTop)
	case '[':
		// A batch is answered as one invalid request, but only if it is
		// JSON at all: the whole document is validated first.
		end, err = s.value(i, 0)
		if err == nil {
			if j := s.ws(end); j != len(b) {
				return s.syntax(j, "data after the top-level value")
			}
			return ErrBatch
		}
	default:
		end, err = s.value(i, 0)
		s.invalid(CodeInvalidRequest, i, "message is not a JSON object")
	}
	if err != nil {
		return err
	}
	if j := s.ws(end); j != len(b) {
		return s.syntax(j, "data after the top-level value")
	}
	if s.badMsg != "" {
		return &Error{Code: s.badCode, Msg: s.badMsg, Offset: s.badOff}
	}
	return s.classify()
}

// classify checks the combination of top-level members and sets the kind.
func (s *scanner) classify() error {
	e := &s.env
	bad := func(msg string) error { return &Error{Code: CodeInvalidRequest, Msg: msg} }
	badAt := func(off int, msg string) error { return &Error{Code: CodeInvalidRequest, Msg: msg, Offset: off} }
	if !s.sawJSONRPC {
		return bad(`missing "jsonrpc" member`)
	}
	switch {
	case e.Method != nil:
		if e.Result != nil || e.Error != nil {
			return badAt(max(e.pos[fieldResult], s.errOff), `a message with "method" cannot carry "result" or "error"`)
		}
		if e.ID == nil {
			e.Kind = KindNotification
		} else if s.idNull {
			return badAt(e.pos[FieldID], "request id must not be null")
		} else {
			e.Kind = KindRequest
		}
	case e.Params != nil:
		return badAt(e.pos[fieldParams], `"params" without "method"`)
	case e.Result != nil && e.Error != nil:
		return badAt(max(e.pos[fieldResult], s.errOff), `a response cannot carry both "result" and "error"`)
	case e.Result != nil:
		if e.ID == nil || s.idNull {
			return badAt(e.pos[FieldID], "result response needs a string or integer id")
		}
		e.Kind = KindResult
	case e.Error != nil:
		e.Kind = KindError
	default:
		return bad(`message has none of "method", "result" and "error"`)
	}
	e.body = s.b
	return nil
}

func (s *scanner) syntax(off int, msg string) error {
	return &Error{Code: CodeParseError, Msg: msg, Offset: off}
}

// invalid records the first structural problem; scanning continues.
func (s *scanner) invalid(code, off int, msg string) {
	if s.badMsg == "" {
		s.badCode, s.badMsg, s.badOff = code, msg, off
	}
}

func (s *scanner) ws(i int) int {
	b := s.b
	if i < len(b) && b[i] > ' ' {
		return i
	}
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// value validates any JSON value starting at b[i] (no leading whitespace)
// nested inside depth containers, and returns the offset after it.
func (s *scanner) value(i, depth int) (int, error) {
	b := s.b
	if i >= len(b) {
		return i, s.syntax(i, "unexpected end of input")
	}
	switch c := b[i]; {
	case c == '"':
		end, _, err := s.str(i)
		return end, err
	case c == '{':
		return s.anyObject(i, depth)
	case c == '[':
		return s.array(i, depth)
	case c == 't':
		return s.lit(i, "true")
	case c == 'f':
		return s.lit(i, "false")
	case c == 'n':
		return s.lit(i, "null")
	case c == '-' || (c >= '0' && c <= '9'):
		end, _, err := s.number(i)
		return end, err
	}
	return i, s.syntax(i, "unexpected character, want a JSON value")
}

func (s *scanner) lit(i int, w string) (int, error) {
	if len(s.b)-i < len(w) || string(s.b[i:i+len(w)]) != w {
		return i, s.syntax(i, "invalid literal, want "+w)
	}
	return i + len(w), nil
}

// number validates the RFC 8259 number grammar and reports whether the
// number is written as an integer (no fraction, no exponent).
func (s *scanner) number(i int) (int, bool, error) {
	b := s.b
	start := i
	if b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		i++
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	default:
		return i, false, s.syntax(start, "invalid number")
	}
	isInt := true
	if i < len(b) && b[i] == '.' {
		isInt = false
		i++
		if i >= len(b) || b[i] < '0' || b[i] > '9' {
			return i, false, s.syntax(start, "invalid number: no digit after '.'")
		}
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		isInt = false
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= len(b) || b[i] < '0' || b[i] > '9' {
			return i, false, s.syntax(start, "invalid number: no digit in exponent")
		}
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	}
	return i, isInt, nil
}

// str validates the string starting at the quote b[i] and returns the offset
// after its closing quote and whether it contains escapes.
func (s *scanner) str(i int) (int, bool, error) {
	b := s.b
	start := i
	i++
	esc := false
	for {
		// Eight bytes at a time while none of them needs a closer look.
		for i+8 <= len(b) {
			x := binary.LittleEndian.Uint64(b[i:])
			q := x ^ (lsb * '"')
			bs := x ^ (lsb * '\\')
			if m := ((x-lsb*0x20)&^x | (q-lsb)&^q | (bs-lsb)&^bs | x) & msb; m != 0 {
				i += bits.TrailingZeros64(m) >> 3
				goto found
			}
			i += 8
		}
		for i < len(b) && strSafe[b[i]] {
			i++
		}
	found:
		if i >= len(b) {
			return i, esc, s.syntax(start, "unterminated string")
		}
		switch c := b[i]; {
		case c == '"':
			return i + 1, esc, nil
		case c == '\\':
			esc = true
			if i+1 >= len(b) {
				return i, esc, s.syntax(start, "unterminated string")
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(b) || !isHex(b[i+2]) || !isHex(b[i+3]) || !isHex(b[i+4]) || !isHex(b[i+5]) {
					return i, esc, s.syntax(i, `invalid \u escape in string`)
				}
				i += 6
			default:
				return i, esc, s.syntax(i, "invalid escape in string")
			}
		case c < 0x20:
			return i, esc, s.syntax(i, "control character in string")
		default:
			r, n := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && n <= 1 {
				return i, esc, s.syntax(i, "invalid UTF-8 in string")
			}
			i += n
		}
	}
}

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

func (s *scanner) array(i, depth int) (int, error) {
	b := s.b
	depth++
	if depth > MaxDepth {
		return i, s.syntax(i, "nesting deeper than 128")
	}
	i = s.ws(i + 1)
	if i < len(b) && b[i] == ']' {
		return i + 1, nil
	}
	for {
		var err error
		if i, err = s.value(i, depth); err != nil {
			return i, err
		}
		i = s.ws(i)
		if i >= len(b) {
			return i, s.syntax(i, "unterminated array")
		}
		switch b[i] {
		case ',':
			i = s.ws(i + 1)
		case ']':
			return i + 1, nil
		default:
			return i, s.syntax(i, "expected ',' or ']' in array")
		}
	}
}

// anyObject validates an object the gateway does not read into.
func (s *scanner) anyObject(i, depth int) (int, error) {
	b := s.b
	depth++
	if depth > MaxDepth {
		return i, s.syntax(i, "nesting deeper than 128")
	}
	i = s.ws(i + 1)
	if i < len(b) && b[i] == '}' {
		return i + 1, nil
	}
	for {
		var err error
		if i, err = s.key(i); err != nil {
			return i, err
		}
		if i, err = s.value(i, depth); err != nil {
			return i, err
		}
		if i, err = s.next(i); err != nil || s.b[i-1] == '}' {
			return i, err
		}
	}
}

// key validates an object key and the colon after it, returning the offset
// of the member's value.
func (s *scanner) key(i int) (int, error) {
	b := s.b
	if i >= len(b) || b[i] != '"' {
		return i, s.syntax(i, "expected a string object key")
	}
	end, _, err := s.str(i)
	if err != nil {
		return end, err
	}
	i = s.ws(end)
	if i >= len(b) || b[i] != ':' {
		return i, s.syntax(i, "expected ':' after object key")
	}
	return s.ws(i + 1), nil
}

// next consumes the ',' or '}' after an object member; the caller tells the
// two apart by the byte before the returned offset.
func (s *scanner) next(i int) (int, error) {
	b := s.b
	i = s.ws(i)
	if i < len(b) {
		switch b[i] {
		case ',':
			return s.ws(i + 1), nil
		case '}':
			return i + 1, nil
		}
	}
	return i, s.syntax(i, "expected ',' or '}' after object member")
}

// object scans a tracked object of kind k starting at '{'.
func (s *scanner) object(i, depth int, k objKind) (int, error) {
	b := s.b
	depth++
	if depth > MaxDepth {
		return i, s.syntax(i, "nesting deeper than 128")
	}
	i = s.ws(i + 1)
	if i < len(b) && b[i] == '}' {
		return i + 1, nil
	}
	// Unknown-key slots after base belong to this object; they are released
	// on success (after an error nobody scans on).
	base := s.nkeys
	var seen uint32
	var more map[string]struct{}
	known := knownKeys[k]
	for {
		if i >= len(b) || b[i] != '"' {
			return i, s.syntax(i, "expected a string object key")
		}
		ks := i
		idx, ke := s.plainKey(k, i)
		var err error
		if idx < 0 {
			var esc bool
			if ke, esc, err = s.str(i); err != nil {
				return ke, err
			}
			idx = lookupKey(known, b[ks+1:ke-1], esc)
		}
		if i = s.ws(ke); i >= len(b) || b[i] != ':' {
			return i, s.syntax(i, "expected ':' after object key")
		}
		if i = s.ws(i + 1); i >= len(b) {
			return i, s.syntax(i, "unexpected end of input")
		}
		switch {
		case idx == keyFoldVariant:
			s.invalid(codeFor(k), ks, "key "+string(b[ks:ke])+" differs from a member name only in case")
			i, err = s.value(i, depth)
		case idx >= 0 && seen&(1<<idx) != 0:
			s.invalid(codeFor(k), ks, `duplicate key "`+known[idx]+`"`)
			i, err = s.value(i, depth)
		case idx >= 0:
			seen |= 1 << idx
			i, err = s.member(k, idx, i, depth)
		default:
			if s.dupUnknown(base, ks+1, ke-1, &more) {
				s.invalid(codeFor(k), ks, "duplicate key "+string(b[ks:ke]))
			}
			i, err = s.value(i, depth)
		}
		if err != nil {
			return i, err
		}
		if i, err = s.next(i); err != nil {
			return i, err
		}
		if b[i-1] == '}' {
			s.nkeys = base
			return i, nil
		}
	}
}

func codeFor(k objKind) int {
	if k == objParams || k == objMeta {
		return CodeInvalidParams
	}
	return CodeInvalidRequest
}

// plainKey is the fast path for the common case of a known key written
// without escapes: it compares the quoted key in place, without scanning the
// string first. It returns the key's index and the offset after its closing
// quote, or -1 when the key needs the full path.
func (s *scanner) plainKey(k objKind, i int) (int, int) {
	b := s.b
	j := i + 1
	for j < len(b) && strSafe[b[j]] {
		j++
	}
	if j >= len(b) || b[j] != '"' {
		return -1, 0
	}
	return exactKey(k, b[i+1:j]), j + 1
}

// exactKey is the fast path of lookupKey for a key without escapes: a string
// switch compiles to a length-then-value search with no allocation.
func exactKey(k objKind, key []byte) int {
	switch k {
	case objTop:
		switch string(key) {
		case "jsonrpc":
			return topJSONRPC
		case "id":
			return topID
		case "method":
			return topMethod
		case "params":
			return topParams
		case "result":
			return topResult
		case "error":
			return topError
		}
	case objParams:
		switch string(key) {
		case "name":
			return parName
		case "uri":
			return parURI
		case "cursor":
			return parCursor
		case "arguments":
			return parArguments
		case "_meta":
			return parMeta
		case "inputResponses":
			return parInputResponses
		case "requestState":
			return parRequestState
		case "progressToken":
			return parProgressToken
		case "requestId":
			return parRequestID
		}
	case objMeta:
		switch string(key) {
		case "progressToken":
			return metaProgressToken
		case MetaProtocolVersion:
			return metaProtocolVersion
		case MetaClientCapabilities:
			return metaClientCapabilities
		case MetaClientInfo:
			return metaClientInfo
		case MetaLogLevel:
			return metaLogLevel
		}
	case objResult:
		switch string(key) {
		case "nextCursor":
			return resNextCursor
		case "resultType":
			return resResultType
		case "inputRequests":
			return resInputRequests
		case "requestState":
			return resRequestState
		}
	case objError:
		switch string(key) {
		case "code":
			return errCode
		case "message":
			return errMessage
		case "data":
			return errData
		}
	}
	return -1
}

// lookupKey returns the index of key (a validated string body) in known,
// keyFoldVariant when it folds to a known key without decoding to it, or -1.
func lookupKey(known []string, key []byte, esc bool) int {
	for n, k := range known {
		if esc {
			if decodedEqual(key, k) {
				return n
			}
		} else if string(key) == k {
			return n
		}
	}
	for _, k := range known {
		if foldEqualString(key, k) {
			return keyFoldVariant
		}
	}
	return -1
}

// dupUnknown reports whether the key b[ks:ke] folds to an earlier unknown key
// of the same object, and records it.
func (s *scanner) dupUnknown(base, ks, ke int, more *map[string]struct{}) bool {
	key := s.b[ks:ke]
	for _, sp := range s.keys[base:s.nkeys] {
		if foldEqual(key, s.b[sp[0]:sp[1]]) {
			return true
		}
	}
	if *more != nil || s.nkeys == len(s.keys) {
		var buf [64]byte
		f := string(appendFolded(buf[:0], key))
		if _, ok := (*more)[f]; ok {
			return true
		}
		if *more == nil {
			*more = make(map[string]struct{})
		}
		(*more)[f] = struct{}{}
		return false
	}
	s.keys[s.nkeys] = [2]int32{int32(ks), int32(ke)}
	s.nkeys++
	return false
}

// appendFolded appends the case-folded decoding of a validated string body.
func appendFolded(dst, in []byte) []byte {
	for i := 0; i < len(in); {
		r, n := nextRune(in, i)
		dst = utf8.AppendRune(dst, canonFold(r))
		i += n
	}
	return dst
}

// member scans the value of known key idx of an object of kind k.
func (s *scanner) member(k objKind, idx, i, depth int) (int, error) {
	b := s.b
	e := &s.env
	switch k {
	case objTop:
		switch idx {
		case topJSONRPC:
			s.sawJSONRPC = true
			end, ok, err := s.strValue(i, depth, CodeInvalidRequest, `"jsonrpc"`)
			if err == nil && ok && string(b[i:end]) != `"2.0"` && !decodedEqual(b[i+1:end-1], "2.0") {
				s.invalid(CodeInvalidRequest, i, `"jsonrpc" must be "2.0"`)
			}
			return end, err
		case topID:
			end, err := s.idValue(i, depth, CodeInvalidRequest, "id")
			// An id of the wrong type (idValue reported it) is not kept,
			// so that nobody echoes it back in an error answer.
			if err == nil && validID(b[i:end]) {
				e.ID, e.pos[FieldID] = b[i:end], i
				s.idNull = b[i] == 'n'
			}
			return end, err
		case topMethod:
			end, ok, err := s.strValue(i, depth, CodeInvalidRequest, `"method"`)
			if ok {
				e.Method = b[i:end]
			}
			return end, err
		case topParams:
			var end int
			var err error
			switch b[i] {
			case '{':
				end, err = s.object(i, depth, objParams)
			case '[':
				end, err = s.array(i, depth)
			default:
				end, err = s.value(i, depth)
				s.invalid(CodeInvalidRequest, i, `"params" must be an object or an array`)
			}
			e.Params, e.pos[fieldParams] = b[i:end], i
			return end, err
		case topResult:
			var end int
			var err error
			if b[i] == '{' {
				end, err = s.object(i, depth, objResult)
			} else {
				end, err = s.value(i, depth)
			}
			e.Result, e.pos[fieldResult] = b[i:end], i
			return end, err
		case topError:
			var end int
			var err error
			if b[i] == '{' {
				end, err = s.object(i, depth, objError)
				if err == nil && (e.ErrorCode == nil || e.ErrorMessage == nil) {
					s.invalid(CodeInvalidRequest, i, `"error" needs an integer "code" and a string "message"`)
				}
			} else {
				end, err = s.value(i, depth)
				s.invalid(CodeInvalidRequest, i, `"error" must be an object`)
			}
			e.Error, s.errOff = b[i:end], i
			return end, err
		}
	case objParams:
		switch idx {
		case parName, parURI, parCursor, parRequestState:
			end, ok, err := s.strValue(i, depth, CodeInvalidParams, qualified[objParams][idx])
			if ok {
				v := Str(b[i:end])
				switch idx {
				case parName:
					e.Name, e.pos[FieldName] = v, i
				case parURI:
					e.URI, e.pos[FieldURI] = v, i
				case parCursor:
					e.Cursor, e.pos[FieldCursor] = v, i
				default:
					e.RequestState, e.pos[FieldRequestState] = v, i
				}
			}
			return end, err
		case parArguments:
			end, ok, err := s.objValue(i, depth, "params.arguments")
			if ok {
				e.Arguments = b[i:end]
			}
			return end, err
		case parInputResponses:
			end, ok, err := s.objValue(i, depth, "params.inputResponses")
			if ok {
				e.InputResponses = b[i:end]
			}
			return end, err
		case parMeta:
			if b[i] != '{' {
				s.invalid(CodeInvalidParams, i, "params._meta must be an object")
				return s.value(i, depth)
			}
			end, err := s.object(i, depth, objMeta)
			e.Meta, e.pos[fieldMeta] = b[i:end], i
			return end, err
		case parProgressToken:
			end, err := s.idValue(i, depth, CodeInvalidParams, "params.progressToken")
			e.ParamsProgressToken, e.pos[FieldParamsProgressToken] = b[i:end], i
			return end, err
		case parRequestID:
			end, err := s.idValue(i, depth, CodeInvalidParams, "params.requestId")
			e.RequestID, e.pos[FieldRequestID] = b[i:end], i
			return end, err
		}
	case objMeta:
		switch idx {
		case metaProgressToken:
			end, err := s.idValue(i, depth, CodeInvalidParams, "_meta.progressToken")
			e.ProgressToken, e.pos[FieldProgressToken] = b[i:end], i
			return end, err
		case metaProtocolVersion, metaLogLevel:
			end, ok, err := s.strValue(i, depth, CodeInvalidParams, qualified[objMeta][idx])
			if ok {
				if idx == metaLogLevel {
					e.LogLevel = b[i:end]
				} else {
					e.ProtocolVersion = b[i:end]
				}
			}
			return end, err
		case metaClientCapabilities, metaClientInfo:
			end, ok, err := s.objValue(i, depth, qualified[objMeta][idx])
			if ok {
				if idx == metaClientInfo {
					e.ClientInfo = b[i:end]
				} else {
					e.ClientCapabilities = b[i:end]
				}
			}
			return end, err
		}
	case objResult:
		switch idx {
		case resNextCursor:
			end, ok, err := s.strValue(i, depth, CodeInvalidRequest, "result.nextCursor")
			if ok {
				e.NextCursor, e.pos[FieldNextCursor] = b[i:end], i
			}
			return end, err
		case resResultType:
			end, ok, err := s.strValue(i, depth, CodeInvalidRequest, "result.resultType")
			if ok {
				e.ResultType, e.pos[FieldResultType] = b[i:end], i
			}
			return end, err
		case resInputRequests:
			end, ok, err := s.objValue(i, depth, "result.inputRequests")
			if ok {
				e.InputRequests = b[i:end]
			}
			return end, err
		case resRequestState:
			end, ok, err := s.strValue(i, depth, CodeInvalidRequest, "result.requestState")
			if ok {
				e.ResultRequestState = b[i:end]
			}
			return end, err
		}
	case objError:
		switch idx {
		case errCode:
			if b[i] == '-' || (b[i] >= '0' && b[i] <= '9') {
				end, isInt, err := s.number(i)
				if err == nil && isInt {
					e.ErrorCode = b[i:end]
				}
				return end, err
			}
			return s.value(i, depth)
		case errMessage:
			end, ok, err := s.strValue(i, depth, CodeInvalidRequest, "error.message")
			if ok {
				e.ErrorMessage = b[i:end]
			}
			return end, err
		}
	}
	return s.value(i, depth)
}

// validID reports whether a validated JSON value is a string, an integer or
// null.
func validID(tok []byte) bool {
	switch tok[0] {
	case '"':
		return true
	case 'n':
		return tok[1] == 'u'
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		for _, c := range tok {
			if c == '.' || c == 'e' || c == 'E' {
				return false
			}
		}
		return true
	}
	return false
}

// strValue scans a member value that must be a string; ok reports that it
// was one.
func (s *scanner) strValue(i, depth, code int, what string) (int, bool, error) {
	if s.b[i] != '"' {
		s.invalid(code, i, what+" must be a string")
		end, err := s.value(i, depth)
		return end, false, err
	}
	end, _, err := s.str(i)
	return end, err == nil, err
}

// objValue scans a member value that must be an object.
func (s *scanner) objValue(i, depth int, what string) (int, bool, error) {
	if s.b[i] != '{' {
		s.invalid(CodeInvalidParams, i, what+" must be an object")
		end, err := s.value(i, depth)
		return end, false, err
	}
	end, err := s.anyObject(i, depth)
	return end, err == nil, err
}

// idValue scans a request id or progress token: a string or an integer;
// null passes here and is judged by the caller.
func (s *scanner) idValue(i, depth, code int, what string) (int, error) {
	b := s.b
	switch c := b[i]; {
	case c == '"':
		end, _, err := s.str(i)
		return end, err
	case c == '-' || (c >= '0' && c <= '9'):
		end, isInt, err := s.number(i)
		if err == nil && !isInt {
			s.invalid(code, i, what+" must be a string or an integer")
		}
		return end, err
	case c == 'n' && what == "id":
		return s.lit(i, "null")
	}
	s.invalid(code, i, what+" must be a string or an integer")
	return s.value(i, depth)
}
