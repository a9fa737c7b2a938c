package istio

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"
)

// A rule whose every backendRef has weight 0 is taken: the Gateway API
// sends no connection to a weight of 0, so every connection is refused
// (the data path refuses a table with no position); the route is
// accepted and its backends keep their weights of 0.
func TestAllWeightsZeroTaken(t *testing.T) {
	text := backends + route("{name: r}", "[{name: gw, sectionName: one}]", "[{name: echo-v1, port: 3000, weight: 0}, {name: echo-v3, port: 3000, weight: 0}]")
	res, err := deriveOpts(t, text, Options{})
	if err != nil {
		t.Fatalf("all weights 0: %v, want it taken", err)
	}
	if got := describeServices(res.Services); got != "r [::]:9300 auto echo-v1=0[127.0.0.1:9001] echo-v3=0[]\n" {
		t.Fatalf("services:\n%s", got)
	}
	line := lineOf(text, "- backendRefs:")
	want := []string{
		"x.yaml:" + strconv.Itoa(line) + ": TCPRoute default/r: spec.rules[0].backendRefs: every backendRef has weight 0: every connection is refused",
		"x.yaml:" + strconv.Itoa(line) + ": TCPRoute default/r: spec.rules[0].backendRefs[1]: Service default/echo-v3 is not declared (a ServiceEntry with hosts: [echo-v3] in namespace default, or a Kubernetes Service) (BackendNotFound): its weight is 0, so no connection goes there",
	}
	if strings.Join(res.Notes, "\n") != strings.Join(want, "\n") {
		t.Fatalf("notes\n%q\nwant\n%q", res.Notes, want)
	}
	if len(res.Routes) != 1 || !res.Routes[0].Parents[0].Accepted() || res.Routes[0].Parents[0].Reason(CondResolvedRefs) != ReasonBackendNotFound {
		t.Fatalf("route status %+v, want accepted with BackendNotFound", res.Routes)
	}
}

// What the Gateway API's CRDs refuse and the reader took: integers given
// as strings, two listeners with the same port, protocol and hostname, a
// parentRef of another group.
func TestGatewayAPISchemaRefusals(t *testing.T) {
	at := func(text, s string) string { return "x.yaml:" + strconv.Itoa(lineOf(text, s)) + ": " }
	for _, tc := range []struct{ name, text, mark, want string }{
		{"weight as a string", backends + route("{name: r}", "[{name: gw}]", "[{name: echo-v1, port: 3000, weight: '5'}]"), "weight: '5'",
			`TCPRoute default/r: spec.rules[0].backendRefs[0].weight: Invalid value: "string": spec.rules[0].backendRefs[0].weight in body must be of type integer: "string"`},
		{"backendRef port as a string", backends + route("{name: r}", "[{name: gw}]", `[{name: echo-v1, port: "3000"}]`), `port: "3000"`,
			`TCPRoute default/r: spec.rules[0].backendRefs[0].port: Invalid value: "string": spec.rules[0].backendRefs[0].port in body must be of type integer: "string"`},
		{"parentRef port as a string", backends + route("{name: r}", `[{name: gw, port: "9300"}]`, toV1), `port: "9300"`,
			`TCPRoute default/r: spec.parentRefs[0].port: Invalid value: "string": spec.parentRefs[0].port in body must be of type integer: "string"`},
		{"listener port as a number", strings.Replace(backends, "port: 9301,", "port: 9301.0,", 1), "port: 9301.0",
			`Gateway default/gw: spec.listeners[1].port: Invalid value: "number": spec.listeners[1].port in body must be of type integer: "number"`},
		{"two TCP listeners on one port", strings.Replace(backends, "port: 9301,", "port: 9300,", 1), "{name: two",
			`Gateway default/gw: spec.listeners: Invalid value: "array": Combination of port, protocol and hostname must be unique for each listener (listeners one and two)`},
		{"two TCP listeners with one hostname", strings.Replace(backends, "{name: one, port: 9300, protocol: TCP}", "{name: one, port: 9300, protocol: TCP, hostname: a.example}", 1) +
			"---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: gw2}\nspec:\n  listeners:\n  - {name: a, port: 1, protocol: TCP, hostname: a.example}\n  - {name: b, port: 1, protocol: TCP, hostname: a.example}\n", "{name: b, port: 1",
			`Gateway default/gw2: spec.listeners: Invalid value: "array": Combination of port, protocol and hostname must be unique for each listener (listeners a and b)`},
		{"hostnames, which a TCPRoute has not", strings.Replace(backends+route("{name: r}", "[{name: gw}]", toV1), "  parentRefs:", "  hostnames: [a.example]\n  parentRefs:", 1), "hostnames:",
			"TCPRoute default/r: spec.hostnames: unknown field (fields: parentRefs, rules, useDefaultGateways)"},
		{"parentRef of another group", backends + route("{name: r}", "[{name: gw, group: example.com}]", toV1), "[{name: gw, group",
			"TCPRoute default/r: spec.parentRefs[0].group: example.com/Gateway is no parent tcpshift knows: a Gateway parent has group gateway.networking.k8s.io (the default)"},
		{"Service parent of the Gateway API's group", backends + route("{name: r}", "[{name: echo-v1, kind: Service, group: gateway.networking.k8s.io}]", toV1), "[{name: echo-v1, kind",
			`TCPRoute default/r: spec.parentRefs[0].group: gateway.networking.k8s.io/Service is no parent tcpshift knows: a Service parent (the mesh) has group "" (the core API group)`},
	} {
		_, err := deriveOpts(t, tc.text, Options{})
		if want := at(tc.text, tc.mark) + tc.want; err == nil || err.Error() != want {
			t.Errorf("%s: got %v\nwant %s", tc.name, err, want)
		}
	}
	// Listeners on one port that differ by protocol or hostname are fine.
	ok := strings.Replace(backends, "{name: udp, port: 5300, protocol: UDP}", "{name: udp, port: 9300, protocol: UDP}", 1)
	if _, err := deriveOpts(t, ok+route("{name: r}", "[{name: gw, sectionName: one}]", toV1), Options{}); err != nil {
		t.Fatalf("TCP and UDP listeners on one port: %v", err)
	}
}

