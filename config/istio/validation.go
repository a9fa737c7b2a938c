package istio

import (
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Istio's own rules for VirtualService and DestinationRule, as istiod's
// validation webhook applies them (pkg/config/validation), with its
// messages: a file istiod would refuse is refused here in the same words,
// at the field's line.

var wildcardLabelRE = regexp.MustCompile(`^(\*|\*-?[a-z0-9]([-a-z0-9]*[a-z0-9])?|[a-z0-9]([-a-z0-9]*[a-z0-9])?)$`)

func isDNS1123Label(s string) bool { return len(s) <= 63 && dnsLabelRE.MatchString(s) }

// domainProblem is istiod's check of a host that may start with a
// wildcard label (*.example.com), or "".
func domainProblem(domain string) string {
	switch {
	case len(domain) > 255:
		return fmt.Sprintf("domain name %q too long (max 255)", domain)
	case domain == "":
		return "empty domain name not allowed"
	}
	first, rest, more := strings.Cut(domain, ".")
	if len(first) > 63 || !wildcardLabelRE.MatchString(first) {
		return fmt.Sprintf("domain name %q invalid (label %q invalid)", domain, first)
	}
	if !more {
		return ""
	}
	labels := strings.Split(rest, ".")
	if _, err := strconv.Atoi(labels[len(labels)-1]); err == nil {
		return fmt.Sprintf("domain name %q invalid (top level domain %q cannot be all-numeric)", rest, labels[len(labels)-1])
	}
	for i, l := range labels {
		if i == len(labels)-1 && l == "" {
			return "" // a trailing dot: istio.io.
		}
		if !isDNS1123Label(l) {
			return fmt.Sprintf("domain name %q invalid (label %q invalid)", rest, l)
		}
	}
	return ""
}

// subsetNameProblem is istiod's check of a subset's name, or "".
func subsetNameProblem(name string) string {
	switch {
	case name == "":
		return "subset name cannot be empty"
	case !isDNS1123Label(name):
		return "subset name is invalid: " + name
	}
	return ""
}

// istioPort reads a port number as istiod checks it (1..65535).
func (r *reader) istioPort(n *yaml.Node, field string) uint16 {
	p, ok := r.integer(n, field, 64, "%q is not a port number")
	if ok && (p < 1 || p > 65535) {
		r.failf(n, field, "port number %d must be in the range 1..65535", p)
	}
	return uint16(min(max(p, 0), 65535))
}

// istioWeight reads a route destination's weight as istiod checks it.
func (r *reader) istioWeight(n *yaml.Node, field string) uint64 {
	w, ok := r.integer(n, field, 32, "%q is not a weight (a whole number)")
	if ok && w < 0 {
		r.failf(n, field, "weight %d < 0", w)
	}
	return uint64(max(w, 0))
}

// checkDestinationRule applies istiod's rules to what readDestinationRule read.
func (r *reader) checkDestinationRule(dr *destinationRule) {
	if msg := domainProblem(dr.host); msg != "" {
		at := get(dr.Spec, "host")
		if at == nil {
			at = dr.Spec
		}
		r.failf(at, "spec.host", "%s", msg)
	}
	seen := map[string]bool{}
	for i, s := range dr.subsets {
		f := fmt.Sprintf("spec.subsets[%d].name", i)
		if seen[s.name] {
			r.failf(s.node, f, "duplicate subset names: %s", s.name)
		}
		seen[s.name] = true
		if msg := subsetNameProblem(s.name); msg != "" {
			r.failf(s.node, f, "%s", msg)
		}
	}
	if tp := get(dr.Spec, "trafficPolicy"); tp != nil && tp.Kind == yaml.MappingNode && len(tp.Content) == 0 {
		r.failf(tp, "spec.trafficPolicy", "traffic policy must have at least one field")
	}
}

// checkVirtualService applies istiod's rules to what readVirtualService read.
func (r *reader) checkVirtualService(vs *virtualService) {
	spec := vs.Spec
	if len(vs.hosts) == 0 {
		// istiod takes a VirtualService with no hosts for a delegate.
		switch {
		case len(vs.gateways) > 0:
			r.failf(get(spec, "gateways"), "spec.gateways", "delegate virtual service must have no gateways specified")
		case len(vs.tcp) > 0:
			r.failf(get(spec, "tcp"), "spec.tcp", "delegate virtual service must have no tcp route specified")
		}
	}
	mesh := len(vs.gateways) == 0 || contains(vs.gateways, "mesh")
	valid := true
	for i, h := range vs.hosts {
		f := fmt.Sprintf("spec.hosts[%d]", i)
		if msg := domainProblem(h); msg != "" {
			if _, err := netip.ParseAddr(h); err != nil {
				r.failf(get(spec, "hosts"), f, "%s", msg)
				valid = false
			}
		} else if mesh && h == "*" {
			r.failf(get(spec, "hosts"), f, "wildcard host * is not allowed for virtual services bound to the mesh gateway")
			valid = false
		}
	}
	for i := 0; valid && i < len(vs.hosts); i++ {
		for j := i + 1; j < len(vs.hosts); j++ {
			if hostsOverlap(vs.hosts[i], vs.hosts[j]) {
				r.failf(get(spec, "hosts"), "spec.hosts", "duplicate hosts in virtual service: %s & %s", vs.hosts[i], vs.hosts[j])
			}
		}
	}
	if len(vs.tcp) == 0 {
		r.failf(spec, "spec", "http, tcp or tls must be provided in virtual service")
	}
}

// checkTCPRoute applies istiod's rules to a tcp route's destinations.
func (r *reader) checkTCPRoute(t tcpRoute) {
	if len(t.route) == 0 {
		r.failf(t.node, t.field+".route", "TCP route is required")
		return
	}
	var total uint64
	for _, d := range t.route {
		f := d.field + ".destination"
		switch {
		case d.host == "*":
			r.failf(d.node, f+".host", "invalid destination host *")
		case domainProblem(d.host) != "":
			r.failf(d.node, f+".host", "%s", domainProblem(d.host))
		case d.subset != "" && subsetNameProblem(d.subset) != "":
			r.failf(d.node, f+".subset", "%s", subsetNameProblem(d.subset))
		}
		total += d.weight
	}
	if len(t.route) > 1 && total == 0 {
		r.failf(get(t.node, "route"), t.field+".route", "total destination weight = 0")
	}
}

// hostsOverlap is istiod's test for duplicate hosts: the same, or one a
// wildcard that covers the other.
func hostsOverlap(a, b string) bool {
	covers := func(w, h string) bool {
		return w == "*" || strings.HasPrefix(w, "*") && strings.HasSuffix(h, w[1:])
	}
	return a == b || covers(a, b) || covers(b, a)
}
