package loadgen

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/mcpgw/mcpgw/internal/mcpwire"
)

// Protocol revisions the echo backend speaks: the legacy Streamable HTTP
// era, newest first. It answers initialize with the client's revision when it
// knows it and with the newest otherwise, as the lifecycle section of the
// spec (2025-11-25, basic/lifecycle "Version Negotiation") asks.
var echoVersions = []string{"2025-11-25", "2025-06-18", "2025-03-26"}

// LatestVersion is the protocol revision the load generator asks for.
const LatestVersion = "2025-11-25"

// EchoTool is the one tool the echo backend offers.
const EchoTool = "echo"

// maxEchoBody bounds a request body; the calls here are a few hundred bytes.
const maxEchoBody = 1 << 20

// Shared header values: net/http only reads them, and sharing them saves an
// allocation per response.
var (
	hdrJSON  = []string{"application/json"}
	hdrAllow = []string{"POST, DELETE"}
)

// Echo is a minimal legacy (2025-11-25) Streamable HTTP MCP server with one
// tool, echo, whose result is its arguments as text. It exists to be a
// backend cheap enough never to be the bottleneck of a gateway benchmark:
// envelope-only decoding, JSON (never SSE) replies with Content-Length,
// pooled buffers and a lock-free session table.
//
// It implements initialize (issuing Mcp-Session-Id), ping, tools/list,
// tools/call, 202 for notifications and client responses, DELETE to end a
// session, 405 for GET (it never sends server-initiated messages), 400 for a
// missing session id and 404 for an unknown one (2025-11-25,
// basic/transports "Session Management").
type Echo struct {
	// sessions holds the live session ids (string → struct{}); a sync.Map
	// because ids are written once and then only read, by every request.
	sessions sync.Map
	nsess    atomic.Int64
	calls    atomic.Uint64
	bufs     sync.Pool // *[]byte, request and response buffers
}

// NewEcho returns an echo backend with no sessions.
func NewEcho() *Echo {
	e := &Echo{}
	e.bufs.New = func() any { b := make([]byte, 0, 4096); return &b }
	return e
}

// Sessions is the number of live sessions.
func (e *Echo) Sessions() int { return int(e.nsess.Load()) }

// Calls is the number of tools/call requests answered with a result.
func (e *Echo) Calls() uint64 { return e.calls.Load() }

func (e *Echo) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodPost:
		e.post(w, r)
	case http.MethodDelete:
		sid := sessionHeader(r.Header)
		switch {
		case sid == "":
			http.Error(w, "missing Mcp-Session-Id", http.StatusBadRequest)
		case e.drop(sid):
			w.WriteHeader(http.StatusNoContent)
		default:
			http.Error(w, "unknown session", http.StatusNotFound)
		}
	default:
		w.Header()["Allow"] = hdrAllow
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	}
}

func (e *Echo) drop(sid string) bool {
	if _, ok := e.sessions.LoadAndDelete(sid); ok {
		e.nsess.Add(-1)
		return true
	}
	return false
}

// sessionHeader reads Mcp-Session-Id without Header.Get's canonicalisation:
// the map key is already canonical.
func sessionHeader(h http.Header) string {
	if v := h["Mcp-Session-Id"]; len(v) > 0 {
		return v[0]
	}
	return ""
}

