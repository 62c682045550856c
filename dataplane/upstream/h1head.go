package upstream

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
)

// respHead is what the edge keeps of an HTTP/1.x response head: the
// status, the body's framing (RFC 9112 §6.3) and the two fields it acts
// on. http.ReadResponse builds a map of every field, a Response and a
// body reader per reply (about nine allocations); the hot path needs none
// of that, so readHead parses into a respHead that lives in its
// connection and is reused.
type respHead struct {
	status        int
	minor         int   // HTTP/1.minor
	contentLength int64 // -1: not declared (chunked, or read until close)
	chunked       bool
	// close: the connection cannot carry another request after this
	// response (Connection: close, HTTP/1.0 without keep-alive, a body
	// delimited by the close, or framing that smells of smuggling).
	close bool

	// The first Content-Type and Mcp-Session-Id values, as offsets into
	// vals: vals may grow while later fields are read.
	ctOff, ctEnd   int
	sidOff, sidEnd int
	vals           []byte
	// long gathers a line longer than the bufio.Reader's buffer.
	long []byte
}

// Bounds on a response head: generous for any MCP server or the proxy in
// front of it, small enough that a broken backend cannot make the edge
// buffer without end or loop on informational responses.
const (
	maxHeadBytes   = 64 << 10
	maxHeadFields  = 256
	maxInformation = 5
)

var errMalformedHead = errors.New("malformed HTTP response")

func (h *respHead) contentType() []byte { return h.vals[h.ctOff:h.ctEnd] }
func (h *respHead) sessionID() []byte   { return h.vals[h.sidOff:h.sidEnd] }

// bodyless reports whether the status forbids a body (RFC 9112 §6.3).
func bodyless(status int) bool { return status < 200 || status == 204 || status == 304 }

// readHead reads the final response head from br into h, skipping
// informational (1xx) responses. It is strict where leniency would let a
// backend smuggle a second response into the connection: one Content-Length
// value, Transfer-Encoding only as a lone "chunked", no obs-fold, no
// control characters in a field.
func readHead(br *bufio.Reader, h *respHead) error {
	for n := 0; ; n++ {
		if err := readOneHead(br, h); err != nil {
			return err
		}
		switch {
		case h.status == 101:
			// We never ask to switch protocols; a server that does is
			// not speaking HTTP/1.1 to us any more.
			return fmt.Errorf("%w: unexpected 101 Switching Protocols", errMalformedHead)
		case h.status >= 200:
			return nil
		case n+1 >= maxInformation:
			return fmt.Errorf("%w: more than %d informational responses", errMalformedHead, maxInformation)
		}
	}
}

func readOneHead(br *bufio.Reader, h *respHead) error {
	*h = respHead{vals: h.vals[:0], long: h.long[:0]}
	budget := maxHeadBytes
	line, err := readHeadLine(br, h, &budget)
	if err != nil {
		return eofUnexpected(err)
	}
	if err := h.parseStatusLine(line); err != nil {
		return err
	}
	var (
		fields                  int
		cl                      int64 = -1
		te                      int
		teChunked               bool
		connClose, connKeepOpen bool
		haveCT, haveSID         bool
	)
	for {
		line, err := readHeadLine(br, h, &budget)
		if err != nil {
			return eofUnexpected(err)
		}
		if len(line) == 0 {
			break
		}
		if fields++; fields > maxHeadFields {
			return fmt.Errorf("%w: more than %d header fields", errMalformedHead, maxHeadFields)
		}
		if line[0] == ' ' || line[0] == '\t' {
			// obs-fold: RFC 9112 §5.2 lets a gateway refuse it, and
			// refusing is simpler than guessing what it continues.
			return fmt.Errorf("%w: folded header line", errMalformedHead)
		}
		colon := bytes.IndexByte(line, ':')
		if colon < 0 {
			return fmt.Errorf("%w: header line without a colon: %.40q", errMalformedHead, line)
		}
		name, value := line[:colon], trimOWS(line[colon+1:])
		if !isToken(name) {
			return fmt.Errorf("%w: invalid header name %.40q", errMalformedHead, name)
		}
		if !validFieldValue(value) {
			return fmt.Errorf("%w: invalid value for header %.40q", errMalformedHead, name)
		}
		switch {
		case equalFold(name, "Content-Length"):
			n, ok := parseDecimal(value)
			if !ok {
				return fmt.Errorf("%w: bad Content-Length %.40q", errMalformedHead, value)
			}
			if cl >= 0 && n != cl {
				return fmt.Errorf("%w: Content-Length both %d and %d", errMalformedHead, cl, n)
			}
			cl = n
		case equalFold(name, "Transfer-Encoding"):
			te++
			teChunked = equalFold(value, "chunked")
		case equalFold(name, "Connection"):
			connClose = connClose || hasToken(value, "close")
			connKeepOpen = connKeepOpen || hasToken(value, "keep-alive")
		case equalFold(name, "Content-Type") && !haveCT:
			haveCT = true
			h.ctOff = len(h.vals)
			h.vals = append(h.vals, value...)
			h.ctEnd = len(h.vals)
		case equalFold(name, "Mcp-Session-Id") && !haveSID:
			haveSID = true
			h.sidOff = len(h.vals)
			h.vals = append(h.vals, value...)
			h.sidEnd = len(h.vals)
		}
	}

	if h.minor == 0 {
		h.close = connClose || !connKeepOpen
	} else {
		h.close = connClose
	}
	chunked := false
	switch {
	case te == 0:
	case h.minor == 0:
		// An HTTP/1.0 server cannot mean chunked (RFC 9112 §6.1): the
		// framing is suspect, so the connection goes after this reply.
		h.close = true
	case te > 1 || !teChunked:
		// Only a lone "chunked", as net/http and nginx accept: anything
		// else is where smuggling lives.
		return fmt.Errorf("%w: unsupported Transfer-Encoding", errMalformedHead)
	default:
		chunked = true
	}
	switch {
	case bodyless(h.status):
		h.contentLength = 0
	case chunked:
		// Transfer-Encoding overrides Content-Length (RFC 9112 §6.3);
		// both at once may be a smuggling attempt, so the connection is
		// not trusted with another request.
		h.chunked = true
		h.contentLength = -1
		if cl >= 0 {
			h.close = true
		}
	case cl >= 0:
		h.contentLength = cl
	default:
		h.contentLength = -1
		h.close = true // the body ends when the server closes
	}
	return nil
}

