package auditdb

import (
	"bytes"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/mcpgw/mcpgw/internal/audit"
)

// decodeEvent parses one event line for ingest. Lines from edges are almost
// always in the canonical encoding (audit.Event.AppendJSON: fixed field
// order, no whitespace), which decodeCanonical reads several times faster
// than encoding/json; anything else (an escaped string, another field
// order, a malformed line) goes through audit.DecodeJSON, so both paths
// accept and reject exactly the same events.
func decodeEvent(line []byte) (audit.Event, error) {
	if ev, ok := decodeCanonical(line); ok {
		if err := ev.Validate(); err != nil {
			return audit.Event{}, err
		}
		return ev, nil
	}
	return audit.DecodeJSON(line)
}

// canonicalParser walks a canonical line; ok turns false at the first
// deviation, after which the caller falls back.
type canonicalParser struct {
	p  []byte
	ok bool
}

func (c *canonicalParser) lit(s string) {
	if !c.ok || len(c.p) < len(s) || string(c.p[:len(s)]) != s {
		c.ok = false
		return
	}
	c.p = c.p[len(s):]
}

// str reads a string value without escapes; a backslash, a control byte or
// invalid UTF-8 makes the line non-canonical for this parser.
func (c *canonicalParser) str(key string) string {
	c.lit(`,"` + key + `":"`)
	if !c.ok {
		return ""
	}
	i := bytes.IndexByte(c.p, '"')
	if i < 0 {
		c.ok = false
		return ""
	}
	v := c.p[:i]
	for _, b := range v {
		if b < 0x20 || b == '\\' {
			c.ok = false
			return ""
		}
	}
	if !utf8.Valid(v) {
		c.ok = false
		return ""
	}
	c.p = c.p[i+1:]
	return string(v)
}

func (c *canonicalParser) int(key string) int64 {
	c.lit(`,"` + key + `":`)
	if !c.ok {
		return 0
	}
	i := 0
	if i < len(c.p) && c.p[i] == '-' {
		i++
	}
	for i < len(c.p) && c.p[i] >= '0' && c.p[i] <= '9' {
		i++
	}
	v, err := strconv.ParseInt(string(c.p[:i]), 10, 64)
	if err != nil || (i > 1 && c.p[0] == '0') || (i > 2 && c.p[0] == '-' && c.p[1] == '0') {
		c.ok = false // leading zeros are not JSON
		return 0
	}
	c.p = c.p[i:]
	return v
}

func decodeCanonical(line []byte) (audit.Event, bool) {
	var e audit.Event
	c := canonicalParser{p: line, ok: true}
	c.lit(`{"id":"`)
	if !c.ok || len(c.p) < 36 {
		return e, false
	}
	id, err := uuid.ParseBytes(c.p[:36])
	if err != nil {
		return e, false
	}
	e.ID = id
	c.p = c.p[36:]
	c.lit(`","ts":"`)
	if !c.ok || len(c.p) < len(audit.TimeFormat) {
		return e, false
	}
	ts, err := time.Parse(audit.TimeFormat, string(c.p[:len(audit.TimeFormat)]))
	if err != nil {
		return e, false
	}
	e.TS = ts
	c.p = c.p[len(audit.TimeFormat):]
	c.lit(`"`)
	e.NodeID = c.str("node_id")
	e.SessionID = c.str("session_id")
	e.Principal = c.str("principal")
	e.Transport = c.str("transport")
	e.ProtocolVersion = c.str("protocol_version")
	e.ClientName = c.str("client_name")
	e.ClientVersion = c.str("client_version")
	e.Method = c.str("method")
	e.Backend = c.str("backend")
	e.Name = c.str("name")
	e.Decision = c.str("decision")
	e.Rule = c.str("rule")
	e.PolicyRevision = c.int("policy_revision")
	e.Status = c.str("status")
	e.Error = c.str("error")
	e.LatencyUS = c.int("latency_us")
	e.UpstreamLatencyUS = c.int("upstream_latency_us")
	e.RequestBytes = c.int("request_bytes")
	e.ResponseBytes = c.int("response_bytes")
	e.ArgsSHA256 = c.str("args_sha256")
	e.TraceID = c.str("trace_id")
	c.lit("}")
	if !c.ok || len(c.p) != 0 {
		return audit.Event{}, false
	}
	return e, true
}
