package istio

import (
	"fmt"
	"net/netip"
	"strings"

	"gopkg.in/yaml.v3"
)

// The Gateway API's objects as tcpshift reads them: Gateway, TCPRoute and
// ReferenceGrant. Their schema's limits are checked here, in the API
// server's words (Too many, Required value, Invalid value), so a file
// refused by kube-apiserver is refused here too.

type tcpRouteAPI struct {
	*Object
	parents  []parentRef
	backends []backendRef
}

type parentRef struct {
	name, namespace, section string
	port                     uint16
	service                  bool // kind: Service (the mesh, GAMMA)
	node                     *yaml.Node
}

type backendRef struct {
	name, namespace string
	group, kind     string // "" and Service unless given
	port            uint16
	weight          uint64
	field           string
	node            *yaml.Node
}

type apiGateway struct {
	*Object
	listeners []apiListener
	bind      netip.Addr
}

type apiListener struct {
	name     string
	port     uint16
	protocol string
	hostname *string  // nil: none given
	kinds    []string // allowedRoutes.kinds as Group/Kind; nil: the protocol's
	from     string   // allowedRoutes.namespaces.from: Same (default), All, Selector
	selector Labels   // allowedRoutes.namespaces.selector.matchLabels
	node     *yaml.Node
}

type referenceGrant struct {
	*Object
	from []grantFrom
	to   []grantTo
}

type grantFrom struct{ group, kind, namespace string }
type grantTo struct{ group, kind, name string }

// The Gateway API's limits (its CRDs' MaxItems and Maximum).
const (
	maxListeners   = 64
	maxParentRefs  = 32
	maxBackendRefs = 16
	maxGrantItems  = 16
	maxAPIWeight   = 1000000
)

// maxRules is how many rules a TCPRoute may have: one from v1 on, 16 in
// v1alpha2.
func maxRules(apiVersion string) int {
	if strings.HasSuffix(apiVersion, "/v1alpha2") {
		return 16
	}
	return 1
}

// items checks a list's length against the schema's bounds, as the API
// server words it.
func (r *reader) items(n *yaml.Node, field string, min, max int) {
	if n == nil || r.err != nil || isNull(n) || n.Kind != yaml.SequenceNode {
		if min > 0 && r.err == nil && (n == nil || isNull(n)) {
			r.failf(n, field, "Required value")
		}
		return
	}
	switch {
	case len(n.Content) > max:
		r.failf(n, field, "Too many: %d: must have at most %d items", len(n.Content), max)
	case len(n.Content) < min:
		r.failf(n, field, "Required value: must have at least %d item", min)
	}
}

func readAPIGateway(o *Object) (*apiGateway, error) {
	r := &reader{o: o}
	g := &apiGateway{Object: o}
	r.mapping(o.Spec, "spec", []string{"gatewayClassName", "listeners", "addresses", "infrastructure"}, nil, func(k string, v *yaml.Node) {
		switch k {
		case "listeners":
			r.items(v, "spec.listeners", 1, maxListeners)
			r.list(v, "spec.listeners", func(i int, v *yaml.Node) {
				g.listeners = append(g.listeners, r.listener(v, fmt.Sprintf("spec.listeners[%d]", i)))
			})
		case "addresses":
			r.list(v, "spec.addresses", func(i int, v *yaml.Node) {
				f := fmt.Sprintf("spec.addresses[%d]", i)
				r.mapping(v, f, []string{"type", "value"}, nil, func(k string, v *yaml.Node) {
					if k == "value" {
						a, err := netip.ParseAddr(r.str(v, f+".value"))
						if err != nil {
							r.failf(v, f+".value", "%q is not an IP address", v.Value)
							return
						}
						if i == 0 {
							g.bind = a.Unmap()
						}
					}
				})
			})
		}
	})
	if r.err == nil && len(g.listeners) == 0 {
		r.failf(o.Spec, "spec.listeners", "Required value")
	}
	for i, l := range g.listeners {
		for _, m := range g.listeners[:i] {
			if m.name == l.name {
				r.failf(l.node, fmt.Sprintf("spec.listeners[%d].name", i), "Duplicate value: %q: listener names must be unique", l.name)
			}
			// The CRD's rule: two such listeners could not be told apart.
			if m.port == l.port && m.protocol == l.protocol && (m.hostname == nil) == (l.hostname == nil) && (m.hostname == nil || *m.hostname == *l.hostname) {
				r.failf(l.node, "spec.listeners", "Invalid value: \"array\": Combination of port, protocol and hostname must be unique for each listener (listeners %s and %s)", m.name, l.name)
			}
		}
	}
	return g, r.err
}

