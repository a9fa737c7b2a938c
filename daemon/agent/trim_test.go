package agent

import (
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/tcpshift/tcpshift/config/kube"
)

// What the informers keep of Services and EndpointSlices derives the same
// services as the whole objects: endpoints ready, not ready, terminating,
// with conditions unset, on this node and another, with and without a pod,
// a Service with internalTrafficPolicy Local and client affinity, one
// with a UDP port beside its TCP one, an ExternalName one.
func TestTrimmedObjectsDeriveTheSame(t *testing.T) {
	local, yes, no := corev1.ServiceInternalTrafficPolicyLocal, true, false
	port, name, tcp := int32(8080), "http", corev1.ProtocolTCP
	timeout := int32(60)
	node, other, zone := "node1", "node2", "zone-a"
	meta := func(name string) metav1.ObjectMeta {
		return metav1.ObjectMeta{Namespace: "shop", Name: name, ResourceVersion: "7", Annotations: map[string]string{"a": "b"},
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}}
	}
	services := []*corev1.Service{{ObjectMeta: meta("echo"),
		Spec: corev1.ServiceSpec{ClusterIP: "10.96.0.5", ClusterIPs: []string{"10.96.0.5"}, InternalTrafficPolicy: &local,
			SessionAffinity: corev1.ServiceAffinityClientIP, SessionAffinityConfig: &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: &timeout}},
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP, NodePort: 30080}}},
	}, {ObjectMeta: meta("web"),
		Spec: corev1.ServiceSpec{ClusterIP: "10.96.0.6", SessionAffinity: corev1.ServiceAffinityClientIP,
			Ports: []corev1.ServicePort{{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP}, {Name: "http", Port: 81}}},
	}, {ObjectMeta: meta("ext"), Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "example.com",
		Ports: []corev1.ServicePort{{Name: "http", Port: 82}}}}}
	endpoint := func(addr string, ready, term *bool, node *string, ref *corev1.ObjectReference) discoveryv1.Endpoint {
		return discoveryv1.Endpoint{Addresses: []string{addr}, Conditions: discoveryv1.EndpointConditions{Ready: ready, Serving: ready, Terminating: term},
			NodeName: node, TargetRef: ref, Zone: &zone}
	}
	pod := &corev1.ObjectReference{Kind: "Pod", Namespace: "shop", Name: "p", UID: "u"}
	node3 := &corev1.ObjectReference{Kind: "Node", Name: "n"}
	eps := []discoveryv1.Endpoint{endpoint("10.1.0.1", &yes, &no, &node, pod), endpoint("10.1.0.2", nil, nil, &node, nil),
		endpoint("10.1.0.3", &no, &yes, &node, node3), endpoint("10.1.0.4", &no, &no, &node, nil), endpoint("10.1.0.5", &yes, nil, &other, nil),
		{Conditions: discoveryv1.EndpointConditions{Ready: &yes}}}
	slice := func(sliceName, svc string) *discoveryv1.EndpointSlice {
		m := meta(sliceName)
		m.Labels = map[string]string{discoveryv1.LabelServiceName: svc, "other": "x"}
		return &discoveryv1.EndpointSlice{ObjectMeta: m, AddressType: discoveryv1.AddressTypeIPv4,
			Ports: []discoveryv1.EndpointPort{{Name: &name, Port: &port, Protocol: &tcp}}, Endpoints: eps}
	}
	slices := []*discoveryv1.EndpointSlice{slice("echo-1", "echo"), slice("web-1", "web"), slice("ext-1", "ext")}
	whole := &kube.Snapshot{Services: services, Slices: slices, Pod: func(string, string) *corev1.Pod { return nil }}
	trimmed := &kube.Snapshot{Pod: whole.Pod}
	for _, s := range services {
		o, _ := trimService(s)
		trimmed.Services = append(trimmed.Services, o.(*slimService).service())
	}
	for _, s := range slices {
		o, _ := trimSlice(s)
		trimmed.Slices = append(trimmed.Slices, o.(*slimSlice).slice())
	}
	a, err := kube.Derive(whole, kube.Options{Node: node})
	if err != nil {
		t.Fatal(err)
	}
	b, err := kube.Derive(trimmed, kube.Options{Node: node})
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Config.Services) != 2 || a.Terminating != 2 {
		t.Fatalf("whole objects derive %d services with %d terminating endpoints, want 2 and 2", len(a.Config.Services), a.Terminating)
	}
	if !reflect.DeepEqual(a.Config, b.Config) || !reflect.DeepEqual(a.Origins, b.Origins) || a.Terminating != b.Terminating {
		t.Fatalf("whole objects derive %+v, trimmed ones %+v", a.Config.Services, b.Config.Services)
	}
	tl, _ := trimSlice(slices[0])
	if k, err := sliceService(tl); err != nil || len(k) != 1 || k[0] != "shop/echo" {
		t.Fatalf("a trimmed slice indexes as %v (%v), want shop/echo", k, err)
	}
	if key, err := cache.MetaNamespaceKeyFunc(tl); err != nil || key != "shop/echo-1" {
		t.Fatalf("a trimmed slice's store key %q (%v), want shop/echo-1", key, err)
	}
}
