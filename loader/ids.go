package loader

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

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
	type epKey struct {
		service, subset string
		addr            netip.AddrPort
	}
	oldSvc := map[string]uint32{}
	oldEp := map[epKey]maps.Endpoint{}
	usedSvc := map[uint32]bool{}
	usedEp := map[uint32]bool{}
	for _, o := range old {
		oldSvc[o.Name] = o.ID
		usedSvc[o.ID] = true
		for _, sub := range o.Subsets {
			for _, ep := range sub.Endpoints {
				oldEp[epKey{o.Name, sub.Name, ep.Addr}] = ep
				usedEp[ep.ID] = true
			}
		}
	}
	// Free ids are handed out in order from a cursor per kind, so that
	// ten thousand new services cost ten thousand steps, not fifty million.
	next := func(used map[uint32]bool, cursor *uint32) uint32 {
		id := *cursor
		for used[id] {
			id++
		}
		used[id] = true
		*cursor = id + 1
		return id
	}
	var svcCursor, epCursor uint32
	kept := map[uint32]bool{}
	newEps := 0
	// An endpoint keeps its id where it stays; one that moved to another
	// subset of its service (a terminating pod set apart at weight 0)
	// keeps the id it had there, with its counters and connections.
	type move struct {
		service string
		addr    netip.AddrPort
	}
	moved := map[move][]maps.Endpoint{}
	for k, ep := range oldEp {
		moved[move{k.service, k.addr}] = append(moved[move{k.service, k.addr}], ep)
	}
	var rest []*maps.Endpoint
	var restOf []string // "service subset", for errors
	for _, p := range plans {
		if id, ok := oldSvc[p.svc.Name]; ok {
			p.svc.ID = id
		} else if p.svc.ID = next(usedSvc, &svcCursor); int(p.svc.ID) >= limits.Services {
			return nil, fmt.Errorf("service %s: %d services would be loaded at once (the file's and the %d in force it removes), at most %d per network namespace: remove services with an apply of their own first",
				p.svc.Name, len(usedSvc), len(old), limits.Services)
		}
		for i := range p.svc.Subsets {
			sub := &p.svc.Subsets[i]
			for j := range sub.Endpoints {
				ep := &sub.Endpoints[j]
				o, ok := oldEp[epKey{p.svc.Name, sub.Name, ep.Addr}]
				if !ok {
					rest = append(rest, ep)
					restOf = append(restOf, p.svc.Name+" subset "+sub.Name)
					continue
				}
				ep.ID = o.ID
				// Checks go on where they were; without checks
				// an endpoint is unchecked again.
				if p.checked {
					ep.Health = o.Health
				}
				kept[ep.ID] = true
			}
		}
	}
	for i, ep := range rest {
		service, _, _ := strings.Cut(restOf[i], " subset ")
		if i := slices.IndexFunc(moved[move{service, ep.Addr}], func(o maps.Endpoint) bool { return !kept[o.ID] }); i >= 0 {
			ep.ID = moved[move{service, ep.Addr}][i].ID
			kept[ep.ID] = true
			continue
		}
		newEps++
		if ep.ID = next(usedEp, &epCursor); int(ep.ID) >= limits.Endpoints {
			return nil, fmt.Errorf("service %s: endpoint %s needs an endpoint id past %d: %d endpoints in force and %d new ones, at most %d per network namespace while both exist: remove services with an apply of their own first",
				restOf[i], ep.Addr, limits.Endpoints, len(oldEp), newEps, limits.Endpoints)
		}
		kept[ep.ID] = true
	}
	planned := map[string]bool{}
	for _, p := range plans {
		planned[p.svc.Name] = true
	}
	// Endpoints of removed services go with them (Set.DeleteServices).
	for k, ep := range oldEp {
		if planned[k.service] && !kept[ep.ID] {
			released = append(released, ep.ID)
		}
	}
	return released, nil
}
