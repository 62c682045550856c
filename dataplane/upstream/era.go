package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"time"

	"github.com/mcpgw/mcpgw/dataplane/rpc"
)

// Era bridging, upstream side. A backend is "modern" when it serves
// stateless 2026-07-28 requests; the edge learns that once per connection
// by asking server/discover (spec 2026-07-28, basic/lifecycle) and reading
// supportedVersions. A server that does not answer, or does not list a
// modern version, is legacy: it is called on its initialized session.
//
// A modern backend has no session to carry list_changed or
// resources/updated, so the edge keeps one subscriptions/listen stream open
// to it and feeds what arrives to the Observer, as a legacy backend's GET
// stream does.

// ModernVersion is the stateless protocol revision the edge speaks to
// modern backends.
const ModernVersion = "2026-07-28"

// The 2026-07-28 per-request _meta keys.
const (
	metaProtocolVersion    = "io.modelcontextprotocol/protocolVersion"
	metaClientCapabilities = "io.modelcontextprotocol/clientCapabilities"
	metaClientInfo         = "io.modelcontextprotocol/clientInfo"
	metaSubscriptionID     = "io.modelcontextprotocol/subscriptionId"
)

// ModernVersion returns the 2026-07-28 version the backend serves on its
// live connection, or "" when it is legacy (or down).
func (b *Backend) ModernVersion() string {
	if c := b.cur.Load(); c != nil {
		return c.modern
	}
	return ""
}

// ModernMeta returns params with the 2026-07-28 per-request _meta set
// (protocol version, client capabilities, client info), other _meta keys
// (a progress token) kept.
func ModernMeta(params json.RawMessage, version string, caps, info json.RawMessage) (json.RawMessage, error) {
	meta := rpc.Field(params, "_meta")
	var err error
	for _, kv := range [...]struct {
		k string
		v json.RawMessage
	}{{metaProtocolVersion, rpc.Quote(version)}, {metaClientCapabilities, caps}, {metaClientInfo, info}} {
		if len(kv.v) == 0 {
			continue
		}
		if meta, err = rpc.SetField(meta, kv.k, kv.v); err != nil {
			return nil, err
		}
	}
	return rpc.SetField(params, "_meta", meta)
}

// discoverEra asks an HTTP backend whether it serves 2026-07-28 and returns
// that version, or "" for a legacy server. Any failure means legacy: the
// question is only whether the stateless path is safe to use.
func (c *conn) discoverEra(ctx context.Context) string {
	if _, ok := c.t.(*httpTransport); !ok {
		// The edge initialized this process over stdio; its session is
		// legacy whatever the server could also speak.
		return ""
	}
	params, err := ModernMeta(nil, ModernVersion, c.b.opts.ClientCapabilities, c.b.opts.ClientInfo)
	if err != nil {
		return ""
	}
	ctx, cancel := context.WithTimeout(ctx, min(c.b.cfg.Timeout, 10*time.Second))
	defer cancel()
	resp, err := c.call(ctx, "server/discover", params, nil, &Modern{Version: ModernVersion})
	if err != nil || len(resp.Error) > 0 {
		c.b.log.Debug("server/discover failed; treating the backend as legacy", "err", err, "error", string(resp.Error))
		return ""
	}
	var res struct {
		SupportedVersions []string `json:"supportedVersions"`
	}
	if json.Unmarshal(resp.Result, &res) != nil || !slices.Contains(res.SupportedVersions, ModernVersion) {
		return ""
	}
	return ModernVersion
}

// watch adds (delta 1) or drops (-1) interest in a resource's updates on a
// modern backend, and wakes the listen stream to reopen with the new set.
func (b *Backend) watch(uri string, delta int) {
	b.watchMu.Lock()
	if b.watched == nil {
		b.watched = map[string]int{}
	}
	b.watched[uri] += delta
	if b.watched[uri] <= 0 {
		delete(b.watched, uri)
	}
	b.watchMu.Unlock()
	select {
	case b.rewatch <- struct{}{}:
	default:
	}
}

func (b *Backend) watchedURIs() []string {
	b.watchMu.Lock()
	defer b.watchMu.Unlock()
	uris := make([]string, 0, len(b.watched))
	for u := range b.watched {
		uris = append(uris, u)
	}
	sort.Strings(uris)
	return uris
}

// callWatch serves resources/subscribe and resources/unsubscribe for a
// modern backend, where they do not exist: interest goes into the listen
// stream's resourceSubscriptions instead.
func (b *Backend) callWatch(method string, params json.RawMessage) (Response, bool) {
	uri := rpc.StringField(params, "uri")
	switch {
	case uri == "":
		return Response{}, false
	case method == "resources/subscribe":
		b.watch(uri, 1)
	case method == "resources/unsubscribe":
		b.watch(uri, -1)
	default:
		return Response{}, false
	}
	return Response{Result: json.RawMessage("{}")}, true
}

