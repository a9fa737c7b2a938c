package istio

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/tcpshift/tcpshift/config"
)

// routePlan is what a TCPRoute makes once its parents and backends are
// read: where it is accepted, the subsets its backends make, its status.
type routePlan struct {
	rt        *tcpRouteAPI
	status    RouteStatus
	mesh      []meshTarget  // Service parents' ports (GAMMA)
	listeners []listenerRef // Gateway listeners that accepted it
	subsets   []config.Subset
	origin    []Key
	notes     []string
}

type meshTarget struct {
	listen netip.AddrPort
	parent Key
}

// listenerRef names one listener of a Gateway.
type listenerRef struct {
	gateway *apiGateway
	index   int
}

func (l listenerRef) listener() apiListener { return l.gateway.listeners[l.index] }

// planRoute reads where a TCPRoute attaches and what its backends make.
// A parent that does not take it is reported in its status and a note; a
// route no parent takes is an error (on one host a file that serves
// nothing is a mistake), returned with the plan so its status is known.
func (w *world) planRoute(rt *tcpRouteAPI) (*routePlan, error) {
	p := &routePlan{rt: rt, status: RouteStatus{Route: rt.Key}}
	if len(rt.parents) > 0 && !slices.ContainsFunc(rt.parents, func(ref parentRef) bool { return !w.foreignParent(rt, ref) }) {
		return p, nil // attached to other controllers' Gateways only: theirs
	}
	resolved, err := w.planBackends(p)
	if err != nil {
		return nil, err
	}
	var refused error
	for i, ref := range rt.parents {
		field := fmt.Sprintf("spec.parentRefs[%d]", i)
		ps := ParentStatus{Section: ref.section, Port: ref.port}
		var err error
		if ref.service {
			ps.Parent, err = w.meshParent(p, ref, field)
		} else {
			ps.Parent, err = w.gatewayParent(p, ref, field)
		}
		var why *parentRefusal
		switch {
		case errors.Is(err, errElsewhere):
			continue // another controller's Gateway: its status is theirs
		case err == nil:
			ps.Conditions = append(ps.Conditions, Condition{Type: CondAccepted, Status: true, Reason: ReasonAccepted, Message: "accepted"})
		case errors.As(err, &why):
			ps.Conditions = append(ps.Conditions, Condition{Type: CondAccepted, Reason: why.reason, Message: why.msg})
			p.notes = append(p.notes, noteAt(rt.Object, ref.node.Line, field, "%s: not attached there (%s)", why.msg, why.reason))
			if refused == nil {
				refused = failAt(rt.Object, ref.node.Line, field, "%s (%s)", why.msg, why.reason)
			}
		default:
			return nil, err
		}
		ps.Conditions = append(ps.Conditions, resolved)
		p.status.Parents = append(p.status.Parents, ps)
	}
	if len(p.mesh) == 0 && len(p.listeners) == 0 {
		return p, refused
	}
	return p, nil
}

// parentRefusal is a parent that does not take the route, with the
// Gateway API's reason.
type parentRefusal struct{ reason, msg string }

func (e *parentRefusal) Error() string { return e.msg }

// gatewayParent attaches the route to the listeners of a Gateway that the
// parentRef names (by sectionName, port, or neither: all) and allow it.
func (w *world) gatewayParent(p *routePlan, ref parentRef, field string) (Key, error) {
	rt := p.rt
	ns := cmpOr(ref.namespace, rt.Namespace)
	if w.foreignParent(rt, ref) {
		return Key{}, errElsewhere
	}
	g := w.apiGateways[ns+"/"+ref.name]
	if g == nil {
		return Key{}, failAt(rt.Object, ref.node.Line, field, "Gateway %s/%s (gateway.networking.k8s.io) is not applied", ns, ref.name)
	}
	matched, allowed, why := 0, 0, ""
	for i, l := range g.listeners {
		if ref.section != "" && l.name != ref.section || ref.port != 0 && l.port != ref.port {
			continue
		}
		matched++
		if msg := w.disallows(g, l, rt); msg != "" {
			why = cmpOr(why, msg)
			continue
		}
		allowed++
		lr := listenerRef{g, i}
		if !slices.Contains(p.listeners, lr) {
			p.listeners = append(p.listeners, lr)
		}
	}
	switch {
	case matched == 0:
		return g.Key, &parentRefusal{ReasonNoMatchingParent, fmt.Sprintf("%s has no listener %s", g.Key, describeParent(ref))}
	case allowed == 0:
		return g.Key, &parentRefusal{ReasonNotAllowedByListeners, why}
	}
	return g.Key, nil
}

