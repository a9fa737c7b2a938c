package istio

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"

	"github.com/tcpshift/tcpshift/config"
)

// Result is what a set of objects makes: tcpshift services, the objects
// behind each, and notes on settings tcpshift does not apply.
type Result struct {
	Services []config.Service
	Origins  map[string][]Key // by service name
	Notes    []string
	Rejected []Rejection // objects left out (Options.KeepGoing)
	// The Gateway API's status of every TCPRoute read (those left out
	// too) and of every listener that accepted one.
	Routes    []RouteStatus
	Listeners []ListenerStatus
}

// world is every object of a derivation, read and indexed.
type world struct {
	gateways    map[string]*gateway // ns/name
	apiGateways map[string]*apiGateway
	services    []*virtualService
	rules       []*destinationRule
	entries     []*serviceEntry
	workloads   []workloadEntry
	routes      []*tcpRouteAPI
	grants      []*referenceGrant
	notes       []string
	dynamic     bool              // Options.Dynamic
	namespaces  map[string]Labels // Options.Namespaces
	scope       *GatewayScope     // Options.Gateways
	foreign     map[Key]bool      // gateways the scope leaves to others
	rejected    []Rejection
}

type workloadEntry struct {
	key Key
	workload
}

// Derive makes tcpshift's services from the objects a namespace keeps
// (later objects with the same key replace earlier ones, as kubectl apply
// does); more than MaxObjects are refused (see CheckObjects). Services come
// out sorted by name.
func Derive(objs []*Object) (*Result, error) {
	if err := CheckObjects(objs); err != nil {
		return nil, err
	}
	return DeriveWith(objs, Options{})
}

// DeriveWith is Derive with other registries' hosts and the leniency a
// cluster needs (see Options).
func DeriveWith(objs []*Object, opts Options) (*Result, error) {
	w, err := read(objs, opts)
	if err != nil {
		return nil, err
	}
	res := &Result{Origins: map[string][]Key{}, Notes: w.notes, Rejected: w.rejected}
	// derived adds what one object makes, all of it or (KeepGoing) none.
	// Two objects routing one frontend is the later one's mistake, as
	// Istio keeps the first of VirtualServices for one host.
	fronts := map[netip.AddrPort]string{}
	derived := func(o *Object, svcs []config.Service, origins [][]Key, err error) error {
		if err == nil {
			names := map[string]bool{}
			for _, s := range svcs {
				if prev, dup := res.Origins[s.Name]; dup || names[s.Name] {
					maker := o.Key // twice in this object
					if dup {
						maker = prev[0]
					}
					err = &config.Error{Path: o.Path, Line: o.Line, Field: o.Key.String(), Msg: fmt.Sprintf("makes service %s, which %s makes too: rename one", s.Name, maker)}
					break
				}
				if prev, dup := fronts[s.Listen]; dup {
					err = &config.Error{Path: o.Path, Line: o.Line, Field: o.Key.String(), Msg: fmt.Sprintf("routes %s, which service %s (%s) routes already: one route per frontend", s.Listen, prev, res.OriginText(prev))}
					break
				}
				names[s.Name] = true
			}
		}
		if err != nil {
			if opts.KeepGoing {
				res.Rejected = append(res.Rejected, Rejection{Key: o.Key, Err: err})
				return nil
			}
			return err
		}
		for i, s := range svcs {
			res.Services = append(res.Services, s)
			res.Origins[s.Name] = uniqueKeys(origins[i])
			fronts[s.Listen] = s.Name
		}
		return nil
	}
	for _, vs := range w.services {
		svcs, origins, err := w.virtualService(vs)
		if err := derived(vs.Object, svcs, origins, err); err != nil {
			return nil, err
		}
	}
	if err := w.servedRoutes(res, derived); err != nil {
		return nil, err
	}
	slices.SortFunc(res.Services, func(a, b config.Service) int { return cmp.Compare(a.Name, b.Name) })
	return res, nil
}

