package plan

import (
	"fmt"
	"net/netip"

	"github.com/tcpshift/tcpshift/maps"
)

// Routes decides, with the services in force (old, read under the lock),
// which frontends of svcs need a local route, and refuses addresses a route
// would wrongly shadow. A route tcpshift added earlier is looked through:
// the address must still be one nothing else routes, or claimed.
func Routes(svcs []*Service, old []*maps.Service, host Host) error {
	ours := map[netip.Addr]bool{}
	for _, o := range old {
		if o.LocalRoute {
			ours[o.Frontend.Addr()] = true
		}
	}
	for _, s := range svcs {
		s.Route = false
		if s.Svc.Mode == maps.ModeConnect {
			continue
		}
		var err error
		if s.Route, err = frontendRoute(host, s.Svc, ours[s.Svc.Frontend.Addr()]); err != nil {
			return fmt.Errorf("%s: %w", s.ListenField, err)
		}
	}
	return nil
}

// frontendRoute says whether the frontend needs a local route, and refuses
// an address whose local route would shadow a route to another host (unless
// the service claims it) or that is a broadcast or multicast address here.
// ours: tcpshift's own local route for the address is in place; then the
// route it shadows is the one checked.
func frontendRoute(host Host, svc *maps.Service, ours bool) (bool, error) {
	addr := svc.Frontend.Addr()
	if addr.IsUnspecified() || addr.IsLoopback() {
		return false, nil
	}
	r, err := host.Route(addr)
	if ours && err == nil && r != nil && r.Kind == RouteLocal {
		r, err = host.ShadowedRoute(addr)
	}
	if err != nil {
		return false, err
	}
	switch {
	case r == nil:
		return true, nil // unreachable today: nothing to shadow
	case r.Kind == RouteLocal:
		return false, nil
	case r.Kind == RouteBroadcast, r.Kind == RouteMulticast:
		return false, fmt.Errorf("%s is a broadcast or multicast address here (%s): a frontend must be a unicast address", addr, r.Desc)
	case r.Kind == RouteUnicast && !svc.Claim:
		return false, fmt.Errorf("%w: %s is routed to another host today (%s); a local route for it would keep every connection to %s, on any port and protocol, on this host: use an address nothing routes, or set claim: true on the service", ErrForeignAddress, addr, r.Desc, addr)
	}
	return true, nil
}
