package kube

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/tcpshift/tcpshift/config"
	"github.com/tcpshift/tcpshift/config/istio"
)

// A Gateway API Gateway is the node's to serve once its class is
// tcpshift's: a TCPRoute on it splits every address of the node at the
// listener's port between the backends' pods, in the scope's mode; a
// class turning tcpshift's re-derives the routes (Lookup.Classes).
func TestDeriveGatewayOfClass(t *testing.T) {
	gw := `apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  gatewayClassName: tcpshift
  listeners:
  - {name: tcp, port: 31400, protocol: TCP}
---
apiVersion: gateway.networking.k8s.io/v1
kind: TCPRoute
metadata: {name: tcp-echo}
spec:
  parentRefs:
  - {name: gw}
  rules:
  - backendRefs:
    - {name: tcp-echo-v1, port: 9000, weight: 80}
    - {name: tcp-echo-v2, port: 9000, weight: 20}
`
	var classes []string
	s := &Snapshot{
		Services: []*corev1.Service{service("tcp-echo-v1", "10.96.0.21", 9000), service("tcp-echo-v2", "10.96.0.22", 9000)},
		Slices: []*discoveryv1.EndpointSlice{
			slice("tcp-echo-v1", 9000, ep{"v1-a", "10.244.1.2", true, false}),
			slice("tcp-echo-v2", 9000, ep{"v2-a", "10.244.2.2", true, false}),
		},
		Pod:     pods(nil),
		Objects: objects(t, gw),
	}
	d := NewDeriver(Options{OnlyRouted: true, Gateways: &istio.GatewayScope{Mode: config.ModeProxy}})
	res, err := d.Full(s)
	if err != nil {
		t.Fatal(err)
	}
	if got := describe(res.Config); got != "" || len(res.Rejected) != 0 {
		t.Fatalf("with no class of tcpshift's: services\n%s\nrejected %v; want none of either", got, res.Rejected)
	}
	classes = []string{"tcpshift"}
	l := Lookup{Service: func(string, string) *corev1.Service { return nil }, Slices: func(string, string) []*discoveryv1.EndpointSlice { return nil },
		Pod: s.Pod, Objects: func() []*istio.Object { return s.Objects }, Classes: func() []string { return classes }}
	if res, err = d.Update(l, Changes{Objects: true}); err != nil {
		t.Fatal(err)
	}
	want := "tcp-echo [::]:31400 proxy: tcp-echo-v1=80[10.244.1.2:9000] tcp-echo-v2=20[10.244.2.2:9000]\n"
	if got := describe(res.Config); got != want || !res.Changed["tcp-echo"] {
		t.Fatalf("once the class is tcpshift's:\n%s\nwant\n%s(changed %v)", got, want, res.Changed)
	}
	if len(res.Listeners) != 1 || res.Listeners[0].Port != 31400 {
		t.Fatalf("listeners %+v", res.Listeners)
	}
	s.Classes = classes
	if full, err := NewDeriver(Options{OnlyRouted: true, Gateways: &istio.GatewayScope{Mode: config.ModeProxy}}).Full(s); err != nil || describe(full.Config) != want {
		t.Fatalf("a full derivation: %v\n%s", err, describe(full.Config))
	}
}
