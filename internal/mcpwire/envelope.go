// Package mcpwire is the JSON-RPC 2.0 / MCP envelope codec of the edge's hot
// path (DESIGN §4.3): Scan validates a whole message as strict JSON and finds
// the few envelope fields the gateway decides on (jsonrpc, id, method, params
// name/uri/cursor, _meta, result nextCursor/resultType) as sub-slices of the
// body, without copying or allocating; arguments and results stay raw bytes
// that are passed through untouched.
//
// Strictness is a security property here, not pedantry: the policy check reads
// the envelope through this package while the backend reads the same bytes with
// its own parser. Duplicate keys and case-variant keys ("method" and "Method",
// which encoding/json and many other decoders fold together) are rejected at
// every level the gateway reads, and string values are compared after JSON
// unescaping, so a body cannot say one thing to the policy check and another to
// the backend.
//
// The writers (AppendResult, AppendError, ...) and splice helpers (Replace,
// SetMeta, SetResultField) build messages without encoding/json, copying every
// byte they do not rewrite verbatim.
package mcpwire

import "strconv"

// Kind is the JSON-RPC message kind of a scanned body.
type Kind uint8

// Message kinds. KindInvalid is the zero value and never returned by a
// successful Scan.
const (
	KindInvalid Kind = iota
	KindRequest
	KindNotification
	KindResult
	KindError
)

func (k Kind) String() string {
	switch k {
	case KindRequest:
		return "request"
	case KindNotification:
		return "notification"
	case KindResult:
		return "result"
	case KindError:
		return "error"
	}
	return "invalid"
}

// The _meta keys with which a 2026-07-28 request carries what a legacy client
// said once in initialize (SEP-2575; spec 2026-07-28, basic "_meta").
const (
	MetaProtocolVersion    = "io.modelcontextprotocol/protocolVersion"
	MetaClientCapabilities = "io.modelcontextprotocol/clientCapabilities"
	MetaClientInfo         = "io.modelcontextprotocol/clientInfo"
	MetaLogLevel           = "io.modelcontextprotocol/logLevel"
)

// Result types of the 2026-07-28 Result.resultType (spec 2026-07-28,
// basic/patterns/mrtr).
const (
	ResultTypeComplete      = "complete"
	ResultTypeInputRequired = "input_required"
)

// Envelope is what Scan found in one message. Every slice aliases the scanned
// body: it is valid only while the body is neither modified nor reused. A nil
// slice means the member is absent.
//
// Str fields hold the raw JSON string token, quotes and escapes included; use
// their methods (or the Envelope accessors) to read the decoded value. Fields
// documented as raw hold the JSON value exactly as it appears in the body.
type Envelope struct {
	Kind Kind

	// ID is the raw id token: a string or an integer, or null in an error
	// response. Nil for notifications and for error responses without id.
	ID []byte
	// Method is the request or notification method.
	Method Str

	// Params is the raw params value (object or array).
	Params []byte
	// Name, URI and Cursor are params.name, params.uri and params.cursor.
	Name, URI, Cursor Str
	// Arguments is params.arguments (raw object).
	Arguments []byte
	// InputResponses (raw object) and RequestState are the members a
	// 2026-07-28 client adds to params when it retries a request answered
	// with an input_required result (spec 2026-07-28, basic/patterns/mrtr).
	InputResponses []byte
	RequestState   Str
	// ParamsProgressToken is params.progressToken (raw string or integer), as
	// in notifications/progress; RequestID is params.requestId, as in
	// notifications/cancelled.
	ParamsProgressToken []byte
	RequestID           []byte

	// Meta is params._meta (raw object).
	Meta []byte
	// ProgressToken is params._meta.progressToken (raw string or integer).
	ProgressToken []byte
	// ProtocolVersion, ClientCapabilities (raw object), ClientInfo (raw
	// object) and LogLevel are the 2026-07-28 per-request _meta keys named by
	// the Meta* constants.
	ProtocolVersion    Str
	ClientCapabilities []byte
	ClientInfo         []byte
	LogLevel           Str

	// Result is the raw result value of a result response.
	Result []byte
	// NextCursor and ResultType are result.nextCursor and result.resultType;
	// InputRequests (raw object) and ResultRequestState are the members of an
	// input_required result. They are read only when the result is an object.
	NextCursor         Str
	ResultType         Str
	InputRequests      []byte
	ResultRequestState Str

	// Error is the raw error object of an error response; ErrorCode is its
	// code (a JSON integer token) and ErrorMessage its message.
	Error        []byte
	ErrorCode    []byte
	ErrorMessage Str

	// pos holds the offset in the body of each splice-able field, so the
	// splice helpers need not search for them again. body checks that a
	// splice is given the body this envelope was scanned from.
	pos  [fieldCount]int
	body []byte
}

