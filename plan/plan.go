// Package plan is the kernel-free core of an apply, begun (issue 28): given
// the services a config makes and the services in force, as plain data, it
// decides what the change is. It opens no map, socket or file and needs no
// root; the loader carries its result out.
//
// What it covers so far: the ids of services and endpoints (AssignIDs) and
// the diff of services (Diff): which are added, updated, unchanged or
// removed, which need writing, the endpoint ids released, the local routes
// to add and to remove, and set-weight overrides kept. What it does not
// cover yet, and the loader still does: turning a config.Config into
// services and checking them against the host (loader.Target.plan: modes,
// listening sockets, address families), deciding which frontends need a
// local route (the Route input, loader's decideRoutes), shifts holding
// weights (loader's shiftOwners), listeners and frontend ports, and the
// order of the writes (loader's Target.write). Its data types are the maps
// package's (maps.Service), so it still links cilium/ebpf through that
// package though it calls none of it.
package plan

import (
	"net/netip"
	"reflect"

	"github.com/tcpshift/tcpshift/maps"
)

// Service is one service to apply: the service as the kernel is to hold it
// (ids are assigned by AssignIDs, LocalRoute set by Diff), whether its
// frontend needs a local route, and whether its config asks for health
// checks (kept endpoints then keep their health).
type Service struct {
	Svc     *maps.Service
	Route   bool
	Checked bool
}

// Action is what the change does to one service: "added", "updated",
// "unchanged" or "removed"; KeptOverride says set-weight's weights stay.
type Action struct {
	Service      string
	Action       string
	KeptOverride bool
}

// Delta is the whole change as data.
type Delta struct {
	Old       map[string]*maps.Service // the services in force, by name
	Removed   []*maps.Service          // in force, not planned
	Released  []uint32                 // endpoint ids of planned services that are gone
	Write     map[string]bool          // planned services whose kernel state changes
	AddRoutes []netip.Addr             // local routes to add
	DelRoutes []netip.Addr             // local routes tcpshift added that nothing needs now
	// Actions has one entry per planned service, in their order, then one
	// per removed service.
	Actions []Action
}

// Diff plans the whole change of svcs over the services in force (old):
// ids (see AssignIDs), tables that can be built, local routes, and what
// each service needs. With keepOverrides, a service whose route in the
// file did not change keeps the weights in force that set-weight gave it.
// It sets the ids, LocalRoute and kept weights in svcs' services.
func Diff(svcs []Service, old []*maps.Service, limits maps.Capacity, keepOverrides bool) (*Delta, error) {
	released, err := AssignIDs(svcs, old, limits)
	if err != nil {
		return nil, err
	}
	d := &Delta{Old: make(map[string]*maps.Service, len(old)), Released: released, Write: make(map[string]bool, len(svcs))}
	// Routes tcpshift added earlier stay as long as a lookup- or
	// proxy-mode service needs them.
	ourRoutes := map[netip.Addr]bool{}
	for _, o := range old {
		d.Old[o.Name] = o
		if o.LocalRoute {
			ourRoutes[o.Frontend.Addr()] = true
		}
	}
	keep := map[netip.Addr]bool{}
	planned := make(map[string]bool, len(svcs))
	for _, s := range svcs {
		svc := s.Svc
		planned[svc.Name] = true
		if _, err := svc.Table(); err != nil {
			return nil, err
		}
		addr := svc.Frontend.Addr()
		if s.Route || (ourRoutes[addr] && svc.Mode != maps.ModeConnect) {
			if !ourRoutes[addr] && !keep[addr] {
				d.AddRoutes = append(d.AddRoutes, addr)
			}
			svc.LocalRoute = true
			keep[addr] = true
		}
		d.Actions = append(d.Actions, d.action(svc, keepOverrides))
	}
	for _, o := range old {
		if !planned[o.Name] {
			d.Removed = append(d.Removed, o)
			d.Actions = append(d.Actions, Action{Service: o.Name, Action: "removed"})
		}
	}
	for addr := range ourRoutes {
		if !keep[addr] {
			d.DelRoutes = append(d.DelRoutes, addr)
		}
	}
	return d, nil
}

// action compares a planned service with the one in force, keeping the
// weights in force of an overridden service with keepOverrides, and
// records whether it needs writing.
func (d *Delta) action(svc *maps.Service, keepOverrides bool) Action {
	o := d.Old[svc.Name]
	a := Action{Service: svc.Name}
	if o != nil && keepOverrides && SameFileRoute(o, svc) && o.Overridden() {
		for i := range svc.Subsets {
			svc.Subsets[i].Weight = o.Subsets[i].Weight
		}
		a.KeptOverride = true
	}
	switch {
	case o != nil && reflect.DeepEqual(o, svc):
		a.Action = "unchanged"
	case o == nil:
		a.Action = "added"
	default:
		a.Action = "updated"
	}
	d.Write[svc.Name] = a.Action != "unchanged"
	return a
}

// SameFileRoute reports whether the file gives a service the same subsets
// and weights as the file applied before.
func SameFileRoute(o, n *maps.Service) bool {
	if len(o.Subsets) != len(n.Subsets) {
		return false
	}
	for i := range o.Subsets {
		if o.Subsets[i].Name != n.Subsets[i].Name || o.Subsets[i].FileWeight != n.Subsets[i].FileWeight {
			return false
		}
	}
	return true
}
