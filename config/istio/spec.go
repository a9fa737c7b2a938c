package istio

import (
	"fmt"
	"net/netip"
	"strings"

	"gopkg.in/yaml.v3"
)

// The specs as tcpshift reads them. Fields that mean nothing on one host
// (selectors of gateway pods, exportTo, networks) are accepted and left
// alone; fields that would change traffic in ways tcpshift cannot follow
// are refused by name.

type gateway struct {
	*Object
	servers []server
}

type server struct {
	port     uint16
	name     string
	protocol string
	bind     netip.Addr // zero: every address
	node     *yaml.Node
}

type virtualService struct {
	*Object
	hosts    []string
	gateways []string
	tcp      []tcpRoute
}

type tcpRoute struct {
	matches []tcpMatch
	route   []destination
	field   string
	node    *yaml.Node
}

type tcpMatch struct {
	port     uint16
	subnets  []netip.Prefix
	gateways []string
	node     *yaml.Node
}

type destination struct {
	host      string
	subset    string
	port      uint16
	weight    uint64
	hasWeight bool
	field     string
	node      *yaml.Node
}

type destinationRule struct {
	*Object
	host    string
	subsets []subset
	policy  string // roundrobin or random ("" default)
	notes   []string
}

type subset struct {
	name   string
	labels Labels
	node   *yaml.Node
}

type serviceEntry struct {
	*Object
	hosts     []string
	addresses []netip.Prefix
	ports     []sePort
	endpoints []workload
	selector  Labels // nil: none
}

type sePort struct {
	number, target uint16
	name, protocol string
}

// workload is where a host's backend runs: a WorkloadEntry, or an endpoint
// inline in a ServiceEntry.
type workload struct {
	source string // WorkloadEntry default/x, or ServiceEntry default/y endpoints[0]
	addr   netip.Addr
	ports  map[string]uint16
	labels Labels
	weight uint64
}

var tcpProtocols = []string{"TCP", "TLS", "MONGO", "MYSQL", "REDIS"}

const httpWhy = "tcpshift shifts TCP connections by weight; it does not route HTTP requests"

func readGateway(o *Object) (*gateway, error) {
	r := &reader{o: o}
	g := &gateway{Object: o}
	r.mapping(o.Spec, "spec", []string{"selector", "servers"}, nil, func(k string, v *yaml.Node) {
		if k != "servers" {
			return // selector: tcpshift is the gateway on this host
		}
		r.list(v, "spec.servers", func(i int, v *yaml.Node) {
			f := fmt.Sprintf("spec.servers[%d]", i)
			s := server{node: v}
			r.mapping(v, f, []string{"port", "hosts", "bind", "name", "defaultEndpoint"}, map[string]string{
				"tls": "TLS termination; TCP and TLS passthrough ports are served",
			}, func(k string, v *yaml.Node) {
				switch k {
				case "port":
					r.mapping(v, f+".port", []string{"number", "name", "protocol", "targetPort"}, nil, func(k string, v *yaml.Node) {
						switch k {
						case "number":
							s.port = r.port(v, f+".port.number")
						case "name":
							s.name = r.str(v, f+".port.name")
						case "protocol":
							s.protocol = strings.ToUpper(r.str(v, f+".port.protocol"))
							if !contains(tcpProtocols, s.protocol) {
								r.failf(v, f+".port.protocol", "%s: %s (protocols: %s)", s.protocol, httpWhy, strings.Join(tcpProtocols, ", "))
							}
						}
					})
				case "bind":
					if b := r.str(v, f+".bind"); b != "" {
						a, err := netip.ParseAddr(b)
						if err != nil {
							r.failf(v, f+".bind", "%q is not an IP address (unix sockets are not served)", b)
						}
						s.bind = a.Unmap()
					}
				case "defaultEndpoint":
					r.failf(v, f+".defaultEndpoint", "tcpshift does not implement this: the gateway forwards to the VirtualService's destinations")
				}
			})
			if r.err == nil && s.port == 0 {
				r.failf(v, f+".port.number", "missing")
			}
			if r.err == nil && s.protocol == "" {
				r.failf(v, f+".port.protocol", "missing (TCP)")
			}
			g.servers = append(g.servers, s)
		})
	})
	return g, r.err
}

func readVirtualService(o *Object) (*virtualService, error) {
	r := &reader{o: o}
	vs := &virtualService{Object: o}
	r.mapping(o.Spec, "spec", []string{"hosts", "gateways", "tcp", "exportTo"}, map[string]string{
		"http": httpWhy + ": move the weights to tcp routes",
		"tls":  "TLS routes by SNI; use tcp routes",
	}, func(k string, v *yaml.Node) {
		switch k {
		case "hosts":
			vs.hosts = r.strings(v, "spec.hosts")
		case "gateways":
			vs.gateways = r.strings(v, "spec.gateways")
		case "tcp":
			r.list(v, "spec.tcp", func(i int, v *yaml.Node) {
				vs.tcp = append(vs.tcp, r.tcpRoute(v, fmt.Sprintf("spec.tcp[%d]", i)))
			})
		}
	})
	if r.err == nil {
		r.checkVirtualService(vs)
	}
	return vs, r.err
}