// Field names a member whose value the splice helpers can replace.
type Field uint8

// Splice-able fields.
const (
	FieldID                  Field = iota // id
	FieldName                             // params.name
	FieldURI                              // params.uri
	FieldCursor                           // params.cursor
	FieldRequestState                     // params.requestState
	FieldParamsProgressToken              // params.progressToken
	FieldRequestID                        // params.requestId
	FieldProgressToken                    // params._meta.progressToken
	FieldNextCursor                       // result.nextCursor
	FieldResultType                       // result.resultType
	fieldParams                           // params (for insertion)
	fieldMeta                             // params._meta (for insertion)
	fieldResult                           // result (for insertion)
	fieldCount
)

var fieldNames = [fieldCount]string{
	FieldID: "id", FieldName: "params.name", FieldURI: "params.uri", FieldCursor: "params.cursor",
	FieldRequestState: "params.requestState", FieldParamsProgressToken: "params.progressToken",
	FieldRequestID: "params.requestId", FieldProgressToken: "params._meta.progressToken",
	FieldNextCursor: "result.nextCursor", FieldResultType: "result.resultType",
	fieldParams: "params", fieldMeta: "params._meta", fieldResult: "result",
}

func (f Field) String() string {
	if f < fieldCount {
		return fieldNames[f]
	}
	return "Field(" + strconv.Itoa(int(f)) + ")"
}

// value returns the current raw value of f.
func (e *Envelope) value(f Field) []byte {
	switch f {
	case FieldID:
		return e.ID
	case FieldName:
		return e.Name
	case FieldURI:
		return e.URI
	case FieldCursor:
		return e.Cursor
	case FieldRequestState:
		return e.RequestState
	case FieldParamsProgressToken:
		return e.ParamsProgressToken
	case FieldRequestID:
		return e.RequestID
	case FieldProgressToken:
		return e.ProgressToken
	case FieldNextCursor:
		return e.NextCursor
	case FieldResultType:
		return e.ResultType
	case fieldParams:
		return e.Params
	case fieldMeta:
		return e.Meta
	case fieldResult:
		return e.Result
	}
	return nil
}

// AppendMethod appends the decoded method to dst.
func (e *Envelope) AppendMethod(dst []byte) []byte { return e.Method.Append(dst) }

// MethodString returns the decoded method.
func (e *Envelope) MethodString() string { return e.Method.String() }

// AppendName appends the decoded params.name to dst.
func (e *Envelope) AppendName(dst []byte) []byte { return e.Name.Append(dst) }

// NameString returns the decoded params.name.
func (e *Envelope) NameString() string { return e.Name.String() }

// AppendURI appends the decoded params.uri to dst.
func (e *Envelope) AppendURI(dst []byte) []byte { return e.URI.Append(dst) }

// URIString returns the decoded params.uri.
func (e *Envelope) URIString() string { return e.URI.String() }

// InputRequired reports whether the message is a result whose resultType is
// input_required.
func (e *Envelope) InputRequired() bool {
	return e.Kind == KindResult && e.ResultType.Equal(ResultTypeInputRequired)
}

// JSON-RPC error codes this package produces.
const (
	CodeParseError     = -32700
	CodeInvalidRequest = -32600
	CodeInvalidParams  = -32602
)

// Error is a Scan or splice failure. Code is the JSON-RPC error code a server
// should answer with: CodeParseError when the body is not JSON at all,
// CodeInvalidRequest when it is JSON but not a valid JSON-RPC/MCP message,
// CodeInvalidParams when a params member the gateway reads has the wrong type.
// Offset is the byte offset in the body where the problem was found.
type Error struct {
	Code   int
	Msg    string
	Offset int
}

func (e *Error) Error() string {
	kind := "invalid request"
	switch e.Code {
	case CodeParseError:
		kind = "parse error"
	case CodeInvalidParams:
		kind = "invalid params"
	}
	return "mcpwire: " + kind + " at offset " + strconv.Itoa(e.Offset) + ": " + e.Msg
}

// ErrBatch is returned by Scan for a top-level array. JSON-RPC batches were
// removed from MCP in 2025-06-18; a server answers one with a single
// invalid-request error (id null) rather than a parse error.
var ErrBatch = &Error{Code: CodeInvalidRequest, Msg: "batch (top-level array) is not supported"}
