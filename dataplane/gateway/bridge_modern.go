package gateway

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mcpgw/mcpgw/dataplane/rpc"
	"github.com/mcpgw/mcpgw/dataplane/session"
	"github.com/mcpgw/mcpgw/dataplane/upstream"
)

// Era bridge, modern client → legacy backend (DESIGN §4.1).
//
// A 2026-07-28 client has no channel for server→client requests: a server
// that needs input answers with resultType input_required, and the client
// retries the request with inputResponses and the echoed requestState
// (spec 2026-07-28, basic/patterns/mrtr). A legacy backend instead sends
// elicitation/create, sampling/createMessage or roots/list on its session
// while the call runs, and waits.
//
// The edge runs such a call on the backend's session and keeps it open
// ("parked") while the client is away answering: each server→client
// request becomes an entry of inputRequests, the requestState names the
// parked call (sealed, bridge_seal.go), and the retry's inputResponses
// answer the waiting requests; the call then goes on to its result or to
// the next round. A parked call lives at most the backend's timeout. The
// retry must reach the same edge process: the key and the parked call are
// in its memory.

// gatherWindow is how long the edge waits, after a backend's first
// server→client request, for others it sends at the same time, so they go
// to the client in one round.
const gatherWindow = 10 * time.Millisecond

// bridge holds the calls parked between rounds.
type bridge struct {
	seal *sealer
	// calls holds the parked calls by id (*parked); a sync.Map so bridged
	// requests share no lock to find or drop theirs.
	calls sync.Map
	// mu guards stopped and the wg.Add of a new worker, so stop's Wait
	// never races a worker starting.
	mu      sync.Mutex
	stopped bool
	// wg counts the workers. A worker runs one parked call, then waits
	// workerIdle for another on jobs (unbuffered: a send succeeds only if
	// a worker is idle) before it exits; done tells idle workers to exit.
	// Reusing workers spares each call a fresh goroutine whose stack must
	// grow to hold an HTTP round trip (a measurable cost per call).
	wg   sync.WaitGroup
	jobs chan func()
	done chan struct{}
	idle atomic.Int32 // workers waiting on jobs

	// maxHeld bounds the calls one principal may hold parked (waiting for
	// its retry); heldMu guards held, the count per principal. Taken once
	// when a call first parks and once when it goes.
	maxHeld int
	heldMu  sync.Mutex
	held    map[string]int
	// heldTotal and overLimit feed the metrics.
	heldTotal atomic.Int64
	overLimit atomic.Int64
}

// workerIdle is how long a worker waits for another parked call, and
// maxIdleWorkers how many may wait, so a burst of bridged calls does not
// leave its goroutines (and their grown stacks) behind.
const (
	workerIdle     = 30 * time.Second
	maxIdleWorkers = 64
)

// run runs f on an idle worker, or a new one. cancel cancels f's call.
func (br *bridge) run(f func(), cancel context.CancelFunc) {
	select {
	case br.jobs <- f:
		return
	default:
	}
	br.mu.Lock()
	if br.stopped {
		br.mu.Unlock()
		// Stopping, and stop may not have seen this call: it is cancelled
		// and ends at once, on this goroutine.
		cancel()
		f()
		return
	}
	br.wg.Add(1)
	br.mu.Unlock()
	go br.worker(f)
}

func (br *bridge) worker(f func()) {
	defer br.wg.Done()
	t := time.NewTimer(workerIdle)
	defer t.Stop()
	for {
		f()
		if br.idle.Add(1) > maxIdleWorkers {
			br.idle.Add(-1)
			return
		}
		t.Reset(workerIdle)
		select {
		case f = <-br.jobs:
			br.idle.Add(-1)
		case <-t.C:
			br.idle.Add(-1)
			return
		case <-br.done:
			br.idle.Add(-1)
			return
		}
	}
}

func newBridge(maxHeld int) *bridge {
	s, err := newSealer()
	if err != nil {
		// crypto/rand does not fail on the platforms the edge runs on.
		panic(err)
	}
	return &bridge{seal: s, jobs: make(chan func()), done: make(chan struct{}), maxHeld: maxHeld, held: map[string]int{}}
}

// hold counts p, about to park for the first time, against its
// principal's limit, and reports whether it may park. A client that never
// retries would otherwise keep up to (its calls × the backend timeout)
// upstream calls open.
func (br *bridge) hold(p *parked) bool {
	if p.held.Load() {
		return true
	}
	br.heldMu.Lock()
	defer br.heldMu.Unlock()
	if br.maxHeld > 0 && br.held[p.bind.principal] >= br.maxHeld {
		br.overLimit.Add(1)
		return false
	}
	br.held[p.bind.principal]++
	br.heldTotal.Add(1)
	p.held.Store(true)
	return true
}

