package loader

import (
	"cmp"
	"net/netip"
	"reflect"
	"slices"
	"sync"

	"github.com/tcpshift/tcpshift/config"
	"github.com/tcpshift/tcpshift/maps"
)

// leftInForce is what this Target's last apply left in force: the services, as
// it wrote them, and its view of the lists map's slots. It stands for the
// maps (reading ten thousand services back costs more than the change of
// one) as long as no other writer wrote since: the owners map is the same
// one (state removed and made again has a new one) and its write sequence
// is the one the commit ended at. Any other writer (set-weight, a shift,
// health, another process's apply) moves the sequence on, and the next
// apply reads the maps again.
type leftInForce struct {
	mu     sync.Mutex
	owners uint32 // the owners map's id
	seq    uint64
	svcs   []*maps.Service // sorted by name, as ServiceList returns them
	slots  *maps.ListSlots
	// served is the list last handed out from it, to tell a Build's
	// current services from the cache's.
	served []*maps.Service
}

// stateMark names the state in force: the owners map's id and its write
// sequence; ok is false when there is none to name it by.
func stateMark(set *maps.Set) (owners uint32, seq uint64, ok bool) {
	id, ok := set.OwnersID()
	if !ok {
		return 0, 0, false
	}
	o, err := set.Owner()
	if err != nil || o.WriteSeq%2 == 1 {
		return 0, 0, false
	}
	return uint32(id), o.WriteSeq, true
}

// valid reports whether the cache stands for the state in set.
func (c *leftInForce) valid(set *maps.Set) bool {
	owners, seq, ok := stateMark(set)
	return ok && c.svcs != nil && owners == c.owners && seq == c.seq
}

// servicesInForce reads the services in force: from what this Target's
// last apply left when no other writer wrote since, from the maps
// otherwise. The caller holds the lock.
func (t *Target) servicesInForce(set *maps.Set) ([]*maps.Service, error) {
	c := &t.left
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.valid(set) {
		c.served = slices.Clone(c.svcs)
		return c.served, nil
	}
	c.svcs, c.slots, c.served = nil, nil, nil
	return set.ServiceList()
}

// ownState reports whether old is the list servicesInForce last served
// from the cache: the state in force is the one this Target wrote.
func (t *Target) ownState(old []*maps.Service) bool {
	c := &t.left
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(old) > 0 && len(old) == len(c.served) && &old[0] == &c.served[0]
}

// listSlots is the view of the lists map to start a transaction from: the
// last commit's, when the state is still the one it left.
func (t *Target) listSlots(set *maps.Set) *maps.ListSlots {
	c := &t.left
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.valid(set) {
		return c.slots
	}
	return nil
}

// remember records what a committed delta left in force.
func (t *Target) remember(set *maps.Set, d *delta) {
	c := &t.left
	c.mu.Lock()
	defer c.mu.Unlock()
	c.svcs, c.slots, c.served = nil, nil, nil
	owners, seq, ok := stateMark(set)
	if !ok {
		return
	}
	svcs := make([]*maps.Service, 0, len(d.plans)+len(d.kept))
	for _, p := range d.plans {
		svcs = append(svcs, p.svc)
	}
	svcs = append(svcs, d.kept...)
	slices.SortFunc(svcs, func(a, b *maps.Service) int { return cmp.Compare(a.Name, b.Name) })
	c.owners, c.seq, c.svcs, c.slots = owners, seq, svcs, d.slots
}

// CheckInForce compares what this Target's last apply left in force, as it
// remembers it, with the maps; it names the services that differ (none
// when nothing is remembered, or another writer wrote since).
func (t *Target) CheckInForce() ([]string, error) {
	var differ []string
	err := t.Read(func(set *maps.Set) error {
		c := &t.left
		c.mu.Lock()
		defer c.mu.Unlock()
		if !c.valid(set) {
			return nil
		}
		read, err := set.ServiceList()
		if err != nil {
			return err
		}
		byName := map[string]*maps.Service{}
		for _, s := range read {
			byName[s.Name] = s
		}
		for _, s := range c.svcs {
			if !reflect.DeepEqual(s, byName[s.Name]) {
				differ = append(differ, s.Name)
			}
			delete(byName, s.Name)
		}
		for name := range byName {
			differ = append(differ, name)
		}
		return nil
	})
	return differ, err
}

// scope decides which services of a Built to plan. When the Built names
// the services it changes and the state in force is the one this Target
// left, the connect-mode services it does not name, whose weights in force
// the change would keep, stay exactly as they are (kept) and only the rest
// are planned (only); otherwise everything is planned (both nil). Modes
// other than connect are always planned: what they need (listening
// sockets, the mode auto picks) is the host's, which may have changed.
func (t *Target) scope(b *Built, old []*maps.Service, opts ApplyOptions) (only map[string]bool, kept []*maps.Service) {
	if b.Changed == nil || !t.ownState(old) {
		return nil, nil
	}
	cfg := make(map[string]*config.Service, len(b.Config.Services))
	only = map[string]bool{}
	for i := range b.Config.Services {
		c := &b.Config.Services[i]
		cfg[c.Name] = c
		if b.Changed[c.Name] || c.Mode != config.ModeConnect {
			only[c.Name] = true
		}
	}
	inForce := make(map[string]bool, len(old))
	for _, o := range old {
		inForce[o.Name] = true
		switch {
		case cfg[o.Name] == nil || only[o.Name]: // removed, or planned
		case !opts.KeepOverrides && o.Overridden():
			only[o.Name] = true // the file's weights come back
		default:
			kept = append(kept, o)
		}
	}
	for name := range cfg {
		if !inForce[name] {
			only[name] = true
		}
	}
	return only, kept
}

// keep makes the delta leave the kept services as they are: they are not
// removed, keep their local routes, and each is reported unchanged after
// the planned services (whose changes stay at their plans' indexes).
func (d *delta) keep(kept []*maps.Service, planned int) {
	if len(kept) == 0 {
		return
	}
	d.kept = kept
	stays := make(map[string]bool, len(kept))
	routed := map[netip.Addr]bool{}
	for _, k := range kept {
		stays[k.Name] = true
		if k.LocalRoute {
			routed[k.Frontend.Addr()] = true
		}
	}
	changes := slices.Clone(d.changes[:planned])
	for _, k := range kept {
		changes = append(changes, Change{Service: k.Name, Action: "unchanged", Mode: k.Mode})
	}
	for _, ch := range d.changes[planned:] {
		if !stays[ch.Service] {
			changes = append(changes, ch)
		}
	}
	d.changes = changes
	d.removed = slices.DeleteFunc(d.removed, func(o *maps.Service) bool { return stays[o.Name] })
	d.delRoutes = slices.DeleteFunc(d.delRoutes, func(a netip.Addr) bool { return routed[a] })
}