// parseStatusLine reads "HTTP/1.x NNN[ reason]".
func (h *respHead) parseStatusLine(line []byte) error {
	if len(line) < 12 || string(line[:7]) != "HTTP/1." || line[8] != ' ' || (len(line) > 12 && line[12] != ' ') {
		return fmt.Errorf("%w: bad status line %.60q", errMalformedHead, line)
	}
	switch line[7] {
	case '0':
		h.minor = 0
	case '1':
		h.minor = 1
	default:
		return fmt.Errorf("%w: unsupported version in %.60q", errMalformedHead, line)
	}
	code := 0
	for _, c := range line[9:12] {
		if c < '0' || c > '9' {
			return fmt.Errorf("%w: bad status code in %.60q", errMalformedHead, line)
		}
		code = code*10 + int(c-'0')
	}
	if code < 100 || code > 599 {
		return fmt.Errorf("%w: status code %d out of range", errMalformedHead, code)
	}
	h.status = code
	for _, c := range line[12:] {
		if c < ' ' && c != '\t' || c == 0x7f {
			return fmt.Errorf("%w: control character in status line", errMalformedHead)
		}
	}
	return nil
}

// readHeadLine returns the next line without its line ending (CRLF, or a
// bare LF as RFC 9112 §2.2 allows), charging it to budget. The line
// aliases br's buffer or h.long and is valid until the next read.
func readHeadLine(br *bufio.Reader, h *respHead, budget *int) ([]byte, error) {
	line, err := br.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		h.long = append(h.long[:0], line...)
		for errors.Is(err, bufio.ErrBufferFull) {
			if len(h.long) > *budget {
				return nil, fmt.Errorf("%w: head larger than %d bytes", errMalformedHead, maxHeadBytes)
			}
			line, err = br.ReadSlice('\n')
			h.long = append(h.long, line...)
		}
		line = h.long
	}
	if err != nil {
		return nil, err
	}
	if *budget -= len(line); *budget < 0 {
		return nil, fmt.Errorf("%w: head larger than %d bytes", errMalformedHead, maxHeadBytes)
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	if bytes.IndexByte(line, '\r') >= 0 {
		return nil, fmt.Errorf("%w: bare CR in head", errMalformedHead)
	}
	return line, nil
}

func eofUnexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// tchar per RFC 9110 §5.6.2.
var tokenTable = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

func isToken(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if !tokenTable[c] {
			return false
		}
	}
	return true
}

// validFieldValue allows what RFC 9110 §5.5 does: visible characters,
// obs-text, SP and HTAB; no NUL, CR, LF or other controls.
func validFieldValue(v []byte) bool {
	for _, c := range v {
		if c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// equalFold compares b with the ASCII string s, ignoring case.
func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		x, y := b[i], s[i]
		if x == y {
			continue
		}
		if x|0x20 != y|0x20 || x|0x20 < 'a' || x|0x20 > 'z' {
			return false
		}
	}
	return true
}

// hasToken reports whether the comma-separated list v holds tok.
func hasToken(v []byte, tok string) bool {
	for len(v) > 0 {
		var item []byte
		if i := bytes.IndexByte(v, ','); i >= 0 {
			item, v = v[:i], v[i+1:]
		} else {
			item, v = v, nil
		}
		if equalFold(trimOWS(item), tok) {
			return true
		}
	}
	return false
}

// parseDecimal parses 1*DIGIT that fits in 63 bits.
func parseDecimal(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}
