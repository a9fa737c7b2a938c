package status

import (
	"context"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// maxAddresses is the Gateway API's bound on a Gateway's status.addresses.
const maxAddresses = 16

// listNodes reads the nodes' addresses, which a Gateway is served at (the
// agent, a DaemonSet, serves gateways on every node): at a term's start
// and every Resync. A failed list keeps the last one.
func (w *Writer) listNodes(ctx context.Context) {
	if w.o.Kube == nil {
		return
	}
	list, err := w.o.Kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		w.o.Log.Debug("nodes not listed; Gateway addresses stay as they were until the next resync", "err", err)
		return
	}
	w.nodes = nodeAddresses(list.Items)
}

// nodeAddresses are the nodes' InternalIP and ExternalIP addresses, nodes
// by name, each address once, at most maxAddresses of them.
func nodeAddresses(nodes []corev1.Node) []string {
	slices.SortFunc(nodes, func(a, b corev1.Node) int { return strings.Compare(a.Name, b.Name) })
	var out []string
	for _, n := range nodes {
		for _, a := range n.Status.Addresses {
			if a.Type != corev1.NodeInternalIP && a.Type != corev1.NodeExternalIP {
				continue
			}
			ip, err := netip.ParseAddr(a.Address)
			if err != nil || slices.Contains(out, ip.Unmap().String()) {
				continue
			}
			if out = append(out, ip.Unmap().String()); len(out) == maxAddresses {
				return out
			}
		}
	}
	return out
}
