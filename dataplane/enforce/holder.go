package enforce

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/mcpgw/mcpgw/dataplane/catalog"
	"github.com/mcpgw/mcpgw/dataplane/state"
	"github.com/mcpgw/mcpgw/internal/document"
	"github.com/mcpgw/mcpgw/internal/policy"
)

// Generation is one immutable compiled policy together with the auth
// settings of the document it came from. A new document is a new
// Generation; nothing in one ever changes.
type Generation struct {
	Policy *policy.Policy
	// Revision is carried by every decision and audit event of this policy.
	Revision int64
	// Anonymous is the principal that requests without any credential act
	// as; "" means such requests are refused (the default).
	Anonymous string

	revision string   // Revision formatted once, so deciding never formats
	digest   [32]byte // what the policy says: equal digests, same decisions
}

// Prepare validates doc and compiles its policy without making it live:
// the first half of a two-phase apply (see Holder.ApplyState). meta is the
// config source's metadata: a control-plane client passes the policy it
// already compiled (and its revision), a local file passes the zero Meta.
//
// A local file's revision is derived from the content of its policy and
// auth sections (53 bits of their SHA-256, so JSON readers keep it exact),
// not from a reload counter: the same file yields the same revision across
// restarts and on every edge, `mcpgw policy check` prints the revision the
// edge will stamp into audit events, and an unchanged policy keeps its
// revision when only backends change. It is an identifier, not an order;
// control-plane revisions are the ordered ones.
func Prepare(doc *document.Document, meta state.Meta) (*Generation, error) {
	if doc == nil {
		return nil, errors.New("preparing policy: no document")
	}
	if err := doc.Validate(); err != nil {
		return nil, fmt.Errorf("invalid config: %w", err)
	}
	g := &Generation{}
	if doc.Auth != nil && doc.Auth.Anonymous != nil {
		g.Anonymous = doc.Auth.Anonymous.Principal
		if !policy.ValidPrincipalName(g.Anonymous) {
			return nil, fmt.Errorf("invalid config: auth.anonymous.principal %q is not a valid principal name", g.Anonymous)
		}
	}
	spec := doc.PolicySpec()
	raw, err := json.Marshal(struct {
		Spec      policy.Spec
		Anonymous string
	}{spec, g.Anonymous})
	if err != nil {
		return nil, fmt.Errorf("hashing policy: %w", err)
	}
	g.digest = sha256.Sum256(raw)
	switch {
	case meta.Policy != nil:
		g.Policy = meta.Policy
		g.Revision = meta.Policy.Revision()
	default:
		rev := meta.Revision
		if rev == 0 {
			rev = ContentRevision(g.digest)
		}
		if g.Policy, err = policy.Compile(spec, rev); err != nil {
			return nil, fmt.Errorf("compiling policy: %w", err)
		}
		g.Revision = rev
	}
	g.revision = strconv.FormatInt(g.Revision, 10)
	return g, nil
}

// ContentRevision turns a policy digest into a revision: its first 53
// bits, never 0 (0 means "no policy").
func ContentRevision(digest [32]byte) int64 {
	rev := int64(binary.BigEndian.Uint64(digest[:8]) >> 11)
	if rev == 0 {
		rev = 1
	}
	return rev
}

// ListsNotifier hears that what sessions may see changed; the gateway
// implements it (it sends list_changed to every session).
type ListsNotifier interface {
	ListsChanged(kinds []catalog.Kind)
}

// StateApplier is the part of state.Manager a two-phase apply needs.
type StateApplier interface {
	ApplyMeta(ctx context.Context, doc *document.Document, meta state.Meta) ([]string, error)
	Load() *state.State
}

// Holder keeps the live Generation behind an atomic pointer: readers take
// one lock-free load per request, and a nil Generation denies everything.
type Holder struct {
	log      *slog.Logger
	notifier ListsNotifier
	cur      atomic.Pointer[Generation]
	// rev caches the formatted revision of the last policy decided that is
	// not the Holder's own (a state swapped in just before Commit), so even
	// that window does not format per decision.
	rev atomic.Pointer[revEntry]

	// mu serializes applies (ApplyState, Apply), so two config sources
	// never interleave their prepare, state swap and commit.
	mu sync.Mutex
}

type revEntry struct {
	p *policy.Policy
	s string
}

