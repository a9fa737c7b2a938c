package fakehost

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/tcpshift/tcpshift/plan"
)

// Listener finds the listener of addr: one declared for it, else a
// wildcard of its port that takes its family.
func (h *Host) Listener(addr netip.AddrPort) (*plan.Listener, error) {
	if msg, ok := h.fails[addr]; ok {
		return nil, errors.New(msg)
	}
	if who, ok := h.elsewhere[addr]; ok {
		return nil, fmt.Errorf("%s is served by %s in another network namespace (net:[%d]); run tcpshift in that namespace (--netns): %w",
			addr, who, OtherNetns, plan.ErrOtherNetns)
	}
	l, ok := h.listeners[addr]
	if !ok {
		l, ok = h.wildcard(addr)
	}
	if !ok {
		return nil, fmt.Errorf("nothing listens on %s in network namespace net:[%d]; start the backend first, or run tcpshift in its network namespace (--netns): %w",
			addr, ThisNetns, plan.ErrNotListening)
	}
	l.Handle = len(h.Opened)
	h.Opened = append(h.Opened, addr)
	return &l, nil
}

// wildcard finds a socket bound to the unspecified address of addr's port
// that takes addr's connections: 0.0.0.0 for IPv4, [::] for IPv6 and, but
// for a v6only one, for IPv4 too.
func (h *Host) wildcard(addr netip.AddrPort) (plan.Listener, bool) {
	if addr.Addr().Is4() {
		if l, ok := h.listeners[netip.AddrPortFrom(netip.IPv4Unspecified(), addr.Port())]; ok {
			return l, true
		}
	}
	l, ok := h.listeners[netip.AddrPortFrom(netip.IPv6Unspecified(), addr.Port())]
	if ok && (addr.Addr().Is6() || !l.V6Only) {
		return l, true
	}
	return plan.Listener{}, false
}

// Route is the route to addr: local for an address of an interface, a
// loopback address or one tcpshift's local route covers (the local table
// comes first), else the longest declared prefix holding it.
func (h *Host) Route(addr netip.Addr) (*plan.Route, error) {
	if msg, ok := h.failRoutes[addr]; ok {
		return nil, fmt.Errorf("route to %s: %s", addr, msg)
	}
	if iface, ok := h.addrs[addr]; ok {
		return &plan.Route{Kind: plan.RouteLocal, Desc: "dev " + iface}, nil
	}
	if addr.IsLoopback() || h.Ours[addr] {
		return &plan.Route{Kind: plan.RouteLocal, Desc: "dev lo"}, nil
	}
	return h.ShadowedRoute(addr)
}

// ShadowedRoute is the longest declared (main-table) prefix holding addr;
// nil for none or a reject route.
func (h *Host) ShadowedRoute(addr netip.Addr) (*plan.Route, error) {
	var best *route
	for i := range h.routes {
		r := &h.routes[i]
		if r.prefix.Contains(addr) && (best == nil || r.prefix.Bits() > best.prefix.Bits()) {
			best = r
		}
	}
	if best == nil || kinds[best.kind] < 0 {
		return nil, nil
	}
	return &plan.Route{Kind: kinds[best.kind], Desc: best.desc}, nil
}

// Interface names the interface other than lo holding addr.
func (h *Host) Interface(addr netip.Addr) (string, error) {
	if h.failAddrs != "" {
		return "", fmt.Errorf("list addresses: %s", h.failAddrs)
	}
	if iface := h.addrs[addr.Unmap()]; iface != "lo" {
		return iface, nil
	}
	return "", nil
}