// listener reads one listener. Any protocol is accepted: a listener that
// is not TCP takes no TCPRoute and tcpshift serves nothing on it.
func (r *reader) listener(n *yaml.Node, f string) apiListener {
	l := apiListener{from: "Same", node: n}
	var tls *yaml.Node
	r.mapping(n, f, []string{"name", "port", "protocol", "hostname", "allowedRoutes", "tls"}, nil, func(k string, v *yaml.Node) {
		switch k {
		case "name":
			l.name = r.str(v, f+".name")
		case "port":
			l.port = r.apiPort(v, f+".port")
		case "protocol":
			l.protocol = r.str(v, f+".protocol")
		case "hostname":
			h := r.str(v, f+".hostname")
			l.hostname = &h
		case "tls":
			tls = v
		case "allowedRoutes":
			r.allowedRoutes(v, f+".allowedRoutes", &l)
		}
	})
	switch {
	case r.err != nil:
	case l.name == "":
		r.failf(n, f+".name", "Required value")
	case l.port == 0:
		r.failf(n, f+".port", "Required value")
	case l.protocol == "":
		r.failf(n, f+".protocol", "Required value")
	case tls != nil && (l.protocol == "TCP" || l.protocol == "HTTP" || l.protocol == "UDP"):
		r.failf(tls, f+".tls", "Invalid value: \"object\": tls must not be specified for protocols ['HTTP', 'TCP', 'UDP']")
	}
	return l
}

func (r *reader) allowedRoutes(n *yaml.Node, f string, l *apiListener) {
	r.mapping(n, f, []string{"namespaces", "kinds"}, nil, func(k string, v *yaml.Node) {
		switch k {
		case "kinds":
			l.kinds = []string{}
			r.list(v, f+".kinds", func(i int, v *yaml.Node) {
				kf := fmt.Sprintf("%s.kinds[%d]", f, i)
				group, kind := gatewayGroup, ""
				r.mapping(v, kf, []string{"group", "kind"}, nil, func(k string, v *yaml.Node) {
					if k == "group" {
						group = r.str(v, kf+".group")
					} else {
						kind = r.str(v, kf+".kind")
					}
				})
				if r.err == nil && kind == "" {
					r.failf(v, kf+".kind", "Required value")
				}
				l.kinds = append(l.kinds, group+"/"+kind)
			})
		case "namespaces":
			r.mapping(v, f+".namespaces", []string{"from", "selector"}, nil, func(k string, v *yaml.Node) {
				switch k {
				case "from":
					switch l.from = r.str(v, f+".namespaces.from"); l.from {
					case "Same", "All", "Selector":
					default:
						r.failf(v, f+".namespaces.from", "Unsupported value: %q: supported values: \"All\", \"Selector\", \"Same\"", l.from)
					}
				case "selector":
					r.mapping(v, f+".namespaces.selector", []string{"matchLabels"}, map[string]string{
						"matchExpressions": "selecting namespaces by expressions; give matchLabels",
					}, func(_ string, v *yaml.Node) {
						l.selector = r.labels(v, f+".namespaces.selector.matchLabels")
					})
				}
			})
		}
	})
}