// NewHolder returns a Holder with no policy: everything is denied until the
// first Commit. notifier (may be nil) hears about policy changes.
func NewHolder(log *slog.Logger, notifier ListsNotifier) *Holder {
	if log == nil {
		log = slog.Default()
	}
	return &Holder{log: log, notifier: notifier}
}

// SetNotifier sets the notifier; call it before the first apply (the
// gateway that implements it needs the Authenticator that needs h).
func (h *Holder) SetNotifier(n ListsNotifier) { h.notifier = n }

// Load returns the live Generation, nil before the first Commit.
func (h *Holder) Load() *Generation { return h.cur.Load() }

// Commit makes g live: the second half of a two-phase apply. It logs
// anonymous access loudly whenever it is turned on, and tells the notifier
// when the policy changed, since any change may alter what a session's
// lists contain (a precise per-session diff is not worth its cost: a
// list_changed only makes clients list again).
func (h *Holder) Commit(g *Generation) {
	prev := h.cur.Swap(g)
	if g.Anonymous != "" && (prev == nil || prev.Anonymous != g.Anonymous) {
		h.log.Warn("ANONYMOUS ACCESS IS ON: requests without an API key act as principal "+strconv.Quote(g.Anonymous)+"; use only on a trusted machine or network",
			"principal", g.Anonymous)
	}
	if g.Anonymous == "" && prev != nil && prev.Anonymous != "" {
		h.log.Info("anonymous access is off: every request needs an API key")
	}
	if prev == nil || prev.digest != g.digest {
		h.log.Info("policy applied", "revision", g.Revision)
	}
	if prev != nil && prev.digest != g.digest && h.notifier != nil {
		h.notifier.ListsChanged(catalog.Kinds())
	}
}

// Apply prepares and commits doc's policy. Use it where there is no
// backend state to swap with it (tests, a policy-only source); the edge
// uses ApplyState.
func (h *Holder) Apply(doc *document.Document) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	g, err := Prepare(doc, state.Meta{})
	if err != nil {
		return err
	}
	h.Commit(g)
	return nil
}

// ApplyState applies doc as one transaction over policy and backends:
// prepare (validate and compile; on error nothing changes), swap the
// backend state with the compiled policy inside it, then commit the
// Generation here.
//
// The policy travels inside the state snapshot, so the Decider, which
// reads the policy from the request's snapshot, switches policy in the
// same atomic store that switches backends and catalog: no request ever
// sees new backends with an old policy or the reverse. Only the
// Authenticator reads the Holder, which trails the state swap by
// microseconds; in that window a removed key may still authenticate, but
// its requests are decided by the new policy. A bad policy never reaches
// the state manager, and a state that fails to apply leaves the old
// policy in place.
func (h *Holder) ApplyState(ctx context.Context, doc *document.Document, meta state.Meta, mgr StateApplier) ([]string, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	g, err := Prepare(doc, meta)
	if err != nil {
		return nil, err
	}
	meta.Policy = g.Policy
	warnings, err := mgr.ApplyMeta(ctx, doc, meta)
	// ApplyMeta can fail after its swap (stopping removed backends while
	// the edge shuts down): what counts is whether the new state is live.
	if st := mgr.Load(); st != nil && st.Meta.Policy == g.Policy {
		h.Commit(g)
	}
	if err != nil {
		return warnings, fmt.Errorf("applying config: %w", err)
	}
	return warnings, nil
}

// policyFor returns the policy a request on st is decided by: the one its
// snapshot carries, else the Holder's (a state applied without
// ApplyState), else nil, which denies everything.
func (h *Holder) policyFor(st *state.State) *policy.Policy {
	if st != nil && st.Meta.Policy != nil {
		return st.Meta.Policy
	}
	if g := h.cur.Load(); g != nil {
		return g.Policy
	}
	return nil
}

// revisionOf returns p's revision as a string without formatting on the
// hot path.
func (h *Holder) revisionOf(p *policy.Policy) string {
	if g := h.cur.Load(); g != nil && g.Policy == p {
		return g.revision
	}
	if e := h.rev.Load(); e != nil && e.p == p {
		return e.s
	}
	s := strconv.FormatInt(p.Revision(), 10)
	h.rev.Store(&revEntry{p: p, s: s})
	return s
}