// disallows says why a listener does not take a TCPRoute, or "".
func (w *world) disallows(g *apiGateway, l apiListener, rt *tcpRouteAPI) string {
	name := fmt.Sprintf("listener %s of %s", l.name, g.Key)
	switch {
	case l.protocol != "TCP":
		return fmt.Sprintf("%s takes no TCPRoute: its protocol is %s", name, l.protocol)
	case l.kinds != nil && !slices.Contains(l.kinds, KindTCPRoute):
		return fmt.Sprintf("%s allows no TCPRoute (allowedRoutes.kinds: %s)", name, orNone(l.kinds))
	case l.from == "Same" && rt.Namespace != g.Namespace:
		return fmt.Sprintf("%s takes routes of namespace %s only (allowedRoutes.namespaces.from: Same)", name, g.Namespace)
	case l.from == "Selector" && w.namespaces == nil:
		return fmt.Sprintf("%s takes routes of namespaces by their labels (allowedRoutes.namespaces.from: Selector), and namespaces have no labels on one host: use Same or All", name)
	case l.from == "Selector" && !w.namespaces[rt.Namespace].Matches(l.selector):
		return fmt.Sprintf("%s takes routes of namespaces labelled %s only, and namespace %s is not", name, l.selector, rt.Namespace)
	}
	return ""
}

// meshParent serves the route at a Service's cluster IP (GAMMA): its
// clients dial the VIP, whose connects are rewritten (connect mode).
func (w *world) meshParent(p *routePlan, ref parentRef, field string) (Key, error) {
	rt := p.rt
	ns := cmpOr(ref.namespace, rt.Namespace)
	se := w.entry(ref.name, ns)
	if se == nil || se.Kind != KindKubeService || len(se.addresses) == 0 {
		return Key{}, failAt(rt.Object, ref.node.Line, field, "Service %s/%s is not known with a cluster IP", ns, ref.name)
	}
	n := 0
	for _, sp := range se.ports {
		// sectionName is the Service's port name (GAMMA).
		if (ref.port == 0 || sp.number == ref.port) && (ref.section == "" || sp.name == ref.section) {
			p.mesh = append(p.mesh, meshTarget{netip.AddrPortFrom(se.addresses[0].Addr(), sp.number), se.Key})
			n++
		}
	}
	if n == 0 {
		return se.Key, &parentRefusal{ReasonNoMatchingParent, fmt.Sprintf("Service %s/%s has no port %s", ns, ref.name, describeParent(ref))}
	}
	return se.Key, nil
}