// heldStats reports the calls parked now and those refused for the limit.
func (br *bridge) heldStats() (parked, refused int64) {
	return br.heldTotal.Load(), br.overLimit.Load()
}

// tooManyParked answers a call refused by hold.
func (br *bridge) tooManyParked(p *parked) upstream.Response {
	return upstream.Response{Error: rpc.Errorf(rpc.CodeInvalidRequest,
		"mcpgw: backend %q asked for input during this call, but principal %q already has %d bridged calls waiting for input (the limit); answer or abandon one of them (retry it with inputResponses, or let it expire) and send this request again",
		p.bind.backend, p.bind.principal, br.maxHeld).Raw()}
}

// stop cancels every parked call and waits for them to end.
func (br *bridge) stop() {
	br.mu.Lock()
	if !br.stopped {
		close(br.done)
	}
	br.stopped = true
	br.mu.Unlock()
	br.calls.Range(func(_, v any) bool {
		v.(*parked).cancel()
		return true
	})
	br.wg.Wait()
}

func (br *bridge) get(id string) *parked {
	if v, ok := br.calls.Load(id); ok {
		return v.(*parked)
	}
	return nil
}

func (br *bridge) remove(p *parked) {
	br.calls.Delete(p.id)
	if p.held.CompareAndSwap(true, false) {
		br.heldMu.Lock()
		if br.held[p.bind.principal]--; br.held[p.bind.principal] <= 0 {
			delete(br.held, p.bind.principal)
		}
		br.heldMu.Unlock()
		br.heldTotal.Add(-1)
	}
}

// parked is one call on a legacy backend made for a modern client.
type parked struct {
	id       string
	bind     stateBinding
	deadline time.Time
	cancel   context.CancelFunc
	// held says the call counts against its principal's parked calls
	// (bridge.hold), until remove.
	held atomic.Bool
	// events wakes the waiting round: a new server→client request or a
	// refusal. done is closed once resp and err are final.
	events chan struct{}
	done   chan struct{}
	resp   upstream.Response
	err    error

	// mu guards everything below.
	mu sync.Mutex
	// args are the first request's arguments, read when the first
	// requestState is sealed (during that request: they alias its body);
	// bound says bind.args holds their digest.
	args    json.RawMessage
	bound   bool
	caps    json.RawMessage // the client capabilities of the latest round
	out     *modernOut      // the reply stream of the current round; nil between rounds
	asks    []*ask          // server→client requests not answered yet
	nextAsk int
	round   uint32 // the round the last requestState handed out names
	claimed uint32 // the last round a retry claimed
	refused *rpc.Error
}

// ask is one server→client request waiting for the client's answer.
type ask struct {
	key    string
	method string
	params json.RawMessage
	answer chan upstream.Response // buffered 1
}

func (p *parked) signal() {
	select {
	case p.events <- struct{}{}:
	default:
	}
}

// bridgeSink receives what the legacy backend sends during a parked call.
type bridgeSink struct {
	g *Gateway
	p *parked
}

func (s bridgeSink) Notify(method string, params json.RawMessage) {
	s.p.mu.Lock()
	out := s.p.out
	s.p.mu.Unlock()
	if out == nil {
		return // between rounds nobody listens; progress resumes with the next
	}
	(&modernSink{out: out, level: out.level, g: s.g, backend: s.p.bind.backend}).Notify(method, params)
}

// capabilityFor names the client capability a server→client request needs.
func capabilityFor(method string) string {
	switch method {
	case "sampling/createMessage":
		return "sampling"
	case "elicitation/create":
		return "elicitation"
	case "roots/list":
		return "roots"
	}
	return ""
}

func (s bridgeSink) Request(ctx context.Context, method string, params json.RawMessage) (upstream.Response, error) {
	p := s.p
	need := capabilityFor(method)
	p.mu.Lock()
	if need == "" || len(rpc.Field(p.caps, need)) == 0 {
		e := rpc.Errorf(rpc.CodeInvalidRequest, "mcpgw: backend %q sent %s during this call, which needs the %q client capability; the request's _meta clientCapabilities do not declare it", p.bind.backend, method, need)
		if need == "" {
			e = rpc.Errorf(rpc.CodeInvalidRequest, "mcpgw: backend %q sent %s during this call, which has no 2026-07-28 equivalent the edge can bridge", p.bind.backend, method)
		}
		if p.refused == nil {
			p.refused = e
		}
		p.mu.Unlock()
		p.signal()
		return upstream.Response{}, rpc.Errorf(rpc.CodeMethodNotFound, "mcpgw: the client did not declare the capability %s needs", method)
	}
	p.nextAsk++
	a := &ask{key: "mcpgw-" + strconv.Itoa(p.nextAsk), method: method, params: params, answer: make(chan upstream.Response, 1)}
	p.asks = append(p.asks, a)
	p.mu.Unlock()
	p.signal()
	select {
	case r := <-a.answer:
		return r, nil
	case <-ctx.Done():
		p.mu.Lock()
		for i, x := range p.asks {
			if x == a {
				p.asks = append(p.asks[:i], p.asks[i+1:]...)
				break
			}
		}
		p.mu.Unlock()
		return upstream.Response{}, context.Cause(ctx)
	}
}

