package istio

import (
	"strings"
	"testing"
	"time"
)

// istiod's rules for VirtualService and DestinationRule, each refused with
// istiod's message at the field's line.
func TestIstioValidation(t *testing.T) {
	const entry = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: echo}
spec:
  hosts: [echo]
  addresses: [240.240.0.10]
  ports: [{number: 9000, name: tcp}]
  endpoints: [{address: 127.0.0.1, ports: {tcp: 9001}, labels: {version: v1}}]
---
`
	dr := func(spec string) string {
		return entry + "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: echo}\nspec:\n" + spec
	}
	vs := func(spec string) string {
		return entry + "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: echo}\nspec:\n" + spec
	}
	const route = "  tcp:\n  - route:\n    - destination: {host: echo}\n"
	for _, c := range []struct{ name, text, want string }{
		{"duplicate subset names", dr("  host: echo\n  subsets:\n  - {name: v1, labels: {version: v1}}\n  - {name: v1, labels: {version: v2}}\n"),
			"x.yaml:17: DestinationRule default/echo: spec.subsets[1].name: duplicate subset names: v1"},
		{"subset name not a DNS label", dr("  host: echo\n  subsets:\n  - {name: V1, labels: {version: v1}}\n"),
			"x.yaml:16: DestinationRule default/echo: spec.subsets[0].name: subset name is invalid: V1"},
		{"subset without a name", dr("  host: echo\n  subsets:\n  - {labels: {version: v1}}\n"),
			"x.yaml:16: DestinationRule default/echo: spec.subsets[0].name: subset name cannot be empty"},
		{"rule without a host", dr("  subsets:\n  - {name: v1, labels: {version: v1}}\n"),
			"x.yaml:14: DestinationRule default/echo: spec.host: empty domain name not allowed"},
		{"rule host not a domain", dr("  host: echo_v1\n"),
			"x.yaml:14: DestinationRule default/echo: spec.host: domain name \"echo_v1\" invalid (label \"echo_v1\" invalid)"},
		{"empty traffic policy", dr("  host: echo\n  trafficPolicy: {}\n"),
			"x.yaml:15: DestinationRule default/echo: spec.trafficPolicy: traffic policy must have at least one field"},
		{"no hosts, gateways", vs("  gateways: [gw]\n" + route),
			"x.yaml:14: VirtualService default/echo: spec.gateways: delegate virtual service must have no gateways specified"},
		{"no hosts", vs(route),
			"x.yaml:15: VirtualService default/echo: spec.tcp: delegate virtual service must have no tcp route specified"},
		{"wildcard host in the mesh", vs("  hosts: [\"*\"]\n" + route),
			"x.yaml:14: VirtualService default/echo: spec.hosts[0]: wildcard host * is not allowed for virtual services bound to the mesh gateway"},
		{"host not a domain", vs("  hosts: [echo.-bad]\n" + route),
			"x.yaml:14: VirtualService default/echo: spec.hosts[0]: domain name \"-bad\" invalid (label \"-bad\" invalid)"},
		{"duplicate hosts", vs("  hosts: [echo, \"*\", echo]\n  gateways: [gw]\n" + route),
			"x.yaml:14: VirtualService default/echo: spec.hosts: duplicate hosts in virtual service: echo & *"},
		{"no routes", vs("  hosts: [echo]\n"),
			"x.yaml:14: VirtualService default/echo: spec: http, tcp or tls must be provided in virtual service"},
		{"tcp route without destinations", vs("  hosts: [echo]\n  tcp:\n  - match: [{port: 9000}]\n"),
			"x.yaml:16: VirtualService default/echo: spec.tcp[0].route: TCP route is required"},
		{"destination host *", vs("  hosts: [echo]\n  tcp:\n  - route:\n    - destination: {host: \"*\"}\n"),
			"x.yaml:17: VirtualService default/echo: spec.tcp[0].route[0].destination.host: invalid destination host *"},
		{"destination without a host", vs("  hosts: [echo]\n  tcp:\n  - route:\n    - destination: {subset: v1}\n"),
			"x.yaml:17: VirtualService default/echo: spec.tcp[0].route[0].destination.host: empty domain name not allowed"},
		{"destination subset name", vs("  hosts: [echo]\n  tcp:\n  - route:\n    - destination: {host: echo, subset: V1}\n"),
			"x.yaml:17: VirtualService default/echo: spec.tcp[0].route[0].destination.subset: subset name is invalid: V1"},
		{"destination port 0", vs("  hosts: [echo]\n  tcp:\n  - route:\n    - destination: {host: echo, port: {number: 0}}\n"),
			"x.yaml:17: VirtualService default/echo: spec.tcp[0].route[0].destination.port.number: port number 0 must be in the range 1..65535"},
		{"destination port 65536", vs("  hosts: [echo]\n  tcp:\n  - route:\n    - destination: {host: echo, port: {number: 65536}}\n"),
			"x.yaml:17: VirtualService default/echo: spec.tcp[0].route[0].destination.port.number: port number 65536 must be in the range 1..65535"},
		{"match port", vs("  hosts: [echo]\n  tcp:\n  - match: [{port: 70000}]\n    route:\n    - destination: {host: echo}\n"),
			"x.yaml:16: VirtualService default/echo: spec.tcp[0].match[0].port: port number 70000 must be in the range 1..65535"},
		{"negative weight", vs("  hosts: [echo]\n  tcp:\n  - route:\n    - {destination: {host: echo}, weight: -20}\n"),
			"x.yaml:17: VirtualService default/echo: spec.tcp[0].route[0].weight: weight -20 < 0"},
		{"total weight 0", vs("  hosts: [echo]\n  tcp:\n  - route:\n    - {destination: {host: echo}, weight: 0}\n    - {destination: {host: echo}, weight: 0}\n"),
			"x.yaml:17: VirtualService default/echo: spec.tcp[0].route: total destination weight = 0"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := derive(c.text)
			if err == nil || err.Error() != c.want {
				t.Fatalf("got  %v\nwant %s", err, c.want)
			}
		})
	}

	// What istiod takes: one destination at weight 0 takes everything.
	res, err := derive(vs("  hosts: [echo]\n  tcp:\n  - route:\n    - {destination: {host: echo}, weight: 0}\n"))
	if err != nil || describeServices(res.Services) != "echo 240.240.0.10:9000 connect echo=100[127.0.0.1:9001]\n" {
		t.Fatalf("one destination at weight 0: %v, %v", res, err)
	}
}

// An object is kept with the time of its first apply, as the API server
// sets creationTimestamp; an apply of it later keeps that time, and one a
// user wrote into the file is replaced.
func TestStamped(t *testing.T) {
	docs, err := Decode("x.yaml", []byte("apiVersion: gateway.networking.k8s.io/v1\nkind: TCPRoute\nmetadata: {name: r, creationTimestamp: \"2020-01-01T00:00:00Z\"}\nspec: {}\n"))
	if err != nil {
		t.Fatal(err)
	}
	o := docs[0].Object
	first := time.Date(2026, 6, 1, 10, 0, 0, 123, time.UTC)
	kept, err := Stamped(o, nil, first)
	if err != nil {
		t.Fatal(err)
	}
	if !kept.Created.Equal(first) || !strings.Contains(string(kept.Text), `creationTimestamp: "2026-06-01T10:00:00.000000123Z"`) {
		t.Fatalf("first apply: created %v, text\n%s", kept.Created, kept.Text)
	}
	again, err := Stamped(o, kept.Text, first.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if !again.Created.Equal(first) || string(again.Text) != string(kept.Text) {
		t.Fatalf("a later apply: created %v, text\n%s\nwant the first apply's", again.Created, again.Text)
	}
	back, err := DecodeStored(o.Key, kept.Text)
	if err != nil || !back.Created.Equal(first) {
		t.Fatalf("read back: %v, %v", back, err)
	}
	if _, err := Decode("x.yaml", []byte("apiVersion: gateway.networking.k8s.io/v1\nkind: TCPRoute\nmetadata: {name: r, creationTimestamp: yesterday}\n")); err == nil ||
		err.Error() != `x.yaml:3: TCPRoute.metadata.creationTimestamp: "yesterday" is not a time as Kubernetes writes it (RFC 3339, 2026-06-01T10:00:00Z)` {
		t.Fatalf("a creationTimestamp that is no time: %v", err)
	}
}
