package agent

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tcpshift/tcpshift/config/kube"
)

// What the informers keep of Services and EndpointSlices derives the same
// services as the whole objects.
func TestTrimmedObjectsDeriveTheSame(t *testing.T) {
	local, ready, term := corev1.ServiceInternalTrafficPolicyLocal, true, false
	port, name, tcp := int32(8080), "http", corev1.ProtocolTCP
	timeout := int32(60)
	node := "node1"
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "echo", Annotations: map[string]string{"a": "b"},
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}},
		Spec: corev1.ServiceSpec{ClusterIP: "10.96.0.5", ClusterIPs: []string{"10.96.0.5"}, InternalTrafficPolicy: &local,
			SessionAffinity: corev1.ServiceAffinityClientIP, SessionAffinityConfig: &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: &timeout}},
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP, NodePort: 30080}}},
	}
	sl := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "shop", Name: "echo-1", Labels: map[string]string{discoveryv1.LabelServiceName: "echo", "other": "x"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: &name, Port: &port, Protocol: &tcp}},
		Endpoints: []discoveryv1.Endpoint{{Addresses: []string{"10.1.0.1"}, Conditions: discoveryv1.EndpointConditions{Ready: &ready, Terminating: &term},
			NodeName: &node, TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: "shop", Name: "p"}, Zone: &node}},
	}
	derive := func(s *corev1.Service, l *discoveryv1.EndpointSlice) string {
		res, err := kube.Derive(&kube.Snapshot{Services: []*corev1.Service{s}, Slices: []*discoveryv1.EndpointSlice{l},
			Pod: func(string, string) *corev1.Pod { return nil }}, kube.Options{Node: node})
		if err != nil {
			t.Fatal(err)
		}
		c := res.Config.Services
		if len(c) != 1 {
			t.Fatalf("%d services, want 1", len(c))
		}
		return c[0].Name + " " + c[0].Listen.String() + " " + c[0].Affinity.TTL.String() + " " + c[0].Subsets[0].Endpoints[0].String()
	}
	ts, _ := trimService(svc)
	tl, _ := trimSlice(sl)
	whole, trimmed := derive(svc, sl), derive(ts.(*corev1.Service), tl.(*discoveryv1.EndpointSlice))
	if whole != trimmed || whole != "echo.shop-80 10.96.0.5:80 1m0s 10.1.0.1:8080" {
		t.Fatalf("whole objects derive %q, trimmed ones %q", whole, trimmed)
	}
	if k, err := sliceService(tl); err != nil || len(k) != 1 || k[0] != "shop/echo" {
		t.Fatalf("a trimmed slice indexes as %v (%v), want shop/echo", k, err)
	}
	if m := ts.(*corev1.Service).ObjectMeta; m.ManagedFields != nil || m.Annotations != nil {
		t.Fatalf("kept %v and %v", m.ManagedFields, m.Annotations)
	}
}
