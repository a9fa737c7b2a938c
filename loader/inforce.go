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
	planned := make([]*maps.Service, 0, len(d.plans))
	for _, p := range d.plans {
		planned = append(planned, p.svc)
	}
	slices.SortFunc(planned, compareService)
	slots := d.slots
	if slots == nil && d.daemonFile != "" {
		// A daemon applies again: its first change should not be the
		// one that reads every table (~100 ms at ten thousand).
		slots, _ = set.ReadListSlots()
	}
	c.owners, c.seq, c.svcs, c.slots = owners, seq, mergeSorted(planned, d.kept), slots
}

// mergeSorted merges two lists of services: planned sorted by name, kept
// in the order of the services in force (by name when they are the
// cache's). The few services a change plans go in among ten thousand kept
// without sorting them all again.
func mergeSorted(planned, kept []*maps.Service) []*maps.Service {
	out := make([]*maps.Service, 0, len(planned)+len(kept))
	if !slices.IsSortedFunc(kept, compareService) {
		out = append(append(out, planned...), kept...)
		slices.SortFunc(out, compareService)
		return out
	}
	i, j := 0, 0
	for i < len(planned) || j < len(kept) {
		if j == len(kept) || i < len(planned) && planned[i].Name < kept[j].Name {
			out = append(out, planned[i])
			i++
		} else {
			out = append(out, kept[j])
			j++
		}
	}
	return out
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
		differ = c.differsFrom(read)
		return nil
	})
	return differ, err
}

// differsFrom names the services remembered and read that differ.
func (c *leftInForce) differsFrom(read []*maps.Service) (differ []string) {
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
	return differ
}

// scope decides which services of a Built to plan. When the Built names
// the services it changes and the state in force is the one this Target
// left, the connect-mode services it does not name, whose weights in force
// the change would keep, stay exactly as they are (kept) and only the rest
// are planned (only); otherwise everything is planned (both nil). Modes
// other than connect are always planned: what they need (listening
// sockets, the mode auto picks) is the host's, which may have changed.
// Kept services come in old's order.
func (t *Target) scope(b *Built, old []*maps.Service, opts ApplyOptions) (only map[string]bool, kept []*maps.Service) {
	if b.Changed == nil || !t.ownState(old) {
		return nil, nil
	}
	cfg := byName(b.Config.Services)
	only = map[string]bool{}
	kept = make([]*maps.Service, 0, len(old))
	// old is sorted by name (it is what this Target left): one walk of
	// both lists pairs each service with the one in force, without a map
	// of ten thousand names at every change.
	i, j := 0, 0
	for i < len(cfg) || j < len(old) {
		switch {
		case j == len(old) || i < len(cfg) && cfg[i].Name < old[j].Name:
			only[cfg[i].Name] = true // not in force yet
			i++
		case i == len(cfg) || old[j].Name < cfg[i].Name:
			j++ // removed
		default:
			c, o := cfg[i], old[j]
			switch {
			case b.Changed[c.Name] || c.Mode != config.ModeConnect:
				only[c.Name] = true
			case !opts.KeepOverrides && o.Overridden():
				only[c.Name] = true // the file's weights come back
			default:
				kept = append(kept, o)
			}
			i, j = i+1, j+1
		}
	}
	return only, kept
}

// byName is the config's services in name order: as they are when they
// already come so (the agent's do), sorted pointers otherwise.
func byName(svcs []config.Service) []*config.Service {
	out := make([]*config.Service, len(svcs))
	for i := range svcs {
		out[i] = &svcs[i]
	}
	if !slices.IsSortedFunc(out, compareConfig) {
		slices.SortFunc(out, compareConfig)
	}
	return out
}

func compareConfig(a, b *config.Service) int { return cmp.Compare(a.Name, b.Name) }

func compareService(a, b *maps.Service) int { return cmp.Compare(a.Name, b.Name) }

// keep makes the delta leave the kept services as they are: they are not
// removed, keep their local routes, and each is reported unchanged after
// the planned services (whose changes stay at their plans' indexes).
func (d *delta) keep(kept []*maps.Service, planned int) {
	if len(kept) == 0 {
		return
	}
	d.kept = kept
	routed := map[netip.Addr]bool{}
	for _, k := range kept {
		if k.LocalRoute {
			routed[k.Frontend.Addr()] = true
		}
	}
	removals := d.changes[planned:]
	changes := make([]Change, 0, len(d.changes)+len(kept)-min(len(kept), len(removals)))
	changes = append(changes, d.changes[:planned]...)
	for _, k := range kept {
		changes = append(changes, Change{Service: k.Name, Action: "unchanged", Mode: k.Mode})
	}
	d.changes = changes
	d.removed, removals = withoutKept(d.removed, removals, kept)
	d.changes = append(d.changes, removals...)
	if len(routed) > 0 {
		d.delRoutes = slices.DeleteFunc(d.delRoutes, func(a netip.Addr) bool { return routed[a] })
	}
}

// withoutKept takes the kept services out of those the diff would remove
// and out of their changes (one per removed service, in its order). Both
// come in the order of the services in force, so one walk finds them; a
// set of names does it otherwise.
func withoutKept(removed []*maps.Service, changes []Change, kept []*maps.Service) ([]*maps.Service, []Change) {
	outR, outC := make([]*maps.Service, 0, max(0, len(removed)-len(kept))), make([]Change, 0, max(0, len(changes)-len(kept)))
	k := 0
	for i, o := range removed {
		if k < len(kept) && kept[k] == o {
			k++
			continue
		}
		outR = append(outR, o)
		if i < len(changes) {
			outC = append(outC, changes[i])
		}
	}
	if k == len(kept) && len(removed) == len(changes) {
		return outR, outC
	}
	stays := make(map[string]bool, len(kept))
	for _, s := range kept {
		stays[s.Name] = true
	}
	return slices.DeleteFunc(removed, func(o *maps.Service) bool { return stays[o.Name] }),
		slices.DeleteFunc(changes, func(ch Change) bool { return stays[ch.Service] })
}
