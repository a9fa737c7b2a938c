package status

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/tcpshift/tcpshift/config/istio"
)

const gatewayGroup = "gateway.networking.k8s.io"

// The Gateway API's reasons tcpshift gives, and its messages.
const (
	reasonProgrammed  = "Programmed"
	reasonPending     = "Pending"
	reasonNoAddress   = "AddressNotAssigned"
	reasonUnsuppor    = "UnsupportedProtocol"
	reasonInvalid     = "Invalid"
	messageServed     = "served on every node by its tcpshift agent's proxy, at the nodes' addresses"
	messageNoAddress  = "no node address known yet: a Gateway is served at the nodes' InternalIP and ExternalIP addresses"
	messageNoRoute    = "no route attached: its port opens on every node once one is"
	messageNotTCPPort = "tcpshift serves TCP listeners only"
)

// routeStatus is a TCPRoute's status with tcpshift's parents as rs says
// and every other controller's parents as they are; nil when tcpshift
// has nothing to say there (no parent of its own, now or before).
func routeStatus(o *Object, rs istio.RouteStatus, ours func(istio.Key) bool, now time.Time) map[string]any {
	var parents []any
	had := false
	for _, p := range list(o.Status, "parents") {
		pm, _ := p.(map[string]any)
		if pm["controllerName"] == ControllerName {
			had = true
			continue
		}
		parents = append(parents, p)
	}
	mine := 0
	for _, ps := range rs.Parents {
		if !ours(ps.Parent) {
			continue
		}
		mine++
		ref := parentRef(ps)
		var prev []any
		for _, p := range list(o.Status, "parents") {
			pm, _ := p.(map[string]any)
			if pm["controllerName"] == ControllerName && sameStatus(asMap(pm["parentRef"]), ref) {
				prev = list(pm, "conditions")
			}
		}
		var conds []any
		for _, c := range ps.Conditions {
			conds = append(conds, condition(c.Type, c.Status, c.Reason, c.Message, o.Generation, prev, now))
		}
		parents = append(parents, map[string]any{"parentRef": ref, "controllerName": ControllerName, "conditions": conds})
	}
	if mine == 0 && !had {
		return nil
	}
	st := maps.Clone(o.Status)
	if st == nil {
		st = map[string]any{}
	}
	if parents == nil {
		parents = []any{} // the CRD's schema requires the list
	}
	st["parents"] = parents
	return st
}

// parentRef is a parent's reference as the route's status echoes it.
func parentRef(ps istio.ParentStatus) map[string]any {
	group, kind, _ := strings.Cut(ps.Parent.Kind, "/")
	if group == "core" {
		group = "" // a Service: the core group, written empty
	}
	ref := map[string]any{"group": group, "kind": kind, "namespace": ps.Parent.Namespace, "name": ps.Parent.Name}
	if ps.Section != "" {
		ref["sectionName"] = ps.Section
	}
	if ps.Port != 0 {
		ref["port"] = int64(ps.Port)
	}
	return ref
}

func asMap(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}

// served is what a Gateway's status is made from: its listeners' routes,
// the gateway ports the writer's node listens on, the nodes' addresses.
type served struct {
	listeners map[string]istio.ListenerStatus // by name: those that took a route
	listening map[uint16]bool
	addrs     []string
}

