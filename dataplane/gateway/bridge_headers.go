package gateway

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"math"
	"net/http"
	"strconv"

	"github.com/mcpgw/mcpgw/dataplane/rpc"
)

// paramHeaders computes the Mcp-Param-* headers a 2026-07-28 client sends
// with a tools/call (SEP-2243): every input-schema property annotated with
// x-mcp-header mirrors its argument value in a header, which a modern
// server checks against the body. A legacy client knows nothing of them, so
// the edge adds them when it bridges the call to a modern backend.
func paramHeaders(tool, params json.RawMessage) map[string]string {
	if !bytes.Contains(tool, []byte(`"x-mcp-header"`)) {
		return nil
	}
	args := rpc.Field(params, "arguments")
	if len(args) == 0 {
		return nil
	}
	var def struct {
		InputSchema schemaNode `json:"inputSchema"`
	}
	if json.Unmarshal(tool, &def) != nil {
		return nil
	}
	var out map[string]string
	var walk func(n schemaNode, val json.RawMessage)
	walk = func(n schemaNode, val json.RawMessage) {
		var obj map[string]json.RawMessage
		if json.Unmarshal(val, &obj) != nil {
			return
		}
		for name, prop := range n.Properties {
			v, ok := obj[name]
			if !ok || string(v) == "null" {
				continue
			}
			if prop.Header != "" {
				if s, ok := headerValue(v); ok {
					if out == nil {
						out = map[string]string{}
					}
					out[http.CanonicalHeaderKey("Mcp-Param-"+prop.Header)] = s
				}
			}
			if len(prop.Properties) > 0 {
				walk(prop, v)
			}
		}
	}
	walk(def.InputSchema, args)
	return out
}

type schemaNode struct {
	Properties map[string]schemaNode `json:"properties"`
	Header     string                `json:"x-mcp-header"`
}

// headerValue renders a primitive argument for its header: strings as they
// are unless they need the =?base64?…?= form (non-ASCII, control
// characters, surrounding blanks), booleans and safe integers in decimal.
// Other values are not mirrored.
func headerValue(raw json.RawMessage) (string, bool) {
	var v any
	if json.Unmarshal(raw, &v) != nil {
		return "", false
	}
	switch x := v.(type) {
	case bool:
		return strconv.FormatBool(x), true
	case float64:
		if x != math.Trunc(x) || math.Abs(x) > 1<<53-1 {
			return "", false
		}
		return strconv.FormatInt(int64(x), 10), true
	case string:
		if needsBase64(x) {
			return "=?base64?" + base64.StdEncoding.EncodeToString([]byte(x)) + "?=", true
		}
		return x, true
	}
	return "", false
}

func needsBase64(s string) bool {
	if s == "" {
		return false
	}
	if s[0] == ' ' || s[0] == '\t' || s[len(s)-1] == ' ' || s[len(s)-1] == '\t' {
		return true
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e {
			return true
		}
	}
	return false
}
