package kube

import (
	"cmp"
	"net/netip"
	"reflect"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/tcpshift/tcpshift/config"
	"github.com/tcpshift/tcpshift/config/istio"
)

// Deriver keeps what the last derivation made, per Service and for the
// routes, with an index from objects to what they shape, so that a change
// re-derives only the services it touches (kube-proxy's change trackers
// do the same): an EndpointSlice or Pod re-derives its Service's host; a
// route object, or a host some route uses, re-derives the routed services;
// a host re-derived, or a frontend a route took or gave back, re-derives
// that host's plain services. Full derives everything, as Derive does.
type Deriver struct {
	opts   Options
	domain string
	hosts  map[istio.Key]*hostState // every Service seen, by key
	ports  portMaps                 // its members' ports, shared
	// pods indexes the Services whose members are a pod (ns/name), so a
	// pod's labels changing re-derives only those.
	pods   map[string][]istio.Key
	routed routedState
	// classes are tcpshift's GatewayClasses, as last read.
	classes []string
	// all is every service derived, sorted by name, with origins by name:
	// an update patches them rather than gathering ten thousand again.
	all     []config.Service
	origins map[string]string
	// terminated sums the hosts' plain services' endpoints at weight 0.
	terminated int
}

// hostState is what one Service makes.
type hostState struct {
	ok          bool // has a cluster IP and a TCP port: a registry host
	host        istio.RegistryHost
	terminating map[netip.Addr]bool
	affinity    *config.Affinity
	// plain names its services no route took (the services themselves
	// are in the Deriver's all: one copy of ten thousand, not two).
	plain      []string
	terminated int // endpoints of plain held at weight 0
}

// routedState is what the Istio and Gateway API objects make.
type routedState struct {
	services   []config.Service
	origins    map[string]string
	uses       map[istio.Key]bool // hosts behind some routed service
	taken      map[netip.AddrPort]bool
	rejected   []istio.Rejection
	notes      []string
	terminated int
	routes     []istio.RouteStatus // the Gateway API's status, for the status writer
	listeners  []istio.ListenerStatus
}

// Changes is what changed since the last derivation: Services by key
// (their own object or one of their EndpointSlices), pods by namespace
// and name (their labels), and whether any route object did.
type Changes struct {
	Services []istio.Key
	Pods     []string
	Objects  bool
}

// Lookup is what the agent's informers answer by key, for Update.
type Lookup struct {
	Service func(namespace, name string) *corev1.Service
	// Slices returns the EndpointSlices labelled with a Service's name.
	Slices  func(namespace, service string) []*discoveryv1.EndpointSlice
	Pod     func(namespace, name string) *corev1.Pod
	Objects func() []*istio.Object
	Classes func() []string // tcpshift's GatewayClasses; nil: none
}

// NewDeriver makes a Deriver with the agent's options.
func NewDeriver(opts Options) *Deriver {
	return &Deriver{opts: opts, domain: cmp.Or(opts.ClusterDomain, "cluster.local")}
}

// ServiceKey names a Service in Changes.
func ServiceKey(namespace, name string) istio.Key {
	return istio.Key{Kind: istio.KindKubeService, Namespace: namespace, Name: name}
}

// Full derives every service from a snapshot and starts the index over.
func (d *Deriver) Full(s *Snapshot) (*Result, error) {
	slicesOf := map[istio.Key][]*discoveryv1.EndpointSlice{}
	for _, sl := range s.Slices {
		if name := sl.Labels[discoveryv1.LabelServiceName]; name != "" {
			k := ServiceKey(sl.Namespace, name)
			slicesOf[k] = append(slicesOf[k], sl)
		}
	}
	d.hosts, d.pods, d.ports = map[istio.Key]*hostState{}, map[string][]istio.Key{}, portMaps{}
	for _, svc := range s.Services {
		k := ServiceKey(svc.Namespace, svc.Name)
		d.setHost(k, d.readHost(svc, slicesOf[k], s.Pod))
	}
	d.classes = s.Classes
	if err := d.route(s.Objects); err != nil {
		return nil, err
	}
	d.all, d.origins, d.terminated = slices.Clone(d.routed.services), map[string]string{}, 0
	for name, o := range d.routed.origins {
		d.origins[name] = o
	}
	for k, h := range d.hosts {
		for _, svc := range d.plain(h) {
			d.all = append(d.all, svc)
			d.origins[svc.Name] = k.String()
		}
	}
	slices.SortFunc(d.all, byName)
	return d.result(nil), nil
}

