package loader

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/tcpshift/tcpshift/loader/listener"
	"github.com/tcpshift/tcpshift/plan"
)

// host answers the plan's questions about the target's network namespace
// with the kernel: listening sockets through loader/listener, routes and
// addresses through netlink. The sockets it finds stay open in found, by
// the handle the plan carries, until closeExcept.
type host struct {
	t     *Target
	found []*listener.Socket
}

// Listener finds the socket listening on addr and keeps it open.
func (h *host) Listener(addr netip.AddrPort) (*plan.Listener, error) {
	s, err := listener.Find(h.t.NS.Handle, addr)
	switch {
	case errors.Is(err, listener.ErrOtherNetns):
		return nil, alsoIs{err, plan.ErrOtherNetns}
	case errors.Is(err, listener.ErrNotListening):
		return nil, alsoIs{err, plan.ErrNotListening}
	case err != nil:
		return nil, err
	}
	h.found = append(h.found, s)
	return &plan.Listener{Addr: s.Addr, IPv6: s.Family == unix.AF_INET6, V6Only: s.V6Only, Owner: s.Owner(), Handle: len(h.found) - 1}, nil
}

// beside pairs each planned service with the sockets its plan kept, by
// handle, and closes every other socket found.
func (h *host) beside(svcs []*plan.Service) []*planned {
	kept := make([]bool, len(h.found))
	plans := make([]*planned, len(svcs))
	for i, s := range svcs {
		p := &planned{svc: s.Svc, plan: s}
		for _, ls := range s.Sockets {
			socks := make([]*listener.Socket, len(ls))
			for j, l := range ls {
				if l != nil {
					socks[j], kept[l.Handle] = h.found[l.Handle], true
				}
			}
			p.sockets = append(p.sockets, socks)
		}
		plans[i] = p
	}
	h.closeExcept(kept)
	return plans
}

// closeExcept closes the sockets found whose handle keep does not hold.
func (h *host) closeExcept(keep []bool) {
	for i, s := range h.found {
		if i >= len(keep) || !keep[i] {
			s.Close()
		}
	}
	h.found = nil
}

// Route is the route the namespace takes to addr today.
func (h *host) Route(addr netip.Addr) (*plan.Route, error) { return routeTo(h.t.nl, addr) }

// ShadowedRoute is the route addr would take without tcpshift's local route.
func (h *host) ShadowedRoute(addr netip.Addr) (*plan.Route, error) {
	return shadowedRoute(h.t.nl, addr)
}

// Interface names the interface other than lo that holds addr, "" for none.
func (h *host) Interface(addr netip.Addr) (string, error) {
	addrs, err := h.t.nl.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return "", fmt.Errorf("list addresses: %w", err)
	}
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok || ip.Unmap() != addr.Unmap() {
			continue
		}
		l, err := h.t.nl.LinkByIndex(a.LinkIndex)
		if err != nil {
			return "", fmt.Errorf("link of %s: %w", addr, err)
		}
		if l.Attrs().Flags&net.FlagLoopback == 0 {
			return l.Attrs().Name, nil
		}
	}
	return "", nil
}

// alsoIs is err, which errors.Is also finds kind in: the listener's errors
// keep their message and sentinel, and the plan recognises its own.
type alsoIs struct{ err, kind error }

func (e alsoIs) Error() string   { return e.err.Error() }
func (e alsoIs) Unwrap() []error { return []error{e.err, e.kind} }
