package istio

import (
	"strconv"
	"strings"
	"testing"
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