// listenModern keeps a subscriptions/listen stream open to a modern
// backend until ctx ends, reopening it when it drops. When the set of
// watched resources changes, the new stream is opened before the old one
// is closed, so no notification falls into the gap (a duplicate may not).
func (t *httpTransport) listenModern(ctx context.Context, c *conn) {
	type stream struct {
		cancel context.CancelFunc
		errc   chan error // buffered 1: the stream's end
	}
	open := func() (stream, <-chan struct{}) {
		sctx, cancel := context.WithCancel(ctx)
		s := stream{cancel: cancel, errc: make(chan error, 1)}
		acked := make(chan struct{})
		uris := t.b.watchedURIs()
		go func() { s.errc <- t.listenOnce(sctx, c, uris, acked) }()
		return s, acked
	}
	stop := func(s stream) {
		s.cancel()
		<-s.errc
	}
	var cur *stream
	defer func() {
		if cur != nil {
			stop(*cur)
		}
	}()
	for attempt := 0; ctx.Err() == nil; attempt++ {
		next, acked := open()
		select {
		case <-acked:
			attempt = 0
			if cur != nil {
				stop(*cur)
			}
			cur = &next
		case err := <-next.errc:
			next.cancel()
			t.b.log.Debug("backend refused subscriptions/listen; retrying", "err", err)
			if cur == nil {
				select {
				case <-ctx.Done():
					return
				case <-time.After(backoff(t.b.opts.MinBackoff, 5*time.Second, attempt)):
				}
			}
			continue
		case <-ctx.Done():
			stop(next)
			return
		}
		select {
		case <-t.b.rewatch:
			// Keep cur until the next stream is acknowledged.
		case err := <-cur.errc:
			cur.cancel()
			cur = nil
			t.b.log.Debug("backend subscriptions/listen stream ended; reopening", "err", err)
		case <-ctx.Done():
			return
		}
	}
}

// listenOnce runs one subscriptions/listen request until it ends, closing
// acked once the backend acknowledged it.
func (t *httpTransport) listenOnce(ctx context.Context, c *conn, uris []string, acked chan struct{}) error {
	subs := map[string]any{"toolsListChanged": true, "promptsListChanged": true, "resourcesListChanged": true}
	if len(uris) > 0 {
		subs["resourceSubscriptions"] = uris
	}
	p, _ := json.Marshal(map[string]any{"notifications": subs})
	params, err := ModernMeta(p, c.modern, t.b.opts.ClientCapabilities, t.b.opts.ClientInfo)
	if err != nil {
		return err
	}
	req, err := t.newRequest(ctx, http.MethodPost, rpc.AppendRequest(nil, -c.nextID.Add(1), "subscriptions/listen", params))
	if err != nil {
		return err
	}
	delete(req.Header, "Mcp-Session-Id")
	req.Header["Mcp-Protocol-Version"] = []string{c.modern}
	req.Header["Mcp-Method"] = []string{"subscriptions/listen"}
	req.Header["Accept"] = hdrAccept
	resp, err := t.b.opts.Client.Do(req)
	if err != nil {
		return fmt.Errorf("subscriptions/listen: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(mediaType([]byte(resp.Header.Get("Content-Type")))) != "text/event-stream" {
		return fmt.Errorf("subscriptions/listen: HTTP %d (%s): %s", resp.StatusCode, resp.Header.Get("Content-Type"), snippet(resp.Body))
	}
	var last string
	err = readSSE(resp.Body, &last, func(ev sseEvent) bool {
		m, perr := parseBackendMessage(ev.data)
		if perr != nil || !m.IsNotification() {
			return true
		}
		if m.Method == "notifications/subscriptions/acknowledged" {
			select {
			case <-acked:
			default:
				close(acked)
			}
			return true
		}
		// The subscription id is this stream's, not the edge's clients'.
		params := m.Params
		if len(rpc.MetaField(params, metaSubscriptionID)) > 0 {
			if p, err := rpc.SetMetaField(params, metaSubscriptionID, nil); err == nil {
				params = p
			}
		}
		t.b.opts.Observer.BackendNotify(t.b, m.Method, params)
		return true
	})
	if err == nil {
		err = errors.New("stream ended")
	}
	return err
}

// Bound returns a context that c cancels until release runs: for the era
// bridge's waits between calls (asking a legacy client for a modern
// backend's input), when no Call holds c. A Cancel that came earlier
// cancels it at once.
func (c *Canceler) Bound(ctx context.Context) (bound context.Context, release func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	c.bind(cancel)
	return ctx, func() {
		c.unbind()
		cancel(nil)
	}
}
