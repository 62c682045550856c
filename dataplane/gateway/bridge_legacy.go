package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	"github.com/mcpgw/mcpgw/dataplane/catalog"
	"github.com/mcpgw/mcpgw/dataplane/rpc"
	"github.com/mcpgw/mcpgw/dataplane/session"
	"github.com/mcpgw/mcpgw/dataplane/state"
	"github.com/mcpgw/mcpgw/dataplane/upstream"
	"github.com/mcpgw/mcpgw/internal/mcpwire"
)

// Era bridge, legacy client → modern backend (DESIGN §4.1).
//
// The legacy client initialized with the edge, which answered itself; the
// modern backend wants every request to stand alone. So the edge adds the
// per-request _meta (protocol version, the client's capabilities and
// client info, spec 2026-07-28 basic/lifecycle) and, when the backend
// answers input_required, asks the client each input request as a legacy
// server→client request on its session, then retries the request upstream
// with the answers and the echoed requestState, as many rounds as the
// backend needs (bounded).

// maxInputRounds bounds the rounds of one bridged request, so a backend
// that keeps asking cannot hold a client forever.
const maxInputRounds = 10

// bridgedMethod reports whether a legacy client's request is sent to a
// modern backend as a 2026-07-28 request. Subscriptions are not: a modern
// backend has none, and the upstream package turns them into its listen
// stream's resourceSubscriptions.
func bridgedMethod(method string) bool {
	switch method {
	case "tools/call", "prompts/get", "resources/read", "completion/complete":
		return true
	}
	return false
}

// callModernBackend sends a legacy client's request to a modern backend.
// exposed is the tool's name in the catalog, whose input schema says which
// arguments to mirror in Mcp-Param-* headers.
func (g *Gateway) callModernBackend(ctx context.Context, st *state.State, b *upstream.Backend, sess *session.Session, exposed, method string, params json.RawMessage, sink upstream.Sink) (upstream.Response, error) {
	version := b.ModernVersion()
	info := make([]byte, 0, 64)
	info = append(info, `{"name":`...)
	info = mcpwire.AppendString(info, sess.ClientName)
	info = append(info, `,"version":`...)
	info = mcpwire.AppendString(info, sess.ClientVersion)
	info = append(info, '}')
	var lvl []byte
	if l := sess.LogLevel(); l != "" {
		// The session's logging/setLevel, per request in this era.
		lvl = rpc.Quote(l)
	}
	p, err := modernParams(params,
		[]byte(`"`+mcpwire.MetaProtocolVersion+`"`), rpc.Quote(version),
		[]byte(`"`+mcpwire.MetaClientCapabilities+`"`), legacyCaps(sess),
		[]byte(`"`+mcpwire.MetaClientInfo+`"`), info,
		[]byte(`"`+mcpwire.MetaLogLevel+`"`), lvl)
	if err != nil {
		return upstream.Response{Error: rpc.Errorf(rpc.CodeInvalidParams, "mcpgw: %v", err).Raw()}, nil
	}
	var name string
	var hdrs map[string]string
	switch method {
	case "tools/call", "prompts/get":
		// The backend's own name, from the catalog the call was routed by.
		k := catalog.Tools
		if method == "prompts/get" {
			k = catalog.Prompts
		}
		if it, ok := st.Catalog.Lookup(k, exposed); ok {
			name = it.Original
			if k == catalog.Tools {
				hdrs = paramHeaders(it.JSON, params)
			}
		} else {
			name = rpc.StringField(params, "name")
		}
	case "resources/read":
		name = exposed
	}
	for round := 1; ; round++ {
		resp, err := b.CallModern(ctx, method, p, sink, upstream.Modern{Version: version, Name: name, Params: hdrs})
		if err != nil || len(resp.Error) > 0 {
			return resp, err
		}
		if !bytes.Contains(resp.Result, []byte(`"input_required"`)) || rpc.StringField(resp.Result, "resultType") != "input_required" {
			resp.Result = legacyResult(resp.Result)
			return resp, nil
		}
		if round > maxInputRounds {
			return upstream.Response{Error: rpc.Errorf(rpc.CodeInternalError, "mcpgw: backend %q still needed input after %d rounds; giving up", b.Name(), maxInputRounds).Raw()}, nil
		}
		actx := ctx
		release := func() {}
		if cc := upstream.CancelerFrom(ctx); cc != nil {
			// The client's notifications/cancelled reaches a call through
			// its Canceler, which only a running Call holds; between
			// calls the questions hold it.
			actx, release = cc.Bound(ctx)
		}
		answers, rerr := askClient(actx, b.Name(), rpc.Field(resp.Result, "inputRequests"), sink)
		release()
		if cc := upstream.CancelerFrom(ctx); cc != nil && cc.Cause() != nil {
			return upstream.Response{}, cc.Cause()
		}
		if rerr != nil {
			return upstream.Response{Error: rerr.Raw()}, nil
		}
		if p, err = rpc.SetField(p, "inputResponses", answers); err == nil {
			state := rpc.Field(resp.Result, "requestState")
			if len(state) == 0 {
				state = nil
			}
			p, err = rpc.SetField(p, "requestState", state)
		}
		if err != nil {
			return upstream.Response{}, fmt.Errorf("building the retry: %w", err)
		}
	}
}

