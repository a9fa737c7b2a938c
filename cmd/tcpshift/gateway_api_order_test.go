package main

import (
	"fmt"
	"maps"
	"strings"
	"testing"
)

// Objects applied one file at a time: a route before its Gateway is
// refused at its parentRef and changes nothing; the Gateway cannot be
// deleted while a route stands on it (nothing deleted); deleted with its
// route in one delete, the port serves nothing. A dry run of a newer
// route changes nothing and does not make it older than it is.
func TestGatewayAPIApplyOrderAndDeletes(t *testing.T) {
	c := newCLI(t)
	before := c.env.KernelState()
	route := tcpRoute("r", "[{name: tcp-echo-v1, port: 3000}]")
	routeFile := writeFile(t, route)
	_, err := c.run("apply", "-f", routeFile)
	if want := routeFile + ":5: TCPRoute default/r: spec.parentRefs[0]: Gateway default/gw (gateway.networking.k8s.io) is not applied"; err == nil || err.Error() != want {
		t.Fatalf("route before its Gateway: %v\nwant %s", err, want)
	}
	c.env.RequireUnchanged(before)

	gatewayFile, _ := c.apply(gatewayBase)
	c.apply(route)
	if got := c.share("127.0.0.1:31400", 10); !maps.Equal(got, map[string]int{"one": 10}) {
		t.Fatalf("route applied after its Gateway: %v, want 10 to one", got)
	}

	// A newer route tried in a dry run, then applied: still the newer.
	newer := writeFile(t, tcpRoute("a-newer", "[{name: tcp-echo-v2, namespace: web, port: 3000}]"))
	served := c.env.KernelState()
	if out := c.must("apply", "--dry-run", "-f", newer); !strings.Contains(out, "TCPRoute default/a-newer configured (dry run)") {
		t.Fatalf("dry run printed\n%s", out)
	}
	c.env.RequireUnchanged(served)
	c.must("apply", "-f", newer)
	if got := c.share("127.0.0.1:31400", 10); !maps.Equal(got, map[string]int{"one": 10}) {
		t.Fatalf("a newer route beside it: %v, want 10 to one (the older)", got)
	}
	c.must("delete", "-f", newer)

	served = c.env.KernelState()
	_, err = c.run("delete", "-f", gatewayFile)
	if err == nil || !strings.Contains(err.Error(), "nothing deleted: TCPRoute default/r, applied and not deleted, depends on what it deletes: spec.parentRefs[0]: Gateway default/gw (gateway.networking.k8s.io) is not applied") {
		t.Fatalf("delete of the Gateway under a route: %v", err)
	}
	c.env.RequireUnchanged(served)

	both := writeFile(t, gatewayBase+"---\n"+route)
	c.must("delete", "-f", both)
	if got := c.share("127.0.0.1:31400", 5); !maps.Equal(got, map[string]int{"refused": 5}) {
		t.Fatalf("Gateway and route deleted: %v, want 5 refused", got)
	}
}

// Sixteen backendRefs at the largest weight (16 x 1000000, past what a
// table holds) split exactly: one resolves, fifteen do not, so 10 of 160
// connections are served and 150 refused.
func TestGatewayAPILargestWeights(t *testing.T) {
	c := newCLI(t)
	c.apply(gatewayBase)
	refs := []string{"{name: tcp-echo-v1, port: 3000, weight: 1000000}"}
	for i := range 15 {
		refs = append(refs, fmt.Sprintf("{name: missing-%d, port: 3000, weight: 1000000}", i))
	}
	_, notes := c.apply(tcpRoute("largest", "["+strings.Join(refs, ", ")+"]"))
	if got := strings.Count(notes, "its share of the connections (1000000 of 16000000) is refused"); got != 15 {
		t.Fatalf("apply noted %d refused shares, want 15:\n%s", got, notes)
	}
	if got := c.share("127.0.0.1:31400", 160); !maps.Equal(got, map[string]int{"one": 10, "refused": 150}) {
		t.Fatalf("160 connections went %v, want 10 to one and 150 refused", got)
	}
}