// legacyParams strips from a modern request what a legacy backend must not
// see: the per-request _meta of 2026-07-28 (the backend's session already
// negotiated a version, and a server may refuse a request whose _meta names
// another), and inputResponses without a requestState, which answer nothing
// a legacy backend asked.
func legacyParams(params json.RawMessage, hasResponses bool) (json.RawMessage, error) {
	if !hasResponses && !bytes.Contains(params, []byte(modernMetaPrefix)) {
		return params, nil
	}
	ms, err := members(params)
	if err != nil {
		return nil, fmt.Errorf("params: %w", err)
	}
	keep := ms[:0]
	for _, m := range ms {
		switch string(m.key) {
		case `"inputResponses"`:
			if hasResponses {
				continue
			}
		case `"_meta"`:
			if m.val, err = withoutModernMeta(m.val); err != nil {
				return nil, fmt.Errorf("params._meta: %w", err)
			}
			if m.val == nil {
				continue
			}
		}
		keep = append(keep, m)
	}
	return appendObject(make([]byte, 0, len(params)), keep), nil
}

// argsDigest condenses a request's arguments for the state binding. The
// client may re-encode them on retry, so they are compared as JSON values,
// not as bytes.
func argsDigest(args json.RawMessage) []byte {
	if len(args) == 0 {
		return nil
	}
	var v any
	if json.Unmarshal(args, &v) == nil {
		if canon, err := json.Marshal(v); err == nil {
			args = canon
		}
	}
	sum := sha256.Sum256(args)
	return sum[:]
}

// callLegacy runs a modern client's request on a legacy backend's session:
// a fresh call, or (with a requestState) the next round of a parked one.
func (g *Gateway) callLegacy(ctx context.Context, b *upstream.Backend, method string, params json.RawMessage, out *modernOut, mo *modernCall, rq *Request) (upstream.Response, error) {
	br := g.bridge
	bind := stateBinding{principal: rq.Principal.Name, backend: b.Name(), method: method, name: rq.Name}
	if state := mo.m.env.RequestState.String(); state != "" {
		bind.args = argsDigest(mo.m.env.Arguments)
		return br.resume(ctx, state, bind, mo.m.env.InputResponses, out)
	}
	params, err := legacyParams(params, mo.m.env.InputResponses != nil)
	if err != nil {
		return upstream.Response{Error: rpc.Errorf(rpc.CodeInvalidParams, "mcpgw: %v", err).Raw()}, nil
	}
	if out == nil {
		// Nothing to answer on (a subscription's internal call): a plain call.
		return b.Call(ctx, method, params, nil)
	}
	if out.level != "" {
		// The request asks for logs (its _meta logLevel, stripped above):
		// backends share sessions, so they are asked for every level once,
		// as for a legacy client's logging/setLevel, and the modern sink
		// filters per request.
		g.enableLogging(ctx, g.state.Load())
	}
	var id [16]byte
	_, _ = rand.Read(id[:])
	p := &parked{
		id:       string(id[:]),
		bind:     bind,
		deadline: time.Now().Add(b.Config().Timeout),
		events:   make(chan struct{}, 1),
		done:     make(chan struct{}),
		caps:     out.caps,
		args:     mo.m.env.Arguments,
	}
	// The call outlives this HTTP request when the backend asks for input,
	// so it runs on its own context, bounded by the backend's timeout.
	// Nor may the first request's Canceler (a legacy session's
	// notifications/cancelled) reach into it.
	cctx, cancel := context.WithDeadline(upstream.WithCanceler(context.WithoutCancel(ctx), nil), p.deadline)
	p.cancel = cancel
	br.mu.Lock()
	if br.stopped {
		br.mu.Unlock()
		cancel()
		return upstream.Response{}, errors.New("the edge is shutting down")
	}
	br.calls.Store(p.id, p)
	br.mu.Unlock()
	br.run(func() {
		defer cancel()
		p.resp, p.err = b.Call(cctx, method, params, bridgeSink{g: g, p: p})
		close(p.done)
		p.mu.Lock()
		waiting := p.out != nil
		p.mu.Unlock()
		if !waiting {
			// The call ended between rounds (the backend withdrew its
			// question and finished): it waits for the client's retry,
			// but no longer than its state is valid. (A round in progress
			// removes it itself; a timer per call would be a cost.)
			time.AfterFunc(max(time.Until(p.deadline), 0), func() { br.remove(p) })
		}
	}, cancel)
	return br.await(ctx, p, out)
}

