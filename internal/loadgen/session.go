package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"

	"github.com/mcpgw/mcpgw/internal/mcpwire"
)

// maxResponse bounds one response body or SSE event the client will read.
const maxResponse = 4 << 20

var (
	hdrAcceptBoth = []string{"application/json, text/event-stream"}
	hdrVersion    = []string{LatestVersion}
)

// Session is one client-side MCP session over legacy Streamable HTTP: it
// initializes, then sends requests carrying its Mcp-Session-Id. It accepts
// JSON and SSE responses (gateways and SDK servers answer with either). A
// Session is used by one goroutine at a time; its buffers are reused from
// call to call so the client spends little per request.
type Session struct {
	client  *http.Client
	url     string
	auth    []string // "Bearer <key>", or nil
	id      []string // Mcp-Session-Id, once initialized
	version []string // negotiated MCP-Protocol-Version
	nextID  int64

	req []byte
	buf []byte
	br  *bufio.Reader
}

// NewSession returns a session that has not initialized yet. key, when not
// empty, is sent as a bearer token on every request.
func NewSession(client *http.Client, url, key string) *Session {
	s := &Session{client: client, url: url, version: hdrVersion}
	if key != "" {
		s.auth = []string{"Bearer " + key}
	}
	return s
}

// ID is the session id the server issued, or "" before Initialize.
func (s *Session) ID() string {
	if s.id == nil {
		return ""
	}
	return s.id[0]
}

// CallError is a request that reached the server and failed: a non-2xx
// status, a JSON-RPC error, or a tools/call result with isError set.
type CallError struct {
	Status int    // HTTP status
	Code   int64  // JSON-RPC error code, 0 when not a JSON-RPC error
	Msg    string // what went wrong, shortened
}

func (e *CallError) Error() string {
	switch {
	case e.Code != 0:
		return fmt.Sprintf("JSON-RPC error %d: %s", e.Code, e.Msg)
	case e.Status != http.StatusOK && e.Status != http.StatusAccepted:
		return fmt.Sprintf("HTTP %d: %s", e.Status, e.Msg)
	}
	return e.Msg
}

// Initialize performs initialize and notifications/initialized, as the
// lifecycle requires before any other request (2025-11-25, basic/lifecycle).
func (s *Session) Initialize(ctx context.Context) error {
	s.req = append(s.req[:0], `{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"`+LatestVersion+`","capabilities":{},"clientInfo":{"name":"mcpgw-load","version":"1"}}}`...)
	s.nextID = 1
	resp, err := s.post(ctx, s.req)
	if err != nil {
		return fmt.Errorf("initialize: %w", err)
	}
	if sid := resp.Header.Get("Mcp-Session-Id"); sid != "" {
		s.id = []string{sid}
	}
	result, err := s.readResponse(resp, []byte("0"))
	if err != nil {
		return fmt.Errorf("initialize: %w", err)
	}
	if v := member(result, "protocolVersion"); len(v) > 2 && v[0] == '"' {
		s.version = []string{string(v[1 : len(v)-1])}
	}
	resp, err = s.post(ctx, []byte(`{"jsonrpc":"2.0","method":"notifications/initialized"}`))
	if err != nil {
		return fmt.Errorf("notifications/initialized: %w", err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponse))
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("notifications/initialized: %w", &CallError{Status: resp.StatusCode, Msg: "want 202 Accepted"})
	}
	return nil
}

// CallTool sends tools/call for tool with the raw JSON object args and
// returns the raw result. The result aliases the session's buffer: it is
// valid until the next call. An isError result is returned with a
// *CallError.
func (s *Session) CallTool(ctx context.Context, tool string, args []byte) ([]byte, error) {
	id := s.nextID
	s.nextID++
	b := append(s.req[:0], `{"jsonrpc":"2.0","id":`...)
	b = strconv.AppendInt(b, id, 10)
	idEnd := len(b)
	b = append(b, `,"method":"tools/call","params":{"name":`...)
	b = appendString(b, []byte(tool))
	b = append(b, `,"arguments":`...)
	b = append(b, args...)
	b = append(b, `}}`...)
	s.req = b
	resp, err := s.post(ctx, b)
	if err != nil {
		// The transport may still be writing b when a call fails early
		// (an answer before the body was read, a timeout), so the next call
		// must not overwrite it: start a fresh buffer.
		s.req = nil
		return nil, err
	}
	result, err := s.readResponse(resp, b[len(`{"jsonrpc":"2.0","id":`):idEnd])
	if err != nil {
		s.req = nil
		return nil, err
	}
	if v := member(result, "isError"); string(v) == "true" {
		return result, &CallError{Status: resp.StatusCode, Msg: "tools/call result has isError: " + shorten(result)}
	}
	return result, nil
}