// gatewayStatus is the status of a Gateway of tcpshift's class: Accepted;
// the nodes' addresses; Programmed once it has them and every listener
// with a route listens on the writer's node (the agents serve alike, so
// one node stands for all); each listener's attached routes. Fields
// tcpshift does not set stay as they are.
func gatewayStatus(o *Object, sv served, now time.Time) map[string]any {
	st := maps.Clone(o.Status)
	if st == nil {
		st = map[string]any{}
	}
	var ls []any
	pending := ""
	for _, l := range o.Listeners {
		var lprev []any
		for _, p := range list(o.Status, "listeners") {
			if pm := asMap(p); pm["name"] == l.Name {
				lprev = list(pm, "conditions")
			}
		}
		ok, reason, msg := listenerProgrammed(l, sv)
		if pending == "" && !ok && l.Protocol == "TCP" {
			pending = "listener " + l.Name + ": " + msg
		}
		kinds := []any{}
		accepted := condition("Accepted", true, "Accepted", "accepted", o.Generation, lprev, now)
		if l.Protocol == "TCP" {
			kinds = append(kinds, map[string]any{"group": gatewayGroup, "kind": "TCPRoute"})
		} else {
			accepted = condition("Accepted", false, reasonUnsuppor, messageNotTCPPort+", not "+l.Protocol, o.Generation, lprev, now)
		}
		ls = append(ls, map[string]any{
			"name":           l.Name,
			"supportedKinds": kinds,
			"attachedRoutes": int64(sv.listeners[l.Name].AttachedRoutes),
			"conditions": setConditions(lprev, accepted, condition("Programmed", ok, reason, msg, o.Generation, lprev, now),
				condition("ResolvedRefs", true, "ResolvedRefs", "resolved", o.Generation, lprev, now)),
		})
	}
	if ls == nil {
		ls = []any{}
	}
	st["listeners"] = ls
	prev := list(o.Status, "conditions")
	programmed := condition("Programmed", true, reasonProgrammed, messageServed, o.Generation, prev, now)
	switch {
	case len(sv.addrs) == 0:
		programmed = condition("Programmed", false, reasonNoAddress, messageNoAddress, o.Generation, prev, now)
	case pending != "":
		programmed = condition("Programmed", false, reasonPending, pending, o.Generation, prev, now)
	}
	st["conditions"] = setConditions(prev,
		condition("Accepted", true, "Accepted", "accepted by "+ControllerName, o.Generation, prev, now), programmed)
	if len(sv.addrs) == 0 {
		delete(st, "addresses")
		return st
	}
	addrs := make([]any, len(sv.addrs))
	for i, a := range sv.addrs {
		addrs[i] = map[string]any{"type": "IPAddress", "value": a}
	}
	st["addresses"] = addrs
	return st
}

// listenerProgrammed says whether a listener is Programmed, with the
// reason and message of its condition.
func listenerProgrammed(l Listener, sv served) (ok bool, reason, msg string) {
	ls, routed := sv.listeners[l.Name]
	switch {
	case l.Protocol != "TCP":
		return false, reasonInvalid, messageNotTCPPort
	case routed && !sv.listening[ls.Port]:
		return false, reasonPending, fmt.Sprintf("nothing listens on port %d: its route's service was left out, or the port is taken (see the agents' logs)", ls.Port)
	case routed:
		return true, reasonProgrammed, fmt.Sprintf("port %d %s", ls.Port, messageServed)
	}
	return true, reasonProgrammed, messageNoRoute
}

// classStatus is the status of a GatewayClass whose controllerName is
// tcpshift's: Accepted.
func classStatus(c *GatewayClass, now time.Time) map[string]any {
	st := maps.Clone(c.Status)
	if st == nil {
		st = map[string]any{}
	}
	prev := list(c.Status, "conditions")
	st["conditions"] = setConditions(prev, condition("Accepted", true, "Accepted", "accepted by "+ControllerName, c.Generation, prev, now))
	return st
}

// setConditions replaces the conditions of the types given and keeps the
// others (another field manager's) in their places.
func setConditions(prev []any, set ...map[string]any) []any {
	out := []any{}
	done := map[any]bool{}
	for _, p := range prev {
		pm := asMap(p)
		i := slices.IndexFunc(set, func(c map[string]any) bool { return c["type"] == pm["type"] })
		if i < 0 {
			out = append(out, p)
			continue
		}
		out = append(out, set[i])
		done[set[i]["type"]] = true
	}
	for _, c := range set {
		if !done[c["type"]] {
			out = append(out, c)
		}
	}
	return out
}
