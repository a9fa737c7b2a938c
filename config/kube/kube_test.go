package kube

import (
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tcpshift/tcpshift/config"
	"github.com/tcpshift/tcpshift/config/istio"
)

func service(name, ip string, ports ...int32) *corev1.Service {
	s := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name}, Spec: corev1.ServiceSpec{ClusterIP: ip, ClusterIPs: []string{ip}}}
	for _, p := range ports {
		s.Spec.Ports = append(s.Spec.Ports, corev1.ServicePort{Name: "tcp", Port: p, Protocol: corev1.ProtocolTCP})
	}
	return s
}

type ep struct {
	pod, ip            string
	ready, terminating bool
}

func slice(svc string, port int32, eps ...ep) *discoveryv1.EndpointSlice {
	name, proto := "tcp", corev1.ProtocolTCP
	sl := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "default", Name: svc + "-abc", Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: &name, Port: &port, Protocol: &proto}},
	}
	for _, e := range eps {
		sl.Endpoints = append(sl.Endpoints, discoveryv1.Endpoint{
			Addresses:  []string{e.ip},
			Conditions: discoveryv1.EndpointConditions{Ready: &e.ready, Terminating: &e.terminating},
			TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: "default", Name: e.pod},
		})
	}
	return sl
}

func pods(versions map[string]string) func(ns, name string) *corev1.Pod {
	return func(ns, name string) *corev1.Pod {
		v, ok := versions[name]
		if !ok {
			return nil
		}
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"app": "tcp-echo", "version": v}}}
	}
}

const routes = `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: tcp-echo-destination}
spec:
  host: tcp-echo
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: tcp-echo}
spec:
  hosts: [tcp-echo]
  tcp:
  - route:
    - destination: {host: tcp-echo, port: {number: 9000}, subset: v1}
      weight: 80
    - destination: {host: tcp-echo, port: {number: 9000}, subset: v2}
      weight: 20
`

