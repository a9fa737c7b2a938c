package istio

import (
	"net/netip"
)

// KindKubeService is how a Kubernetes Service is named in messages and
// origins: the Kubernetes front end hands Services over as RegistryHosts.
const KindKubeService = "core/Service"

// RegistryHost is a host that another registry than ServiceEntries
// declares, as Istio's own service registry does for Kubernetes Services:
// routes may name it like a ServiceEntry host, and a mesh VirtualService
// is served at its first address.
type RegistryHost struct {
	Key       Key          // names it in messages and origins
	Hosts     []string     // e.g. tcp-echo.default.svc.cluster.local
	Addresses []netip.Addr // VIPs (a Service's ClusterIPs)
	Ports     []RegistryPort
	Members   []Member
}

// RegistryPort is a port of a registry host.
type RegistryPort struct {
	Number uint16
	Name   string
}

// Member is a backend of a registry host: a pod, say.
type Member struct {
	Source string // names it in messages: Pod default/tcp-echo-v1-x
	Addr   netip.Addr
	Ports  map[string]uint16 // port name (as the host's port names it) to the member's port
	Labels Labels
}

// Options adjust a derivation.
type Options struct {
	// Registry hosts, besides the objects' ServiceEntries.
	Registry []RegistryHost
	// Dynamic serves a subset whose labels select nothing now, or a host
	// with no members, with no endpoints (its share refused, or given to
	// the others by failover) instead of refusing it: pods come and go.
	Dynamic bool
	// KeepGoing leaves out an object that cannot be derived, and reports
	// it in Result.Rejected, instead of failing the whole derivation: one
	// user's mistake must not stop a cluster's other services.
	KeepGoing bool
	// Namespaces are the labels of each namespace, for a Gateway
	// listener that takes routes of namespaces by a selector; nil: not
	// known (one host), and such a listener takes none.
	Namespaces map[string]Labels
	// Gateways, when set, serves only tcpshift's gateways (see
	// GatewayScope); nil serves every gateway, as on one host.
	Gateways *GatewayScope
}

// Rejection is an object left out of a derivation, and why.
type Rejection struct {
	Key Key
	Err error
}

// registryEntry makes a registry host into what the derivation reads a
// ServiceEntry into.
func registryEntry(h RegistryHost) *serviceEntry {
	se := &serviceEntry{Object: &Object{Key: h.Key, Path: "kubernetes"}, hosts: h.Hosts}
	for _, a := range h.Addresses {
		se.addresses = append(se.addresses, netip.PrefixFrom(a, a.BitLen()))
	}
	for _, p := range h.Ports {
		se.ports = append(se.ports, sePort{number: p.Number, name: p.Name, protocol: "TCP"})
	}
	for _, m := range h.Members {
		se.endpoints = append(se.endpoints, workload{source: m.Source, addr: m.Addr, ports: m.Ports, labels: m.Labels})
	}
	return se
}