// resume answers a parked call's waiting requests with the client's
// inputResponses and waits for its next round.
func (br *bridge) resume(ctx context.Context, state string, bind stateBinding, responses json.RawMessage, out *modernOut) (upstream.Response, error) {
	st, err := br.seal.open(state, bind, time.Now())
	if err != nil {
		return stateError(err), nil
	}
	p := br.get(st.call)
	if p == nil {
		return stateError(errors.New("requestState names a call that has already ended or expired; send the request again without it")), nil
	}
	var answers map[string]json.RawMessage
	if len(responses) > 0 {
		if err := json.Unmarshal(responses, &answers); err != nil {
			return upstream.Response{Error: rpc.Errorf(rpc.CodeInvalidParams, "mcpgw: inputResponses must be an object: %v", err).Raw()}, nil
		}
	}
	p.mu.Lock()
	if st.round != p.round || p.claimed >= st.round {
		p.mu.Unlock()
		return stateError(errors.New("requestState was already used; send the latest one")), nil
	}
	p.claimed = st.round
	if out != nil {
		p.caps = out.caps
	}
	var keep []*ask
	for _, a := range p.asks {
		if v, ok := answers[a.key]; ok {
			a.answer <- upstream.Response{Result: v}
		} else {
			keep = append(keep, a) // asked again in the next round
		}
	}
	p.asks = keep
	p.mu.Unlock()
	return br.await(ctx, p, out)
}

func stateError(err error) upstream.Response {
	return upstream.Response{Error: rpc.Errorf(rpc.CodeInvalidParams, "mcpgw: %v", err).Raw()}
}

// await waits for the parked call's result or its next request for input.
// The client closing the stream cancels the call (2026-07-28: a closed
// response stream is cancellation).
func (br *bridge) await(ctx context.Context, p *parked, out *modernOut) (upstream.Response, error) {
	p.mu.Lock()
	p.out = out
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		if p.out == out {
			p.out = nil
		}
		p.mu.Unlock()
	}()
	finished := func() (upstream.Response, error) {
		br.remove(p)
		if p.err == nil && len(p.resp.Result) > 0 {
			p.resp.Result = withResultType(p.resp.Result)
		}
		return p.resp, p.err
	}
	for {
		select {
		case <-p.done:
			return finished()
		default:
		}
		p.mu.Lock()
		refused, n := p.refused, len(p.asks)
		p.mu.Unlock()
		if refused != nil {
			p.cancel()
			<-p.done
			br.remove(p)
			return upstream.Response{Error: refused.Raw()}, nil
		}
		if n > 0 {
			t := time.NewTimer(gatherWindow)
			select {
			case <-p.done:
				t.Stop()
				return finished()
			case <-t.C:
			}
			if !br.hold(p) {
				// Refused before the client ever sees a round: the
				// backend's question is withdrawn with the call.
				p.cancel()
				<-p.done
				br.remove(p)
				return br.tooManyParked(p), nil
			}
			if r, ok := br.inputRequired(p); ok {
				return r, nil
			}
			continue
		}
		select {
		case <-p.done:
		case <-p.events:
		case <-ctx.Done():
			p.cancel()
			<-p.done
			br.remove(p)
			return upstream.Response{}, context.Cause(ctx)
		}
	}
}

// inputRequired builds the input_required result for the requests waiting
// now and opens the next round.
func (br *bridge) inputRequired(p *parked) (upstream.Response, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.asks) == 0 {
		return upstream.Response{}, false
	}
	if !p.bound {
		p.bind.args, p.bound, p.args = argsDigest(p.args), true, nil
	}
	p.round++
	state := br.seal.seal(sealedState{call: p.id, round: p.round, expires: p.deadline}, p.bind)
	var b bytes.Buffer
	b.WriteString(`{"resultType":"input_required","inputRequests":{`)
	for i, a := range p.asks {
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(rpc.Quote(a.key))
		b.WriteString(`:{"method":`)
		b.Write(rpc.Quote(a.method))
		if len(a.params) > 0 {
			b.WriteString(`,"params":`)
			b.Write(a.params)
		}
		b.WriteByte('}')
	}
	b.WriteString(`},"requestState":`)
	b.Write(rpc.Quote(state))
	b.WriteByte('}')
	return upstream.Response{Result: b.Bytes()}, true
}

// legacyCaps renders a legacy session's client capabilities for a modern
// request's _meta.
func legacyCaps(s *session.Session) json.RawMessage {
	if len(s.CapsJSON) > 0 {
		return s.CapsJSON
	}
	return json.RawMessage("{}")
}
