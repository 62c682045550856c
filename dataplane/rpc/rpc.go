// Package rpc holds the JSON-RPC 2.0 message shapes and byte builders the
// edge's upstream and downstream sides share. Requests are built by
// appending raw, already-validated JSON (params, results) into a buffer, so
// arguments and results cross the edge as bytes and are never re-encoded.
//
// Parsing here is deliberately small: it is used for messages that come from
// backends (which the edge addresses by its own ids) and for the parts of a
// downstream message the edge must rewrite. The strict downstream envelope
// check (duplicate and case-variant keys) belongs to internal/mcpwire.
package rpc

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
)

// JSON-RPC and MCP error codes the edge produces itself.
const (
	CodeParseError     = -32700
	CodeInvalidRequest = -32600
	CodeMethodNotFound = -32601
	CodeInvalidParams  = -32602
	CodeInternalError  = -32603
	// CodeHeaderMismatch is the 2026-07-28 code for Mcp-Method/Mcp-Name
	// headers that disagree with the body.
	CodeHeaderMismatch = -32020
	// CodeUnsupportedVersion is the 2026-07-28 code for a protocol version the
	// server does not speak.
	CodeUnsupportedVersion = -32022
	// CodeBackendUnavailable is a server-defined error (JSON-RPC reserves
	// -32000..-32099 for them): the backend could not be reached or failed
	// mid-call. It is never turned into a success.
	CodeBackendUnavailable = -32001
	// CodeRequestCancelled is used when a call ends because its caller
	// cancelled it and a reply is still owed (e.g. to stdio peers).
	CodeRequestCancelled = -32800
)

// Message is one JSON-RPC message with its variable parts kept raw.
// Exactly one of these holds: Method set and ID set (request), Method set and
// ID empty (notification), Method empty and Result or Error set (response).
type Message struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id,omitempty"`
	Method  string          `json:"method,omitempty"`
	Params  json.RawMessage `json:"params,omitempty"`
	Result  json.RawMessage `json:"result,omitempty"`
	Error   json.RawMessage `json:"error,omitempty"`
}

// IsRequest reports whether m expects a response.
func (m *Message) IsRequest() bool { return m.Method != "" && len(m.ID) > 0 }

// IsNotification reports whether m is a notification.
func (m *Message) IsNotification() bool { return m.Method != "" && len(m.ID) == 0 }

// IsResponse reports whether m answers a request.
func (m *Message) IsResponse() bool { return m.Method == "" && len(m.ID) > 0 }

// ErrBatch reports a JSON array body; batches were removed from MCP in
// 2025-06-18 and the edge does not accept them.
var ErrBatch = errors.New("JSON-RPC batches are not supported")

// Parse decodes one JSON-RPC message. It checks the jsonrpc version and the
// message's shape; params and results are kept raw.
func Parse(b []byte) (*Message, error) {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '[' {
		return nil, ErrBatch
	}
	var m Message
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("parsing JSON-RPC message: %w", err)
	}
	if m.JSONRPC != "2.0" {
		return nil, fmt.Errorf("parsing JSON-RPC message: jsonrpc must be \"2.0\", got %q", m.JSONRPC)
	}
	if bytes.Equal(m.ID, []byte("null")) {
		m.ID = nil
	}
	if m.Method == "" && len(m.ID) == 0 {
		return nil, errors.New("parsing JSON-RPC message: neither a method nor an id")
	}
	if m.Method == "" && len(m.Result) == 0 && len(m.Error) == 0 {
		return nil, errors.New("parsing JSON-RPC message: response without result or error")
	}
	return &m, nil
}

// AppendRequest appends a request with a numeric id.
func AppendRequest(dst []byte, id int64, method string, params json.RawMessage) []byte {
	dst = append(dst, `{"jsonrpc":"2.0","id":`...)
	dst = strconv.AppendInt(dst, id, 10)
	dst = append(dst, `,"method":`...)
	dst = strconv.AppendQuote(dst, method)
	if len(params) > 0 {
		dst = append(dst, `,"params":`...)
		dst = append(dst, params...)
	}
	return append(dst, '}')
}

// AppendRequestRawID appends a request whose id is raw JSON.
func AppendRequestRawID(dst []byte, id json.RawMessage, method string, params json.RawMessage) []byte {
	dst = append(dst, `{"jsonrpc":"2.0","id":`...)
	dst = append(dst, id...)
	dst = append(dst, `,"method":`...)
	dst = strconv.AppendQuote(dst, method)
	if len(params) > 0 {
		dst = append(dst, `,"params":`...)
		dst = append(dst, params...)
	}
	return append(dst, '}')
}

// AppendNotification appends a notification.
func AppendNotification(dst []byte, method string, params json.RawMessage) []byte {
	dst = append(dst, `{"jsonrpc":"2.0","method":`...)
	dst = strconv.AppendQuote(dst, method)
	if len(params) > 0 {
		dst = append(dst, `,"params":`...)
		dst = append(dst, params...)
	}
	return append(dst, '}')
}

// AppendResponse appends a response carrying either result or a raw error
// object (exactly one must be non-empty).
func AppendResponse(dst []byte, id json.RawMessage, result, rpcErr json.RawMessage) []byte {
	dst = append(dst, `{"jsonrpc":"2.0","id":`...)
	if len(id) == 0 {
		dst = append(dst, "null"...)
	} else {
		dst = append(dst, id...)
	}
	if len(rpcErr) > 0 {
		dst = append(dst, `,"error":`...)
		dst = append(dst, rpcErr...)
	} else {
		dst = append(dst, `,"result":`...)
		if len(result) == 0 {
			dst = append(dst, "{}"...)
		} else {
			dst = append(dst, result...)
		}
	}
	return append(dst, '}')
}

// Error is a JSON-RPC error object.
type Error struct {
	Code    int             `json:"code"`
	Message string          `json:"message"`
	Data    json.RawMessage `json:"data,omitempty"`
}

func (e *Error) Error() string { return fmt.Sprintf("JSON-RPC error %d: %s", e.Code, e.Message) }

// Raw encodes e as a JSON error object.
func (e *Error) Raw() json.RawMessage {
	b, err := json.Marshal(e)
	if err != nil {
		// Only Data can fail and it is already valid JSON.
		return json.RawMessage(`{"code":-32603,"message":"internal error"}`)
	}
	return b
}

// Errorf builds an Error.
func Errorf(code int, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// AppendErrorResponse appends a response carrying e.
func AppendErrorResponse(dst []byte, id json.RawMessage, e *Error) []byte {
	return AppendResponse(dst, id, nil, e.Raw())
}
