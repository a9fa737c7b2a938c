package plan

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/tcpshift/tcpshift/maps"
)

// AssignIDs gives every service of svcs and its endpoints an id: the one
// it had before when it existed, otherwise one nobody used before this
// apply, so no table still in force can reach a new endpoint through a
// recycled id. It returns the endpoint ids that services still planned no
// longer use. Kept endpoints keep their health while the service is
// checked. Ids past limits (the maps' capacities) are an error, before
// anything is written.
func AssignIDs(svcs []*Service, old []*maps.Service, limits maps.Capacity) (released []uint32, err error) {
	return assignIDs(svcs, old, byName(old), limits)
}

// byName indexes the services in force by name.
func byName(old []*maps.Service) map[string]*maps.Service {
	m := make(map[string]*maps.Service, len(old))
	for _, o := range old {
		m[o.Name] = o
	}
	return m
}

// assignIDs is AssignIDs with the services in force indexed by name
// (oldSvc), which Diff shares: ten thousand names hashed once per apply.
func assignIDs(svcs []*Service, old []*maps.Service, oldSvc map[string]*maps.Service, limits maps.Capacity) (released []uint32, err error) {
	a := newIDs(limits, old, oldSvc)
	rest, err := a.keep(svcs)
	if err != nil {
		return nil, err
	}
	if err := a.assignRest(rest); err != nil {
		return nil, err
	}
	return a.released(svcs, old), nil
}

// ids is one apply's id assignment: which ids the state in force uses,
// which planned endpoints kept theirs, and where the search for free ones
// goes on.
type ids struct {
	limits maps.Capacity
	old    []*maps.Service
	oldSvc map[string]*maps.Service
	// Ids are small integers below the maps' capacities: sets of them are
	// slices, and a service that did not change keeps its ids without one
	// hash per endpoint (ten thousand services make an apply's every sync).
	usedSvc, usedEp, kept []bool
	nOldEps, newEps       int
	// Free ids are handed out in order from a cursor per kind, so that
	// ten thousand new services cost ten thousand steps, not fifty million.
	svcCursor, epCursor int
}

// unmatched is a planned endpoint with no id in force to keep.
type unmatched struct {
	s   *Service
	sub string
	ep  *maps.Endpoint
}

// newIDs indexes the ids of the services in force.
func newIDs(limits maps.Capacity, old []*maps.Service, oldSvc map[string]*maps.Service) *ids {
	a := &ids{
		limits:  limits,
		old:     old,
		oldSvc:  oldSvc,
		usedSvc: make([]bool, limits.Services),
		usedEp:  make([]bool, limits.Endpoints),
		kept:    make([]bool, limits.Endpoints),
	}
	for _, o := range old {
		if int(o.ID) < len(a.usedSvc) {
			a.usedSvc[o.ID] = true
		}
		for _, sub := range o.Subsets {
			// By index: a hundred thousand endpoints are not copied.
			for j := range sub.Endpoints {
				if id := int(sub.Endpoints[j].ID); id < len(a.usedEp) {
					a.usedEp[id] = true
				}
			}
			a.nOldEps += len(sub.Endpoints)
		}
	}
	return a
}

// nextFree hands out the first id at or past the cursor that used does not
// hold, and marks it used; an id past used's length means none is left.
func nextFree(used []bool, cursor *int) int {
	id := *cursor
	for id < len(used) && used[id] {
		id++
	}
	if id < len(used) {
		used[id] = true
	}
	*cursor = id + 1
	return id
}

// keep gives every planned service its id (the one in force, or a free
// one) and every endpoint found at the same address in the same subset in
// force its id; it returns the endpoints left without one.
func (a *ids) keep(svcs []*Service) ([]unmatched, error) {
	var rest []unmatched
	for _, s := range svcs {
		o := a.oldSvc[s.Svc.Name]
		if o != nil {
			s.Svc.ID = o.ID
		} else if id := nextFree(a.usedSvc, &a.svcCursor); id >= a.limits.Services {
			return nil, fmt.Errorf("service %s: %d services would be loaded at once (the file's and the %d in force it removes), at most %d per network namespace: remove services with an apply of their own first",
				s.Svc.Name, len(a.old)+1, len(a.old), a.limits.Services)
		} else {
			s.Svc.ID = uint32(id)
		}
		for i := range s.Svc.Subsets {
			sub := &s.Svc.Subsets[i]
			var was []maps.Endpoint
			if o != nil {
				if k := slices.IndexFunc(o.Subsets, func(x maps.Subset) bool { return x.Name == sub.Name }); k >= 0 {
					was = o.Subsets[k].Endpoints
				}
			}
			rest = a.keepSubset(s, sub, was, rest)
		}
	}
	return rest, nil
}