func read(objs []*Object, opts Options) (*world, error) {
	latest := map[Key]*Object{}
	var order []Key
	for _, o := range objs {
		if _, ok := latest[o.Key]; !ok {
			order = append(order, o.Key)
		}
		latest[o.Key] = o
	}
	slices.SortFunc(order, func(a, b Key) int {
		return cmp.Or(cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	w := &world{gateways: map[string]*gateway{}, apiGateways: map[string]*apiGateway{}, dynamic: opts.Dynamic, namespaces: opts.Namespaces,
		scope: opts.Gateways, foreign: map[Key]bool{}}
	for _, h := range opts.Registry {
		w.entries = append(w.entries, registryEntry(h))
	}
	for _, k := range order {
		o := latest[k]
		if !opts.Gateways.takes(o) || opts.Gateways != nil && o.Kind == KindVirtualService && w.elsewhere(o) {
			w.foreign[k] = true
			continue
		}
		var err error
		switch o.Kind {
		case KindGateway:
			var g *gateway
			g, err = readGateway(o)
			w.gateways[o.Namespace+"/"+o.Name] = g
		case KindVirtualService:
			var vs *virtualService
			vs, err = readVirtualService(o)
			w.services = append(w.services, vs)
		case KindDestinationRule:
			var dr *destinationRule
			dr, err = readDestinationRule(o)
			if err == nil {
				w.notes = append(w.notes, dr.notes...)
			}
			w.rules = append(w.rules, dr)
		case KindServiceEntry:
			var se *serviceEntry
			se, err = readServiceEntry(o)
			w.entries = append(w.entries, se)
		case KindWorkloadEntry:
			var we workload
			we, err = readWorkloadEntry(o)
			w.workloads = append(w.workloads, workloadEntry{o.Key, we})
		case KindAPIGateway:
			var g *apiGateway
			g, err = readAPIGateway(o)
			w.apiGateways[o.Namespace+"/"+o.Name] = g
		case KindTCPRoute:
			var rt *tcpRouteAPI
			rt, err = readTCPRoute(o)
			w.routes = append(w.routes, rt)
		case KindReferenceGrant:
			var g *referenceGrant
			g, err = readReferenceGrant(o)
			w.grants = append(w.grants, g)
		}
		if err != nil {
			if !opts.KeepGoing {
				return nil, err
			}
			w.rejected = append(w.rejected, Rejection{Key: k, Err: err})
			w.drop(k)
		}
	}
	return w, nil
}

// drop forgets an object that could not be read (KeepGoing).
func (w *world) drop(k Key) {
	same := func(o *Object) bool { return o != nil && o.Key == k }
	w.services = slices.DeleteFunc(w.services, func(v *virtualService) bool { return v == nil || same(v.Object) })
	w.rules = slices.DeleteFunc(w.rules, func(v *destinationRule) bool { return v == nil || same(v.Object) })
	w.entries = slices.DeleteFunc(w.entries, func(v *serviceEntry) bool { return v == nil || same(v.Object) })
	w.routes = slices.DeleteFunc(w.routes, func(v *tcpRouteAPI) bool { return v == nil || same(v.Object) })
	w.grants = slices.DeleteFunc(w.grants, func(v *referenceGrant) bool { return v == nil || same(v.Object) })
	w.workloads = slices.DeleteFunc(w.workloads, func(v workloadEntry) bool { return v.key == k })
	delete(w.gateways, k.Namespace+"/"+k.Name)
	delete(w.apiGateways, k.Namespace+"/"+k.Name)
}

// failAt makes an error at a field of an object.
func failAt(o *Object, line int, field, format string, args ...any) error {
	if line == 0 {
		line = o.Line
	}
	return &config.Error{Path: o.Path, Line: line, Field: o.Key.String() + ": " + field, Msg: fmt.Sprintf(format, args...)}
}

// sameHost reports whether a host as a route names it (tcp-echo) is a host
// as a ServiceEntry declares it (tcp-echo, or tcp-echo.default.svc...).
func sameHost(ref, declared, ns string) bool {
	if ref == declared {
		return true
	}
	if strings.Contains(ref, ".") {
		return false
	}
	return declared == ref+"."+ns || strings.HasPrefix(declared, ref+"."+ns+".svc")
}

// entry returns the ServiceEntry that declares host for an object of ns.
// A short host (tcp-echo) names one in ns only; a qualified one names its
// namespace already.
func (w *world) entry(host, ns string) *serviceEntry {
	for _, se := range w.entries {
		for _, h := range se.hosts {
			if sameHost(host, h, ns) && (strings.Contains(h, ".") || se.Namespace == ns) {
				return se
			}
		}
	}
	return nil
}

// rule returns the DestinationRule for a host as an object of ns routes
// it: one in ns first, then one elsewhere whose host is qualified (a
// short host in a DestinationRule means its own namespace's service).
func (w *world) rule(host, ns string) *destinationRule {
	match := func(dr *destinationRule) bool {
		return sameHost(host, dr.host, ns) || sameHost(dr.host, host, ns)
	}
	for _, dr := range w.rules {
		if dr.Namespace == ns && match(dr) {
			return dr
		}
	}
	for _, dr := range w.rules {
		if dr.Namespace != ns && strings.Contains(dr.host, ".") && match(dr) {
			return dr
		}
	}
	return nil
}

// members returns a ServiceEntry's workloads: its inline endpoints and the
// WorkloadEntries its selector picks (same namespace, as Istio's).
func (w *world) members(se *serviceEntry) ([]workload, []Key) {
	out := slices.Clone(se.endpoints)
	var keys []Key
	if se.selector != nil {
		for _, we := range w.workloads {
			if we.key.Namespace == se.Namespace && we.labels.Matches(se.selector) {
				out = append(out, we.workload)
				keys = append(keys, we.key)
			}
		}
	}
	return out, keys
}

// pick is one destination made concrete: its subset's endpoints.
type pick struct {
	name      string
	endpoints []netip.AddrPort
	weight    uint64
	origin    []Key
}

// resolve turns a route destination into endpoints.
func (w *world) resolve(o *Object, d destination) (pick, error) {
	return w.resolveIn(o, d, o.Namespace, w.dynamic)
}

// resolveIn is resolve for a host of namespace ns; allowEmpty makes a
// subset of no endpoint rather than refusing it.
func (w *world) resolveIn(o *Object, d destination, ns string, allowEmpty bool) (pick, error) {
	line := d.node.Line
	se := w.entry(d.host, ns)
	if se == nil {
		return pick{}, failAt(o, line, d.field+".destination.host", "host %s is not declared: add a ServiceEntry with hosts: [%s] (tcpshift knows no other registry)", d.host, d.host)
	}
	p := pick{origin: []Key{se.Key}}
	port, err := entryPort(o, line, d.field+".destination.port.number", se, d.host, d.port)
	if err != nil {
		return p, err
	}
	all, weKeys := w.members(se)
	chosen := all
	if d.subset != "" {
		dr := w.rule(d.host, ns)
		if dr == nil {
			return p, failAt(o, line, d.field+".destination.subset", "subset %s of host %s: no DestinationRule has host %s", d.subset, d.host, d.host)
		}
		p.origin = append(p.origin, dr.Key)
		i := slices.IndexFunc(dr.subsets, func(s subset) bool { return s.name == d.subset })
		if i < 0 {
			var names []string
			for _, s := range dr.subsets {
				names = append(names, s.name)
			}
			return p, failAt(o, line, d.field+".destination.subset", "subset %s is not defined for host %s (%s defines %s)", d.subset, d.host, dr.Key, orNone(names))
		}
		sel := dr.subsets[i].labels
		chosen = nil
		for _, m := range all {
			if m.labels.Matches(sel) {
				chosen = append(chosen, m)
			}
		}
		if len(chosen) == 0 && !allowEmpty {
			return p, failAt(dr.Object, dr.subsets[i].node.Line, fmt.Sprintf("spec.subsets[%d].labels", i), "subset %s: labels %s select no workload of host %s (%s)", d.subset, sel, d.host, describeMembers(all))
		}
	}
	if len(chosen) == 0 && !allowEmpty {
		return p, failAt(se.Object, 0, "spec", "host %s has no workloads: add endpoints, or WorkloadEntries its workloadSelector selects", d.host)
	}
	if weights := distinctWeights(chosen); len(weights) > 1 {
		return p, failAt(o, line, d.field+".destination", "the workloads of %s carry different weights (%v): tcpshift gives each endpoint of a subset an equal share; use subsets with route weights", d.host, weights)
	}
	for _, m := range chosen {
		wp := port.number
		switch {
		case m.ports[port.name] != 0:
			wp = m.ports[port.name]
		case port.target != 0:
			wp = port.target
		}
		ep := netip.AddrPortFrom(m.addr, wp)
		if !slices.Contains(p.endpoints, ep) {
			p.endpoints = append(p.endpoints, ep)
		}
	}
	for _, k := range weKeys {
		for _, m := range chosen {
			if m.source == k.String() {
				p.origin = append(p.origin, k)
			}
		}
	}
	if n := len(p.endpoints); n > config.MaxEndpoints {
		what := "host " + d.host
		if d.subset != "" {
			what = "subset " + d.subset + " of " + what
		}
		return p, failAt(o, line, d.field+".destination", "%s has %d endpoints: at most %d per subset", what, n, config.MaxEndpoints)
	}
	return p, nil
}

func entryPort(o *Object, line int, field string, se *serviceEntry, host string, number uint16) (sePort, error) {
	if number == 0 {
		if len(se.ports) == 1 {
			return se.ports[0], nil
		}
		return sePort{}, failAt(o, line, field, "missing: host %s has %d ports (%s), say which", host, len(se.ports), portList(se.ports))
	}
	for _, p := range se.ports {
		if p.number == number {
			return p, nil
		}
	}
	return sePort{}, failAt(o, line, field, "port %d is not a port of host %s (%s declares %s)", number, host, se.Key, portList(se.ports))
}

func portList(ports []sePort) string {
	var s []string
	for _, p := range ports {
		s = append(s, fmt.Sprint(p.number))
	}
	return orNone(s)
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

func describeMembers(ms []workload) string {
	if len(ms) == 0 {
		return "it has none"
	}
	var s []string
	for _, m := range ms {
		s = append(s, m.source+" "+m.labels.String())
	}
	return "workloads: " + strings.Join(s, "; ")
}

func distinctWeights(ms []workload) []uint64 {
	var out []uint64
	for _, m := range ms {
		if m.weight != 0 && !slices.Contains(out, m.weight) {
			out = append(out, m.weight)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// subsets turns a route's destinations into the service's subsets, with
// Istio's weights: one destination takes everything; several share by
// their weights, relative (istiod refuses a total of 0).
func (w *world) subsets(o *Object, line int, dests []destination) ([]config.Subset, []Key, error) {
	if len(dests) > config.MaxSubsets {
		d := dests[config.MaxSubsets]
		return nil, nil, failAt(o, d.node.Line, d.field, "destination %d of the route: at most %d, as a service has at most %d subsets", config.MaxSubsets+1, config.MaxSubsets, config.MaxSubsets)
	}
	var picks []pick
	hosts := map[string]bool{}
	for _, d := range dests {
		hosts[d.host] = true
	}
	var origin []Key
	for _, d := range dests {
		p, err := w.resolve(o, d)
		if err != nil {
			return nil, nil, err
		}
		p.name = d.subset
		if p.name == "" {
			p.name = shortHost(d.host)
		} else if len(hosts) > 1 {
			p.name = shortHost(d.host) + "-" + d.subset
		}
		p.weight = d.weight
		if len(dests) == 1 {
			p.weight = 100
		}
		if slices.ContainsFunc(picks, func(q pick) bool { return q.name == p.name }) {
			return nil, nil, failAt(o, d.node.Line, d.field+".destination", "%s is a destination of this route twice: give it once, with the sum of the weights", p.name)
		}
		picks = append(picks, p)
		origin = append(origin, p.origin...)
	}
	picks, origin = w.restOfRule(o, dests, picks, origin)
	var subs []config.Subset
	for _, p := range picks {
		subs = append(subs, config.Subset{Name: p.name, Endpoints: p.endpoints, Weight: p.weight, Line: line})
	}
	return subs, origin, nil
}

// restOfRule adds, with weight 0, the subsets the host's DestinationRule
// defines that the route leaves out, in the rule's order: a version the
// route stops sending to stays visible (status, wait-drained) and keeps its
// counters while its connections drain, as a subset at weight 0 does.
// Only for routes to the subsets of one host, and only while the service
// has room (config.MaxSubsets).
func (w *world) restOfRule(o *Object, dests []destination, picks []pick, origin []Key) ([]pick, []Key) {
	host := dests[0].host
	for _, d := range dests {
		if d.host != host || d.subset == "" {
			return picks, origin
		}
	}
	dr := w.rule(host, o.Namespace)
	if dr == nil {
		return picks, origin
	}
	var out []pick
	room := config.MaxSubsets - len(picks)
	for _, s := range dr.subsets {
		i := slices.IndexFunc(picks, func(p pick) bool { return p.name == s.name })
		if i >= 0 {
			out = append(out, picks[i])
			continue
		}
		if room == 0 {
			continue
		}
		p, err := w.resolve(o, destination{host: host, subset: s.name, port: dests[0].port, field: dests[0].field, node: dests[0].node})
		if err != nil || len(p.endpoints) == 0 {
			continue // a subset nothing routes to may select nothing yet
		}
		p.name, p.weight = s.name, 0
		room--
		out = append(out, p)
		origin = append(origin, p.origin...)
	}
	return out, origin
}

func shortHost(h string) string {
	s, _, _ := strings.Cut(h, ".")
	return s
}

func (w *world) policy(o *Object, dests []destination) config.Policy {
	for _, d := range dests {
		if dr := w.rule(d.host, o.Namespace); dr != nil && dr.policy == "random" {
			return config.PolicyRandom
		}
	}
	return config.PolicyRoundRobin
}

func uniqueKeys(keys []Key) []Key {
	var out []Key
	for _, k := range keys {
		if !slices.Contains(out, k) {
			out = append(out, k)
		}
	}
	return out
}

// serviceName names a derived service after its object, and its port when
// the object makes several, shortened with a hash past the maps' limit
// (a namespace and a route name of the Gateway API's lengths pass it).
func serviceName(o *Object, port uint16, several bool) string {
	name := o.Name
	if o.Namespace != DefaultNamespace {
		name = o.Namespace + "." + name
	}
	if several {
		name += fmt.Sprintf("-%d", port)
	}
	return config.FitName(name)
}
