package istio

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tcpshift/tcpshift/config"
)

func load(t *testing.T, files ...string) *Input {
	t.Helper()
	var paths []string
	for _, f := range files {
		paths = append(paths, filepath.Join("..", "..", "examples", "istio", f))
	}
	in, err := Load(paths, nil)
	if err != nil {
		t.Fatal(err)
	}
	return in
}

// describe writes services compactly: name listen mode subset=weight[endpoints].
func describeServices(svcs []config.Service) string {
	var b strings.Builder
	for _, s := range svcs {
		fmt.Fprintf(&b, "%s %s %s", s.Name, s.Listen, s.Mode)
		for _, sub := range s.Subsets {
			fmt.Fprintf(&b, " %s=%d%v", sub.Name, sub.Weight, sub.Endpoints)
		}
		b.WriteString("\n")
	}
	return b.String()
}

func TestTaskFiles(t *testing.T) {
	in := load(t, "workloads.yaml", "tcp-echo-all-v1.yaml")
	res, err := Derive(in.Objects)
	if err != nil {
		t.Fatal(err)
	}
	want := "tcp-echo [::]:31400 auto v1=100[127.0.0.1:9001] v2=0[127.0.0.1:9002]\n"
	if got := describeServices(res.Services); got != want {
		t.Fatalf("all-v1:\n%s\nwant\n%s", got, want)
	}
	origin := fmt.Sprint(res.Origins["tcp-echo"])
	for _, k := range []string{"VirtualService default/tcp-echo", "Gateway default/tcp-echo-gateway", "ServiceEntry default/tcp-echo", "DestinationRule default/tcp-echo-destination", "WorkloadEntry default/tcp-echo-v1"} {
		if !strings.Contains(origin, k) {
			t.Errorf("origin %s lacks %s", origin, k)
		}
	}

	// 20-v2 replaces the VirtualService (same key), the rest stays.
	next := load(t, "tcp-echo-20-v2.yaml")
	res, err = Derive(append(in.Objects, next.Objects...))
	if err != nil {
		t.Fatal(err)
	}
	want = "tcp-echo [::]:31400 auto v1=80[127.0.0.1:9001] v2=20[127.0.0.1:9002]\n"
	if got := describeServices(res.Services); got != want {
		t.Fatalf("20-v2:\n%s\nwant\n%s", got, want)
	}
}

const meshVS = `apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata: {name: tcp-echo}
spec:
  hosts: [tcp-echo]
  addresses: [240.240.0.10]
  ports: [{number: 9000, name: tcp, protocol: TCP}]
  resolution: STATIC
  endpoints:
  - {address: 10.0.0.2, ports: {tcp: 9001}, labels: {version: v1}}
  - {address: 10.0.0.2, ports: {tcp: 9002}, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata: {name: tcp-echo}
spec:
  host: tcp-echo
  trafficPolicy: {loadBalancer: {simple: RANDOM}}
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
    - {destination: {host: tcp-echo, subset: v1}, weight: 80}
    - {destination: {host: tcp-echo, subset: v2}, weight: 20}
`

func TestMeshVirtualService(t *testing.T) {
	docs, err := Decode("mesh.yaml", []byte(meshVS))
	if err != nil {
		t.Fatal(err)
	}
	var objs []*Object
	for _, d := range docs {
		objs = append(objs, d.Object)
	}
	res, err := Derive(objs)
	if err != nil {
		t.Fatal(err)
	}
	want := "tcp-echo 240.240.0.10:9000 connect v1=80[10.0.0.2:9001] v2=20[10.0.0.2:9002]\n"
	if got := describeServices(res.Services); got != want {
		t.Fatalf("mesh:\n%s\nwant\n%s", got, want)
	}
	if res.Services[0].Policy != config.PolicyRandom {
		t.Fatalf("policy %s, want random (DestinationRule loadBalancer RANDOM)", res.Services[0].Policy)
	}
}