// Request sends one request with the raw JSON params (nil for none) and
// returns its raw result, valid until the next request on the session. It is
// for setup and checks; CallTool is the loop's cheaper path.
func (s *Session) Request(ctx context.Context, method string, params []byte) ([]byte, error) {
	id := s.nextID
	s.nextID++
	b := append(s.req[:0], `{"jsonrpc":"2.0","id":`...)
	b = strconv.AppendInt(b, id, 10)
	idEnd := len(b)
	b = append(b, `,"method":`...)
	b = appendString(b, []byte(method))
	if params != nil {
		b = append(b, `,"params":`...)
		b = append(b, params...)
	}
	b = append(b, '}')
	s.req = nil // rare path: no reuse, so no aliasing worries
	resp, err := s.post(ctx, b)
	if err != nil {
		return nil, err
	}
	return s.readResponse(resp, b[len(`{"jsonrpc":"2.0","id":`):idEnd])
}

// Close ends the session with DELETE (2025-11-25, basic/transports
// "Session Management"). A server that does not allow it (405) is fine.
func (s *Session) Close(ctx context.Context) error {
	if s.id == nil {
		return nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, s.url, nil)
	if err != nil {
		return err
	}
	s.headers(req.Header)
	resp, err := s.client.Do(req)
	if err != nil {
		return fmt.Errorf("DELETE session: %w", err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponse))
	resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK, http.StatusNoContent, http.StatusAccepted, http.StatusMethodNotAllowed:
		s.id = nil
		return nil
	}
	return fmt.Errorf("DELETE session: %w", &CallError{Status: resp.StatusCode, Msg: "unexpected status"})
}

func (s *Session) headers(h http.Header) {
	h["Content-Type"] = hdrJSON
	h["Accept"] = hdrAcceptBoth
	if s.id != nil {
		h["Mcp-Session-Id"] = s.id
		h["Mcp-Protocol-Version"] = s.version
	}
	if s.auth != nil {
		h["Authorization"] = s.auth
	}
}

func (s *Session) post(ctx context.Context, body []byte) (*http.Response, error) {
	// bytes.Reader lets net/http set Content-Length and write headers and a
	// small body together.
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	s.headers(req.Header)
	return s.client.Do(req)
}

// readResponse reads and closes resp and returns the raw result of the
// response to request id, from a JSON body or from the SSE stream (where
// notifications and server requests before it are skipped).
func (s *Session) readResponse(resp *http.Response, id []byte) ([]byte, error) {
	defer resp.Body.Close()
	ct, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return nil, &CallError{Status: resp.StatusCode, Msg: string(bytes.TrimSpace(b))}
	}
	switch ct {
	case "application/json":
		var err error
		s.buf, err = readBody(resp.Body, resp.ContentLength, s.buf[:0], maxResponse)
		if err != nil {
			return nil, fmt.Errorf("reading response: %w", err)
		}
		return answer(s.buf, id)
	case "text/event-stream":
		return s.readSSE(resp.Body, id)
	}
	return nil, &CallError{Status: resp.StatusCode, Msg: "unexpected Content-Type " + strconv.Quote(ct)}
}

// readSSE reads events until the response to id arrives (2025-11-25,
// basic/transports "Sending Messages to the Server": the server may send
// requests and notifications before the response).
func (s *Session) readSSE(body io.Reader, id []byte) ([]byte, error) {
	if s.br == nil {
		s.br = bufio.NewReaderSize(body, 16<<10)
	} else {
		s.br.Reset(body)
	}
	data := s.buf[:0]
	for {
		line, err := s.br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			return nil, errors.New("SSE line longer than 16 KiB")
		}
		if err != nil && len(line) == 0 {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, fmt.Errorf("SSE stream ended before the response: %w", err)
		}
		line = bytes.TrimRight(line, "\r\n")
		switch {
		case len(line) == 0: // end of event
			if len(data) > 0 {
				var env mcpwire.Envelope
				if err := mcpwire.Scan(data, &env); err != nil {
					return nil, fmt.Errorf("SSE event: %w", err)
				}
				if (env.Kind == mcpwire.KindResult || env.Kind == mcpwire.KindError) && bytes.Equal(env.ID, id) {
					s.buf = data
					return answer(data, id)
				}
			}
			data = data[:0]
		case bytes.HasPrefix(line, []byte("data:")):
			v := bytes.TrimPrefix(line[5:], []byte(" "))
			if len(data) > 0 {
				data = append(data, '\n')
			}
			data = append(data, v...)
			if len(data) > maxResponse {
				return nil, errors.New("SSE event larger than 4 MiB")
			}
		}
	}
}

// answer returns the result of the response body to request id.
func answer(body, id []byte) ([]byte, error) {
	var env mcpwire.Envelope
	if err := mcpwire.Scan(body, &env); err != nil {
		return nil, fmt.Errorf("response: %w", err)
	}
	if !bytes.Equal(env.ID, id) {
		return nil, &CallError{Status: http.StatusOK, Msg: fmt.Sprintf("response id %s, want %s", env.ID, id)}
	}
	switch env.Kind {
	case mcpwire.KindResult:
		return env.Result, nil
	case mcpwire.KindError:
		code, _ := strconv.ParseInt(string(env.ErrorCode), 10, 64)
		return nil, &CallError{Status: http.StatusOK, Code: code, Msg: env.ErrorMessage.String()}
	}
	return nil, &CallError{Status: http.StatusOK, Msg: "response is a " + env.Kind.String()}
}

func shorten(b []byte) string {
	if len(b) > 200 {
		return string(b[:200]) + "…"
	}
	return string(b)
}
