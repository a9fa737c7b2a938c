// Package plan is the kernel-free core of an apply (issue 28): from the
// model (config.Config), what the host looks like (Host) and the services
// in force, as plain data, it decides what the change is. It opens no map,
// socket or file and needs no root; the loader answers Host with the kernel
// and carries the result out, keeping the sockets Host found beside it.
//
// The steps, in the order an apply takes them:
//   - Services: each config service as the kernel is to hold it, its mode
//     (configured, or chosen for mode: auto), the listening socket of each
//     lookup-mode endpoint, the endpoints waited for, and the checks of
//     address families, with errors that name the file, line and field;
//   - Routes: which frontends need a local route, with the routes in force;
//   - Diff: ids (AssignIDs), limits, weight tables, local routes to add and
//     remove, set-weight overrides kept, and which services are added,
//     updated, unchanged or removed.
//
// What it does not cover, and the loader still does: shifts holding
// weights (loader's shiftOwners), listeners and frontend ports, and the
// order of the writes. Its data types are the maps package's
// (maps.Service), so it links cilium/ebpf through that package, though it
// calls nothing of it that touches the kernel.
package plan

import (
	"net/netip"
	"reflect"
	"slices"

	"github.com/tcpshift/tcpshift/maps"
)

// Service is one service to apply: the service as the kernel is to hold it
// (ids are assigned by AssignIDs, LocalRoute set by Diff), whether its
// frontend needs a local route (Routes), and whether its config asks for
// health checks (kept endpoints then keep their health).
type Service struct {
	Svc     *maps.Service
	Route   bool
	Checked bool
	// Sockets holds, per subset and endpoint, the listener Host found for
	// a lookup-mode endpoint; nil where none is (yet).
	Sockets [][]*Listener
	// Waiting lists lookup-mode endpoints nothing listens on yet: they
	// get connections once they listen.
	Waiting []Waiting
	// ListenField names the service's listen field in errors
	// ("FILE:LINE: services[i].listen").
	ListenField string
}

// Waiting is a lookup-mode endpoint with no listener in the namespace yet.
type Waiting struct {
	Endpoint string
	Note     string // what listens elsewhere, if anything
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
func Diff(svcs []*Service, old []*maps.Service, limits maps.Capacity, keepOverrides bool) (*Delta, error) {
	oldByName := byName(old)
	released, err := assignIDs(svcs, old, oldByName, limits)
	if err != nil {
		return nil, err
	}
	d := &Delta{Old: oldByName, Released: released, Write: make(map[string]bool, len(svcs)),
		Actions: make([]Action, 0, len(svcs)+len(old))}
	// Routes tcpshift added earlier stay as long as a lookup- or
	// proxy-mode service needs them.
	ourRoutes := map[netip.Addr]bool{}
	for _, o := range old {
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
	// In address order, not the map's: the same change removes them alike.
	slices.SortFunc(d.DelRoutes, netip.Addr.Compare)
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
