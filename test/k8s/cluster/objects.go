//go:build k8s

package cluster

import (
	"context"
	"net"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// There is no kubelet, scheduler or controller manager: these write what
// they would, so that informers see nodes, running pods and endpoint
// slices as in a real cluster.

// AddNode registers a Node as its kubelet would: Ready, with its pod CIDRs
// and internal addresses.
func (c *Cluster) AddNode(t testing.TB, name string, podCIDRs []string, addrs ...string) *corev1.Node {
	t.Helper()
	ctx := context.Background()
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"kubernetes.io/hostname": name}}}
	if len(podCIDRs) > 0 {
		node.Spec.PodCIDR, node.Spec.PodCIDRs = podCIDRs[0], podCIDRs
	}
	created, err := c.Clientset.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create node %s: %v", name, err)
	}
	for _, a := range addrs {
		created.Status.Addresses = append(created.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: a})
	}
	created.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, LastTransitionTime: metav1.Now()}}
	updated, err := c.Clientset.CoreV1().Nodes().UpdateStatus(ctx, created, metav1.UpdateOptions{})
	if err != nil {
		t.Fatalf("node %s status: %v", name, err)
	}
	return updated
}

// AddPod creates a pod bound to node and gives it the status its kubelet
// would once it runs: Running, Ready, with ips (one per family, the
// first is status.podIP).
func (c *Cluster) AddPod(t testing.TB, namespace, name, node string, labels map[string]string, ips ...string) *corev1.Pod {
	t.Helper()
	ctx := context.Background()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace, Labels: labels},
		Spec: corev1.PodSpec{
			NodeName:   node,
			Containers: []corev1.Container{{Name: "app", Image: "tcp-echo"}},
		},
	}
	created, err := c.Clientset.CoreV1().Pods(namespace).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create pod %s/%s: %v", namespace, name, err)
	}
	created.Status.Phase = corev1.PodRunning
	for _, ip := range ips {
		created.Status.PodIPs = append(created.Status.PodIPs, corev1.PodIP{IP: ip})
	}
	if len(ips) > 0 {
		created.Status.PodIP = ips[0]
	}
	now := metav1.Now()
	created.Status.StartTime = &now
	created.Status.Conditions = []corev1.PodCondition{
		{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: now},
		{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
		{Type: corev1.ContainersReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
	}
	updated, err := c.Clientset.CoreV1().Pods(namespace).UpdateStatus(ctx, created, metav1.UpdateOptions{})
	if err != nil {
		t.Fatalf("pod %s/%s status: %v", namespace, name, err)
	}
	return updated
}

// SetPodReady sets a pod's Ready and ContainersReady conditions, as its
// kubelet does when a readiness probe passes or fails.
func (c *Cluster) SetPodReady(t testing.TB, namespace, name string, ready bool) *corev1.Pod {
	t.Helper()
	ctx := context.Background()
	pod, err := c.Clientset.CoreV1().Pods(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get pod %s/%s: %v", namespace, name, err)
	}
	status := corev1.ConditionFalse
	if ready {
		status = corev1.ConditionTrue
	}
	for i, cond := range pod.Status.Conditions {
		if cond.Type == corev1.PodReady || cond.Type == corev1.ContainersReady {
			pod.Status.Conditions[i].Status = status
			pod.Status.Conditions[i].LastTransitionTime = metav1.Now()
		}
	}
	updated, err := c.Clientset.CoreV1().Pods(namespace).UpdateStatus(ctx, pod, metav1.UpdateOptions{})
	if err != nil {
		t.Fatalf("pod %s/%s status: %v", namespace, name, err)
	}
	return updated
}

// Endpoint is one address of an EndpointSlice: a pod's IP on a node.
type Endpoint struct {
	IP    string
	Node  string
	Pod   string // the pod's name, for targetRef; empty for none
	Ready bool
	// Terminating: the pod is shutting down (its deletion began).
	Terminating bool
}

// AddEndpointSlice creates an EndpointSlice for service as the EndpointSlice
// controller would (label kubernetes.io/service-name, one port), of the
// address family of the first endpoint's IP (IPv4 when there is none).
func (c *Cluster) AddEndpointSlice(t testing.TB, namespace, name, service, portName string, port int32, endpoints ...Endpoint) *discoveryv1.EndpointSlice {
	t.Helper()
	family := discoveryv1.AddressTypeIPv4
	if len(endpoints) > 0 && net.ParseIP(endpoints[0].IP).To4() == nil {
		family = discoveryv1.AddressTypeIPv6
	}
	tcp := corev1.ProtocolTCP
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: namespace,
			Labels: map[string]string{discoveryv1.LabelServiceName: service, discoveryv1.LabelManagedBy: "endpointslice-controller.k8s.io"},
		},
		AddressType: family,
		Ports:       []discoveryv1.EndpointPort{{Name: &portName, Port: &port, Protocol: &tcp}},
	}
	slice.Endpoints = SliceEndpoints(namespace, endpoints...)
	created, err := c.Clientset.DiscoveryV1().EndpointSlices(namespace).Create(context.Background(), slice, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create EndpointSlice %s/%s: %v", namespace, name, err)
	}
	return created
}

// SetEndpoints replaces an EndpointSlice's endpoints, as the EndpointSlice
// controller does when pods come, go, turn ready or start terminating.
func (c *Cluster) SetEndpoints(t testing.TB, namespace, name string, endpoints ...Endpoint) {
	t.Helper()
	ctx := context.Background()
	slice, err := c.Clientset.DiscoveryV1().EndpointSlices(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get EndpointSlice %s/%s: %v", namespace, name, err)
	}
	slice.Endpoints = SliceEndpoints(namespace, endpoints...)
	if _, err := c.Clientset.DiscoveryV1().EndpointSlices(namespace).Update(ctx, slice, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("update EndpointSlice %s/%s: %v", namespace, name, err)
	}
}

// SliceEndpoints makes an EndpointSlice's endpoints with their conditions
// as the controller sets them (serving: ready, or terminating and ready).
func SliceEndpoints(namespace string, endpoints ...Endpoint) []discoveryv1.Endpoint {
	var out []discoveryv1.Endpoint
	for _, e := range endpoints {
		ready, terminating := e.Ready && !e.Terminating, e.Terminating
		serving := e.Ready
		ep := discoveryv1.Endpoint{Addresses: []string{e.IP}, Conditions: discoveryv1.EndpointConditions{Ready: &ready, Serving: &serving, Terminating: &terminating}}
		if e.Node != "" {
			node := e.Node
			ep.NodeName = &node
		}
		if e.Pod != "" {
			ep.TargetRef = &corev1.ObjectReference{Kind: "Pod", Namespace: namespace, Name: e.Pod}
		}
		out = append(out, ep)
	}
	return out
}
