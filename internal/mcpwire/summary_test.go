package mcpwire

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// summary renders what Scan found as stable text: the golden files and the
// table tests compare against it.
func summary(env *Envelope, err error) string {
	var sb strings.Builder
	if err != nil {
		var we *Error
		if !errors.As(err, &we) {
			return "error: not *Error: " + err.Error() + "\n"
		}
		if err == ErrBatch {
			sb.WriteString("batch: true\n")
		}
		fmt.Fprintf(&sb, "error: %d at %d: %s\n", we.Code, we.Offset, we.Msg)
		return sb.String()
	}
	fmt.Fprintf(&sb, "kind: %s\n", env.Kind)
	raw := func(name string, v []byte) {
		if v != nil {
			fmt.Fprintf(&sb, "%s: %s\n", name, v)
		}
	}
	str := func(name string, v Str) {
		if v != nil {
			fmt.Fprintf(&sb, "%s: %s\n", name, strconv.Quote(v.String()))
		}
	}
	raw("id", env.ID)
	str("method", env.Method)
	raw("params", env.Params)
	str("name", env.Name)
	str("uri", env.URI)
	str("cursor", env.Cursor)
	raw("arguments", env.Arguments)
	raw("inputResponses", env.InputResponses)
	str("requestState", env.RequestState)
	raw("params.progressToken", env.ParamsProgressToken)
	raw("requestId", env.RequestID)
	raw("meta", env.Meta)
	raw("progressToken", env.ProgressToken)
	str("protocolVersion", env.ProtocolVersion)
	raw("clientCapabilities", env.ClientCapabilities)
	raw("clientInfo", env.ClientInfo)
	str("logLevel", env.LogLevel)
	raw("result", env.Result)
	str("nextCursor", env.NextCursor)
	str("resultType", env.ResultType)
	raw("inputRequests", env.InputRequests)
	str("result.requestState", env.ResultRequestState)
	raw("error", env.Error)
	raw("error.code", env.ErrorCode)
	str("error.message", env.ErrorMessage)
	return sb.String()
}