func readTCPRoute(o *Object) (*tcpRouteAPI, error) {
	r := &reader{o: o}
	t := &tcpRouteAPI{Object: o}
	r.mapping(o.Spec, "spec", []string{"parentRefs", "rules", "useDefaultGateways"}, nil, func(k string, v *yaml.Node) {
		switch k {
		case "parentRefs":
			r.items(v, "spec.parentRefs", 0, maxParentRefs)
			r.list(v, "spec.parentRefs", func(i int, v *yaml.Node) {
				t.parents = append(t.parents, r.parentRef(v, fmt.Sprintf("spec.parentRefs[%d]", i)))
			})
		case "rules":
			r.items(v, "spec.rules", 1, maxRules(o.APIVersion))
			r.list(v, "spec.rules", func(i int, v *yaml.Node) {
				f := fmt.Sprintf("spec.rules[%d]", i)
				if i > 0 {
					r.failf(v, f, "a TCPRoute with several rules has no way to choose between them: give one rule with every backendRef")
					return
				}
				r.mapping(v, f, []string{"backendRefs", "name"}, nil, func(k string, v *yaml.Node) {
					if k != "backendRefs" {
						return
					}
					r.items(v, f+".backendRefs", 1, maxBackendRefs)
					r.list(v, f+".backendRefs", func(j int, v *yaml.Node) {
						t.backends = append(t.backends, r.backendRef(v, fmt.Sprintf("%s.backendRefs[%d]", f, j)))
					})
				})
			})
		}
	})
	if r.err == nil && len(t.parents) == 0 {
		r.failf(o.Spec, "spec.parentRefs", "missing: a TCPRoute attaches to a Gateway listener")
	}
	if r.err == nil && len(t.backends) == 0 {
		r.failf(o.Spec, "spec.rules[0].backendRefs", "Required value")
	}
	return t, r.err
}

func (r *reader) parentRef(n *yaml.Node, f string) parentRef {
	p := parentRef{node: n}
	group, groupNode := gatewayGroup, n
	r.mapping(n, f, []string{"name", "namespace", "sectionName", "port", "group", "kind"}, nil, func(k string, v *yaml.Node) {
		switch k {
		case "group":
			group, groupNode = r.str(v, f+".group"), v
		case "name":
			p.name = r.str(v, f+".name")
		case "namespace":
			p.namespace = r.str(v, f+".namespace")
		case "sectionName":
			p.section = r.str(v, f+".sectionName")
		case "port":
			p.port = r.apiPort(v, f+".port")
		case "kind":
			// A Service parent is the mesh (GAMMA): its clients'
			// connects are routed.
			switch s := r.str(v, f+".kind"); s {
			case "Gateway":
			case "Service":
				p.service = true
			default:
				r.failf(v, f+".kind", "%s: a TCPRoute's parent is a Gateway, or a Service for the mesh", s)
			}
		}
	})
	switch {
	case r.err != nil:
	case p.name == "":
		r.failf(n, f+".name", "Required value")
	case p.service && group != "" && groupNode != n:
		// The schema's default group makes kind: Service alone a
		// gateway.networking.k8s.io/Service; it is taken for the core
		// one, as its writer means, and only a group given is refused.
		r.failf(groupNode, f+".group", "%s/Service is no parent tcpshift knows: a Service parent (the mesh) has group \"\" (the core API group)", group)
	case !p.service && group != gatewayGroup:
		r.failf(groupNode, f+".group", "%s/Gateway is no parent tcpshift knows: a Gateway parent has group %s (the default)", cmpOr(group, `""`), gatewayGroup)
	}
	return p
}

