package loader

import (
	"errors"
	"net"
	"os"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/tcpshift/tcpshift/loader/listener"
	"github.com/tcpshift/tcpshift/maps"
	"github.com/tcpshift/tcpshift/plan"
)

// pipeSocket stands for a duplicated listener: a file whose closing the
// test can see.
func pipeSocket(t *testing.T) *listener.Socket {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(); w.Close() })
	return &listener.Socket{File: r}
}

func closed(s *listener.Socket) bool { return errors.Is(s.File.Close(), os.ErrClosed) }

// The sockets a plan keeps go beside it, at their endpoints; every other
// one the host found is closed at once.
func TestBesideKeepsPlannedSockets(t *testing.T) {
	found := []*listener.Socket{pipeSocket(t), pipeSocket(t), pipeSocket(t)}
	h := &host{found: found}
	a := &plan.Service{Svc: &maps.Service{Name: "a"}, Sockets: [][]*plan.Listener{{{Handle: 2}, nil}, {{Handle: 0}}}}
	b := &plan.Service{Svc: &maps.Service{Name: "b"}} // auto, not lookup: found 1, keeps none
	plans := h.beside([]*plan.Service{a, b})
	if len(plans) != 2 || plans[0].svc != a.Svc || plans[0].plan != a || plans[1].sockets != nil {
		t.Fatalf("plans %+v", plans)
	}
	got := plans[0].sockets
	if len(got) != 2 || got[0][0] != found[2] || got[0][1] != nil || got[1][0] != found[0] {
		t.Errorf("a's sockets %v, want found 2 and 0 at their endpoints", got)
	}
	if !closed(found[1]) || h.found != nil {
		t.Error("the socket no plan kept is still open")
	}
	closeAll(plans)
	if !closed(found[0]) || !closed(found[2]) || plans[0].sockets != nil {
		t.Error("closeAll left a kept socket open")
	}
}

// A failed plan keeps nothing: closeExcept(nil) closes all found.
func TestCloseExceptNothing(t *testing.T) {
	found := []*listener.Socket{pipeSocket(t), pipeSocket(t)}
	(&host{found: found}).closeExcept(nil)
	if !closed(found[0]) || !closed(found[1]) {
		t.Error("a socket found stays open after a failed plan")
	}
}

// The listener's errors keep their words and sentinel, and the plan finds
// its own in them.
func TestAlsoIs(t *testing.T) {
	err := error(alsoIs{err: listener.ErrNotListening, kind: plan.ErrNotListening})
	if !errors.Is(err, listener.ErrNotListening) || !errors.Is(err, plan.ErrNotListening) || errors.Is(err, plan.ErrOtherNetns) || err.Error() != listener.ErrNotListening.Error() {
		t.Errorf("%v", err)
	}
}

// Kernel route types become the plan's kinds; reject routes are none.
func TestPlanRoute(t *testing.T) {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	h := &netlink.Handle{}
	for typ, want := range map[int]plan.RouteKind{
		unix.RTN_LOCAL: plan.RouteLocal, unix.RTN_UNICAST: plan.RouteUnicast, unix.RTN_BROADCAST: plan.RouteBroadcast,
		unix.RTN_MULTICAST: plan.RouteMulticast, unix.RTN_ANYCAST: plan.RouteOther, unix.RTN_NAT: plan.RouteOther,
	} {
		r := planRoute(h, &netlink.Route{Type: typ, LinkIndex: lo.Attrs().Index, Gw: net.ParseIP("10.0.2.2")})
		if r == nil || r.Kind != want || r.Desc != "via 10.0.2.2 dev lo" {
			t.Errorf("type %d: %+v, want kind %d via 10.0.2.2 dev lo", typ, r, want)
		}
	}
	for _, typ := range []int{unix.RTN_BLACKHOLE, unix.RTN_UNREACHABLE, unix.RTN_PROHIBIT} {
		if r := planRoute(h, &netlink.Route{Type: typ}); r != nil {
			t.Errorf("reject type %d: %+v, want none", typ, r)
		}
	}
}