func (r *reader) tcpRoute(n *yaml.Node, f string) tcpRoute {
	t := tcpRoute{field: f, node: n}
	r.mapping(n, f, []string{"match", "route"}, nil, func(k string, v *yaml.Node) {
		switch k {
		case "match":
			r.list(v, f+".match", func(i int, v *yaml.Node) {
				mf := fmt.Sprintf("%s.match[%d]", f, i)
				m := tcpMatch{node: v}
				r.mapping(v, mf, []string{"port", "destinationSubnets", "gateways"}, map[string]string{
					"sourceLabels":    "matching clients by labels; clients are not workloads here",
					"sourceNamespace": "matching clients by namespace",
					"sourceSubnet":    "matching clients by address",
				}, func(k string, v *yaml.Node) {
					switch k {
					case "port":
						m.port = r.istioPort(v, mf+".port")
					case "destinationSubnets":
						for j, s := range r.strings(v, mf+".destinationSubnets") {
							p, err := netip.ParsePrefix(s)
							if err != nil {
								a, aerr := netip.ParseAddr(s)
								if aerr != nil {
									r.failf(v, fmt.Sprintf("%s.destinationSubnets[%d]", mf, j), "%q is not an address or CIDR", s)
									return
								}
								p = netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())
							}
							m.subnets = append(m.subnets, p.Masked())
						}
					case "gateways":
						m.gateways = r.strings(v, mf+".gateways")
					}
				})
				t.matches = append(t.matches, m)
			})
		case "route":
			r.list(v, f+".route", func(i int, v *yaml.Node) {
				df := fmt.Sprintf("%s.route[%d]", f, i)
				d := destination{field: df, node: v}
				r.mapping(v, df, []string{"destination", "weight"}, nil, func(k string, v *yaml.Node) {
					switch k {
					case "weight":
						d.weight, d.hasWeight = r.istioWeight(v, df+".weight"), true
					case "destination":
						r.mapping(v, df+".destination", []string{"host", "subset", "port"}, nil, func(k string, v *yaml.Node) {
							switch k {
							case "host":
								d.host = r.str(v, df+".destination.host")
							case "subset":
								d.subset = r.str(v, df+".destination.subset")
							case "port":
								r.mapping(v, df+".destination.port", []string{"number"}, nil, func(_ string, v *yaml.Node) {
									d.port = r.istioPort(v, df+".destination.port.number")
								})
							}
						})
					}
				})
				t.route = append(t.route, d)
			})
		}
	})
	if r.err == nil {
		r.checkTCPRoute(t)
	}
	return t
}

func readDestinationRule(o *Object) (*destinationRule, error) {
	r := &reader{o: o}
	dr := &destinationRule{Object: o}
	r.mapping(o.Spec, "spec", []string{"host", "subsets", "trafficPolicy", "exportTo"}, map[string]string{
		"workloadSelector": "rules for some workloads only",
	}, func(k string, v *yaml.Node) {
		switch k {
		case "host":
			dr.host = r.str(v, "spec.host")
		case "subsets":
			r.list(v, "spec.subsets", func(i int, v *yaml.Node) {
				f := fmt.Sprintf("spec.subsets[%d]", i)
				s := subset{node: v}
				r.mapping(v, f, []string{"name", "labels"}, map[string]string{
					"trafficPolicy": "a policy per subset; give it to the whole DestinationRule",
				}, func(k string, v *yaml.Node) {
					switch k {
					case "name":
						s.name = r.str(v, f+".name")
					case "labels":
						s.labels = r.labels(v, f+".labels")
					}
				})
				dr.subsets = append(dr.subsets, s)
			})
		case "trafficPolicy":
			r.trafficPolicy(v, dr)
		}
	})
	if r.err == nil {
		r.checkDestinationRule(dr)
	}
	return dr, r.err
}