const tcpRouteText = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: tcp-echo-v1}
spec:
  hosts: [tcp-echo-v1]
  ports: [{number: 9000, name: tcp}]
  endpoints: [{address: 127.0.0.1, ports: {tcp: 9001}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: tcp-echo-v2}
spec:
  hosts: [tcp-echo-v2]
  ports: [{number: 9000, name: tcp}]
  endpoints: [{address: 127.0.0.1, ports: {tcp: 9002}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: tcp-gateway}
spec:
  gatewayClassName: tcpshift
  listeners: [{name: tcp, port: 31400, protocol: TCP}]
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata: {name: tcp-echo}
spec:
  parentRefs: [{name: tcp-gateway, sectionName: tcp}]
  rules:
  - backendRefs:
    - {name: tcp-echo-v1, port: 9000, weight: 80}
    - {name: tcp-echo-v2, port: 9000, weight: 20}
`

func TestTCPRoute(t *testing.T) {
	docs, err := Decode("route.yaml", []byte(tcpRouteText))
	if err != nil {
		t.Fatal(err)
	}
	var objs []*Object
	for _, d := range docs {
		objs = append(objs, d.Object)
	}
	res, err := Derive(objs)
	if err != nil {
		t.Fatal(err)
	}
	want := "tcp-echo [::]:31400 auto tcp-echo-v1=80[127.0.0.1:9001] tcp-echo-v2=20[127.0.0.1:9002]\n"
	if got := describeServices(res.Services); got != want {
		t.Fatalf("tcproute:\n%s\nwant\n%s", got, want)
	}
}

// Each refusal names the object and field in Istio's words, at file:line.
func TestErrors(t *testing.T) {
	workloads, err := os.ReadFile("../../examples/istio/workloads.yaml")
	if err != nil {
		t.Fatal(err)
	}
	allV1, err := os.ReadFile("../../examples/istio/tcp-echo-all-v1.yaml")
	if err != nil {
		t.Fatal(err)
	}
	v2, err := os.ReadFile("../../examples/istio/tcp-echo-20-v2.yaml")
	if err != nil {
		t.Fatal(err)
	}
	base := string(workloads) + "\n---\n" + string(allV1)
	for _, c := range []struct {
		name, text, want string
	}{
		{"deployment", `apiVersion: apps/v1
kind: Deployment
metadata: {name: tcp-echo-v1}
spec:
  template:
    metadata:
      labels: {app: tcp-echo, version: v1}
`, "x.yaml:1: kind: Deployment tcp-echo-v1: tcpshift does not run Kubernetes workloads: start the backend and declare it with a WorkloadEntry with labels {app: tcp-echo, version: v1}, its address and ports"},
		{"service", "apiVersion: v1\nkind: Service\nmetadata: {name: tcp-echo}\nspec: {}\n",
			"x.yaml:1: kind: Service tcp-echo: tcpshift does not read Kubernetes Services: declare host tcp-echo with a ServiceEntry (hosts, ports, workloadSelector) and its workloads with WorkloadEntries"},
		{"unknown subset", base + `
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: tcp-echo}
spec:
  hosts: ["*"]
  gateways: [tcp-echo-gateway]
  tcp:
  - route:
    - destination: {host: tcp-echo, subset: v3}
`, "x.yaml:104: VirtualService default/tcp-echo: spec.tcp[0].route[0].destination.subset: subset v3 is not defined for host tcp-echo (DestinationRule default/tcp-echo-destination defines v1, v2)"},
		{"undefined host", base + `
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: tcp-echo}
spec:
  hosts: ["*"]
  gateways: [tcp-echo-gateway]
  tcp:
  - route:
    - destination: {host: reviews, subset: v1}
`, "x.yaml:104: VirtualService default/tcp-echo: spec.tcp[0].route[0].destination.host: host reviews is not declared: add a ServiceEntry with hosts: [reviews] (tcpshift knows no other registry)"},
		{"port not declared", base + `
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: tcp-echo}
spec:
  hosts: ["*"]
  gateways: [tcp-echo-gateway]
  tcp:
  - route:
    - destination: {host: tcp-echo, port: {number: 9001}}
`, "x.yaml:104: VirtualService default/tcp-echo: spec.tcp[0].route[0].destination.port.number: port 9001 is not a port of host tcp-echo (ServiceEntry default/tcp-echo declares 9000)"},
		{"labels select nothing", strings.Replace(base, "    version: v2\n  ports:\n    tcp: 9002", "    version: v3\n  ports:\n    tcp: 9002", 1) + "\n---\n" + string(v2),
			"x.yaml:72: DestinationRule default/tcp-echo-destination: spec.subsets[1].labels: subset v2: labels {version: v2} select no workload of host tcp-echo (workloads: WorkloadEntry default/tcp-echo-v1 {app: tcp-echo, version: v1}; WorkloadEntry default/tcp-echo-v2 {app: tcp-echo, version: v3})"},
		{"http route", base + `
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v1}
`, "x.yaml:101: VirtualService default/reviews: spec.http: tcpshift does not implement this: tcpshift shifts TCP connections by weight; it does not route HTTP requests: move the weights to tcp routes"},
		{"unknown field", base + `
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: tcp-echo-v3}
spec:
  address: 127.0.0.1
  serviceAcount: x
`, "x.yaml:101: WorkloadEntry default/tcp-echo-v3: spec.serviceAcount: unknown field (fields: address, ports, labels, weight, network, locality, serviceAccount)"},
		{"match port", strings.Replace(base, "- port: 31400", "- port: 31401", 1),
			"x.yaml:87: VirtualService default/tcp-echo: spec.tcp[0].match[0].port: 31401 is not a port this VirtualService is served at (ports: tcp-echo-gateway 31400)"},
		{"weights all zero", base + `
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: tcp-echo}
spec:
  hosts: ["*"]
  gateways: [tcp-echo-gateway]
  tcp:
  - route:
    - {destination: {host: tcp-echo, subset: v1}, weight: 0}
    - {destination: {host: tcp-echo, subset: v2}, weight: 0}
`, "x.yaml:104: VirtualService default/tcp-echo: spec.tcp[0].route: total destination weight = 0"},
		{"two objects make one service", base + "\n---\n" + strings.Replace(tcpRouteText, "port: 31400", "port: 31500", 1),
			"x.yaml:119: TCPRoute default/tcp-echo: makes service tcp-echo, which VirtualService default/tcp-echo makes too: rename one"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := derive(c.text)
			if err == nil || err.Error() != c.want {
				t.Fatalf("got  %v\nwant %s", err, c.want)
			}
		})
	}
}

// derive decodes text as x.yaml, the later of two objects with one key
// replacing the earlier as a second apply would, and derives.
func derive(text string) (*Result, error) {
	objs, err := decodeObjects(text)
	if err != nil {
		return nil, err
	}
	return Derive(objs)
}

// decodeObjects decodes text as x.yaml, a file of objects.
func decodeObjects(text string) ([]*Object, error) {
	docs, err := Decode("x.yaml", []byte(text))
	if err != nil {
		return nil, err
	}
	var objs []*Object
	for _, d := range docs {
		objs = append(objs, d.Object)
	}
	return objs, nil
}

func TestLabelsMatch(t *testing.T) {
	l := Labels{"app": "a", "version": "v1"}
	if !l.Matches(Labels{"version": "v1"}) || l.Matches(Labels{"version": "v2"}) || !l.Matches(nil) {
		t.Fatal("labels")
	}
	_ = netip.Addr{}
}