// Update re-derives what ch touches, reading the objects through l, and
// returns the whole result with Changed naming the services it re-derived.
// Before the first Full it derives nothing: call Full first.
func (d *Deriver) Update(l Lookup, ch Changes) (*Result, error) {
	dirty := map[istio.Key]bool{}
	for _, k := range ch.Services {
		dirty[k] = true
	}
	for _, p := range ch.Pods {
		for _, k := range d.pods[p] {
			dirty[k] = true
		}
	}
	reroute := ch.Objects
	var hostsChanged []istio.Key
	gone := map[istio.Key]bool{}
	for k := range dirty {
		now := &hostState{}
		if svc := l.Service(k.Namespace, k.Name); svc != nil {
			now = d.readHost(svc, l.Slices(k.Namespace, k.Name), l.Pod)
		} else {
			gone[k] = true
		}
		was := d.hosts[k]
		if was != nil && sameHost(was, now) {
			continue
		}
		if was == nil && gone[k] {
			continue // an EndpointSlice of a Service not seen (yet)
		}
		hostsChanged = append(hostsChanged, k)
		// A host that comes, goes or changes behind a route, or while a
		// route is refused (it may name this host), re-derives the routes.
		if was == nil || was.ok != now.ok || d.routed.uses[k] || len(d.routed.rejected) > 0 {
			reroute = true
		}
		d.setHost(k, now)
	}
	touched := map[string]bool{}
	var made []config.Service // re-derived services
	origin := map[string]string{}
	replan := map[istio.Key]bool{}
	for _, k := range hostsChanged {
		replan[k] = true
	}
	if reroute {
		before := d.routed
		objs := l.Objects()
		if l.Classes != nil {
			d.classes = l.Classes()
		}
		if len(objs) > 0 || len(before.services) > 0 || len(before.rejected) > 0 {
			if err := d.route(objs); err != nil {
				return nil, err
			}
			for _, s := range before.services {
				touched[s.Name] = true
			}
			for _, s := range d.routed.services {
				touched[s.Name] = true
				made = append(made, s)
				origin[s.Name] = d.routed.origins[s.Name]
			}
			// Hosts with a frontend a route took or gave back.
			for k, h := range d.hosts {
				if h.ok && d.frontendMoved(h, before.taken) {
					replan[k] = true
				}
			}
		}
	}
	for k := range replan {
		h := d.hosts[k]
		for _, name := range h.plain {
			touched[name] = true
		}
		for _, s := range d.plain(h) {
			touched[s.Name] = true
			made = append(made, s)
			origin[s.Name] = k.String()
		}
		if gone[k] {
			delete(d.hosts, k)
		}
	}
	d.patch(touched, made, origin)
	return d.result(touched), nil
}

// patch takes the services touched out of all, and puts those re-derived
// in, in their places by name.
func (d *Deriver) patch(touched map[string]bool, made []config.Service, origin map[string]string) {
	if len(touched) == 0 {
		return
	}
	for name := range touched {
		i, _ := slices.BinarySearchFunc(d.all, name, func(s config.Service, n string) int { return cmp.Compare(s.Name, n) })
		j := i
		for j < len(d.all) && d.all[j].Name == name {
			j++
		}
		d.all = slices.Delete(d.all, i, j)
		delete(d.origins, name)
	}
	for _, svc := range made {
		i, _ := slices.BinarySearchFunc(d.all, svc.Name, func(s config.Service, n string) int { return cmp.Compare(s.Name, n) })
		d.all = slices.Insert(d.all, i, svc)
		d.origins[svc.Name] = origin[svc.Name]
	}
}

// readHost reads one Service with its EndpointSlices.
func (d *Deriver) readHost(svc *corev1.Service, sls []*discoveryv1.EndpointSlice, pod func(ns, name string) *corev1.Pod) *hostState {
	h, term, ok := registryHost(svc, sls, pod, d.domain, d.opts.Node, d.ports)
	return &hostState{ok: ok, host: h, terminating: term, affinity: sessionAffinity(svc)}
}

// podsOf names the pods among a host's members (their Source is "Pod
// ns/name"), sharing the Source's memory.
func podsOf(h *hostState) []string {
	var out []string
	for _, m := range h.host.Members {
		if p, ok := strings.CutPrefix(m.Source, "Pod "); ok {
			out = append(out, p)
		}
	}
	return out
}

