package plan

import (
	"errors"
	"net/netip"
)

// Host is what planning asks of the host, seen from the network namespace
// being applied to. The loader answers with the kernel (loader/listener,
// netlink); tests answer from a description. Planning only reads through
// it: whatever a Listener holds open is the host's to close.
type Host interface {
	// Listener finds the TCP socket that accepts connections for addr.
	// When none does, the error wraps ErrNotListening, or ErrOtherNetns
	// when one listens in another network namespace.
	Listener(addr netip.AddrPort) (*Listener, error)
	// Route is the route the namespace takes to addr today; nil when the
	// address is unreachable (no route, or a reject route).
	Route(addr netip.Addr) (*Route, error)
	// ShadowedRoute is the route addr would take without tcpshift's local
	// route for it (the longest main-table prefix that holds it), nil for
	// none or a reject route.
	ShadowedRoute(addr netip.Addr) (*Route, error)
	// Interface names the interface that is not loopback and holds addr,
	// "" when none does (a virtual IP only lo holds, or no interface).
	Interface(addr netip.Addr) (string, error)
}

// Listener is a listening socket as planning sees it: what the checks and
// messages need, and the host's handle for the socket it holds open, which
// the plan carries beside the services without looking into it.
type Listener struct {
	Addr   netip.AddrPort // the address it is bound to (may be 0.0.0.0:port or [::]:port)
	IPv6   bool           // an AF_INET6 socket
	V6Only bool           // IPV6_V6ONLY, for an AF_INET6 socket
	Owner  string         // who holds it, for messages: "pid 1234 (tcp-echo) fd 3"
	Handle int            // the host's own reference to the socket
}

// RouteKind is what kind of route the namespace has to an address, as far
// as deciding a frontend's local route needs it.
type RouteKind int

// Route kinds.
const (
	RouteOther     RouteKind = iota // delivered somehow else (anycast, NAT, ...): shadowing it is harmless
	RouteLocal                      // delivered on this host
	RouteUnicast                    // sent to another host
	RouteBroadcast                  // a broadcast address here
	RouteMulticast                  // a multicast address here
)

// Route is how the namespace routes an address today.
type Route struct {
	Kind RouteKind
	Desc string // "via 10.0.2.2 dev eth0", for messages
}

var (
	// ErrNotListening is wrapped by Host.Listener's error when nothing
	// listens on the address in the namespace.
	ErrNotListening = errors.New("no listening socket")
	// ErrOtherNetns is wrapped by Host.Listener's error when the listener
	// lives in another network namespace.
	ErrOtherNetns = errors.New("listener in another network namespace")
	// ErrFamily is returned when sk_lookup could never hand a frontend's
	// connections to an endpoint's socket because their address families
	// differ.
	ErrFamily = errors.New("address family mismatch")
	// ErrForeignAddress is returned for a lookup- or proxy-mode frontend
	// whose address this namespace routes to another host today, without
	// claim.
	ErrForeignAddress = errors.New("address routed elsewhere")
)
