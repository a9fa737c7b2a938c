package loader

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// route is how the namespace routes an address today.
type route struct {
	Type int    // unix.RTN_*
	desc string // "via 10.0.2.2 dev eth0" for messages
}

// routeTo looks up the route the namespace uses for addr: nil when the
// address is unreachable (no route, or a reject route) and a local route
// would shadow nothing.
func routeTo(h *netlink.Handle, addr netip.Addr) (*route, error) {
	routes, err := h.RouteGet(net.IP(addr.AsSlice()))
	if errors.Is(err, unix.ENETUNREACH) || errors.Is(err, unix.EHOSTUNREACH) || errors.Is(err, unix.EACCES) || errors.Is(err, unix.EINVAL) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("route to %s: %w", addr, err)
	}
	if len(routes) == 0 {
		return nil, nil
	}
	r := routes[0]
	desc := ""
	if r.Gw != nil {
		desc = "via " + r.Gw.String() + " "
	}
	if l, err := h.LinkByIndex(r.LinkIndex); err == nil {
		desc += "dev " + l.Attrs().Name
	}
	switch r.Type {
	case unix.RTN_BLACKHOLE, unix.RTN_UNREACHABLE, unix.RTN_PROHIBIT:
		return nil, nil
	}
	return &route{Type: r.Type, desc: desc}, nil
}

// shadowedRoute is the route addr would take without tcpshift's local
// route for it: the longest main-table prefix that holds it, nil for none.
func shadowedRoute(h *netlink.Handle, addr netip.Addr) (*route, error) {
	family := netlink.FAMILY_V4
	if addr.Is6() {
		family = netlink.FAMILY_V6
	}
	routes, err := h.RouteListFiltered(family, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return nil, fmt.Errorf("routes to %s: %w", addr, err)
	}
	var best *netlink.Route
	bestLen := -1
	for i := range routes {
		r := &routes[i]
		plen := 0
		if r.Dst != nil {
			p, ok := netip.AddrFromSlice(r.Dst.IP)
			ones, _ := r.Dst.Mask.Size()
			if !ok || !netip.PrefixFrom(p.Unmap(), ones).Contains(addr) {
				continue
			}
			plen = ones
		}
		if plen > bestLen {
			best, bestLen = r, plen
		}
	}
	if best == nil {
		return nil, nil
	}
	switch best.Type {
	case unix.RTN_BLACKHOLE, unix.RTN_UNREACHABLE, unix.RTN_PROHIBIT:
		return nil, nil
	}
	desc := ""
	if best.Gw != nil {
		desc = "via " + best.Gw.String() + " "
	}
	if l, err := h.LinkByIndex(best.LinkIndex); err == nil {
		desc += "dev " + l.Attrs().Name
	}
	return &route{Type: best.Type, desc: desc}, nil
}

// localRoute is `ip route add local ADDR dev lo`: the kernel then delivers
// connections to ADDR locally, where sk_lookup runs.
func localRoute(h *netlink.Handle, addr netip.Addr) (*netlink.Route, error) {
	lo, err := h.LinkByName("lo")
	if err != nil {
		return nil, fmt.Errorf("find lo: %w", err)
	}
	return &netlink.Route{
		LinkIndex: lo.Attrs().Index,
		Dst:       &net.IPNet{IP: addr.AsSlice(), Mask: net.CIDRMask(addr.BitLen(), addr.BitLen())},
		Type:      unix.RTN_LOCAL,
		Table:     unix.RT_TABLE_LOCAL,
		Scope:     netlink.SCOPE_HOST,
		Protocol:  unix.RTPROT_STATIC,
	}, nil
}

func addLocalRoute(h *netlink.Handle, addr netip.Addr) error {
	r, err := localRoute(h, addr)
	if err != nil {
		return err
	}
	if err := h.RouteReplace(r); err != nil {
		return fmt.Errorf("add local route %s: %w", addr, err)
	}
	return nil
}

func delLocalRoute(h *netlink.Handle, addr netip.Addr) error {
	r, err := localRoute(h, addr)
	if err != nil {
		return err
	}
	if err := h.RouteDel(r); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("delete local route %s: %w", addr, err)
	}
	return nil
}

// reachableFromOutside says how clients on other hosts could reach addr:
// "" when they cannot (a loopback address, or one that no interface but lo
// holds, like a virtual IP), otherwise where it lives.
func (t *Target) reachableFromOutside(addr netip.Addr) (string, error) {
	switch {
	case addr.IsLoopback():
		return "", nil
	case addr.IsUnspecified():
		return "it is every address of this host", nil
	}
	addrs, err := t.nl.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return "", fmt.Errorf("list addresses: %w", err)
	}
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok || ip.Unmap() != addr.Unmap() {
			continue
		}
		l, err := t.nl.LinkByIndex(a.LinkIndex)
		if err != nil {
			return "", fmt.Errorf("link of %s: %w", addr, err)
		}
		if l.Attrs().Flags&net.FlagLoopback == 0 {
			return "it is an address of " + l.Attrs().Name, nil
		}
	}
	return "", nil
}
