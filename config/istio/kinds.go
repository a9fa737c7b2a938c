package istio

import (
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/tcpshift/tcpshift/config"
)

const (
	istioGroup   = "networking.istio.io"
	gatewayGroup = "gateway.networking.k8s.io"
)

// The kinds tcpshift reads, by Group/Kind.
const (
	KindGateway         = istioGroup + "/Gateway"
	KindVirtualService  = istioGroup + "/VirtualService"
	KindDestinationRule = istioGroup + "/DestinationRule"
	KindServiceEntry    = istioGroup + "/ServiceEntry"
	KindWorkloadEntry   = istioGroup + "/WorkloadEntry"
	KindAPIGateway      = gatewayGroup + "/Gateway"
	KindTCPRoute        = gatewayGroup + "/TCPRoute"
	KindReferenceGrant  = gatewayGroup + "/ReferenceGrant"
)

// versions are the API versions understood per group.
var versions = map[string][]string{
	istioGroup:   {"v1", "v1beta1", "v1alpha3"},
	gatewayGroup: {"v1", "v1beta1", "v1alpha2"},
}

// kindVersions are the versions a kind of the Gateway API is served in
// (its CRD's), where they are fewer than its group's: a TCPRoute was
// never v1beta1, and a Gateway is no longer v1alpha2.
var kindVersions = map[string][]string{
	KindAPIGateway: {"v1", "v1beta1"},
	KindTCPRoute:   {"v1", "v1alpha2"},
}

// kinds lists the kinds of each group tcpshift reads.
var kinds = map[string][]string{
	istioGroup:   {"Gateway", "VirtualService", "DestinationRule", "ServiceEntry", "WorkloadEntry"},
	gatewayGroup: {"Gateway", "TCPRoute", "ReferenceGrant"},
}

// Kinds as `get` names them, with kubectl's short names.
var kindNames = []struct {
	Kind        string
	Names       []string // lower-case names and short names
	GatewayOnly bool     // Gateway API's gateway: named with its group
}{
	{KindVirtualService, []string{"virtualservice", "virtualservices", "vs"}, false},
	{KindDestinationRule, []string{"destinationrule", "destinationrules", "dr"}, false},
	{KindGateway, []string{"gateway", "gateways", "gw"}, false},
	{KindServiceEntry, []string{"serviceentry", "serviceentries", "se"}, false},
	{KindWorkloadEntry, []string{"workloadentry", "workloadentries", "we"}, false},
	{KindTCPRoute, []string{"tcproute", "tcproutes"}, false},
	{KindReferenceGrant, []string{"referencegrant", "referencegrants", "refgrant"}, false},
	{KindAPIGateway, []string{"gateway.gateway.networking.k8s.io", "gateways.gateway.networking.k8s.io"}, true},
}

// KindByName resolves a kind as `get` is given it (kubectl's names).
func KindByName(name string) (string, error) {
	lower := strings.ToLower(name)
	for _, k := range kindNames {
		if slices.Contains(k.Names, lower) {
			return k.Kind, nil
		}
	}
	var all []string
	for _, k := range kindNames {
		all = append(all, k.Names[0])
	}
	return "", fmt.Errorf("unknown kind %q (kinds: %s; short names vs, dr, gw, se, we)", name, strings.Join(all, ", "))
}

// known refuses kinds and versions tcpshift does not read, in words that
// say what to do instead.
func known(o *Object, root *yaml.Node) error {
	group, kind := groupOf(o.Kind), kindName(o.Kind)
	fail := func(field, format string, args ...any) error {
		return &config.Error{Path: o.Path, Line: root.Line, Field: field, Msg: fmt.Sprintf(format, args...)}
	}
	if vs, ok := versions[group]; ok && slices.Contains(kinds[group], kind) {
		version := strings.TrimPrefix(o.APIVersion, group+"/")
		if !slices.Contains(vs, version) {
			return fail("apiVersion", "%s: version %q of %s is not understood (versions: %s)", o.APIVersion, version, group, strings.Join(vs, ", "))
		}
		if kv, ok := kindVersions[o.Kind]; ok && !slices.Contains(kv, version) {
			return fail("apiVersion", "no matches for kind %q in version %q: %s is served as %s", kind, o.APIVersion, kind, strings.Join(kv, ", "))
		}
		return nil
	}
	switch kind {
	case "Deployment", "StatefulSet", "DaemonSet", "Pod", "ReplicaSet", "Job":
		labels := podLabels(root)
		hint := "a WorkloadEntry with the labels its subsets select"
		if len(labels) > 0 {
			hint = "a WorkloadEntry with labels " + labels.String()
		}
		return fail("kind", "%s %s: tcpshift does not run Kubernetes workloads: start the backend and declare it with %s, its address and ports", kind, o.Name, hint)
	case "Service":
		sel := mapLabels(get(get(root, "spec"), "selector"))
		if len(sel) == 0 {
			return fail("kind", "Service %s: tcpshift does not read Kubernetes Services: declare host %s with a ServiceEntry (hosts, ports, workloadSelector) and its workloads with WorkloadEntries", o.Name, o.Name)
		}
		return fail("kind", "Service %s: tcpshift does not read Kubernetes Services: declare host %s with a ServiceEntry (hosts, ports, workloadSelector: {labels: %s}) and its workloads with WorkloadEntries with labels %s", o.Name, o.Name, sel, sel)
	case "ServiceAccount", "ConfigMap", "Secret", "Namespace":
		return fail("kind", "%s %s: not a traffic object, tcpshift has no use for it: leave it out", kind, o.Name)
	}
	return fail("kind", "%s (%s) is not a kind tcpshift reads (kinds: Gateway, VirtualService, DestinationRule, ServiceEntry, WorkloadEntry of %s; Gateway, TCPRoute, ReferenceGrant of %s; or tcpshift's services:)", kind, o.APIVersion, istioGroup, gatewayGroup)
}

func groupOf(groupKind string) string {
	g, _, _ := strings.Cut(groupKind, "/")
	return g
}

// podLabels returns a workload's pod template labels (or a Pod's own).
func podLabels(root *yaml.Node) Labels {
	n := get(get(get(get(root, "spec"), "template"), "metadata"), "labels")
	if n == nil {
		n = get(get(root, "metadata"), "labels")
	}
	return mapLabels(n)
}

// mapLabels reads a mapping of labels, as a hint needs them (nothing when
// n is no mapping).
func mapLabels(n *yaml.Node) Labels {
	l := Labels{}
	if n != nil && n.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(n.Content); i += 2 {
			l[n.Content[i].Value] = n.Content[i+1].Value
		}
	}
	return l
}

// Labels are an object's labels, or a selector's.
type Labels map[string]string

// Matches reports whether l has every label of sel.
func (l Labels) Matches(sel Labels) bool {
	for k, v := range sel {
		if l[k] != v {
			return false
		}
	}
	return true
}

// String writes labels as YAML flow: {app: tcp-echo, version: v1}.
func (l Labels) String() string {
	keys := make([]string, 0, len(l))
	for k := range l {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + ": " + l[k]
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

var dnsLabelRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
var dnsSubdomainRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)

// dnsName checks an object name as Kubernetes does (a DNS subdomain).
func dnsName(s string) string {
	if len(s) > 253 || !dnsSubdomainRE.MatchString(s) {
		return "is not a valid name: lower-case letters, digits, '-' and '.', at most 253 characters"
	}
	return ""
}
