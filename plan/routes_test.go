package plan_test

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/tcpshift/tcpshift/maps"
	"github.com/tcpshift/tcpshift/plan"
)

func routed(frontend string, mode maps.Mode, claim bool) *plan.Service {
	return &plan.Service{
		Svc:         &maps.Service{Name: "s", Frontend: netip.MustParseAddrPort(frontend), Mode: mode, Claim: claim},
		Route:       true, // Routes decides afresh
		ListenField: "f.yaml:1: services[0].listen",
	}
}

// Which frontends need a local route, each decided from the route the
// address takes today.
func TestRoutes(t *testing.T) {
	h := mustHost(t, `addr 10.0.2.15 eth0
addr 10.96.0.9 lo
route 10.0.2.0/24 unicast dev eth0
route 10.50.0.0/16 other
route 10.60.0.0/16 blackhole
`)
	for _, c := range []struct {
		frontend string
		mode     maps.Mode
		want     bool
	}{
		{"10.96.0.1:80", maps.ModeLookup, true},   // unreachable: nothing shadowed
		{"10.96.0.1:80", maps.ModeProxy, true},    // proxy listens there too
		{"10.96.0.1:80", maps.ModeConnect, false}, // connect() is rewritten before routing
		{"10.0.2.15:80", maps.ModeLookup, false},  // local already
		{"10.96.0.9:80", maps.ModeLookup, false},  // on lo: local already
		{"0.0.0.0:80", maps.ModeLookup, false},    // every address
		{"[::]:80", maps.ModeLookup, false},
		{"127.0.0.5:80", maps.ModeLookup, false},
		{"10.50.0.1:80", maps.ModeLookup, true}, // another kind of route: harmless to shadow
		{"10.60.0.1:80", maps.ModeLookup, true}, // a reject route: nothing shadowed
	} {
		s := routed(c.frontend, c.mode, false)
		if err := plan.Routes([]*plan.Service{s}, nil, h); err != nil || s.Route != c.want {
			t.Errorf("%s %v: route %v (%v), want %v", c.frontend, c.mode, s.Route, err, c.want)
		}
	}
}

// A route tcpshift added is looked through to the route it shadows.
func TestRoutesLookThroughOurs(t *testing.T) {
	h := mustHost(t, "route 0.0.0.0/0 unicast via 10.0.2.2 dev eth0\n")
	old := []*maps.Service{{Name: "s", Frontend: netip.MustParseAddrPort("10.96.0.1:80"), LocalRoute: true}}
	h.Ours[netip.MustParseAddr("10.96.0.1")] = true
	claimed := routed("10.96.0.1:80", maps.ModeLookup, true)
	if err := plan.Routes([]*plan.Service{claimed}, old, h); err != nil || !claimed.Route {
		t.Errorf("claimed: route %v, %v", claimed.Route, err)
	}
	err := plan.Routes([]*plan.Service{routed("10.96.0.1:80", maps.ModeLookup, false)}, old, h)
	if !errors.Is(err, plan.ErrForeignAddress) || !strings.HasPrefix(err.Error(), "f.yaml:1: services[0].listen: address routed elsewhere: 10.96.0.1 is routed to another host today (via 10.0.2.2 dev eth0)") {
		t.Errorf("unclaimed: %v", err)
	}
	// Without tcpshift's route in force, the local route found is the
	// host's own: no route needed, nothing looked through.
	free := routed("10.96.0.1:80", maps.ModeLookup, false)
	if err := plan.Routes([]*plan.Service{free}, nil, h); err != nil || free.Route {
		t.Errorf("host's own local route: route %v, %v", free.Route, err)
	}
}

// Lookups that fail refuse the change, naming the service's listen field.
func TestRoutesLookupFails(t *testing.T) {
	h := mustHost(t, "fail-route 10.96.0.1 no buffer space\n")
	err := plan.Routes([]*plan.Service{routed("10.96.0.1:80", maps.ModeLookup, false)}, nil, h)
	if err == nil || err.Error() != "f.yaml:1: services[0].listen: route to 10.96.0.1: no buffer space" {
		t.Errorf("%v", err)
	}
}
