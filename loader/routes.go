package loader

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/tcpshift/tcpshift/plan"
)

// routeTo looks up the route the namespace uses for addr: nil when the
// address is unreachable (no route, or a reject route) and a local route
// would shadow nothing.
func routeTo(h *netlink.Handle, addr netip.Addr) (*plan.Route, error) {
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
	return planRoute(h, &routes[0]), nil
}

// shadowedRoute is the route addr would take without tcpshift's local
// route for it: the longest main-table prefix that holds it, nil for none.
func shadowedRoute(h *netlink.Handle, addr netip.Addr) (*plan.Route, error) {
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
	return planRoute(h, best), nil
}

// planRoute is a kernel route as the plan weighs it, nil for a reject
// route (which a local route shadows harmlessly), described for messages
// as "via 10.0.2.2 dev eth0".
func planRoute(h *netlink.Handle, r *netlink.Route) *plan.Route {
	kind := plan.RouteOther
	switch r.Type {
	case unix.RTN_BLACKHOLE, unix.RTN_UNREACHABLE, unix.RTN_PROHIBIT:
		return nil
	case unix.RTN_LOCAL:
		kind = plan.RouteLocal
	case unix.RTN_UNICAST:
		kind = plan.RouteUnicast
	case unix.RTN_BROADCAST:
		kind = plan.RouteBroadcast
	case unix.RTN_MULTICAST:
		kind = plan.RouteMulticast
	}
	desc := ""
	if r.Gw != nil {
		desc = "via " + r.Gw.String() + " "
	}
	if l, err := h.LinkByIndex(r.LinkIndex); err == nil {
		desc += "dev " + l.Attrs().Name
	}
	return &plan.Route{Kind: kind, Desc: desc}
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
