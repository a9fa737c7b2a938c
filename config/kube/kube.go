// Package kube is the front end for a Kubernetes cluster's own objects: a
// Service, its EndpointSlices and the Pods behind them become a host of the
// Istio front end's registry (as Istio's own registry makes them), so that
// VirtualServices and DestinationRules route them; a Service no route names
// gets Kubernetes' own semantics (every ready endpoint, equal shares). It
// makes one config.Config; the loader never learns what a Pod is.
package kube

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/tcpshift/tcpshift/config"
	"github.com/tcpshift/tcpshift/config/istio"
)

// Snapshot is what the agent's informers hold at one moment.
type Snapshot struct {
	Services []*corev1.Service
	Slices   []*discoveryv1.EndpointSlice
	// Pod returns a pod by namespace and name, nil when unknown (yet).
	Pod     func(namespace, name string) *corev1.Pod
	Objects []*istio.Object // Istio and Gateway API objects
	// Classes are the GatewayClasses whose controllerName is tcpshift's.
	Classes []string
}

// Options are the agent's choices.
type Options struct {
	ClusterDomain string // cluster.local when empty
	// OnlyRouted leaves Services no VirtualService or TCPRoute routes
	// alone (kube-proxy or another serves them).
	OnlyRouted bool
	// Node is this node's name, for Services whose internal traffic
	// policy is Local (only this node's endpoints).
	Node string
	// Gateways are the gateways the node serves (their Classes come from
	// the Snapshot or Lookup); nil serves every gateway, as on one host.
	Gateways *istio.GatewayScope
}

// Result is the node's services and what was left out.
type Result struct {
	Config   *config.Config
	Origins  map[string]string // service name to the objects behind it
	Rejected []istio.Rejection // objects that could not be derived
	Notes    []string          // what the front end read but does not apply
	// The Gateway API's status of the TCPRoutes and listeners (istio.Result's).
	Routes    []istio.RouteStatus
	Listeners []istio.ListenerStatus
	// Terminating counts the endpoints kept at weight 0 so that their
	// connections drain (TerminatingSubset).
	Terminating int
	// Changed names the services a Deriver's Update re-derived (those in
	// Config and those gone); nil after a full derivation: all of them.
	Changed map[string]bool
}

// TerminatingSubset holds a service's terminating endpoints at weight 0:
// no new connections, while status and metrics show the old ones drain.
const TerminatingSubset = "terminating"

// PlainSubset is the one subset of a Service no route names.
const PlainSubset = "endpoints"

// Derive makes the node's services from a snapshot.
func Derive(s *Snapshot, opts Options) (*Result, error) {
	return NewDeriver(opts).Full(s)
}

// registryHost makes a Service with a cluster IP into a registry host whose
// members are its ready and terminating endpoints, and returns the latter's
// addresses too.
func registryHost(svc *corev1.Service, sls []*discoveryv1.EndpointSlice, pod func(ns, name string) *corev1.Pod, domain, node string, shared portMaps) (_ istio.RegistryHost, terminating map[netip.Addr]bool, ok bool) {
	local := svc.Spec.InternalTrafficPolicy != nil && *svc.Spec.InternalTrafficPolicy == corev1.ServiceInternalTrafficPolicyLocal
	h := istio.RegistryHost{
		Key:   istio.Key{Kind: istio.KindKubeService, Namespace: svc.Namespace, Name: svc.Name},
		Hosts: []string{fmt.Sprintf("%s.%s.svc.%s", svc.Name, svc.Namespace, domain)},
	}
	if svc.Spec.Type == corev1.ServiceTypeExternalName {
		return h, nil, false
	}
	ips := svc.Spec.ClusterIPs
	if len(ips) == 0 && svc.Spec.ClusterIP != "" {
		ips = []string{svc.Spec.ClusterIP}
	}
	for _, ip := range ips {
		if a, err := netip.ParseAddr(ip); err == nil {
			h.Addresses = append(h.Addresses, a.Unmap())
		}
	}
	if len(h.Addresses) == 0 { // headless: clients dial the pods
		return h, nil, false
	}
	for _, p := range svc.Spec.Ports {
		if p.Protocol == "" || p.Protocol == corev1.ProtocolTCP {
			h.Ports = append(h.Ports, istio.RegistryPort{Number: uint16(p.Port), Name: p.Name})
		}
	}
	if len(h.Ports) == 0 {
		return h, nil, false
	}
	seen := map[netip.Addr]bool{}
	// Members are kept for as long as the Service is: room for all, not
	// append's doubling.
	if n := countEndpoints(sls); n > 0 {
		h.Members = make([]istio.Member, 0, n)
	}
	// terminating stays nil while none is: ten thousand Services have none.
	for _, sl := range sls {
		if sl.AddressType != discoveryv1.AddressTypeIPv4 && sl.AddressType != discoveryv1.AddressTypeIPv6 {
			continue
		}
		// The slice's members share its ports and the words naming it.
		ports, source := map[string]uint16{}, "EndpointSlice "+sl.Namespace+"/"+sl.Name
		for _, p := range sl.Ports {
			if p.Port != nil && (p.Protocol == nil || *p.Protocol == corev1.ProtocolTCP) {
				ports[deref(p.Name)] = uint16(*p.Port)
			}
		}
		ports = shared.intern(ports)
		for _, ep := range sl.Endpoints {
			ready := ep.Conditions.Ready == nil || *ep.Conditions.Ready
			term := ep.Conditions.Terminating != nil && *ep.Conditions.Terminating
			if len(ep.Addresses) == 0 || (!ready && !term) {
				continue
			}
			if local && (ep.NodeName == nil || *ep.NodeName != node) {
				continue // internalTrafficPolicy: Local keeps traffic on the node
			}
			addr, err := netip.ParseAddr(ep.Addresses[0])
			// A dual-stack Service is served at its first ClusterIP,
			// which connect() can rewrite only to its own family.
			if err != nil || seen[addr.Unmap()] || addr.Unmap().Is4() != h.Addresses[0].Is4() {
				continue
			}
			addr = addr.Unmap()
			seen[addr] = true
			if term {
				if terminating == nil {
					terminating = map[netip.Addr]bool{}
				}
				terminating[addr] = true
			}
			m := istio.Member{Source: source, Addr: addr, Ports: ports}
			if ref := ep.TargetRef; ref != nil && ref.Kind == "Pod" {
				m.Source = fmt.Sprintf("Pod %s/%s", ref.Namespace, ref.Name)
				if p := pod(cmp.Or(ref.Namespace, sl.Namespace), ref.Name); p != nil {
					m.Labels = istio.Labels(p.Labels)
				}
			}
			h.Members = append(h.Members, m)
		}
	}
	slices.SortFunc(h.Members, func(a, b istio.Member) int { return a.Addr.Compare(b.Addr) })
	return h, terminating, true
}

