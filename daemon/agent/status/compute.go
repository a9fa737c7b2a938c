package status

import (
	"slices"
	"time"

	"github.com/tcpshift/tcpshift/config/istio"
)

// want is the status one object should have.
type want struct {
	obj    *Object       // nil for a GatewayClass
	class  *GatewayClass // set for a GatewayClass
	status map[string]any
}

// compute is the status of every object tcpshift answers for: its
// GatewayClasses, their Gateways, the TCPRoutes' parents among those and
// the mesh Services, every VirtualService and DestinationRule.
func compute(in Input, objs []*Object, classes []*GatewayClass, addrs []string, now time.Time) []want {
	var out []want
	ourClass := map[string]bool{}
	for _, c := range classes {
		if c.Controller == ControllerName {
			ourClass[c.Name] = true
			out = append(out, want{class: c, status: classStatus(c, now)})
		}
	}
	byKey := map[istio.Key]*Object{}
	for _, o := range objs {
		byKey[o.Key] = o
	}
	ours := func(parent istio.Key) bool {
		if parent.Kind == istio.KindKubeService {
			return true // the mesh: tcpshift serves the Service
		}
		g := byKey[parent]
		return parent.Kind == istio.KindAPIGateway && g != nil && ourClass[g.Class]
	}
	listeners := map[istio.Key]map[string]istio.ListenerStatus{}
	for _, l := range in.Listeners {
		if listeners[l.Gateway] == nil {
			listeners[l.Gateway] = map[string]istio.ListenerStatus{}
		}
		listeners[l.Gateway][l.Name] = l
	}
	rejected := map[istio.Key]error{}
	for _, r := range in.Rejected {
		rejected[r.Key] = r.Err
	}
	for _, rs := range in.Routes {
		if o := byKey[rs.Route]; o != nil {
			if st := routeStatus(o, leftOut(rs, rejected[rs.Route]), ours, now); st != nil {
				out = append(out, want{obj: o, status: st})
			}
		}
	}
	for _, o := range objs {
		switch {
		case o.Key.Kind == istio.KindAPIGateway && ourClass[o.Class]:
			sv := served{listeners: listeners[o.Key], listening: in.Listening, addrs: addrs}
			out = append(out, want{obj: o, status: gatewayStatus(o, sv, now)})
		case o.Key.Kind == istio.KindVirtualService || o.Key.Kind == istio.KindDestinationRule:
			out = append(out, want{obj: o, status: istioStatus(o, rejected[o.Key], now)})
		}
	}
	return out
}

// leftOut makes a route tcpshift left out (it made a service another object
// makes, say) not Accepted by any parent its listeners accept: it is not
// served. The reason is tcpshift's own, the message the refusal; a parent
// that does not accept it keeps the Gateway API's reason
// (NotAllowedByListeners, say), which is why it was left out.
func leftOut(rs istio.RouteStatus, rejected error) istio.RouteStatus {
	if rejected == nil {
		return rs
	}
	parents := make([]istio.ParentStatus, len(rs.Parents))
	for i, ps := range rs.Parents {
		ps.Conditions = slices.Clone(ps.Conditions)
		for j, c := range ps.Conditions {
			if c.Type == istio.CondAccepted && c.Status {
				ps.Conditions[j] = istio.Condition{Type: c.Type, Reason: reasonRejected, Message: "tcpshift left it out: " + rejected.Error()}
			}
		}
		parents[i] = ps
	}
	rs.Parents = parents
	return rs
}