// legacyResult drops from a modern result what only the 2026-07-28 era
// defines: resultType and the io.modelcontextprotocol/ keys of _meta
// (serverInfo: the client met the edge, not this backend).
func legacyResult(result json.RawMessage) json.RawMessage {
	if !bytes.Contains(result, []byte(`"resultType"`)) && !bytes.Contains(result, []byte(modernMetaPrefix)) {
		return result
	}
	ms, err := members(result)
	if err != nil {
		return result
	}
	keep := ms[:0]
	for _, m := range ms {
		switch string(m.key) {
		case `"resultType"`:
			continue
		case `"_meta"`:
			if m.val, err = withoutModernMeta(m.val); err != nil {
				return result
			}
			if m.val == nil {
				continue
			}
		}
		keep = append(keep, m)
	}
	return appendObject(make([]byte, 0, len(result)), keep)
}

// askClient puts a round's input requests to the legacy client, at once,
// and returns the inputResponses object.
func askClient(ctx context.Context, backend string, raw json.RawMessage, sink upstream.Sink) (json.RawMessage, *rpc.Error) {
	var reqs map[string]struct {
		Method string          `json:"method"`
		Params json.RawMessage `json:"params"`
	}
	if err := json.Unmarshal(raw, &reqs); err != nil {
		return nil, rpc.Errorf(rpc.CodeInternalError, "mcpgw: backend %q sent malformed inputRequests: %v", backend, err)
	}
	if len(reqs) == 0 {
		// 2026-07-28: an empty set is load shedding; the client retries later.
		return nil, rpc.Errorf(rpc.CodeInternalError, "mcpgw: backend %q is busy (input_required without input requests); retry later", backend)
	}
	if sink == nil {
		return nil, rpc.Errorf(rpc.CodeInternalError, "mcpgw: backend %q needs input, and this request has no way to ask the client", backend)
	}
	var (
		wg sync.WaitGroup
		mu sync.Mutex // guards out and first
		// out collects the answers by input request key.
		out   = make(map[string]json.RawMessage, len(reqs))
		first *rpc.Error
	)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for key, r := range reqs {
		wg.Go(func() {
			resp, err := sink.Request(ctx, r.Method, r.Params)
			mu.Lock()
			defer mu.Unlock()
			var e *rpc.Error
			switch {
			case err != nil:
				if !errors.As(err, &e) {
					e = rpc.Errorf(rpc.CodeInternalError, "mcpgw: asking the client %s for backend %q: %v", r.Method, backend, err)
				}
			case len(resp.Error) > 0:
				e = rpc.Errorf(rpc.CodeInternalError, "mcpgw: the client answered %s with an error: %s", r.Method, rpc.StringField(resp.Error, "message"))
			default:
				out[key] = resp.Result
			}
			if e != nil && first == nil {
				first = e
				cancel() // the round fails; withdraw the other questions
			}
		})
	}
	wg.Wait()
	if first != nil {
		return nil, first
	}
	b, err := json.Marshal(out)
	if err != nil {
		return nil, rpc.Errorf(rpc.CodeInternalError, "mcpgw: encoding inputResponses: %v", err)
	}
	return b, nil
}