func objects(t *testing.T, text string) []*istio.Object {
	t.Helper()
	docs, err := istio.Decode("routes.yaml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	var out []*istio.Object
	for _, d := range docs {
		out = append(out, d.Object)
	}
	return out
}

func describe(c *config.Config) string {
	var b strings.Builder
	for _, s := range c.Services {
		fmt.Fprintf(&b, "%s %s %s:", s.Name, s.Listen, s.Mode)
		for _, sub := range s.Subsets {
			fmt.Fprintf(&b, " %s=%d%v", sub.Name, sub.Weight, sub.Endpoints)
		}
		b.WriteString("\n")
	}
	return b.String()
}

func snapshot(t *testing.T, objs string) *Snapshot {
	return &Snapshot{
		Services: []*corev1.Service{service("tcp-echo", "10.96.0.20", 9000), service("other", "10.96.0.30", 8080)},
		Slices: []*discoveryv1.EndpointSlice{
			slice("tcp-echo", 9000,
				ep{"v1-a", "10.244.1.2", true, false},
				ep{"v2-a", "10.244.2.2", true, false},
				ep{"v2-b", "10.244.3.2", false, true},  // terminating
				ep{"v2-c", "10.244.3.3", false, false}, // not ready
			),
			slice("other", 8081, ep{"o", "10.244.1.9", true, false}),
		},
		Pod:     pods(map[string]string{"v1-a": "v1", "v2-a": "v2", "v2-b": "v2", "v2-c": "v2"}),
		Objects: objects(t, objs),
	}
}

func TestDerive(t *testing.T) {
	res, err := Derive(snapshot(t, routes), Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := "other.default-8080 10.96.0.30:8080 connect: endpoints=1[10.244.1.9:8081]\n" +
		"tcp-echo 10.96.0.20:9000 connect: v1=80[10.244.1.2:9000] v2=20[10.244.2.2:9000] terminating=0[10.244.3.2:9000]\n"
	if got := describe(res.Config); got != want {
		t.Fatalf("services:\n%s\nwant:\n%s", got, want)
	}
	if res.Terminating != 1 || len(res.Rejected) != 0 {
		t.Fatalf("terminating %d, rejected %v", res.Terminating, res.Rejected)
	}
	if got := res.Origins["tcp-echo"]; !strings.Contains(got, "VirtualService default/tcp-echo") || !strings.Contains(got, "Service default/tcp-echo") {
		t.Fatalf("origins of tcp-echo: %q", got)
	}

	res, err = Derive(snapshot(t, routes), Options{OnlyRouted: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := describe(res.Config); strings.Contains(got, "other") {
		t.Fatalf("--only-routed served an unrouted Service:\n%s", got)
	}
}

// A subset with no ready pod is served empty, not refused: pods come and go.
func TestDeriveSubsetWithoutPods(t *testing.T) {
	s := snapshot(t, routes)
	s.Pod = pods(map[string]string{"v1-a": "v1"})
	res, err := Derive(s, Options{OnlyRouted: true})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := describe(res.Config), "tcp-echo 10.96.0.20:9000 connect: v1=80[10.244.1.2:9000] v2=20[]\n"; got != want {
		t.Fatalf("services:\n%s\nwant:\n%s", got, want)
	}
}

// One bad object is left out, named, and the rest still served.
func TestDeriveRejectsOneObject(t *testing.T) {
	bad := routes + `---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: broken}
spec:
  hosts: [nowhere]
  tcp:
  - route:
    - destination: {host: nowhere, port: {number: 1}}
`
	res, err := Derive(snapshot(t, bad), Options{OnlyRouted: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Rejected) != 1 || res.Rejected[0].Key.Name != "broken" || !strings.Contains(res.Rejected[0].Err.Error(), "host nowhere is not declared") {
		t.Fatalf("rejected: %v", res.Rejected)
	}
	if got := describe(res.Config); !strings.HasPrefix(got, "tcp-echo 10.96.0.20:9000") {
		t.Fatalf("services:\n%s", got)
	}
}

func TestPlainNameFits(t *testing.T) {
	n := plainName(istio.Key{Namespace: strings.Repeat("n", 63), Name: strings.Repeat("s", 63)}, 65535)
	if len(n) != config.MaxNameLen {
		t.Fatalf("%q: %d bytes", n, len(n))
	}
}

// meshSnapshot is the Service tcp-echo and its versions' Services, each
// with a ready pod, and the route objects text.
func meshSnapshot(t *testing.T, text string) *Snapshot {
	return &Snapshot{
		Services: []*corev1.Service{service("tcp-echo", "10.96.0.20", 9000), service("tcp-echo-v1", "10.96.0.21", 9000), service("tcp-echo-v2", "10.96.0.22", 9000)},
		Slices: []*discoveryv1.EndpointSlice{
			slice("tcp-echo-v1", 9000, ep{"v1-a", "10.244.1.2", true, false}),
			slice("tcp-echo-v2", 9000, ep{"v2-a", "10.244.2.2", true, false}),
		},
		Pod:     pods(nil),
		Objects: objects(t, text),
	}
}

// A TCPRoute whose parent is a Service (the Gateway API's mesh, GAMMA)
// splits that Service's ClusterIP between its backendRefs' pods.
func TestDeriveMeshTCPRoute(t *testing.T) {
	route := `apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata: {name: tcp-echo}
spec:
  parentRefs:
  - {group: "", kind: Service, name: tcp-echo, port: 9000}
  rules:
  - backendRefs:
    - {name: tcp-echo-v1, port: 9000, weight: 80}
    - {name: tcp-echo-v2, port: 9000, weight: 20}
`
	res, err := Derive(meshSnapshot(t, route), Options{OnlyRouted: true})
	if err != nil {
		t.Fatal(err)
	}
	want := "tcp-echo 10.96.0.20:9000 connect: tcp-echo-v1=80[10.244.1.2:9000] tcp-echo-v2=20[10.244.2.2:9000]\n"
	if got := describe(res.Config); got != want || len(res.Rejected) != 0 {
		t.Fatalf("services:\n%s\nwant:\n%s\nrejected %v", got, want, res.Rejected)
	}
}

// Two TCPRoutes on one Service port (GAMMA) are both accepted; the older
// is served and the newer told so in a note, as on a Gateway's listener,
// not refused.
func TestDeriveMeshTCPRoutesOldestServed(t *testing.T) {
	route := func(name, at, to string) string {
		return `apiVersion: gateway.networking.k8s.io/v1
kind: TCPRoute
metadata: {name: ` + name + `, creationTimestamp: "` + at + `"}
spec:
  parentRefs:
  - {group: "", kind: Service, name: tcp-echo, port: 9000}
  rules:
  - backendRefs:
    - {name: ` + to + `, port: 9000}
`
	}
	text := route("newer", "2026-06-01T11:00:00Z", "tcp-echo-v1") + "---\n" + route("older", "2026-06-01T10:00:00Z", "tcp-echo-v2")
	res, err := Derive(meshSnapshot(t, text), Options{OnlyRouted: true})
	if err != nil {
		t.Fatal(err)
	}
	want := "older 10.96.0.20:9000 connect: tcp-echo-v2=1[10.244.2.2:9000]\n"
	if got := describe(res.Config); got != want || len(res.Rejected) != 0 {
		t.Fatalf("services:\n%s\nwant:\n%s\nrejected %v", got, want, res.Rejected)
	}
	for _, rs := range res.Routes {
		if len(rs.Parents) != 1 || !rs.Parents[0].Accepted() {
			t.Fatalf("%s: parents %+v, want accepted", rs.Route, rs.Parents)
		}
	}
	if len(res.Notes) != 1 || !strings.Contains(res.Notes[0], "TCPRoute default/newer") || !strings.Contains(res.Notes[0], "which serves TCPRoute default/older, the older route") {
		t.Fatalf("notes %q, want one telling newer that older is served", res.Notes)
	}
}

// internalTrafficPolicy: Local keeps a node's pods on its own endpoints;
// sessionAffinity: ClientIP becomes client affinity with its timeout.
func TestDerivePolicies(t *testing.T) {
	s := snapshot(t, "")
	local, timeout := corev1.ServiceInternalTrafficPolicyLocal, int32(60)
	s.Services[1].Spec.InternalTrafficPolicy = &local
	s.Services[0].Spec.SessionAffinity = corev1.ServiceAffinityClientIP
	s.Services[0].Spec.SessionAffinityConfig = &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: &timeout}}
	node1, node2 := "node1", "node2"
	s.Slices[1].Endpoints = append(s.Slices[1].Endpoints, s.Slices[1].Endpoints[0])
	s.Slices[1].Endpoints[0].NodeName = &node1
	s.Slices[1].Endpoints[1].Addresses = []string{"10.244.2.9"}
	s.Slices[1].Endpoints[1].NodeName = &node2
	res, err := Derive(s, Options{Node: "node2"})
	if err != nil {
		t.Fatal(err)
	}
	want := "other.default-8080 10.96.0.30:8080 connect: endpoints=1[10.244.2.9:8081]\n" +
		"tcp-echo.default-9000 10.96.0.20:9000 connect: endpoints=1[10.244.1.2:9000 10.244.2.2:9000] terminating=0[10.244.3.2:9000]\n"
	if got := describe(res.Config); got != want {
		t.Fatalf("services:\n%s\nwant:\n%s", got, want)
	}
	for _, svc := range res.Config.Services {
		if a := svc.Affinity; (svc.Name == "tcp-echo.default-9000") != (a != nil && a.TTL == time.Minute && a.Key == config.AffinityKeyClient) {
			t.Fatalf("%s: affinity %+v", svc.Name, a)
		}
	}
}

// Found in review: each of these broke a node's every sync, or another
// namespace's or Service's routing.
func TestDeriveReviewCases(t *testing.T) {
	t.Run("dual-stack", func(t *testing.T) {
		s := snapshot(t, "")
		s.Services[1].Spec.ClusterIPs = []string{"10.96.0.30", "fd00::30"}
		six := slice("other", 8081, ep{"o6", "fd00:244::9", true, false})
		six.Name, six.AddressType = "other-six", discoveryv1.AddressTypeIPv6
		s.Slices = append(s.Slices, six)
		res, err := Derive(s, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if got := describe(res.Config); !strings.Contains(got, "other.default-8080 10.96.0.30:8080 connect: endpoints=1[10.244.1.9:8081]\n") {
			t.Fatalf("an IPv4 ClusterIP got other endpoints than IPv4:\n%s", got)
		}
	})
	t.Run("two routes for one frontend", func(t *testing.T) {
		second := strings.Replace(strings.SplitN(routes, "---\n", 2)[1], "name: tcp-echo}", "name: tcp-echo-canary}", 1)
		res, err := Derive(snapshot(t, routes+"---\n"+second), Options{OnlyRouted: true})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Rejected) != 1 || res.Rejected[0].Key.Name != "tcp-echo-canary" || !strings.Contains(res.Rejected[0].Err.Error(), "routes 10.96.0.20:9000, which service tcp-echo") {
			t.Fatalf("rejected: %v", res.Rejected)
		}
		if got := describe(res.Config); !strings.HasPrefix(got, "tcp-echo 10.96.0.20:9000 connect: v1=80") || strings.Count(got, "\n") != 1 {
			t.Fatalf("services:\n%s", got)
		}
	})
	t.Run("a DestinationRule of another namespace", func(t *testing.T) {
		other := `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: aaa, namespace: a-team}
spec:
  host: tcp-echo
  subsets:
  - {name: v1, labels: {version: v2}}
---
`
		res, err := Derive(snapshot(t, other+routes), Options{OnlyRouted: true})
		if err != nil {
			t.Fatal(err)
		}
		if got := describe(res.Config); !strings.HasPrefix(got, "tcp-echo 10.96.0.20:9000 connect: v1=80[10.244.1.2:9000] v2=20[10.244.2.2:9000]") || len(res.Rejected) != 0 {
			t.Fatalf("a-team's DestinationRule took over default's:\n%s\nrejected %v", got, res.Rejected)
		}
	})
	t.Run("terminating at a shared address", func(t *testing.T) {
		s := snapshot(t, "")
		// Host-network pods of two Services on one node share its IP.
		s.Slices[1].Endpoints[0].Addresses = []string{"10.244.3.2"} // tcp-echo's terminating pod's IP
		res, err := Derive(s, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if got := describe(res.Config); !strings.Contains(got, "other.default-8080 10.96.0.30:8080 connect: endpoints=1[10.244.3.2:8081]\n") {
			t.Fatalf("another Service's pod terminating drained this one:\n%s", got)
		}
	})
	t.Run("a Service parent's sectionName", func(t *testing.T) {
		route := `apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata: {name: r}
spec:
  parentRefs:
  - {kind: Service, name: two-ports, sectionName: b}
  rules:
  - backendRefs:
    - {name: other, port: 8080}
`
		svc := service("two-ports", "10.96.0.40")
		svc.Spec.Ports = []corev1.ServicePort{{Name: "a", Port: 1000}, {Name: "b", Port: 2000}}
		s := snapshot(t, route)
		s.Services = append(s.Services, svc)
		res, err := Derive(s, Options{OnlyRouted: true})
		if err != nil {
			t.Fatal(err)
		}
		if got := describe(res.Config); got != "r 10.96.0.40:2000 connect: other=1[10.244.1.9:8081]\n" {
			t.Fatalf("services:\n%s\nrejected %v", got, res.Rejected)
		}
	})
}