// setHost records a Service's new state and its pods in the index; the
// plain services it made stay until plain runs for it.
func (d *Deriver) setHost(k istio.Key, h *hostState) {
	if was := d.hosts[k]; was != nil {
		h.plain, h.terminated = was.plain, was.terminated
		for _, p := range podsOf(was) {
			if keys := slices.DeleteFunc(d.pods[p], func(x istio.Key) bool { return x == k }); len(keys) > 0 {
				d.pods[p] = keys
			} else {
				delete(d.pods, p)
			}
		}
	}
	for _, p := range podsOf(h) {
		d.pods[p] = append(d.pods[p], k)
	}
	d.hosts[k] = h
}

func sameHost(a, b *hostState) bool {
	return a.ok == b.ok && reflect.DeepEqual(a.host, b.host) && reflect.DeepEqual(a.terminating, b.terminating) &&
		reflect.DeepEqual(a.affinity, b.affinity)
}

// route derives the routed services from the route objects and every host.
func (d *Deriver) route(objs []*istio.Object) error {
	keys := make([]istio.Key, 0, len(d.hosts))
	for k, h := range d.hosts {
		if h.ok {
			keys = append(keys, k)
		}
	}
	slices.SortFunc(keys, compareKeys)
	hosts := make([]istio.RegistryHost, len(keys))
	for i, k := range keys {
		hosts[i] = d.hosts[k].host
	}
	res, err := istio.DeriveWith(objs, istio.Options{Registry: hosts, Dynamic: true, KeepGoing: true, Gateways: d.scope()})
	if err != nil {
		return err
	}
	r := routedState{origins: map[string]string{}, uses: map[istio.Key]bool{}, taken: map[netip.AddrPort]bool{},
		rejected: res.Rejected, notes: res.Notes, routes: res.Routes, listeners: res.Listeners}
	// A service drains the terminating endpoints of the Services behind
	// it, and no others: two Services may share an address (host-network
	// pods), and one's pod terminating says nothing of the other's.
	for _, svc := range res.Services {
		r.taken[svc.Listen] = true
		drain := map[netip.Addr]bool{}
		for _, k := range res.Origins[svc.Name] {
			r.uses[k] = true
			if h := d.hosts[k]; h != nil {
				for a := range h.terminating {
					drain[a] = true
				}
			}
		}
		r.terminated += drainTerminating(&svc, drain)
		r.services = append(r.services, svc)
		r.origins[svc.Name] = res.OriginText(svc.Name)
	}
	d.routed = r
	return nil
}

// scope is the gateways this node serves, with the classes last read.
func (d *Deriver) scope() *istio.GatewayScope {
	if d.opts.Gateways == nil {
		return nil
	}
	s := *d.opts.Gateways
	s.Classes = d.classes
	return &s
}

// frontendMoved reports whether a route took or gave back one of a host's
// frontends since taken.
func (d *Deriver) frontendMoved(h *hostState, taken map[netip.AddrPort]bool) bool {
	for _, p := range h.host.Ports {
		listen := netip.AddrPortFrom(h.host.Addresses[0], p.Number)
		if taken[listen] != d.routed.taken[listen] {
			return true
		}
	}
	return false
}

// plain derives a host's services no route took, and names them in h.
func (d *Deriver) plain(h *hostState) (out []config.Service) {
	d.terminated -= h.terminated
	defer func() { d.terminated += h.terminated }()
	h.plain, h.terminated = nil, 0
	if !h.ok || d.opts.OnlyRouted {
		return
	}
	out = plainServices(h.host, d.routed.taken, h.affinity)
	h.plain = make([]string, len(out))
	for i := range out {
		h.terminated += drainTerminating(&out[i], h.terminating)
		h.plain[i] = out[i].Name
	}
	return out
}

// result is every service derived; changed names those re-derived (nil:
// all). Its Origins and its Config's services are the Deriver's own (a
// copy of ten thousand services at every change is garbage the agent's
// collector pays for): read them before the next update.
func (d *Deriver) result(changed map[string]bool) *Result {
	return &Result{Origins: d.origins, Rejected: d.routed.rejected, Notes: d.routed.notes, Terminating: d.routed.terminated + d.terminated,
		Routes: d.routed.routes, Listeners: d.routed.listeners, Config: &config.Config{Path: "kubernetes", Services: slices.Clip(d.all)}, Changed: changed}
}

func byName(a, b config.Service) int { return cmp.Compare(a.Name, b.Name) }

func compareKeys(a, b istio.Key) int {
	return cmp.Or(cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
}
