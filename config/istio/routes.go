package istio

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/tcpshift/tcpshift/config"
)

// frontend is one address a route is served at.
type frontend struct {
	listen  netip.AddrPort
	mode    config.Mode
	gateway string // the gateway name a match may ask for; "mesh" for the VIP
	origin  []Key
}

// virtualService derives a service per frontend the VirtualService is
// served at: each port of its gateways, or with no gateways (or "mesh") each
// port of its hosts' VIP. The first tcp route that matches a frontend wins.
func (w *world) virtualService(vs *virtualService) ([]config.Service, [][]Key, error) {
	fronts, err := w.frontends(vs)
	if err != nil {
		return nil, nil, err
	}
	if err := checkMatches(vs, fronts); err != nil {
		return nil, nil, err
	}
	var (
		svcs    []config.Service
		origins [][]Key
	)
	for _, fe := range fronts {
		route := firstMatch(vs.tcp, fe)
		if route == nil {
			continue // no route for this port: nothing listens on it
		}
		subs, origin, err := w.subsets(vs.Object, route.node.Line, route.route)
		if err != nil {
			return nil, nil, err
		}
		svcs = append(svcs, config.Service{
			Name:       serviceName(vs.Object, fe.listen.Port(), len(fronts) > 1),
			Listen:     fe.listen,
			Mode:       fe.mode,
			Policy:     w.policy(vs.Object, route.route),
			Failover:   true,
			Accounting: true,
			Subsets:    subs,
			Line:       vs.Line,
		})
		origins = append(origins, append(append([]Key{vs.Key}, fe.origin...), origin...))
	}
	if len(svcs) == 0 {
		return nil, nil, failAt(vs.Object, 0, "spec.tcp", "no tcp route matches any port it is served at (%s)", describeFronts(fronts))
	}
	return svcs, origins, nil
}

func (w *world) frontends(vs *virtualService) ([]frontend, error) {
	gws := vs.gateways
	if len(gws) == 0 {
		gws = []string{"mesh"}
	}
	var out []frontend
	for i, ref := range gws {
		field := fmt.Sprintf("spec.gateways[%d]", i)
		if ref == "mesh" {
			fs, err := w.meshFrontends(vs)
			if err != nil {
				return nil, err
			}
			out = append(out, fs...)
			continue
		}
		ns, name, ok := strings.Cut(ref, "/")
		if !ok {
			ns, name = vs.Namespace, ref
		}
		if w.foreign[gatewayKey(KindGateway, vs.Namespace, ref)] {
			continue // another controller serves it
		}
		g := w.gateways[ns+"/"+name]
		if g == nil {
			return nil, failAt(vs.Object, 0, field, "Gateway %s/%s is not applied (gateways: %s)", ns, name, orNone(keysOf(w.gateways)))
		}
		for _, s := range g.servers {
			addr := s.bind
			if !addr.IsValid() {
				addr = netip.IPv6Unspecified() // every address, both families
			}
			out = append(out, frontend{listen: netip.AddrPortFrom(addr, s.port), mode: w.gatewayMode(), gateway: ref, origin: []Key{g.Key}})
		}
	}
	return out, nil
}

// meshFrontends are a mesh VirtualService's hosts' VIPs: the clients are
// this host's processes, whose connects are rewritten (connect mode).
func (w *world) meshFrontends(vs *virtualService) ([]frontend, error) {
	var out []frontend
	for i, h := range vs.hosts {
		field := fmt.Sprintf("spec.hosts[%d]", i)
		if h == "*" {
			return nil, failAt(vs.Object, 0, field, "* needs gateways: a mesh VirtualService is reached at its hosts' addresses")
		}
		se := w.entry(h, vs.Namespace)
		if se == nil {
			return nil, failAt(vs.Object, 0, field, "host %s is not declared: add a ServiceEntry with hosts: [%s] and addresses: [its VIP]", h, h)
		}
		if len(se.addresses) == 0 {
			return nil, failAt(se.Object, 0, "spec.addresses", "missing: the mesh VirtualService %s is reached at host %s's VIP", vs.Key, h)
		}
		vip := se.addresses[0]
		if !vip.IsSingleIP() {
			return nil, failAt(se.Object, 0, "spec.addresses[0]", "%s is a range: a VIP is one address", vip)
		}
		for _, p := range se.ports {
			out = append(out, frontend{listen: netip.AddrPortFrom(vip.Addr(), p.number), mode: config.ModeConnect, gateway: "mesh", origin: []Key{se.Key}})
		}
	}
	return out, nil
}

// firstMatch returns the first tcp route that applies to a frontend.
func firstMatch(routes []tcpRoute, fe frontend) *tcpRoute {
	for i := range routes {
		r := &routes[i]
		if len(r.matches) == 0 {
			return r
		}
		for _, m := range r.matches {
			if matches(m, fe) {
				return r
			}
		}
	}
	return nil
}

func matches(m tcpMatch, fe frontend) bool {
	if m.port != 0 && m.port != fe.listen.Port() {
		return false
	}
	if len(m.gateways) > 0 && !slices.Contains(m.gateways, fe.gateway) {
		return false
	}
	if len(m.subnets) > 0 && !slices.ContainsFunc(m.subnets, func(p netip.Prefix) bool { return p.Contains(fe.listen.Addr()) }) {
		return false
	}
	return true
}

// checkMatches refuses a match on a port none of the frontends has: it
// could never match, which is most likely a mistake.
func checkMatches(vs *virtualService, fronts []frontend) error {
	for _, r := range vs.tcp {
		for j, m := range r.matches {
			if m.port == 0 {
				continue
			}
			if !slices.ContainsFunc(fronts, func(fe frontend) bool { return fe.listen.Port() == m.port }) {
				return failAt(vs.Object, m.node.Line, fmt.Sprintf("%s.match[%d].port", r.field, j), "%d is not a port this VirtualService is served at (%s)", m.port, describeFronts(fronts))
			}
		}
	}
	return nil
}

func describeFronts(fronts []frontend) string {
	var s []string
	for _, fe := range fronts {
		s = append(s, fmt.Sprintf("%s %d", fe.gateway, fe.listen.Port()))
	}
	return "ports: " + orNone(s)
}

func keysOf[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func describeParent(p parentRef) string {
	var s []string
	if p.section != "" {
		s = append(s, "named "+p.section)
	}
	if p.port != 0 {
		s = append(s, fmt.Sprintf("on port %d", p.port))
	}
	return strings.Join(s, " ")
}