// Routes created at the same time are ordered by "{namespace}/{name}" as
// text, as the Gateway API says: web-b/r comes before web/r ('-' sorts
// before '/'), though namespace web sorts before web-b.
func TestSameTimeOrderedByNamespacedName(t *testing.T) {
	gw := strings.Replace(backends, "{name: one, port: 9300, protocol: TCP}", "{name: one, port: 9300, protocol: TCP, allowedRoutes: {namespaces: {from: All}}}", 1)
	r := func(ns, to string) string {
		return route("{name: r, namespace: "+ns+", creationTimestamp: \"2026-06-01T10:00:00Z\"}", "[{name: gw, namespace: default, sectionName: one}]", "[{name: "+to+", port: 3000}]")
	}
	se := func(ns string) string {
		return "---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: echo-" + ns + ", namespace: " + ns + "}\nspec:\n  hosts: [echo-" + ns + "]\n  ports: [{number: 3000, name: tcp}]\n  endpoints: [{address: 127.0.0.1, ports: {tcp: 9009}}]\n"
	}
	res := mustDerive(t, gw+se("web")+se("web-b")+r("web", "echo-web")+r("web-b", "echo-web-b"))
	if len(res.Listeners) != 1 || res.Listeners[0].Serves.Namespace != "web-b" {
		t.Fatalf("listeners %+v, want one serving web-b/r", res.Listeners)
	}
}

// A Gateway API kind is read only in the versions its CRD serves: the
// group's versions are not every kind's.
func TestGatewayAPIKindVersions(t *testing.T) {
	for _, tc := range []struct{ apiVersion, kind, want string }{
		{"gateway.networking.k8s.io/v1beta1", "TCPRoute", `x.yaml:1: apiVersion: no matches for kind "TCPRoute" in version "gateway.networking.k8s.io/v1beta1": TCPRoute is served as v1, v1alpha2`},
		{"gateway.networking.k8s.io/v1alpha2", "Gateway", `x.yaml:1: apiVersion: no matches for kind "Gateway" in version "gateway.networking.k8s.io/v1alpha2": Gateway is served as v1, v1beta1`},
		{"gateway.networking.k8s.io/v1alpha2", "TCPRoute", ""},
		{"gateway.networking.k8s.io/v1", "TCPRoute", ""},
		{"gateway.networking.k8s.io/v1beta1", "Gateway", ""},
		{"gateway.networking.k8s.io/v1beta1", "ReferenceGrant", ""},
	} {
		text := "apiVersion: " + tc.apiVersion + "\nkind: " + tc.kind + "\nmetadata: {name: x}\nspec: {}\n"
		_, err := Decode("x.yaml", []byte(text))
		if got := fmt.Sprint(err); tc.want == "" && err != nil || tc.want != "" && got != tc.want {
			t.Errorf("%s %s: got %v\nwant %q", tc.apiVersion, tc.kind, err, tc.want)
		}
	}
}

// An object kept by a tcpshift that did not stamp objects stays without
// a creationTimestamp when applied again (a time in its file is dropped,
// as the API server drops it), so it stays the oldest beside the others
// kept then: applying it again does not change which route is served.
func TestStampedKeepsUnstampedOld(t *testing.T) {
	text := "apiVersion: gateway.networking.k8s.io/v1\nkind: TCPRoute\nmetadata: {name: r, creationTimestamp: \"2020-01-01T00:00:00Z\"}\nspec: {}\n"
	docs, err := Decode("x.yaml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	o := docs[0].Object
	legacy := []byte("apiVersion: gateway.networking.k8s.io/v1\nkind: TCPRoute\nmetadata: {name: r}\nspec: {}\n")
	again, err := Stamped(o, legacy, time.Date(2026, 6, 1, 10, 0, 0, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	if !again.Created.IsZero() || strings.Contains(string(again.Text), "creationTimestamp") {
		t.Fatalf("applied again over an unstamped object: created %v, text\n%s\nwant no time", again.Created, again.Text)
	}
	back, err := DecodeStored(o.Key, again.Text)
	if err != nil || !back.Created.IsZero() {
		t.Fatalf("read back: %v, %v", back, err)
	}
}
