package main

import (
	"bytes"
	"fmt"
	"maps"
	"strings"
	"testing"
)

// The Gateway API's semantics through the CLI, on one host: each test
// applies objects with tcpshift apply -f and counts where the gateway
// port's connections go.

// gatewayBase declares tcp-echo-v1 (one, 127.0.0.1:9001) in default,
// tcp-echo-v2 (two, :9002) in web, and a Gateway listener on 31400.
const gatewayBase = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: tcp-echo-v1}
spec:
  hosts: [tcp-echo-v1]
  ports: [{number: 3000, name: tcp}]
  endpoints: [{address: 127.0.0.1, ports: {tcp: 9001}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: tcp-echo-v2, namespace: web}
spec:
  hosts: [tcp-echo-v2]
  ports: [{number: 3000, name: tcp}]
  endpoints: [{address: 127.0.0.1, ports: {tcp: 9002}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  gatewayClassName: tcpshift
  listeners:
  - {name: tcp, port: 31400, protocol: TCP}
  - {name: udp, port: 5300, protocol: UDP}
`

// tcpRoute is a TCPRoute v1 on the Gateway's tcp listener.
func tcpRoute(name, backendRefs string) string {
	return `apiVersion: gateway.networking.k8s.io/v1
kind: TCPRoute
metadata: {name: ` + name + `}
spec:
  parentRefs: [{name: gw, sectionName: tcp}]
  rules:
  - backendRefs: ` + backendRefs + `
`
}

// apply runs apply -f on text and returns what it printed on stderr
// (notes), failing the test on an error.
func (c shell) apply(text string) (file, notes string) {
	c.t.Helper()
	file = writeFile(c.t, text)
	var out, errb bytes.Buffer
	full := []string{"tcpshift", "--netns", c.env.NS.Path(), "--bpffs", c.env.BPFFS, "--cgroup", c.env.Cgroup, "apply", "-f", file}
	if err := run(full, &out, &errb); err != nil {
		c.t.Fatalf("apply -f %s: %v", file, err)
	}
	return file, errb.String()
}

// share opens n connections to addr and counts the backends that
// answered, and the connections refused under "refused".
func (c shell) share(addr string, n int) map[string]int {
	got := map[string]int{}
	for range n {
		who, err := c.env.Ask(addr)
		if err != nil {
			who = "refused"
		}
		got[who]++
	}
	return got
}

// A backendRef to a Service that does not exist keeps its share, and
// those connections are refused (GEP-2644), not given to the other
// backend; apply says so.
func TestGatewayAPIInvalidBackendRefused(t *testing.T) {
	c := newCLI(t)
	c.apply(gatewayBase)
	file, notes := c.apply(tcpRoute("tcp-echo", "[{name: tcp-echo-v1, port: 3000, weight: 70}, {name: tcp-echo-v3, port: 3000, weight: 30}]"))
	want := "tcpshift: note: " + file + ":7: TCPRoute default/tcp-echo: spec.rules[0].backendRefs[1]: Service default/tcp-echo-v3 is not declared (a ServiceEntry with hosts: [tcp-echo-v3] in namespace default, or a Kubernetes Service) (BackendNotFound): its share of the connections (30 of 100) is refused\n"
	if notes != want {
		t.Fatalf("apply printed\n%s\nwant\n%s", notes, want)
	}
	if got := c.share("127.0.0.1:31400", 100); !maps.Equal(got, map[string]int{"one": 70, "refused": 30}) {
		t.Fatalf("100 connections went %v, want 70 to one and 30 refused", got)
	}
}

// Two routes on one listener: both are taken, the one applied first is
// served, the other is noted; once the first is deleted the other is
// served, and the first applied again is now the newer one.
func TestGatewayAPIOldestRouteServed(t *testing.T) {
	c := newCLI(t)
	grant := `---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {name: from-default, namespace: web}
spec:
  from: [{group: gateway.networking.k8s.io, kind: TCPRoute, namespace: default}]
  to: [{group: "", kind: Service}]
`
	c.apply(gatewayBase + grant)
	// Named so that name order would pick the other one.
	older := tcpRoute("z-older", "[{name: tcp-echo-v1, port: 3000}]")
	newer := tcpRoute("a-newer", "[{name: tcp-echo-v2, namespace: web, port: 3000}]")
	olderFile, _ := c.apply(older)
	newerFile, notes := c.apply(newer)
	want := "tcpshift: note: " + newerFile + ":1: TCPRoute default/a-newer: accepted by listener tcp of Gateway default/gw, which serves TCPRoute default/z-older, the older route: this route gets none of its connections until that one is gone\n"
	if notes != want {
		t.Fatalf("apply of the newer route printed\n%s\nwant\n%s", notes, want)
	}
	if got := c.share("127.0.0.1:31400", 20); !maps.Equal(got, map[string]int{"one": 20}) {
		t.Fatalf("two routes: 20 connections went %v, want all to the older route's one", got)
	}
	if out := c.must("get", "tcproute"); !strings.Contains(out, "z-older") || !strings.Contains(out, "a-newer") {
		t.Fatalf("get tcproute does not list both routes:\n%s", out)
	}
	c.must("delete", "-f", olderFile)
	if got := c.share("127.0.0.1:31400", 20); !maps.Equal(got, map[string]int{"two": 20}) {
		t.Fatalf("older deleted: 20 connections went %v, want all to two", got)
	}
	if _, notes := c.apply(older); !strings.Contains(notes, "TCPRoute default/z-older: accepted by listener tcp of Gateway default/gw, which serves TCPRoute default/a-newer") {
		t.Fatalf("the first route applied again printed %q, want it noted as the newer", notes)
	}
	if got := c.share("127.0.0.1:31400", 20); !maps.Equal(got, map[string]int{"two": 20}) {
		t.Fatalf("first route applied again: 20 connections went %v, want all to two still", got)
	}
}

// A cross-namespace backendRef is served only while a ReferenceGrant in
// the backend's namespace allows it: refused before, served with it,
// refused again once it is deleted.
func TestGatewayAPIReferenceGrant(t *testing.T) {
	c := newCLI(t)
	c.apply(gatewayBase)
	file, notes := c.apply(tcpRoute("tcp-echo", "[{name: tcp-echo-v2, namespace: web, port: 3000}]"))
	want := "tcpshift: note: " + file + ":7: TCPRoute default/tcp-echo: spec.rules[0].backendRefs[0]: Service web/tcp-echo-v2 is in another namespace and no ReferenceGrant in web lets TCPRoutes of default refer to it (RefNotPermitted): its share of the connections (1 of 1) is refused\n"
	if notes != want {
		t.Fatalf("apply printed\n%s\nwant\n%s", notes, want)
	}
	if got := c.share("127.0.0.1:31400", 10); !maps.Equal(got, map[string]int{"refused": 10}) {
		t.Fatalf("without a grant: %v, want 10 refused", got)
	}
	grant, _ := c.apply(`apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {name: tcp-echo, namespace: web}
spec:
  from: [{group: gateway.networking.k8s.io, kind: TCPRoute, namespace: default}]
  to: [{group: "", kind: Service, name: tcp-echo-v2}]
`)
	if got := c.share("127.0.0.1:31400", 10); !maps.Equal(got, map[string]int{"two": 10}) {
		t.Fatalf("with the grant: %v, want 10 to two", got)
	}
	if got := c.must("get", "refgrant", "-n", "web"); !strings.Contains(got, "tcp-echo  tcp-echo ([::]:31400") {
		t.Fatalf("get refgrant does not name the service the grant serves:\n%s", got)
	}
	c.must("delete", "-f", grant)
	if got := c.share("127.0.0.1:31400", 10); !maps.Equal(got, map[string]int{"refused": 10}) {
		t.Fatalf("grant deleted: %v, want 10 refused", got)
	}
}

// What the Gateway API's schema, its attachment rules and istiod refuse,
// apply refuses with their words at file:line, and changes nothing.
func TestGatewayAPIAndIstioRefusals(t *testing.T) {
	c := newCLI(t)
	c.apply(gatewayBase)
	before := c.env.KernelState()
	twoRules := strings.Replace(tcpRoute("r", "[{name: tcp-echo-v1, port: 3000}]"), "  rules:\n", "  rules:\n  - backendRefs: [{name: tcp-echo-v1, port: 3000}]\n", 1)
	for _, tc := range []struct{ name, text, want string }{
		{"v1 with two rules", twoRules, "%s:7: TCPRoute default/r: spec.rules: Too many: 2: must have at most 1 items"},
		{"weight past 1000000", tcpRoute("r", "[{name: tcp-echo-v1, port: 3000, weight: 1000001}]"),
			"%s:7: TCPRoute default/r: spec.rules[0].backendRefs[0].weight: Invalid value: 1000001: should be less than or equal to 1000000"},
		{"Service without port", tcpRoute("r", "[{name: tcp-echo-v1}]"),
			"%s:7: TCPRoute default/r: spec.rules[0].backendRefs[0]: Invalid value: \"object\": Must have port for Service reference"},
		{"UDP listener", strings.Replace(tcpRoute("r", "[{name: tcp-echo-v1, port: 3000}]"), "sectionName: tcp", "sectionName: udp", 1),
			"%s:5: TCPRoute default/r: spec.parentRefs[0]: listener udp of Gateway default/gw takes no TCPRoute: its protocol is UDP (NotAllowedByListeners)"},
		{"weight as a string", tcpRoute("r", "[{name: tcp-echo-v1, port: 3000, weight: '70'}]"),
			`%s:7: TCPRoute default/r: spec.rules[0].backendRefs[0].weight: Invalid value: "string": spec.rules[0].backendRefs[0].weight in body must be of type integer: "string"`},
		{"parentRef of another group", strings.Replace(tcpRoute("r", "[{name: tcp-echo-v1, port: 3000}]"), "sectionName: tcp", "sectionName: tcp, group: example.com", 1),
			"%s:5: TCPRoute default/r: spec.parentRefs[0].group: example.com/Gateway is no parent tcpshift knows: a Gateway parent has group gateway.networking.k8s.io (the default)"},
		{"sectionName of no listener", strings.Replace(tcpRoute("r", "[{name: tcp-echo-v1, port: 3000}]"), "sectionName: tcp", "sectionName: tls", 1),
			"%s:5: TCPRoute default/r: spec.parentRefs[0]: Gateway default/gw has no listener named tls (NoMatchingParent)"},
		{"two TCP listeners on one port", strings.Replace(gatewayBase, "{name: udp, port: 5300, protocol: UDP}", "{name: tcp2, port: 31400, protocol: TCP}", 1),
			`%s:24: Gateway default/gw: spec.listeners: Invalid value: "array": Combination of port, protocol and hostname must be unique for each listener (listeners tcp and tcp2)`},
		{"duplicate subset names", `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: tcp-echo}
spec:
  host: tcp-echo-v1
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v1, labels: {version: v2}}
`, "%s:8: DestinationRule default/tcp-echo: spec.subsets[1].name: duplicate subset names: v1"},
		{"total weight 0", `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: tcp-echo}