// keepSubset gives the endpoints of a planned subset the ids they have in
// the subset in force (was), and appends those it cannot to rest.
func (a *ids) keepSubset(s *Service, sub *maps.Subset, was []maps.Endpoint, rest []unmatched) []unmatched {
	var byAddr map[netip.AddrPort]maps.Endpoint // built only when the order changed
	for j := range sub.Endpoints {
		ep := &sub.Endpoints[j]
		var prev maps.Endpoint
		found := false
		if j < len(was) && was[j].Addr == ep.Addr {
			prev, found = was[j], true
		} else if len(was) > 0 {
			if byAddr == nil {
				byAddr = make(map[netip.AddrPort]maps.Endpoint, len(was))
				for _, w := range was {
					byAddr[w.Addr] = w
				}
			}
			prev, found = byAddr[ep.Addr]
		}
		if !found || !free(a.kept, prev.ID) {
			rest = append(rest, unmatched{s, sub.Name, ep})
			continue
		}
		ep.ID = prev.ID
		// Checks go on where they were; without checks
		// an endpoint is unchecked again.
		if s.Checked {
			ep.Health = prev.Health
		}
		a.kept[ep.ID] = true
	}
	return rest
}

// assignRest gives the endpoints keep left an id: the one they had in
// another subset of their service, or a free one.
func (a *ids) assignRest(rest []unmatched) error {
	// An endpoint that moved to another subset of its service (a
	// terminating pod set apart at weight 0) keeps the id it had there,
	// with its counters and connections.
	for _, u := range rest {
		if o := a.oldSvc[u.s.Svc.Name]; o != nil {
			if prev, ok := movedEndpoint(o, u.ep.Addr, a.kept); ok {
				u.ep.ID = prev.ID
				if u.s.Checked {
					u.ep.Health = prev.Health
				}
				a.kept[prev.ID] = true
				continue
			}
		}
		a.newEps++
		id := nextFree(a.usedEp, &a.epCursor)
		if id >= a.limits.Endpoints {
			return fmt.Errorf("service %s subset %s: endpoint %s needs an endpoint id past %d: %d endpoints in force and %d new ones, at most %d per network namespace while both exist: remove services with an apply of their own first",
				u.s.Svc.Name, u.sub, u.ep.Addr, a.limits.Endpoints, a.nOldEps, a.newEps, a.limits.Endpoints)
		}
		u.ep.ID = uint32(id)
		a.kept[id] = true
	}
	return nil
}

// released returns the endpoint ids in force of services still planned
// that no planned endpoint kept, in the order of the services in force.
func (a *ids) released(svcs []*Service, old []*maps.Service) (released []uint32) {
	// Endpoints of removed services go with them (Set.DeleteServices).
	for _, o := range a.plannedInForce(svcs, old) {
		for _, sub := range o.Subsets {
			for j := range sub.Endpoints {
				if id := sub.Endpoints[j].ID; free(a.kept, id) {
					released = append(released, id)
				}
			}
		}
	}
	return released
}

// plannedInForce returns the services in force that svcs plans again, in
// old's order. When old is in name order (as the loader reads it) they are
// found by name, so a change to a few services among ten thousand does not
// walk them all.
func (a *ids) plannedInForce(svcs []*Service, old []*maps.Service) []*maps.Service {
	if slices.IsSortedFunc(old, func(x, y *maps.Service) int { return strings.Compare(x.Name, y.Name) }) && !repeatsName(old) {
		var out []*maps.Service
		for _, s := range svcs {
			if o := a.oldSvc[s.Svc.Name]; o != nil {
				out = append(out, o)
			}
		}
		slices.SortFunc(out, func(x, y *maps.Service) int { return strings.Compare(x.Name, y.Name) })
		return slices.CompactFunc(out, func(x, y *maps.Service) bool { return x == y })
	}
	planned := make(map[string]bool, len(svcs))
	for _, s := range svcs {
		planned[s.Svc.Name] = true
	}
	var out []*maps.Service
	for _, o := range old {
		if planned[o.Name] {
			out = append(out, o)
		}
	}
	return out
}

// repeatsName reports whether two neighbours of sorted old share a name.
func repeatsName(old []*maps.Service) bool {
	for i := 1; i < len(old); i++ {
		if old[i].Name == old[i-1].Name {
			return true
		}
	}
	return false
}

// movedEndpoint finds, among a service's endpoints in force, one at addr
// whose id no planned endpoint kept yet.
func movedEndpoint(o *maps.Service, addr netip.AddrPort, kept []bool) (maps.Endpoint, bool) {
	for _, sub := range o.Subsets {
		for _, ep := range sub.Endpoints {
			if ep.Addr == addr && free(kept, ep.ID) {
				return ep, true
			}
		}
	}
	return maps.Endpoint{}, false
}

// free reports whether an id in force can be kept (or released): no planned
// endpoint kept it yet, and it is within the limit. An id past the limit
// (state written with a larger capacity) is neither: its endpoint gets a new
// id, and nothing is written at the old one.
func free(kept []bool, id uint32) bool {
	return int(id) < len(kept) && !kept[id]
}