func (r *reader) trafficPolicy(n *yaml.Node, dr *destinationRule) {
	f := "spec.trafficPolicy"
	r.mapping(n, f, []string{"loadBalancer", "connectionPool"}, map[string]string{
		"outlierDetection":  "use tcpshift's health checks (tcpshift run with health:)",
		"tls":               "TLS origination",
		"portLevelSettings": "policies per port",
	}, func(k string, v *yaml.Node) {
		switch k {
		case "loadBalancer":
			r.mapping(v, f+".loadBalancer", []string{"simple"}, map[string]string{
				"consistentHash":    "hashing; tcpshift keeps clients on an endpoint with its affinity instead",
				"localityLbSetting": "locality; every endpoint is on this host",
			}, func(_ string, v *yaml.Node) {
				switch s := r.str(v, f+".loadBalancer.simple"); s {
				case "ROUND_ROBIN", "UNSPECIFIED", "":
					dr.policy = "roundrobin"
				case "RANDOM":
					dr.policy = "random"
				default:
					r.failf(v, f+".loadBalancer.simple", "%s: tcpshift has ROUND_ROBIN (exact) and RANDOM", s)
				}
			})
		case "connectionPool":
			r.mapping(v, f+".connectionPool", []string{"tcp"}, map[string]string{
				"http": "HTTP connection pools",
			}, func(_ string, v *yaml.Node) {
				r.mapping(v, f+".connectionPool.tcp", []string{"connectTimeout", "maxConnectionDuration", "maxConnections", "tcpKeepalive", "idleTimeout"}, nil, func(k string, v *yaml.Node) {
					dr.notes = append(dr.notes, fmt.Sprintf("%s: %s.connectionPool.tcp.%s is not applied: tcpshift hands connections to the backend itself and has no such limit", dr.Key, f, k))
				})
			})
		}
	})
}

func readServiceEntry(o *Object) (*serviceEntry, error) {
	r := &reader{o: o}
	se := &serviceEntry{Object: o}
	r.mapping(o.Spec, "spec", []string{"hosts", "addresses", "ports", "location", "resolution", "endpoints", "workloadSelector", "exportTo", "subjectAltNames"}, nil, func(k string, v *yaml.Node) {
		switch k {
		case "hosts":
			se.hosts = r.strings(v, "spec.hosts")
		case "addresses":
			for i, s := range r.strings(v, "spec.addresses") {
				p, err := netip.ParsePrefix(s)
				if err != nil {
					a, aerr := netip.ParseAddr(s)
					if aerr != nil {
						r.failf(v.Content[i], fmt.Sprintf("spec.addresses[%d]", i), "%q is not an address", s)
						return
					}
					p = netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())
				}
				se.addresses = append(se.addresses, p)
			}
		case "ports":
			r.list(v, "spec.ports", func(i int, v *yaml.Node) {
				f := fmt.Sprintf("spec.ports[%d]", i)
				var p sePort
				r.mapping(v, f, []string{"number", "name", "protocol", "targetPort"}, nil, func(k string, v *yaml.Node) {
					switch k {
					case "number":
						p.number = r.port(v, f+".number")
					case "name":
						p.name = r.str(v, f+".name")
					case "protocol":
						p.protocol = strings.ToUpper(r.str(v, f+".protocol"))
					case "targetPort":
						p.target = r.port(v, f+".targetPort")
					}
				})
				if r.err == nil && p.number == 0 {
					r.failf(v, f+".number", "missing")
				}
				se.ports = append(se.ports, p)
			})
		case "resolution":
			if s := r.str(v, "spec.resolution"); s != "STATIC" && s != "NONE" {
				r.failf(v, "spec.resolution", "%s: tcpshift resolves no names; use STATIC with addresses in endpoints or WorkloadEntries", s)
			}
		case "endpoints":
			r.list(v, "spec.endpoints", func(i int, v *yaml.Node) {
				f := fmt.Sprintf("spec.endpoints[%d]", i)
				se.endpoints = append(se.endpoints, r.workload(v, f, fmt.Sprintf("%s %s", o.Key, f)))
			})
		case "workloadSelector":
			r.mapping(v, "spec.workloadSelector", []string{"labels"}, nil, func(_ string, v *yaml.Node) {
				se.selector = r.labels(v, "spec.workloadSelector.labels")
			})
		}
	})
	if r.err == nil && len(se.hosts) == 0 {
		r.failf(o.Spec, "spec.hosts", "missing")
	}
	return se, r.err
}

// workload reads a WorkloadEntry's spec or an inline ServiceEntry endpoint.
func (r *reader) workload(n *yaml.Node, f, source string) workload {
	w := workload{source: source, ports: map[string]uint16{}, labels: Labels{}}
	r.mapping(n, f, []string{"address", "ports", "labels", "weight", "network", "locality", "serviceAccount"}, nil, func(k string, v *yaml.Node) {
		switch k {
		case "address":
			s := r.str(v, join(f, "address"))
			a, err := netip.ParseAddr(s)
			if err != nil {
				r.failf(v, join(f, "address"), "%q is not an IP address: tcpshift resolves no names", s)
				return
			}
			w.addr = a.Unmap()
		case "ports":
			w.ports = r.portMap(v, join(f, "ports"))
		case "labels":
			w.labels = r.labels(v, join(f, "labels"))
		case "weight":
			w.weight, _ = r.uint(v, join(f, "weight"))
		}
	})
	if r.err == nil && !w.addr.IsValid() {
		r.failf(n, join(f, "address"), "missing")
	}
	return w
}

func readWorkloadEntry(o *Object) (workload, error) {
	r := &reader{o: o}
	w := r.workload(o.Spec, "spec", o.Key.String())
	return w, r.err
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