// countEndpoints counts the endpoints of slices.
func countEndpoints(sls []*discoveryv1.EndpointSlice) (n int) {
	for _, sl := range sls {
		n += len(sl.Endpoints)
	}
	return n
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// plainServices gives each port of a host no route took every member with
// an equal share, as kube-proxy does.
func plainServices(h istio.RegistryHost, taken map[netip.AddrPort]bool, affinity *config.Affinity) []config.Service {
	var out []config.Service
	for _, p := range h.Ports {
		listen := netip.AddrPortFrom(h.Addresses[0], p.Number)
		if taken[listen] {
			continue
		}
		var eps []netip.AddrPort
		if len(h.Members) > 0 {
			eps = make([]netip.AddrPort, 0, len(h.Members)) // kept for as long as the Service is
		}
		for _, m := range h.Members {
			port, ok := m.Ports[p.Name]
			if !ok {
				continue
			}
			eps = append(eps, netip.AddrPortFrom(m.Addr, port))
		}
		out = append(out, config.Service{
			Name:       plainName(h.Key, p.Number),
			Listen:     listen,
			Mode:       config.ModeConnect,
			Policy:     config.PolicyRoundRobin,
			Failover:   true,
			Accounting: true,
			Affinity:   affinity,
			Subsets:    []config.Subset{{Name: PlainSubset, Endpoints: eps, Weight: 1}},
		})
	}
	return out
}

// plainName names a Service's port like its host, shortened with a hash
// when it would pass config.MaxNameLen.
func plainName(k istio.Key, port uint16) string {
	return config.FitName(fmt.Sprintf("%s.%s-%d", k.Name, k.Namespace, port))
}

// drainTerminating moves a service's terminating endpoints into a subset
// of weight 0, and returns how many it moved.
func drainTerminating(svc *config.Service, terminating map[netip.Addr]bool) int {
	if len(terminating) == 0 || len(svc.Subsets) >= config.MaxSubsets {
		return 0 // no room for one more subset: they stay where they are
	}
	var drain []netip.AddrPort
	for i := range svc.Subsets {
		sub := &svc.Subsets[i]
		sub.Endpoints = slices.DeleteFunc(slices.Clone(sub.Endpoints), func(ep netip.AddrPort) bool {
			if terminating[ep.Addr()] {
				if !slices.Contains(drain, ep) {
					drain = append(drain, ep)
				}
				return true
			}
			return false
		})
	}
	if len(drain) == 0 {
		return 0
	}
	svc.Subsets = append(svc.Subsets, config.Subset{Name: TerminatingSubset, Endpoints: drain})
	return len(drain)
}

// sessionAffinity is a Service's sessionAffinity: ClientIP, as tcpshift's
// client affinity (in connect mode a client is a process in its network
// namespace: a pod's process), nil for None.
func sessionAffinity(svc *corev1.Service) *config.Affinity {
	if svc.Spec.SessionAffinity != corev1.ServiceAffinityClientIP {
		return nil
	}
	ttl := 10800 * time.Second // Kubernetes' default timeoutSeconds
	if c := svc.Spec.SessionAffinityConfig; c != nil && c.ClientIP != nil && c.ClientIP.TimeoutSeconds != nil {
		ttl = time.Duration(*c.ClientIP.TimeoutSeconds) * time.Second
	}
	return &config.Affinity{Key: config.AffinityKeyClient, TTL: ttl}
}
