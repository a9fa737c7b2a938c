package loader

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/tcpshift/tcpshift/maps"
)

// assignIDs gives every planned service and endpoint an id: the one it had
// before when it existed, otherwise one nobody used before this apply, so no
// table still in force can reach a new endpoint through a recycled id. It
// returns the endpoint ids that services still planned no longer use. Kept
// endpoints keep their health while the service is checked. Ids past the
// maps' capacity are an error, before anything is written.
func assignIDs(plans []*planned, old []*maps.Service) (released []uint32, err error) {
	limits, err := maps.Capacities()
	if err != nil {
		return nil, err
	}
	// Ids are small integers below the maps' capacities: sets of them are
	// slices, and a service that did not change keeps its ids without one
	// hash per endpoint (ten thousand services make an apply's every sync).
	usedSvc := make([]bool, limits.Services)
	usedEp := make([]bool, limits.Endpoints)
	kept := make([]bool, limits.Endpoints)
	oldSvc := make(map[string]*maps.Service, len(old))
	nOldEps := 0
	for _, o := range old {
		oldSvc[o.Name] = o
		if int(o.ID) < len(usedSvc) {
			usedSvc[o.ID] = true
		}
		for _, sub := range o.Subsets {
			for _, ep := range sub.Endpoints {
				if int(ep.ID) < len(usedEp) {
					usedEp[ep.ID] = true
				}
				nOldEps++
			}
		}
	}
	// Free ids are handed out in order from a cursor per kind, so that
	// ten thousand new services cost ten thousand steps, not fifty million.
	next := func(used []bool, cursor *int) int {
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
	var svcCursor, epCursor int
	newEps := 0
	type unmatched struct {
		p   *planned
		sub string
		ep  *maps.Endpoint
	}
	var rest []unmatched
	for _, p := range plans {
		o := oldSvc[p.svc.Name]
		if o != nil {
			p.svc.ID = o.ID
		} else if id := next(usedSvc, &svcCursor); id >= limits.Services {
			return nil, fmt.Errorf("service %s: %d services would be loaded at once (the file's and the %d in force it removes), at most %d per network namespace: remove services with an apply of their own first",
				p.svc.Name, len(old)+1, len(old), limits.Services)
		} else {
			p.svc.ID = uint32(id)
		}
		for i := range p.svc.Subsets {
			sub := &p.svc.Subsets[i]
			var was []maps.Endpoint
			if o != nil {
				if k := slices.IndexFunc(o.Subsets, func(s maps.Subset) bool { return s.Name == sub.Name }); k >= 0 {
					was = o.Subsets[k].Endpoints
				}
			}
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
				if !found || kept[prev.ID] {
					rest = append(rest, unmatched{p, sub.Name, ep})
					continue
				}
				ep.ID = prev.ID
				// Checks go on where they were; without checks
				// an endpoint is unchecked again.
				if p.checked {
					ep.Health = prev.Health
				}
				kept[ep.ID] = true
			}
		}
	}
	// An endpoint that moved to another subset of its service (a
	// terminating pod set apart at weight 0) keeps the id it had there,
	// with its counters and connections.
	for _, u := range rest {
		if o := oldSvc[u.p.svc.Name]; o != nil {
			if prev, ok := movedEndpoint(o, u.ep.Addr, kept); ok {
				u.ep.ID = prev.ID
				if u.p.checked {
					u.ep.Health = prev.Health
				}
				kept[prev.ID] = true
				continue
			}
		}
		newEps++
		id := next(usedEp, &epCursor)
		if id >= limits.Endpoints {
			return nil, fmt.Errorf("service %s subset %s: endpoint %s needs an endpoint id past %d: %d endpoints in force and %d new ones, at most %d per network namespace while both exist: remove services with an apply of their own first",
				u.p.svc.Name, u.sub, u.ep.Addr, limits.Endpoints, nOldEps, newEps, limits.Endpoints)
		}
		u.ep.ID = uint32(id)
		kept[id] = true
	}
	planned := make(map[string]bool, len(plans))
	for _, p := range plans {
		planned[p.svc.Name] = true
	}
	// Endpoints of removed services go with them (Set.DeleteServices).
	for _, o := range old {
		if !planned[o.Name] {
			continue
		}
		for _, sub := range o.Subsets {
			for _, ep := range sub.Endpoints {
				if !kept[ep.ID] {
					released = append(released, ep.ID)
				}
			}
		}
	}
	return released, nil
}

// movedEndpoint finds, among a service's endpoints in force, one at addr
// whose id no planned endpoint kept yet.
func movedEndpoint(o *maps.Service, addr netip.AddrPort, kept []bool) (maps.Endpoint, bool) {
	for _, sub := range o.Subsets {
		for _, ep := range sub.Endpoints {
			if ep.Addr == addr && !kept[ep.ID] {
				return ep, true
			}
		}
	}
	return maps.Endpoint{}, false
}