func (e *Echo) post(w http.ResponseWriter, r *http.Request) {
	bp := e.bufs.Get().(*[]byte)
	defer e.bufs.Put(bp)
	body, err := readBody(r.Body, r.ContentLength, (*bp)[:0], maxEchoBody)
	*bp = body[:0]
	if err != nil {
		if errors.Is(err, errTooLarge) {
			http.Error(w, "request body too large", http.StatusRequestEntityTooLarge)
		} else {
			http.Error(w, "reading body: "+err.Error(), http.StatusBadRequest)
		}
		return
	}
	if v := r.Header["Mcp-Protocol-Version"]; len(v) > 0 && !knownVersion(v[0]) {
		http.Error(w, "unsupported MCP-Protocol-Version", http.StatusBadRequest)
		return
	}
	var env mcpwire.Envelope
	if err := mcpwire.Scan(body, &env); err != nil {
		code := mcpwire.CodeParseError
		var me *mcpwire.Error
		if errors.As(err, &me) {
			code = me.Code
		}
		e.reply(w, http.StatusBadRequest, nil, func(dst []byte) []byte {
			return appendError(dst, code, err.Error())
		})
		return
	}
	if env.Kind == mcpwire.KindRequest && env.Method.Equal("initialize") {
		e.initialize(w, &env)
		return
	}
	sid := sessionHeader(r.Header)
	if sid == "" {
		http.Error(w, "missing Mcp-Session-Id", http.StatusBadRequest)
		return
	}
	if _, ok := e.sessions.Load(sid); !ok {
		http.Error(w, "unknown session", http.StatusNotFound)
		return
	}
	if env.Kind != mcpwire.KindRequest {
		// Notifications and responses to our (nonexistent) requests.
		w.WriteHeader(http.StatusAccepted)
		return
	}
	switch {
	case env.Method.Equal("tools/call"):
		if !env.Name.Equal(EchoTool) {
			e.reply(w, http.StatusOK, env.ID, func(dst []byte) []byte {
				return appendError(dst, mcpwire.CodeInvalidParams, "unknown tool")
			})
			return
		}
		args := env.Arguments
		if args == nil {
			args = []byte("{}")
		}
		e.calls.Add(1)
		e.reply(w, http.StatusOK, env.ID, func(dst []byte) []byte {
			dst = append(dst, `"result":{"content":[{"type":"text","text":`...)
			dst = appendString(dst, args)
			return append(dst, `}]}`...)
		})
	case env.Method.Equal("tools/list"):
		e.reply(w, http.StatusOK, env.ID, func(dst []byte) []byte {
			return append(dst, `"result":{"tools":[{"name":"echo","description":"Returns its arguments as text.","inputSchema":{"type":"object"}}]}`...)
		})
	case env.Method.Equal("ping"):
		e.reply(w, http.StatusOK, env.ID, func(dst []byte) []byte {
			return append(dst, `"result":{}`...)
		})
	default:
		e.reply(w, http.StatusOK, env.ID, func(dst []byte) []byte {
			return appendError(dst, -32601, "method not found")
		})
	}
}

func (e *Echo) initialize(w http.ResponseWriter, env *mcpwire.Envelope) {
	version := echoVersions[0]
	if v := member(env.Params, "protocolVersion"); len(v) > 2 && knownVersion(string(v[1:len(v)-1])) {
		version = string(v[1 : len(v)-1])
	}
	var raw [16]byte
	_, _ = rand.Read(raw[:]) // crypto/rand.Read never fails on Linux (Go ≥ 1.24)
	sid := hex.EncodeToString(raw[:])
	e.sessions.Store(sid, struct{}{})
	e.nsess.Add(1)
	w.Header()["Mcp-Session-Id"] = []string{sid}
	e.reply(w, http.StatusOK, env.ID, func(dst []byte) []byte {
		dst = append(dst, `"result":{"protocolVersion":"`...)
		dst = append(dst, version...)
		return append(dst, `","capabilities":{"tools":{}},"serverInfo":{"name":"mcpgw-echo","version":"1"}}`...)
	})
}

// reply writes {"jsonrpc":"2.0","id":ID,<member>} with Content-Length, so
// net/http sends headers and body in one write. A nil id is written as null.
func (e *Echo) reply(w http.ResponseWriter, status int, id []byte, member func([]byte) []byte) {
	bp := e.bufs.Get().(*[]byte)
	defer e.bufs.Put(bp)
	out := append((*bp)[:0], `{"jsonrpc":"2.0","id":`...)
	if id == nil {
		out = append(out, "null"...)
	} else {
		out = append(out, id...)
	}
	out = append(out, ',')
	out = member(out)
	out = append(out, '}')
	*bp = out[:0]
	h := w.Header()
	h["Content-Type"] = hdrJSON
	h["Content-Length"] = []string{strconv.Itoa(len(out))}
	w.WriteHeader(status)
	_, _ = w.Write(out)
}

func appendError(dst []byte, code int, msg string) []byte {
	dst = append(dst, `"error":{"code":`...)
	dst = strconv.AppendInt(dst, int64(code), 10)
	dst = append(dst, `,"message":`...)
	dst = appendString(dst, []byte(msg))
	return append(dst, '}')
}

func knownVersion(v string) bool {
	for _, k := range echoVersions {
		if v == k {
			return true
		}
	}
	return false
}

var errTooLarge = errors.New("body too large")

// readBody reads r into buf (reusing its capacity), refusing more than limit
// bytes. With a known length it reads exactly that much in one go.
func readBody(r io.Reader, length int64, buf []byte, limit int) ([]byte, error) {
	if length > int64(limit) {
		return buf, errTooLarge
	}
	if length >= 0 {
		if cap(buf) < int(length) {
			buf = make([]byte, 0, length)
		}
		buf = buf[:length]
		_, err := io.ReadFull(r, buf)
		return buf, err
	}
	for {
		if len(buf) == cap(buf) {
			if len(buf) >= limit {
				return buf, errTooLarge
			}
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if len(buf) > limit {
			return buf, errTooLarge
		}
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}
