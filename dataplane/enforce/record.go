package enforce

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/mcpgw/mcpgw/dataplane/gateway"
	"github.com/mcpgw/mcpgw/internal/audit"
)

// EventLog is where events go; *auditlog.Log is the edge's. Record returns
// once the event is as durable as the log's mode promises (sync: written
// to the spool) or with an error wrapping auditlog.ErrAuditUnavailable.
type EventLog interface {
	Record(ctx context.Context, ev *audit.Event) error
}

// RecorderOptions configure a Recorder.
type RecorderOptions struct {
	// Log receives the events. Required.
	Log EventLog
	// NodeID is the edge's node UUID, which every event carries (the
	// Postgres sink refuses events of another node). See StandaloneNodeID.
	NodeID string
	// Holder supplies the policy revision for requests that ended before a
	// decision (a rejected authentication). May be nil.
	Holder *Holder
	// WaitTimeout bounds how long Record waits for a sync write; after it
	// the request fails as if audit were unavailable rather than hang
	// (default 10s; negative: no bound). It bounds the wait for the
	// spool's writer: a caller that is alone writes its own batch
	// (auditlog.Log.RecordWithin), and a write(2) that blocks, on a hung
	// disk, holds that one caller until it returns.
	WaitTimeout time.Duration
}

// Recorder implements gateway.Recorder: one audit.Event per request.
type Recorder struct {
	log  EventLog
	node string
	h    *Holder
	wait time.Duration
	// within is log's RecordWithin when it has one (*auditlog.Log does):
	// the wait bounded without a context per call.
	within func(context.Context, *audit.Event, time.Duration) error
}

var _ gateway.Recorder = (*Recorder)(nil)

// maxErrorBytes bounds an event's error text: a backend's error message is
// not ours to size, and one event must not become megabytes.
const maxErrorBytes = 1024

// NewRecorder returns a Recorder writing to o.Log.
func NewRecorder(o RecorderOptions) (*Recorder, error) {
	if o.Log == nil {
		return nil, errors.New("audit recorder: no event log")
	}
	id, err := uuid.Parse(o.NodeID)
	if err != nil {
		return nil, fmt.Errorf("audit recorder: node id %q is not a UUID: %w", o.NodeID, err)
	}
	if o.WaitTimeout == 0 {
		o.WaitTimeout = 10 * time.Second
	}
	r := &Recorder{log: o.Log, node: id.String(), h: o.Holder, wait: o.WaitTimeout}
	if tl, ok := o.Log.(interface {
		RecordWithin(context.Context, *audit.Event, time.Duration) error
	}); ok {
		r.within = tl.RecordWithin
	}
	return r, nil
}

// nodeNamespace scopes name-derived node ids to mcpgw.
var nodeNamespace = uuid.NewSHA1(uuid.NameSpaceURL, []byte("https://github.com/mcpgw/mcpgw/node"))

// StandaloneNodeID returns the node UUID of a standalone edge called name
// (the host name when name is ""): a name-based UUID, so an edge keeps its
// id across restarts without storing it. Edges sharing a host and a
// database should be given distinct names.
func StandaloneNodeID(name string) (string, error) {
	if name == "" {
		h, err := os.Hostname()
		if err != nil {
			return "", fmt.Errorf("node id from the host name: %w", err)
		}
		name = h
	}
	return uuid.NewSHA1(nodeNamespace, []byte(name)).String(), nil
}

// Begin implements gateway.Recorder: the event id is minted on arrival
// and goes back to HTTP clients as Mcpgw-Audit-Id.
func (r *Recorder) Begin(rq *gateway.Request) {
	if rq.Start.IsZero() {
		rq.Start = time.Now()
	}
	rq.AuditID = audit.NewID(rq.Start).String()
}

var events = sync.Pool{New: func() any { return new(audit.Event) }}

// Record implements gateway.Recorder. Its error (audit unavailable, or a
// sync write that did not finish within WaitTimeout) makes the gateway
// withhold the result.
func (r *Recorder) Record(ctx context.Context, rq *gateway.Request) error {
	ev := events.Get().(*audit.Event)
	defer events.Put(ev)
	r.fill(ev, rq)
	var err error
	if r.within != nil {
		err = r.within(ctx, ev, r.wait)
	} else {
		if r.wait > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, r.wait)
			defer cancel()
		}
		err = r.log.Record(ctx, ev)
	}
	if err != nil {
		return fmt.Errorf("recording audit event %s: %w", ev.ID, err)
	}
	return nil
}

// Available reports whether the log would refuse an event now, when the
// log can tell (auditlog.Log can), so a caller can turn a request away
// before it has any effect upstream.
func (r *Recorder) Available() error {
	if a, ok := r.log.(interface{ Available() error }); ok {
		return a.Available()
	}
	return nil
}

// fill builds the event of rq into ev (DESIGN §6).
func (r *Recorder) fill(ev *audit.Event, rq *gateway.Request) {
	id, err := uuid.Parse(rq.AuditID)
	if err != nil || id.Version() != 7 {
		// Begin was not called for this request; the event still needs an id.
		id = audit.NewID(rq.Start)
	}
	ts := rq.Start
	if ts.IsZero() {
		ts = time.Now()
	}
	*ev = audit.Event{
		ID:                id,
		TS:                ts,
		NodeID:            r.node,
		SessionID:         rq.SessionID,
		Principal:         rq.Principal.Name,
		Transport:         rq.Transport,
		ProtocolVersion:   rq.ProtocolVersion,
		ClientName:        rq.ClientName,
		ClientVersion:     rq.ClientVersion,
		Method:            rq.Method,
		Backend:           rq.Backend,
		Name:              rq.Name,
		Decision:          audit.DecisionDeny,
		Rule:              rq.Decision.Rule,
		Status:            string(rq.Status),
		Error:             truncate(rq.Error, maxErrorBytes),
		LatencyUS:         max(rq.Latency.Microseconds(), 0),
		UpstreamLatencyUS: max(rq.UpstreamLatency.Microseconds(), 0),
		RequestBytes:      int64(max(rq.RequestBytes, 0)),
		ResponseBytes:     int64(max(rq.ResponseBytes, 0)),
		TraceID:           rq.TraceID,
	}
	if rq.Decision.Allow {
		ev.Decision = audit.DecisionAllow
	}
	switch rq.Status {
	case gateway.StatusOK, gateway.StatusError, gateway.StatusDenied, gateway.StatusTimeout, gateway.StatusCancelled, gateway.StatusUnavailable:
	default:
		// An outcome the audit vocabulary lacks is a failure to explain,
		// not a reason to lose the event.
		ev.Status = audit.StatusError
	}
	if ev.Method == "" {
		ev.Method = "unknown"
	}
	if rq.Decision.Revision != "" {
		ev.PolicyRevision, _ = strconv.ParseInt(rq.Decision.Revision, 10, 64)
	} else if r.h != nil {
		// Nothing was decided (authentication failed): the policy that
		// refused the credential is the live one.
		if g := r.h.Load(); g != nil {
			ev.PolicyRevision = g.Revision
		}
	}
	if len(rq.Arguments) > 0 {
		// Hex on the stack, then one string: EncodeToString allocates
		// its buffer and then the string.
		sum := sha256.Sum256(rq.Arguments)
		var h [2 * sha256.Size]byte
		hex.Encode(h[:], sum[:])
		ev.ArgsSHA256 = string(h[:])
	}
}

// truncate cuts s to at most n bytes on a rune boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
