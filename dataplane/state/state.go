// Package state holds the edge's live configuration: an immutable State
// (backends in order, their naming, the merged catalog) behind one
// atomic.Pointer, and the Manager that builds new States off the hot path,
// runs the backends they name, and swaps them in.
//
// A reload is a transaction in the style of caddy's: validate the whole
// document, start only the backends that are new or changed, swap the
// pointer, then drain and stop the ones that went away. Backends that did
// not change keep running across the swap. Requests already holding the old
// State finish on it.
package state

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mcpgw/mcpgw/dataplane/catalog"
	"github.com/mcpgw/mcpgw/dataplane/rpc"
	"github.com/mcpgw/mcpgw/dataplane/upstream"
	"github.com/mcpgw/mcpgw/internal/document"
	"github.com/mcpgw/mcpgw/internal/policy"
)

// Backend is one configured backend in a State.
type Backend struct {
	*upstream.Backend
	// Prefix of its exposed tool and prompt names ("" = unprefixed).
	Prefix string
}

// State is one immutable generation of the edge's live configuration.
type State struct {
	// Seq increases with every swap (config or catalog).
	Seq uint64
	// Meta says where the config came from (control-plane revision, hash,
	// compiled policy); zero for a local file.
	Meta     Meta
	Doc      *document.Document
	Backends []*Backend
	Catalog  *catalog.Catalog
	byName   map[string]*Backend
}

// Backend finds a backend by name.
func (s *State) Backend(name string) *Backend { return s.byName[name] }

// Notifier hears what the front doors must pass on to clients.
type Notifier interface {
	// ListsChanged: the catalog changed for these kinds (list_changed).
	ListsChanged(kinds []catalog.Kind)
	// BackendNotification: a backend notification outside any call
	// (resources/updated, log messages).
	BackendNotification(backend string, method string, params json.RawMessage)
	// BackendUp: a backend (re)connected.
	BackendUp(backend *upstream.Backend)
}

// Manager owns the live State and the backends' goroutines.
type Manager struct {
	opts     upstream.Options
	log      *slog.Logger
	notifier Notifier
	cur      atomic.Pointer[State]

	// mu serializes State swaps and guards lists and seq.
	mu    sync.Mutex
	lists map[*upstream.Backend]*catalog.Lists
	seq   uint64

	cmds    chan command
	refresh chan refreshReq
	stopped chan struct{} // closed when Run returns
}

// refreshReq asks the refresher to re-read a backend's lists. notified is
// what the backend itself said changed (its list_changed): clients are
// told after the re-read even when the merged catalog comes out the same,
// as they would be talking to the backend directly (a backend may announce
// a change the edge cannot see, such as a tool re-registered as it was).
type refreshReq struct {
	b        *upstream.Backend
	notified []catalog.Kind
}

type command struct {
	start []*upstream.Backend
	stop  []*upstream.Backend
	done  chan struct{}
}

// NewManager returns a manager with no State (not ready) and no backends.
// opts is used for every backend; its Observer is replaced by the manager.
// notifier may be nil.
func NewManager(opts upstream.Options, notifier Notifier) *Manager {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	m := &Manager{
		log:      opts.Logger,
		notifier: notifier,
		lists:    make(map[*upstream.Backend]*catalog.Lists),
		cmds:     make(chan command),
		refresh:  make(chan refreshReq, 64),
		stopped:  make(chan struct{}),
	}
	opts.Observer = m
	m.opts = opts
	return m
}

// SetNotifier sets the notifier; call it before Run.
func (m *Manager) SetNotifier(n Notifier) { m.notifier = n }

// Load returns the live State, or nil before the first Apply.
func (m *Manager) Load() *State { return m.cur.Load() }

// Run runs backends and list refreshes until ctx ends, then stops every
// backend and waits for them.
func (m *Manager) Run(ctx context.Context) error {
	type running struct {
		cancel context.CancelFunc
		done   chan struct{}
	}
	live := map[*upstream.Backend]*running{}
	var wg sync.WaitGroup
	wg.Go(func() { m.refresher(ctx) })
	defer close(m.stopped)
	defer wg.Wait()
	for {
		select {
		case <-ctx.Done():
			for _, r := range live {
				r.cancel()
			}
			return nil
		case cmd := <-m.cmds:
			for _, b := range cmd.start {
				bctx, cancel := context.WithCancel(ctx)
				r := &running{cancel: cancel, done: make(chan struct{})}
				live[b] = r
				wg.Go(func() {
					defer close(r.done)
					if err := b.Run(bctx); err != nil {
						m.log.Error("backend stopped", "backend", b.Name(), "err", err)
					}
				})
			}
			for _, b := range cmd.stop {
				r := live[b]
				if r == nil {
					continue
				}
				delete(live, b)
				wg.Go(func() {
					drain(ctx, b)
					r.cancel()
					<-r.done
					m.log.Info("backend stopped after reload", "backend", b.Name())
				})
			}
			close(cmd.done)
		}
	}
}

