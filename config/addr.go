package config

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// limitedBroadcast is the IPv4 limited broadcast address.
var limitedBroadcast = netip.AddrFrom4([4]byte{255, 255, 255, 255})

// parseAddrPort parses an IP:PORT literal ([IPv6]:PORT for IPv6). The port
// is 1-65535 and the address unicast (no multicast, no limited broadcast);
// only a listen address may be unspecified (0.0.0.0 or ::). The message is
// empty on success.
func parseAddrPort(s string, listen bool) (netip.AddrPort, string) {
	bad := func(format string, args ...any) (netip.AddrPort, string) {
		return netip.AddrPort{}, fmt.Sprintf("invalid address %s: ", quote(s)) + fmt.Sprintf(format, args...)
	}
	if s == "" {
		return netip.AddrPort{}, "address must not be empty"
	}
	if isInteger(s) {
		if listen {
			return bad("missing ip address (use 0.0.0.0:%s or [::]:%s for any local address)", s, s)
		}
		return bad("missing ip address, want IP:PORT")
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		switch {
		case !strings.HasPrefix(s, "[") && strings.Count(s, ":") > 1:
			return bad("ipv6 addresses must be in brackets, e.g. [::1]:9000")
		case !strings.Contains(s, ":"):
			return bad("missing port, want IP:PORT")
		}
		return bad("want IP:PORT or [IPv6]:PORT")
	}
	if host == "" {
		return bad("missing ip address, want IP:PORT")
	}
	if strings.Contains(host, "%") {
		return bad("ipv6 zones are not allowed")
	}
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return bad("%s is not an ip address (hostnames are not allowed)", quote(host))
	}
	if addr.Is4() && strings.HasPrefix(s, "[") {
		return bad("ipv4 addresses must not be in brackets")
	}
	if port == "" {
		return bad("missing port, want IP:PORT")
	}
	for _, c := range port {
		if c < '0' || c > '9' {
			return bad("port %s is not a number", quote(port))
		}
	}
	n, err := strconv.ParseUint(port, 10, 64)
	if err != nil || n < 1 || n > 65535 {
		return bad("port %s is out of range 1-65535", port)
	}
	addr = addr.Unmap()
	want := "an endpoint must be a unicast address of a backend"
	if listen {
		want = "a frontend must be a unicast address of this host or a virtual IP"
	}
	switch {
	case addr.IsMulticast():
		return bad("%s is a multicast address; %s", addr, want)
	case addr == limitedBroadcast:
		return bad("%s is the limited broadcast address; %s", addr, want)
	case !listen && addr.IsUnspecified():
		return bad("the unspecified address %s is only allowed for listen", addr)
	}
	return netip.AddrPortFrom(addr, uint16(n)), ""
}

// ConnectReaches reports whether connect() from the frontend's address
// family can be rewritten to endpoint, the rule for connect mode: an IPv4
// frontend (0.0.0.0 included) is dialled from IPv4 sockets, whose connect4
// hook can only rewrite to IPv4 endpoints; an IPv6 frontend may have IPv4
// endpoints, which dual-stack sockets reach as ::ffff:a.b.c.d. It returns
// nil when the endpoint is reachable; the error text has no field prefix.
func ConnectReaches(frontend, endpoint netip.AddrPort) error {
	f, e := frontend.Addr().Unmap(), endpoint.Addr().Unmap()
	if f.Is4() && e.Is6() {
		return fmt.Errorf("connect mode: IPv4 frontend %s is dialled from IPv4 sockets, which cannot reach IPv6 endpoint %s",
			netip.AddrPortFrom(f, frontend.Port()), netip.AddrPortFrom(e, endpoint.Port()))
	}
	return nil
}