func (r *reader) backendRef(n *yaml.Node, f string) backendRef {
	b := backendRef{weight: 1, kind: "Service", field: f, node: n}
	r.mapping(n, f, []string{"name", "namespace", "port", "weight", "group", "kind"}, nil, func(k string, v *yaml.Node) {
		switch k {
		case "name":
			b.name = r.str(v, f+".name")
		case "namespace":
			b.namespace = r.str(v, f+".namespace")
		case "port":
			b.port = r.apiPort(v, f+".port")
		case "weight":
			b.weight = r.apiWeight(v, f+".weight")
		case "group":
			b.group = r.str(v, f+".group")
		case "kind":
			b.kind = r.str(v, f+".kind")
		}
	})
	switch {
	case r.err != nil:
	case b.name == "":
		r.failf(n, f+".name", "Required value")
	case b.port == 0 && b.group == "" && b.kind == "Service":
		// The CRD's rule (x-kubernetes-validations) on every backendRef.
		r.failf(n, f, "Invalid value: \"object\": Must have port for Service reference")
	}
	return b
}

// apiInteger refuses a Gateway API integer field given as anything but a
// YAML integer ("3000" quoted is a string), as the CRD's schema does.
func (r *reader) apiInteger(n *yaml.Node, field string) bool {
	if r.err != nil || n == nil || n.Kind != yaml.ScalarNode || n.ShortTag() == "!!int" {
		return r.err == nil
	}
	r.failf(n, field, "Invalid value: %q: %s in body must be of type integer: %q", typeName(n), field, typeName(n))
	return false
}

// typeName is the JSON type of a YAML scalar, as the API server names it.
func typeName(n *yaml.Node) string {
	switch n.ShortTag() {
	case "!!str":
		return "string"
	case "!!float":
		return "number"
	case "!!bool":
		return "boolean"
	case "!!null":
		return "null"
	}
	return n.ShortTag()
}

// apiPort reads a Gateway API port (an integer 1-65535).
func (r *reader) apiPort(n *yaml.Node, field string) uint16 {
	if !r.apiInteger(n, field) {
		return 0
	}
	return r.port(n, field)
}

// apiWeight reads a backendRef's weight: 0 to 1000000.
func (r *reader) apiWeight(n *yaml.Node, field string) uint64 {
	if !r.apiInteger(n, field) {
		return 0
	}
	v, ok := r.integer(n, field, 64, "Invalid value: %q: must be an integer")
	switch {
	case !ok:
	case v < 0:
		r.failf(n, field, "Invalid value: %d: should be greater than or equal to 0", v)
	case v > maxAPIWeight:
		r.failf(n, field, "Invalid value: %d: should be less than or equal to %d", v, maxAPIWeight)
	}
	return uint64(max(v, 0))
}

func readReferenceGrant(o *Object) (*referenceGrant, error) {
	r := &reader{o: o}
	g := &referenceGrant{Object: o}
	r.mapping(o.Spec, "spec", []string{"from", "to"}, nil, func(side string, v *yaml.Node) {
		f := "spec." + side
		known, required := []string{"group", "kind", "namespace"}, 3
		if side == "to" {
			known, required = []string{"group", "kind", "name"}, 2 // no name: all of the kind
		}
		r.items(v, f, 1, maxGrantItems)
		r.list(v, f, func(i int, v *yaml.Node) {
			item := fmt.Sprintf("%s[%d]", f, i)
			fields := map[string]string{}
			r.mapping(v, item, known, nil, func(k string, v *yaml.Node) {
				fields[k] = r.str(v, item+"."+k)
			})
			for _, req := range known[:required] {
				if _, ok := fields[req]; !ok && r.err == nil {
					r.failf(v, item+"."+req, "Required value")
				}
			}
			if side == "from" {
				g.from = append(g.from, grantFrom{fields["group"], fields["kind"], fields["namespace"]})
			} else {
				g.to = append(g.to, grantTo{fields["group"], fields["kind"], fields["name"]})
			}
		})
	})
	if r.err == nil && (len(g.from) == 0 || len(g.to) == 0) {
		r.failf(o.Spec, "spec.from", "Required value: a ReferenceGrant needs from and to")
	}
	return g, r.err
}