// drain waits for a removed backend's calls to finish, at most its timeout.
func drain(ctx context.Context, b *upstream.Backend) {
	deadline := time.Now().Add(b.Config().Timeout)
	for b.Inflight() > 0 && time.Now().Before(deadline) && ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (m *Manager) send(ctx context.Context, cmd command) error {
	cmd.done = make(chan struct{})
	select {
	case m.cmds <- cmd:
	case <-ctx.Done():
		return fmt.Errorf("applying config: %w", ctx.Err())
	case <-m.stopped:
		return errors.New("applying config: the edge is shutting down")
	}
	<-cmd.done
	return nil
}

// Meta is what the config source knows about a document besides its
// content.
type Meta struct {
	// Revision and Hash identify a control-plane snapshot (0 and "" for a
	// local file); decisions and audit events carry the revision.
	Revision int64
	Hash     string
	// Policy is the document's compiled policy, when the source compiled
	// it already (the control-plane client does); nil otherwise.
	Policy *policy.Policy
}

// Apply is ApplyMeta with no metadata (a local file).
func (m *Manager) Apply(ctx context.Context, doc *document.Document) (warnings []string, err error) {
	return m.ApplyMeta(ctx, doc, Meta{})
}

// ApplyMeta validates doc, starts its new or changed backends, swaps in the
// new State and drains and stops backends that are gone. On error the live
// State is untouched (never a partial apply). It returns warnings about
// accepted but not yet enforced sections. Run must be running.
func (m *Manager) ApplyMeta(ctx context.Context, doc *document.Document, meta Meta) (warnings []string, err error) {
	specs, warnings, err := Specs(doc, os.LookupEnv)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	prev := m.cur.Load()
	st := &State{Doc: doc, Meta: meta, byName: make(map[string]*Backend, len(specs))}
	var start []*upstream.Backend
	kept := map[*upstream.Backend]bool{}
	for _, sp := range specs {
		var b *upstream.Backend
		if prev != nil {
			if old := prev.byName[sp.Config.Name]; old != nil && old.Config().Equal(sp.Config) {
				b = old.Backend
				kept[b] = true
			}
		}
		if b == nil {
			if b, err = upstream.New(sp.Config, m.opts); err != nil {
				return nil, err
			}
			start = append(start, b)
		}
		be := &Backend{Backend: b, Prefix: sp.Prefix}
		st.Backends = append(st.Backends, be)
		st.byName[sp.Config.Name] = be
	}
	var stop []*upstream.Backend
	if prev != nil {
		for _, old := range prev.Backends {
			if !kept[old.Backend] {
				stop = append(stop, old.Backend)
			}
		}
	}
	if err := m.send(ctx, command{start: start}); err != nil {
		return nil, err
	}
	changed := m.swapLocked(st)
	for _, b := range stop {
		delete(m.lists, b)
	}
	// Stopping waits on in-flight calls; never hold up the swap for it.
	if len(stop) > 0 {
		if err := m.send(context.WithoutCancel(ctx), command{stop: stop}); err != nil {
			return warnings, err
		}
	}
	m.announce(changed)
	m.log.Info("config applied", "backends", len(st.Backends), "started", len(start), "stopped", len(stop), "kept", len(kept))
	return warnings, nil
}

// swapLocked publishes st with a catalog built from the current lists and
// returns the kinds whose lists changed. m.mu must be held.
func (m *Manager) swapLocked(st *State) []catalog.Kind {
	sources := make([]catalog.Source, len(st.Backends))
	for i, b := range st.Backends {
		sources[i] = catalog.Source{Backend: b.Name(), Prefix: b.Prefix, Lists: m.lists[b.Backend]}
	}
	st.Catalog = catalog.Build(sources)
	m.seq++
	st.Seq = m.seq
	prev := m.cur.Load()
	var changed []catalog.Kind
	for _, k := range catalog.Kinds() {
		if prev == nil || !st.Catalog.Equal(prev.Catalog, k) {
			changed = append(changed, k)
		}
	}
	if prev == nil || strings.Join(prev.Catalog.Conflicts, "\n") != strings.Join(st.Catalog.Conflicts, "\n") {
		for _, c := range st.Catalog.Conflicts {
			m.log.Error("catalog conflict", "detail", c)
		}
	}
	m.cur.Store(st)
	return changed
}

func (m *Manager) announce(kinds []catalog.Kind) {
	if len(kinds) > 0 && m.notifier != nil {
		m.notifier.ListsChanged(kinds)
	}
}

// setLists replaces a backend's lists (nil: the backend is down) and swaps
// in a State with the rebuilt catalog. Clients hear of the kinds that
// changed and of those in notified.
func (m *Manager) setLists(b *upstream.Backend, l *catalog.Lists, notified []catalog.Kind) {
	m.mu.Lock()
	st := m.cur.Load()
	if st == nil || st.byName[b.Name()] == nil || st.byName[b.Name()].Backend != b {
		m.mu.Unlock()
		return // not (or no longer) part of the live config
	}
	if l == nil {
		delete(m.lists, b)
	} else {
		m.lists[b] = l
	}
	next := *st
	changed := m.swapLocked(&next)
	m.mu.Unlock()
	for _, k := range notified {
		if !slices.Contains(changed, k) {
			changed = append(changed, k)
		}
	}
	m.announce(changed)
}

// WaitListed waits until every backend of the live state has had its
// lists fetched, or d passed, or ctx ended. It reports whether all were.
func (m *Manager) WaitListed(ctx context.Context, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		if m.allListed() {
			return true
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		select {
		case <-ctx.Done():
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (m *Manager) allListed() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := m.cur.Load()
	if st == nil {
		return false
	}
	for _, b := range st.Backends {
		if m.lists[b.Backend] == nil {
			return false
		}
	}
	return true
}

// BackendUp implements upstream.Observer: fetch the backend's lists.
func (m *Manager) BackendUp(b *upstream.Backend) {
	select {
	case m.refresh <- refreshReq{b: b}:
	default:
		m.log.Warn("list refresh queue full; dropping refresh", "backend", b.Name())
	}
	if m.notifier != nil {
		m.notifier.BackendUp(b)
	}
}

// BackendDown implements upstream.Observer: its items leave the catalog
// (clients get list_changed) until it is back.
func (m *Manager) BackendDown(b *upstream.Backend, err error) {
	m.setLists(b, nil, nil)
}

// BackendNotify implements upstream.Observer.
func (m *Manager) BackendNotify(b *upstream.Backend, method string, params json.RawMessage) {
	if k, ok := changedKind(method); ok {
		select {
		case m.refresh <- refreshReq{b: b, notified: []catalog.Kind{k}}:
		default:
			m.log.Warn("list refresh queue full; dropping refresh", "backend", b.Name())
		}
		return
	}
	st := m.cur.Load()
	if st == nil || st.byName[b.Name()] == nil || st.byName[b.Name()].Backend != b {
		return
	}
	if m.notifier != nil {
		m.notifier.BackendNotification(b.Name(), method, params)
	}
}

// changedKind is the kind a list_changed notification is about
// (resources/list_changed covers templates too; clients get one
// notification for both).
func changedKind(method string) (catalog.Kind, bool) {
	switch method {
	case "notifications/tools/list_changed":
		return catalog.Tools, true
	case "notifications/prompts/list_changed":
		return catalog.Prompts, true
	case "notifications/resources/list_changed":
		return catalog.Resources, true
	}
	return 0, false
}

// refresher fetches backends' lists one at a time, so results for one
// backend never land out of order.
func (m *Manager) refresher(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case r := <-m.refresh:
			b := r.b
			// Bounded, so one hung backend delays the others' lists only so long.
			fctx, cancel := context.WithTimeout(ctx, 15*time.Second)
			l, err := FetchLists(fctx, b)
			cancel()
			if err != nil {
				if ctx.Err() == nil {
					m.log.Warn("fetching backend lists", "backend", b.Name(), "err", err)
				}
				continue
			}
			if b.Healthy() {
				m.setLists(b, l, r.notified)
			}
		}
	}
}

// FetchLists reads every list the backend's capabilities offer, following
// its cursors.
func FetchLists(ctx context.Context, b *upstream.Backend) (*catalog.Lists, error) {
	caps := rpc.Field(b.InitializeResult(), "capabilities")
	var l catalog.Lists
	for _, k := range catalog.Kinds() {
		capName := map[catalog.Kind]string{catalog.Tools: "tools", catalog.Prompts: "prompts", catalog.Resources: "resources", catalog.Templates: "resources"}[k]
		if len(rpc.Field(caps, capName)) == 0 {
			continue
		}
		cursor := ""
		for page := 0; ; page++ {
			if page == 1000 {
				return nil, fmt.Errorf("%s: more than 1000 pages", k.ListMethod())
			}
			var params json.RawMessage
			if cursor != "" {
				params = json.RawMessage(`{"cursor":` + string(rpc.Quote(cursor)) + `}`)
			}
			resp, err := b.Call(ctx, k.ListMethod(), params, nil)
			if err != nil {
				return nil, err
			}
			if len(resp.Error) > 0 {
				return nil, fmt.Errorf("%s: backend error %s", k.ListMethod(), resp.Error)
			}
			var r struct {
				Items      []json.RawMessage `json:"-"`
				NextCursor string            `json:"nextCursor"`
			}
			if err := json.Unmarshal(resp.Result, &r); err != nil {
				return nil, fmt.Errorf("%s: bad result: %w", k.ListMethod(), err)
			}
			if err := json.Unmarshal(rpc.Field(resp.Result, k.ResultField()), &r.Items); err != nil && len(rpc.Field(resp.Result, k.ResultField())) > 0 {
				return nil, fmt.Errorf("%s: bad %s: %w", k.ListMethod(), k.ResultField(), err)
			}
			l[k] = append(l[k], r.Items...)
			if r.NextCursor == "" {
				break
			}
			cursor = r.NextCursor
		}
	}
	return &l, nil
}

// Spec is one backend as the document configures it, validated and with
// environment references expanded.
type Spec struct {
	Config upstream.Config
	Prefix string
}

// Specs validates the backends section of doc and expands "${env:NAME}"
// references with lookup (document.ExpandEnv: an unset variable is an
// error, so a missing secret never becomes an empty credential). It
// returns no warnings today; the result is kept for sections a future
// edge accepts before it enforces them.
func Specs(doc *document.Document, lookup func(string) (string, bool)) ([]Spec, []string, error) {
	if doc == nil {
		return nil, nil, errors.New("no document")
	}
	var warnings []string
	var errs []error
	specs := make([]Spec, 0, len(doc.Backends))
	names := map[string]bool{}
	prefixes := map[string]string{}
	for i, b := range doc.Backends {
		where := fmt.Sprintf("backends[%d] (%q)", i, b.Name)
		if !document.ValidBackendName(b.Name) {
			errs = append(errs, fmt.Errorf("%s: name must match %s", where, document.BackendNameSyntax))
			continue
		}
		if names[b.Name] {
			errs = append(errs, fmt.Errorf("%s: duplicate backend name", where))
			continue
		}
		names[b.Name] = true
		prefix := b.Name
		if b.Prefix != nil {
			prefix = *b.Prefix
		}
		if !document.ValidPrefix(prefix) || strings.Contains(prefix, "__") {
			errs = append(errs, fmt.Errorf("%s: prefix %q must match %s and not contain \"__\"", where, prefix, document.PrefixSyntax))
		}
		if other, dup := prefixes[prefix]; dup {
			errs = append(errs, fmt.Errorf("backends %q and %q both expose names with prefix %q; give one a different prefix", other, b.Name, prefix))
		}
		prefixes[prefix] = b.Name
		switch b.Sessions {
		case "", "shared", "per_principal":
		default:
			errs = append(errs, fmt.Errorf("%s: sessions must be \"shared\" or \"per_principal\", got %q", where, b.Sessions))
		}
		cfg := upstream.Config{Name: b.Name, Timeout: b.Timeout.D(), PerPrincipal: b.Sessions == "per_principal"}
		switch {
		case (b.Stdio == nil) == (b.HTTP == nil):
			errs = append(errs, fmt.Errorf("%s: exactly one of stdio and http must be set", where))
			continue
		case b.Stdio != nil:
			if len(b.Stdio.Command) == 0 || b.Stdio.Command[0] == "" {
				errs = append(errs, fmt.Errorf("%s: stdio.command is empty", where))
				continue
			}
			sc := &upstream.StdioConfig{Command: b.Stdio.Command, Dir: b.Stdio.Dir}
			for _, k := range slices.Sorted(maps.Keys(b.Stdio.Env)) {
				v, err := document.ExpandEnv(b.Stdio.Env[k], lookup)
				if err != nil {
					errs = append(errs, fmt.Errorf("%s: stdio.env.%s: %w", where, k, err))
				}
				sc.Env = append(sc.Env, k+"="+v)
			}
			cfg.Stdio = sc
		default:
			if !strings.HasPrefix(b.HTTP.URL, "http://") && !strings.HasPrefix(b.HTTP.URL, "https://") {
				errs = append(errs, fmt.Errorf("%s: http.url %q must be an http:// or https:// URL", where, b.HTTP.URL))
				continue
			}
			hc := &upstream.HTTPConfig{URL: b.HTTP.URL, Headers: map[string]string{}}
			for k, v := range b.HTTP.Headers {
				ev, err := document.ExpandEnv(v, lookup)
				if err != nil {
					errs = append(errs, fmt.Errorf("%s: http.headers.%s: %w", where, k, err))
				}
				hc.Headers[k] = ev
			}
			cfg.HTTP = hc
		}
		specs = append(specs, Spec{Config: cfg, Prefix: prefix})
	}
	if err := errors.Join(errs...); err != nil {
		return nil, nil, fmt.Errorf("invalid config: %w", err)
	}
	return specs, warnings, nil
}
