package gateway

import (
	"encoding/json"
	"errors"

	"github.com/mcpgw/mcpgw/dataplane/rpc"
	"github.com/mcpgw/mcpgw/internal/mcpwire"
)

// message is one client message as the strict envelope scanner saw it.
// The policy decision reads names and URIs from env, and the bytes sent
// upstream are the same bytes, so a duplicate or case-variant key cannot
// make the check and the backend disagree (DESIGN §4.1).
type message struct {
	rpc.Message
	env mcpwire.Envelope
}

// parse scans body. On failure it returns the JSON-RPC error to answer
// with and whatever id could be read.
func parse(body []byte) (*message, json.RawMessage, *rpc.Error) {
	m := &message{}
	if badID, err := parseInto(m, body); err != nil {
		return nil, badID, err
	}
	return m, nil, nil
}

// parseInto is parse into a zero m (part of a bigger allocation, see post).
func parseInto(m *message, body []byte) (json.RawMessage, *rpc.Error) {
	if err := mcpwire.Scan(body, &m.env); err != nil {
		code := rpc.CodeInvalidRequest
		var we *mcpwire.Error
		if errors.As(err, &we) {
			code = we.Code
		}
		return m.env.ID, rpc.Errorf(code, "mcpgw: %v", err)
	}
	e := &m.env
	m.JSONRPC = "2.0"
	m.ID = e.ID
	m.Params = e.Params
	switch e.Kind {
	case mcpwire.KindRequest, mcpwire.KindNotification:
		m.Method = methodString(e.Method)
	case mcpwire.KindResult:
		m.Result = e.Result
	case mcpwire.KindError:
		m.Error = e.Error
	}
	return nil, nil
}

func (m *message) name() string   { return m.env.NameString() }
func (m *message) uri() string    { return m.env.URIString() }
func (m *message) cursor() string { return m.env.Cursor.String() }

// paramsWithName returns params with params.name set to name, splicing
// the one string so arguments pass through byte for byte.
func (m *message) paramsWithName(name string) json.RawMessage {
	p, n := m.env.Params, m.env.Name
	// Both alias the body and run to its end, so capacities give offsets.
	off := cap(p) - cap(n)
	out := make([]byte, 0, len(p)+len(name)+8)
	out = append(out, p[:off]...)
	out = mcpwire.AppendString(out, name)
	return append(out, p[off+len(n):]...)
}

// methodString returns the method name, without allocating for the
// methods every client sends (a switch on string(b) does not copy).
func methodString(s mcpwire.Str) string {
	if b, ok := s.Unquoted(); ok {
		switch string(b) {
		case "tools/call":
			return "tools/call"
		case "tools/list":
			return "tools/list"
		case "notifications/initialized":
			return "notifications/initialized"
		case "initialize":
			return "initialize"
		case "ping":
			return "ping"
		case "resources/read":
			return "resources/read"
		case "prompts/get":
			return "prompts/get"
		case "notifications/cancelled":
			return "notifications/cancelled"
		case "notifications/progress":
			return "notifications/progress"
		}
	}
	return s.String()
}
