package status

import (
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/tcpshift/tcpshift/config/istio"
)

const gatewayGroup = "gateway.networking.k8s.io"

// Reasons tcpshift gives that config/istio has no word for.
const (
	reasonPending  = "Pending"
	reasonUnsuppor = "UnsupportedProtocol"
)

// notServedYet is why a Gateway of tcpshift's class is not Programmed: the
// agent serves mesh routes (a pod's connect() to a ClusterIP), not a
// Gateway's listeners on the nodes' addresses.
const notServedYet = "tcpshift does not serve Gateway listeners on Kubernetes yet: routes attached to it are accepted, not served at its addresses"

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

// gatewayStatus is the status of a Gateway of tcpshift's class: Accepted,
// not yet Programmed (notServedYet), and each listener's attached routes.
// Fields tcpshift does not set (addresses) stay as they are.
func gatewayStatus(o *Object, attached map[string]int, now time.Time) map[string]any {
	st := maps.Clone(o.Status)
	if st == nil {
		st = map[string]any{}
	}
	prev := list(o.Status, "conditions")
	st["conditions"] = setConditions(prev,
		condition("Accepted", true, "Accepted", "accepted by "+ControllerName, o.Generation, prev, now),
		condition("Programmed", false, reasonPending, notServedYet, o.Generation, prev, now))
	var ls []any
	for _, l := range o.Listeners {
		var lprev []any
		for _, p := range list(o.Status, "listeners") {
			if pm := asMap(p); pm["name"] == l.Name {
				lprev = list(pm, "conditions")
			}
		}
		tcp := l.Protocol == "TCP"
		kinds := []any{}
		accepted := condition("Accepted", true, "Accepted", "accepted", o.Generation, lprev, now)
		if tcp {
			kinds = append(kinds, map[string]any{"group": gatewayGroup, "kind": "TCPRoute"})
		} else {
			accepted = condition("Accepted", false, reasonUnsuppor, "tcpshift serves TCP listeners only, not "+l.Protocol, o.Generation, lprev, now)
		}
		ls = append(ls, map[string]any{
			"name":           l.Name,
			"supportedKinds": kinds,
			"attachedRoutes": int64(attached[l.Name]),
			"conditions": setConditions(lprev, accepted,
				condition("Programmed", false, reasonPending, notServedYet, o.Generation, lprev, now),
				condition("ResolvedRefs", true, "ResolvedRefs", "resolved", o.Generation, lprev, now)),
		})
	}
	if ls == nil {
		ls = []any{}
	}
	st["listeners"] = ls
	return st
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
