package gateway

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/mcpgw/mcpgw/dataplane/state"
)

// Every client request passes through one chain:
//
//	authenticate → decide → forward → record
//
// The three interfaces below are the seams policy and audit plug into. The
// defaults let everything through anonymously and record nothing.

// Principal is the caller a request acts for.
type Principal struct {
	Name   string
	Groups []string
}

// Credentials is what a caller presented.
type Credentials struct {
	// Transport is "http" or "stdio".
	Transport string
	// Header holds the HTTP request headers (nil on stdio).
	Header     http.Header
	RemoteAddr string
}

// Authenticator turns credentials into a principal. An error is answered
// with 401 (HTTP) or a JSON-RPC error (stdio), and nothing else happens.
type Authenticator interface {
	Authenticate(ctx context.Context, c Credentials) (Principal, error)
}

// Action is what a decision is about. For a call, Method is the request's
// method and Backend/Name the item it touches. For list filtering the
// edge asks once per item with Method set to the method that would use it
// (tools/call, prompts/get, resources/read), so a caller never sees an item
// it could not use (DESIGN §5).
type Action struct {
	Method  string
	Backend string // "" for requests that touch no backend
	Name    string // exposed tool/prompt name or resource URI; "" if none
}

// Decision is a policy verdict.
type Decision struct {
	Allow bool
	// Rule and Revision identify what decided, for audit.
	Rule     string
	Revision string
	// Reason is shown to a denied caller.
	Reason string
}

// Decider decides. It is called on the hot path for every request and for
// every listed item, so it must not block. st is the live state the request
// runs on (its Meta carries the policy and revision), so every decision of
// one request, list items included, comes from one snapshot.
type Decider interface {
	Decide(ctx context.Context, st *state.State, p Principal, a Action) Decision
}

// Status is a request's outcome, with the audit log's vocabulary.
type Status string

// The outcomes.
const (
	StatusOK          Status = "ok"
	StatusError       Status = "error"
	StatusDenied      Status = "denied"
	StatusTimeout     Status = "timeout"
	StatusCancelled   Status = "cancelled"
	StatusUnavailable Status = "unavailable"
)

// Request is one client request's passage through the edge: filled in
// along the chain and handed to the Recorder once its outcome is known.
type Request struct {
	// Start is when the request arrived.
	Start           time.Time
	Transport       string
	SessionID       string
	Principal       Principal
	ProtocolVersion string
	ClientName      string
	ClientVersion   string
	// ID is the request's JSON-RPC id as the client sent it.
	ID     json.RawMessage
	Method string
	// Backend and Name say what the request touched ("" when nothing).
	Backend string
	Name    string
	// Arguments are the raw tools/call arguments or prompts/get arguments.
	Arguments json.RawMessage
	Decision  Decision
	Status    Status
	Error     string
	// Latency is arrival to outcome; UpstreamLatency the backend's share.
	Latency         time.Duration
	UpstreamLatency time.Duration
	RequestBytes    int
	ResponseBytes   int
	// TraceID is the W3C trace id (32 lowercase hex digits) of the
	// traceparent the request carried, "" when it carried none or a
	// malformed one.
	TraceID string
	// AuditID, when a Recorder sets it in Begin, is returned to HTTP
	// clients in the Mcpgw-Audit-Id header.
	AuditID string

	// unrecorded is set when Record failed: the client gets an error (and
	// HTTP 503 where the reply has not started) instead of the result.
	unrecorded bool
	// auditHdr backs the Mcpgw-Audit-Id header value, so that it is not
	// an allocation of its own.
	auditHdr [1]string
}

// auditHeader returns the Mcpgw-Audit-Id header value (nil when there is
// no audit id); it aliases rq.
func (rq *Request) auditHeader() []string {
	if rq.AuditID == "" {
		return nil
	}
	rq.auditHdr[0] = rq.AuditID
	return rq.auditHdr[:]
}

// Availability is an optional Recorder method: an error means the
// recorder would refuse events now (a full spool under on_full: refuse),
// so the edge turns requests away before they have any effect upstream
// (HTTP 503, DESIGN §6).
type Availability interface {
	Available() error
}

// Recorder hears about every request exactly once. Begin runs on arrival
// (before authentication), Record once the outcome is known and before the
// response is released to the client. A Record error means the outcome
// could not be made durable: the client then gets an error instead of the
// result (fail closed).
type Recorder interface {
	Begin(r *Request)
	Record(ctx context.Context, r *Request) error
}

// Anonymous authenticates everyone as one principal.
type Anonymous struct{ Name string }

// Authenticate implements Authenticator.
func (a Anonymous) Authenticate(context.Context, Credentials) (Principal, error) {
	return Principal{Name: a.Name}, nil
}

// AllowAll allows everything.
type AllowAll struct{}

// Decide implements Decider.
func (AllowAll) Decide(context.Context, *state.State, Principal, Action) Decision {
	return Decision{Allow: true, Rule: "allow-all (no policy configured)"}
}

// Discard records nothing.
type Discard struct{}

// Begin implements Recorder.
func (Discard) Begin(*Request) {}

// Record implements Recorder.
func (Discard) Record(context.Context, *Request) error { return nil }