// servedRoutes derives every TCPRoute: each listener serves the oldest
// route it accepted (the Gateway API's rule for conflicts; on one host,
// the order of first apply), the others stay accepted and attached, and
// a note says where their connections go. emit takes each route's
// services as DeriveWith's derived does.
func (w *world) servedRoutes(res *Result, emit func(o *Object, svcs []config.Service, origins [][]Key, err error) error) error {
	routes := slices.Clone(w.routes)
	slices.SortStableFunc(routes, func(a, b *tcpRouteAPI) int { return olderFirst(a.Object, b.Object) })
	var plans []*routePlan
	attached := map[listenerRef][]*routePlan{}
	meshFirst := map[netip.AddrPort]*routePlan{} // a Service port's oldest route
	var order []listenerRef
	for _, rt := range routes {
		p, err := w.planRoute(rt)
		if p != nil {
			res.Routes = append(res.Routes, p.status)
		}
		if err != nil {
			if err := emit(rt.Object, nil, nil, err); err != nil {
				return err
			}
			continue
		}
		plans = append(plans, p)
		for _, m := range p.mesh {
			if meshFirst[m.listen] == nil {
				meshFirst[m.listen] = p
			}
		}
		for _, l := range p.listeners {
			if _, ok := attached[l]; !ok {
				order = append(order, l)
			}
			attached[l] = append(attached[l], p)
		}
	}
	for _, l := range order {
		res.Listeners = append(res.Listeners, ListenerStatus{Gateway: l.gateway.Key, Name: l.listener().name, Port: l.listener().port,
			AttachedRoutes: len(attached[l]), Serves: attached[l][0].rt.Key})
	}
	for _, p := range plans {
		svcs, origins := w.routeServices(p, attached, meshFirst)
		res.Notes = append(res.Notes, p.notes...)
		if err := emit(p.rt.Object, svcs, origins, nil); err != nil {
			return err
		}
	}
	return nil
}

// routeServices makes a service per Service port and per listener the
// route is the oldest of; on the others it notes which route is served (a
// Service port, like a listener, takes several routes and serves the
// oldest, as GAMMA resolves conflicts).
func (w *world) routeServices(p *routePlan, attached map[listenerRef][]*routePlan, meshFirst map[netip.AddrPort]*routePlan) ([]config.Service, [][]Key) {
	rt := p.rt
	several := len(p.mesh)+len(p.listeners) > 1
	var (
		svcs    []config.Service
		origins [][]Key
	)
	add := func(listen netip.AddrPort, mode config.Mode, parent Key) {
		svcs = append(svcs, config.Service{
			Name:       serviceName(rt.Object, listen.Port(), several),
			Listen:     listen,
			Mode:       mode,
			Policy:     config.PolicyRoundRobin,
			Failover:   true,
			Accounting: true,
			Subsets:    p.subsets,
			Line:       rt.Line,
		})
		origins = append(origins, append([]Key{rt.Key, parent}, p.origin...))
	}
	for _, m := range p.mesh {
		if first := meshFirst[m.listen]; first != p {
			p.notes = append(p.notes, noteAt(rt.Object, 0, "", "accepted by %s port %d, which serves %s, the older route: this route gets none of its connections until that one is gone",
				m.parent, m.listen.Port(), first.rt.Key))
			continue
		}
		add(m.listen, config.ModeConnect, m.parent)
	}
	for _, l := range p.listeners {
		if first := attached[l][0]; first != p {
			p.notes = append(p.notes, noteAt(rt.Object, 0, "", "accepted by listener %s of %s, which serves %s, the older route: this route gets none of its connections until that one is gone",
				l.listener().name, l.gateway.Key, first.rt.Key))
			continue
		}
		addr := l.gateway.bind
		if !addr.IsValid() {
			addr = netip.IPv6Unspecified() // every address, both families
		}
		add(netip.AddrPortFrom(addr, l.listener().port), w.gatewayMode(), l.gateway.Key)
	}
	return svcs, origins
}

// noteAt words a note on a field of an object as errors are worded, with
// the file and line when the object came from a file.
func noteAt(o *Object, line int, field, format string, args ...any) string {
	what := o.Key.String()
	if field != "" {
		what += ": " + field
	}
	msg := what + ": " + fmt.Sprintf(format, args...)
	if strings.HasPrefix(o.Path, appliedPrefix) {
		return msg
	}
	if line == 0 {
		line = o.Line
	}
	return fmt.Sprintf("%s:%d: %s", o.Path, line, msg)
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
