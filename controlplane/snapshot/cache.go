package snapshot

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	mcpgwv1 "github.com/mcpgw/mcpgw/gen/mcpgw/v1"
)

// DefaultGroup is the node group of nodes whose join token named none.
const DefaultGroup = "default"

// Cache holds the current snapshot of every node group. Readers never lock
// on the common path: the current generation sits behind an atomic pointer,
// and each generation carries a channel that is closed when the next one is
// published, so a stream waits for a newer revision without polling.
type Cache struct {
	// mu serialises writers: Publish, and the first build of a group that
	// was not known when its generation was published.
	mu  sync.Mutex
	gen atomic.Pointer[generation]
}

// generation is the config at one revision and the snapshots built from it.
type generation struct {
	revision   int64
	commitTime time.Time
	// base is the loaded config, kept to build snapshots of groups that
	// appear later; nil before the first publish.
	base *mcpgwv1.SnapshotResources
	// changed is closed when a newer generation replaces this one.
	changed chan struct{}
	// groups maps node group to its snapshot. Copy-on-write under Cache.mu.
	groups atomic.Pointer[map[string]*Snapshot]
}

// NewCache returns an empty cache: no revision, no snapshots.
func NewCache() *Cache {
	c := &Cache{}
	g := &generation{changed: make(chan struct{})}
	g.groups.Store(&map[string]*Snapshot{})
	c.gen.Store(g)
	return c
}

// Revision returns the revision of the current snapshots, 0 before the
// first publish.
func (c *Cache) Revision() int64 { return c.gen.Load().revision }

// Current returns the current snapshot of group, or nil if none has been
// published yet.
func (c *Cache) Current(group string) (*Snapshot, error) {
	s, _, err := c.Watch(group)
	return s, err
}

// Watch returns the current snapshot of group (nil if there is none yet)
// and a channel that is closed as soon as a newer revision is published.
// Callers read the snapshot, do their work, then wait on the channel and
// call Watch again.
func (c *Cache) Watch(group string) (*Snapshot, <-chan struct{}, error) {
	if group == "" {
		group = DefaultGroup
	}
	g := c.gen.Load()
	if g.base == nil {
		return nil, g.changed, nil
	}
	if s := (*g.groups.Load())[group]; s != nil {
		return s, g.changed, nil
	}
	s, err := c.addGroup(g, group)
	return s, g.changed, err
}

// addGroup builds the snapshot of a group the generation was not built for.
func (c *Cache) addGroup(g *generation, group string) (*Snapshot, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	old := *g.groups.Load()
	if s := old[group]; s != nil {
		return s, nil
	}
	s, err := Build(group, g.revision, g.commitTime, g.base)
	if err != nil {
		return nil, err
	}
	m := make(map[string]*Snapshot, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	m[group] = s
	g.groups.Store(&m)
	return s, nil
}

// Publish builds the snapshots of revision for every group known so far
// (and the default group), makes them current and wakes every watcher. A
// revision not newer than the current one is ignored, so replicas and
// retries can publish without coordinating.
func (c *Cache) Publish(revision int64, commitTime time.Time, base *mcpgwv1.SnapshotResources) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.gen.Load()
	if revision <= old.revision {
		return nil
	}
	groups := []string{DefaultGroup}
	for k := range *old.groups.Load() {
		if k != DefaultGroup {
			groups = append(groups, k)
		}
	}
	m := make(map[string]*Snapshot, len(groups))
	for _, group := range groups {
		s, err := Build(group, revision, commitTime, base)
		if err != nil {
			return fmt.Errorf("publishing revision %d: %w", revision, err)
		}
		m[group] = s
	}
	g := &generation{revision: revision, commitTime: commitTime, base: base, changed: make(chan struct{})}
	g.groups.Store(&m)
	c.gen.Store(g)
	close(old.changed)
	return nil
}

// Snapshots returns the current snapshots of every group, sorted by group.
func (c *Cache) Snapshots() []*Snapshot {
	m := *c.gen.Load().groups.Load()
	out := make([]*Snapshot, 0, len(m))
	for _, s := range m {
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b *Snapshot) int {
		switch {
		case a.Group < b.Group:
			return -1
		case a.Group > b.Group:
			return 1
		}
		return 0
	})
	return out
}
