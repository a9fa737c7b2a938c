package fakehost

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/tcpshift/tcpshift/plan"
)

func TestParseRefuses(t *testing.T) {
	for text, want := range map[string]string{
		"listen":                       "host line 1: listen: too few words",
		"listen 1.2.3.4:1 on":          `host line 1: listen: unknown word "on"`,
		"listen 1.2.3.4:1 loud":        `host line 1: listen: unknown word "loud"`,
		"elsewhere 1.2.3.4:1 pid 3":    "host line 1: elsewhere: want elsewhere ENDPOINT [by OWNER...]",
		"addr 1.2.3.4":                 "host line 1: addr: want addr IP IFACE",
		"addr 1.2.3.4 eth0 eth1":       "host line 1: addr: want addr IP IFACE",
		"\nroute 10.0.0.0/8 sideways":  "host line 2: route: want route PREFIX KIND [DESC...], KIND one of unicast, local, broadcast, multicast, other, blackhole, unreachable, prohibit",
		"teleport 1.2.3.4":             "host line 1: teleport: unknown statement",
		"# only a comment\nfail-addrs": "host line 2: fail-addrs: too few words",
	} {
		if _, err := Parse(text); err == nil || err.Error() != want {
			t.Errorf("%q: %v, want %s", text, err, want)
		}
	}
}

// A listener declared for an endpoint serves it; a wildcard serves its
// port's addresses of its family, and [::] IPv4 too unless v6only.
func TestListener(t *testing.T) {
	h, err := Parse(`listen 127.0.0.1:1 by pid 1 (a) fd 3
listen 0.0.0.0:2
listen [::]:3 v6only
listen [::]:4
elsewhere 127.0.0.1:5 by pid 9 (b) fd 4
fail 127.0.0.1:6 mptcp listener
`)
	if err != nil {
		t.Fatal(err)
	}
	for addr, want := range map[string]string{
		"127.0.0.1:1": "127.0.0.1:1 false pid 1 (a) fd 3",
		"10.0.0.1:2":  "0.0.0.0:2 false " + DefaultOwner,
		"[fd00::1]:3": "[::]:3 true " + DefaultOwner,
		"10.0.0.1:4":  "[::]:4 true " + DefaultOwner,
		"10.0.0.1:3":  "error: " + plan.ErrNotListening.Error(),
		"[fd00::1]:2": "error: " + plan.ErrNotListening.Error(),
		"127.0.0.1:5": "error: " + plan.ErrOtherNetns.Error(),
		"127.0.0.1:6": "error: mptcp listener",
	} {
		l, err := h.Listener(netip.MustParseAddrPort(addr))
		var got string
		switch {
		case errors.Is(err, plan.ErrNotListening), errors.Is(err, plan.ErrOtherNetns):
			got = "error: " + errors.Unwrap(err).Error()
		case err != nil:
			got = "error: " + err.Error()
		default:
			got = strings.Join([]string{l.Addr.String(), map[bool]string{true: "true", false: "false"}[l.IPv6], l.Owner}, " ")
		}
		if got != want {
			t.Errorf("%s: %s, want %s", addr, got, want)
		}
	}
	if len(h.Opened) != 4 {
		t.Errorf("opened %v, want the four found", h.Opened)
	}
}

// Routes: the local table first (interface addresses, loopback, tcpshift's
// routes), then the longest declared prefix; reject routes are none.
func TestRoutes(t *testing.T) {
	h, err := Parse(`addr 10.0.0.5 eth0
route 0.0.0.0/0 unicast via 10.0.0.1 dev eth0
route 10.9.0.0/16 unreachable
route 10.9.1.0/24 broadcast dev eth1
fail-route 10.7.0.1 busy
`)
	if err != nil {
		t.Fatal(err)
	}
	h.Ours[netip.MustParseAddr("10.8.0.1")] = true
	for addr, want := range map[string]string{
		"10.0.0.5":  "local dev eth0",
		"127.0.0.9": "local dev lo",
		"10.8.0.1":  "local dev lo",
		"10.1.1.1":  "unicast via 10.0.0.1 dev eth0",
		"10.9.0.1":  "none",
		"10.9.1.7":  "broadcast dev eth1",
		"10.7.0.1":  "error: route to 10.7.0.1: busy",
	} {
		r, err := h.Route(netip.MustParseAddr(addr))
		got := "none"
		switch {
		case err != nil:
			got = "error: " + err.Error()
		case r != nil:
			got = map[plan.RouteKind]string{plan.RouteLocal: "local", plan.RouteUnicast: "unicast", plan.RouteBroadcast: "broadcast"}[r.Kind] + " " + r.Desc
		}
		if got != want {
			t.Errorf("route to %s: %s, want %s", addr, got, want)
		}
	}
	// Without tcpshift's route, 10.8.0.1 takes the default route.
	if r, err := h.ShadowedRoute(netip.MustParseAddr("10.8.0.1")); err != nil || r == nil || r.Kind != plan.RouteUnicast {
		t.Errorf("shadowed route %v, %v", r, err)
	}
}

func TestInterface(t *testing.T) {
	h, err := Parse("addr 10.0.0.5 eth0\naddr 10.96.0.1 lo\n")
	if err != nil {
		t.Fatal(err)
	}
	for addr, want := range map[string]string{"10.0.0.5": "eth0", "10.96.0.1": "", "10.1.1.1": "", "::ffff:10.0.0.5": "eth0"} {
		if got, err := h.Interface(netip.MustParseAddr(addr)); err != nil || got != want {
			t.Errorf("%s: %q %v, want %q", addr, got, err, want)
		}
	}
	h.failAddrs = "denied"
	if _, err := h.Interface(netip.MustParseAddr("10.0.0.5")); err == nil || err.Error() != "list addresses: denied" {
		t.Errorf("failing: %v", err)
	}
}