spec:
  hosts: [tcp-echo-v1]
  tcp:
  - route:
    - {destination: {host: tcp-echo-v1}, weight: 0}
    - {destination: {host: tcp-echo-v1}, weight: 0}
`, "%s:8: VirtualService default/tcp-echo: spec.tcp[0].route: total destination weight = 0"},
	} {
		file := writeFile(t, tc.text)
		_, err := c.run("apply", "-f", file)
		if want := fmt.Sprintf(tc.want, file); err == nil || err.Error() != want {
			t.Errorf("%s: got %v\nwant %s", tc.name, err, want)
		}
	}
	c.env.RequireUnchanged(before)
}

// The conformance suite's WeightedRouting on one host, exactly: 70/30/0
// over 500 new connections is 350/150/0.
func TestGatewayAPIWeightedRouting(t *testing.T) {
	c := newCLI(t)
	c.env.Echo("127.0.0.1:9003", "three")
	c.apply(gatewayBase + `---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: tcp-echo-v3}
spec:
  hosts: [tcp-echo-v3]
  ports: [{number: 3000, name: tcp}]
  endpoints: [{address: 127.0.0.1, ports: {tcp: 9003}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: tcp-echo-v2}
spec:
  hosts: [tcp-echo-v2]
  ports: [{number: 3000, name: tcp}]
  endpoints: [{address: 127.0.0.1, ports: {tcp: 9002}}]
`)
	c.apply(tcpRoute("weighted", "[{name: tcp-echo-v1, port: 3000, weight: 70}, {name: tcp-echo-v2, port: 3000, weight: 30}, {name: tcp-echo-v3, port: 3000, weight: 0}]"))
	if got := c.share("127.0.0.1:31400", 500); !maps.Equal(got, map[string]int{"one": 350, "two": 150}) {
		t.Fatalf("500 connections went %v, want exactly 350 to one, 150 to two, none to three", got)
	}
}

// A rule whose every backendRef has weight 0 is taken, and every
// connection is refused (the Gateway API: weight 0 sends none there), an
// invalid backendRef among them or not; get and status show it; a
// weight given back serves again.
func TestGatewayAPIAllWeightsZeroRefused(t *testing.T) {
	c := newCLI(t)
	c.apply(gatewayBase)
	file, notes := c.apply(tcpRoute("zero", "[{name: tcp-echo-v1, port: 3000, weight: 0}, {name: tcp-echo-v3, port: 3000, weight: 0}]"))
	want := "tcpshift: note: " + file + ":7: TCPRoute default/zero: spec.rules[0].backendRefs: every backendRef has weight 0: every connection is refused\n" +
		"tcpshift: note: " + file + ":7: TCPRoute default/zero: spec.rules[0].backendRefs[1]: Service default/tcp-echo-v3 is not declared (a ServiceEntry with hosts: [tcp-echo-v3] in namespace default, or a Kubernetes Service) (BackendNotFound): its weight is 0, so no connection goes there\n"
	if notes != want {
		t.Fatalf("apply printed\n%s\nwant\n%s", notes, want)
	}
	if got := c.share("127.0.0.1:31400", 20); !maps.Equal(got, map[string]int{"refused": 20}) {
		t.Fatalf("all weights 0: 20 connections went %v, want all refused", got)
	}
	if out := c.must("get", "tcproute", "zero"); !strings.Contains(out, "zero ([::]:31400 lookup: tcp-echo-v1 0%, tcp-echo-v3 0%)") {
		t.Fatalf("get tcproute zero does not show both backendRefs at 0%%:\n%s", out)
	}
	if out := c.must("status"); !strings.Contains(out, "refused 20") {
		t.Fatalf("status does not count the 20 refused:\n%s", out)
	}
	c.apply(tcpRoute("zero", "[{name: tcp-echo-v1, port: 3000, weight: 1}, {name: tcp-echo-v3, port: 3000, weight: 0}]"))
	if got := c.share("127.0.0.1:31400", 20); !maps.Equal(got, map[string]int{"one": 20}) {
		t.Fatalf("weight 1 given back: 20 connections went %v, want all to one", got)
	}
}
