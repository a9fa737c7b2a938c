package istio

import (
	"errors"
	"fmt"
	"slices"

	"github.com/tcpshift/tcpshift/config"
)

// planBackends makes a subset per backendRef of a TCPRoute, weighted as
// the Gateway API says (default 1). A backendRef that does not resolve
// (no such Service, another namespace's without a ReferenceGrant, a kind
// that is no Service) keeps its weight with no endpoint: its share of
// connections is refused, not given to the others (GEP-2644); the data
// path resets a connection given to a subset with no endpoint. It returns
// the route's ResolvedRefs condition.
func (w *world) planBackends(p *routePlan) (Condition, error) {
	rt := p.rt
	resolved := Condition{Type: CondResolvedRefs, Status: true, Reason: ReasonResolvedRefs, Message: "resolved"}
	var total uint64
	for _, b := range rt.backends {
		total += b.weight
	}
	if total == 0 {
		// The Gateway API: a weight of 0 sends no connection there, so a
		// rule whose every backendRef has weight 0 rejects every
		// connection; the data path refuses a table with no position.
		p.notes = append(p.notes, noteAt(rt.Object, rt.backends[0].node.Line, "spec.rules[0].backendRefs", "every backendRef has weight 0: every connection is refused"))
	}
	for _, b := range rt.backends {
		if slices.ContainsFunc(p.subsets, func(s config.Subset) bool { return s.Name == shortHost(b.name) }) {
			return resolved, failAt(rt.Object, b.node.Line, b.field, "%s is a backendRef twice: give it once, with the sum of the weights", b.name)
		}
		sub := config.Subset{Name: shortHost(b.name), Weight: b.weight, Line: rt.Line}
		pk, reason, err := w.backend(rt, b)
		var bad *badBackend
		switch {
		case errors.As(err, &bad):
			if resolved.Status {
				resolved = Condition{Type: CondResolvedRefs, Reason: reason, Message: bad.msg}
			}
			share := fmt.Sprintf("its share of the connections (%d of %d) is refused", b.weight, total)
			if b.weight == 0 {
				share = "its weight is 0, so no connection goes there"
			}
			p.notes = append(p.notes, noteAt(rt.Object, b.node.Line, b.field, "%s (%s): %s", bad.msg, reason, share))
		case err != nil:
			return resolved, err
		default:
			sub.Endpoints = pk.endpoints
			p.origin = append(p.origin, pk.origin...)
			if len(pk.endpoints) == 0 && b.weight > 0 && !w.dynamic {
				p.notes = append(p.notes, noteAt(rt.Object, b.node.Line, b.field, "Service %s has no endpoints: its share of the connections (%d of %d) is refused", b.name, b.weight, total))
			}
		}
		p.subsets = append(p.subsets, sub)
	}
	return resolved, nil
}

// badBackend is a backendRef that does not resolve: its share is refused.
type badBackend struct{ msg string }

func (e *badBackend) Error() string { return e.msg }

// backend resolves a backendRef to its Service's endpoints, or says why it
// does not resolve (a *badBackend, with the Gateway API's reason).
func (w *world) backend(rt *tcpRouteAPI, b backendRef) (pick, string, error) {
	ns := cmpOr(b.namespace, rt.Namespace)
	ref := fmt.Sprintf("Service %s/%s", ns, b.name)
	if b.group != "" || b.kind != "Service" {
		return pick{}, ReasonInvalidKind, &badBackend{fmt.Sprintf("%s %s/%s (group %q) is no backend tcpshift knows: backends are Services", b.kind, ns, b.name, b.group)}
	}
	var grant *referenceGrant
	if ns != rt.Namespace {
		if grant = w.grant(rt, ns, b.name); grant == nil {
			return pick{}, ReasonRefNotPermitted, &badBackend{fmt.Sprintf("%s is in another namespace and no ReferenceGrant in %s lets TCPRoutes of %s refer to it", ref, ns, rt.Namespace)}
		}
	}
	se := w.entry(b.name, ns)
	if se == nil {
		return pick{}, ReasonBackendNotFound, &badBackend{fmt.Sprintf("%s is not declared (a ServiceEntry with hosts: [%s] in namespace %s, or a Kubernetes Service)", ref, b.name, ns)}
	}
	if _, err := entryPort(rt.Object, b.node.Line, b.field+".port", se, b.name, b.port); err != nil {
		var ce *config.Error
		errors.As(err, &ce)
		return pick{}, ReasonBackendNotFound, &badBackend{ce.Msg}
	}
	pk, err := w.resolveIn(rt.Object, destination{host: b.name, port: b.port, field: b.field, node: b.node}, ns, true)
	if err != nil {
		return pk, "", err
	}
	if grant != nil {
		pk.origin = append(pk.origin, grant.Key)
	}
	return pk, "", nil
}

// grant returns the ReferenceGrant of namespace ns that lets TCPRoutes of
// rt's namespace refer to Service name, or nil.
func (w *world) grant(rt *tcpRouteAPI, ns, name string) *referenceGrant {
	for _, g := range w.grants {
		if g.Namespace != ns {
			continue
		}
		from := slices.ContainsFunc(g.from, func(f grantFrom) bool {
			return f.group == gatewayGroup && f.kind == "TCPRoute" && f.namespace == rt.Namespace
		})
		to := slices.ContainsFunc(g.to, func(t grantTo) bool {
			return t.group == "" && t.kind == "Service" && (t.name == "" || t.name == name)
		})
		if from && to {
			return g
		}
	}
	return nil
}
