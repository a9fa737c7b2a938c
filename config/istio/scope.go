package istio

import (
	"errors"
	"slices"
	"strings"

	"github.com/tcpshift/tcpshift/config"
)

// GatewayScope says which gateways are tcpshift's where other controllers'
// gateways live beside them (a cluster): an Istio Gateway whose selector
// picks tcpshift's gateway labels, as istiod matches a Gateway to its
// gateway pods (no selector picks every gateway), and a Gateway API
// Gateway of a class whose controllerName is tcpshift's. The others are
// left alone: not read, not served, not refused. Without a scope (one
// host) every gateway is tcpshift's.
type GatewayScope struct {
	Labels  Labels   // tcpshift's gateway's labels
	Classes []string // GatewayClasses whose controllerName is tcpshift's
	// Mode serves the gateways' frontends; "" is auto. On a node the
	// clients come from other hosts and the backends are pods: proxy.
	Mode config.Mode
}

// errElsewhere is a gateway another controller serves.
var errElsewhere = errors.New("another controller's gateway")

// takes reports whether the scope takes an object: any object but another
// controller's gateway.
func (s *GatewayScope) takes(o *Object) bool {
	if s == nil {
		return true
	}
	switch o.Kind {
	case KindGateway:
		r := &reader{o: o}
		sel := r.labels(get(o.Spec, "selector"), "spec.selector")
		// A selector that does not read is read again, and refused, as ours.
		return r.err != nil || s.Labels.Matches(sel)
	case KindAPIGateway:
		return slices.Contains(s.Classes, scalar(get(o.Spec, "gatewayClassName")))
	}
	return true
}

// gatewayMode is the mode a gateway's frontends are served in.
func (w *world) gatewayMode() config.Mode {
	if w.scope != nil && w.scope.Mode != "" {
		return w.scope.Mode
	}
	return config.ModeAuto
}

// elsewhere reports whether every gateway a VirtualService is bound to is
// another controller's: it has nothing for tcpshift to serve, and what it
// routes (HTTP, say) is not for tcpshift to refuse. Gateways come before
// VirtualServices in read's order (by kind), so they are known by now.
func (w *world) elsewhere(o *Object) bool {
	r := &reader{o: o}
	gws := r.strings(get(o.Spec, "gateways"), "spec.gateways")
	if r.err != nil || len(gws) == 0 {
		return false // read, and refused or served, as tcpshift's
	}
	for _, ref := range gws {
		if ref == "mesh" || !w.foreign[gatewayKey(KindGateway, o.Namespace, ref)] {
			return false
		}
	}
	return true
}

// gatewayKey names the gateway a reference ("name" or "namespace/name")
// from namespace ns names.
func gatewayKey(kind, ns, ref string) Key {
	if n, name, ok := strings.Cut(ref, "/"); ok {
		ns, ref = n, name
	}
	return Key{Kind: kind, Namespace: ns, Name: ref}
}

// foreignParent reports whether a TCPRoute's parentRef names another
// controller's Gateway.
func (w *world) foreignParent(rt *tcpRouteAPI, ref parentRef) bool {
	return !ref.service && w.foreign[Key{Kind: KindAPIGateway, Namespace: cmpOr(ref.namespace, rt.Namespace), Name: ref.name}]
}
