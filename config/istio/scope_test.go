package istio

import (
	"strings"
	"testing"

	"github.com/tcpshift/tcpshift/config"
)

// scopeObjects are two Istio Gateways, tcpshift's (selector istio:
// ingressgateway) and another's (an HTTP one, which tcpshift would refuse
// were it its own), and two Gateway API Gateways, of tcpshift's class and
// of another, each with a route bound only to it.
var scopeObjects = backends + `---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: ours}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 31400, name: tcp, protocol: TCP}
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: theirs}
spec:
  selector: {istio: egressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: via-ours}
spec:
  hosts: ["*"]
  gateways: [ours]
  tcp:
  - route:
    - destination: {host: echo-v1, port: {number: 3000}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: via-theirs}
spec:
  hosts: ["*"]
  gateways: [theirs]
  http:
  - route:
    - destination: {host: echo-v1, port: {number: 3000}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: other}
spec:
  gatewayClassName: other
  listeners:
  - {name: one, port: 9400, protocol: TCP}
` + route("{name: on-ours}", "[{name: gw, sectionName: one}]", toV1) +
	route("{name: on-other}", "[{name: other}]", "[{name: nowhere, port: 3000}]")

// On a cluster only tcpshift's gateways are served, in the scope's mode;
// the others, and what is bound only to them (an HTTP VirtualService
// here), are left alone: not served, not refused, no status.
func TestGatewayScope(t *testing.T) {
	scope := &GatewayScope{Labels: Labels{"istio": "ingressgateway", "app": "tcpshift"}, Classes: []string{"tcpshift"}, Mode: config.ModeProxy}
	res, err := deriveOpts(t, scopeObjects, Options{KeepGoing: true, Gateways: scope})
	if err != nil {
		t.Fatal(err)
	}
	want := "on-ours [::]:9300 proxy echo-v1=1[127.0.0.1:9001]\nvia-ours [::]:31400 proxy echo-v1=100[127.0.0.1:9001]\n"
	if got := describeServices(res.Services); got != want {
		t.Fatalf("services:\n%s\nwant\n%s", got, want)
	}
	if len(res.Rejected) != 0 {
		t.Fatalf("rejected %v, want none: the others' objects are theirs", res.Rejected)
	}
	for _, rs := range res.Routes {
		if rs.Route.Name == "on-other" && len(rs.Parents) != 0 {
			t.Errorf("on-other has parents %+v in tcpshift's status", rs.Parents)
		}
	}
	if len(res.Listeners) != 1 || res.Listeners[0].Port != 9300 || res.Listeners[0].Name != "one" {
		t.Errorf("listeners %+v, want gw's one on 9300", res.Listeners)
	}

	// With no selector an Istio Gateway picks every gateway (istiod's
	// rule), tcpshift's too.
	open := strings.Replace(scopeObjects, "  selector: {istio: ingressgateway}\n", "", 1)
	if res, err = deriveOpts(t, open, Options{KeepGoing: true, Gateways: scope}); err != nil || !strings.Contains(describeServices(res.Services), "via-ours [::]:31400 proxy") {
		t.Fatalf("a Gateway with no selector: %v\n%s", err, describeServices(res.Services))
	}

	// Without a scope (one host) every gateway is tcpshift's: the HTTP
	// one is refused with what is bound to it, the other class served.
	res, err = deriveOpts(t, scopeObjects, Options{KeepGoing: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := describeServices(res.Services); !strings.Contains(got, "via-ours [::]:31400 auto") || !strings.Contains(got, "on-other [::]:9400 auto") {
		t.Errorf("without a scope:\n%s", got)
	}
	var refused []string
	for _, r := range res.Rejected {
		refused = append(refused, r.Key.Name)
	}
	if strings.Join(refused, " ") != "theirs via-theirs" {
		t.Errorf("without a scope rejected %v, want theirs and via-theirs (HTTP both)", res.Rejected)
	}
}
