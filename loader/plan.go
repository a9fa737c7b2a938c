package loader

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"golang.org/x/sys/unix"

	"github.com/tcpshift/tcpshift/config"
	"github.com/tcpshift/tcpshift/loader/listener"
	"github.com/tcpshift/tcpshift/maps"
)

// planned is a service of the config with everything that can fail checked
// before the kernel is touched.
type planned struct {
	svc     *maps.Service
	sockets [][]*listener.Socket // per subset, per endpoint; nil: not listening yet
	route   bool                 // the frontend needs a local route
	checked bool                 // the config asks for health checks
	waiting []Waiting            // endpoints not listening yet (the daemon's lookup mode)
	// listenField names the service's listen field in errors.
	listenField string
}

// plan checks the config against this host: modes, listening sockets,
// address families, routes. It changes nothing and needs no lock.
func (t *Target) plan(cfg *config.Config, opts ApplyOptions) ([]*planned, error) {
	var plans []*planned
	for i := range cfg.Services {
		c := &cfg.Services[i]
		field := func(f string, line int) string {
			return fmt.Sprintf("%s:%d: services[%d]%s", cfg.Path, line, i, f)
		}
		p := &planned{svc: service(c), checked: c.Health != nil}
		plans = append(plans, p)
		switch c.Mode {
		case config.ModeLookup:
			if err := t.findSockets(c, p, field, opts.Daemon, opts.applied[c.Name]); err != nil {
				return plans, err
			}
			p.svc.Mode, p.svc.Reason = maps.ModeLookup, "configured"
		case config.ModeConnect:
			p.svc.Mode, p.svc.Reason = maps.ModeConnect, "configured"
		case config.ModeProxy:
			p.svc.Mode, p.svc.Reason = maps.ModeProxy, "configured"
		default: // auto
			p.svc.Auto = true
			if err := t.chooseMode(c, p, field, opts.applied[c.Name]); err != nil {
				return plans, err
			}
		}
		if p.svc.Mode == maps.ModeConnect {
			if err := connectFamilies(c, field); err != nil {
				return plans, err
			}
		}
		p.listenField = field(".listen", c.Line)
	}
	return plans, nil
}

// decideRoutes decides, with the state in force read under the lock, which
// frontends need a local route, and refuses addresses a route would wrongly
// shadow. A route tcpshift added earlier is looked through: the address
// must still be one nothing else routes, or claimed.
func (t *Target) decideRoutes(plans []*planned, old []*maps.Service) error {
	ours := map[netip.Addr]bool{}
	for _, o := range old {
		if o.LocalRoute {
			ours[o.Frontend.Addr()] = true
		}
	}
	for _, p := range plans {
		p.route = false
		if p.svc.Mode == maps.ModeConnect {
			continue
		}
		var err error
		if p.route, err = t.frontendRoute(p.svc, ours[p.svc.Frontend.Addr()]); err != nil {
			return fmt.Errorf("%s: %w", p.listenField, err)
		}
	}
	return nil
}

// connectFamilies refuses endpoints that connect() from the frontend's
// family cannot reach (connect4 cannot rewrite to an IPv6 endpoint).
func connectFamilies(c *config.Service, field func(string, int) string) error {
	for _, sub := range c.Subsets {
		for j, ep := range sub.Endpoints {
			if err := config.ConnectReaches(c.Listen, ep); err != nil {
				return fmt.Errorf("%s: %w", field(fmt.Sprintf(".subsets.%s.endpoints[%d]", sub.Name, j), sub.Line), err)
			}
		}
	}
	return nil
}

// ErrForeignAddress is returned for a lookup- or proxy-mode frontend whose
// address this namespace routes to another host today, without claim.
var ErrForeignAddress = errors.New("address routed elsewhere")

// frontendRoute says whether the frontend needs a local route, and refuses
// an address whose local route would shadow a route to another host (unless
// the service claims it) or that is a broadcast or multicast address here.
// ours: tcpshift's own local route for the address is in place; then the
// route it shadows is the one checked.
func (t *Target) frontendRoute(svc *maps.Service, ours bool) (bool, error) {
	addr := svc.Frontend.Addr()
	if addr.IsUnspecified() || addr.IsLoopback() {
		return false, nil
	}
	r, err := routeTo(t.nl, addr)
	if ours && err == nil && r != nil && r.Type == unix.RTN_LOCAL {
		r, err = shadowedRoute(t.nl, addr)
	}
	if err != nil {
		return false, err
	}
	switch {
	case r == nil:
		return true, nil // unreachable today: nothing to shadow
	case r.Type == unix.RTN_LOCAL:
		return false, nil
	case r.Type == unix.RTN_BROADCAST, r.Type == unix.RTN_MULTICAST:
		return false, fmt.Errorf("%s is a broadcast or multicast address here (%s): a frontend must be a unicast address", addr, r.desc)
	case r.Type == unix.RTN_UNICAST && !svc.Claim:
		return false, fmt.Errorf("%w: %s is routed to another host today (%s); a local route for it would keep every connection to %s, on any port and protocol, on this host: use an address nothing routes, or set claim: true on the service", ErrForeignAddress, addr, r.desc, addr)
	}
	return true, nil
}

// chooseMode picks a mode for mode: auto: lookup when every endpoint is a
// local listener; otherwise connect, unless clients on other hosts can reach
// the frontend, which only the proxy can serve for them.
func (t *Target) chooseMode(c *config.Service, p *planned, field func(string, int) string, applied []netip.AddrPort) error {
	notLocal := t.findSockets(c, p, field, false, applied)
	if notLocal == nil {
		p.svc.Mode = maps.ModeLookup
		p.svc.Reason = "auto: every endpoint is a listener in this network namespace"
		return nil
	}
	closeSockets(p)
	where, err := t.reachableFromOutside(c.Listen.Addr())
	if err != nil {
		return fmt.Errorf("%s: %w", field(".listen", c.Line), err)
	}
	if where == "" {
		p.svc.Mode = maps.ModeConnect
		p.svc.Reason = "auto: " + notLocal.Error()
		return nil
	}
	p.svc.Mode = maps.ModeProxy
	p.svc.Reason = fmt.Sprintf("auto: other hosts can reach %s (%s), connect mode serves only local clients, and %v", c.Listen.Addr(), where, notLocal)
	return nil
}

// service is what the config asks of one service, before mode and ids.
func service(c *config.Service) *maps.Service {
	svc := &maps.Service{Name: c.Name, Frontend: c.Listen, Policy: maps.PolicyRoundRobin, Claim: c.Claim}
	if c.Policy == config.PolicyRandom {
		svc.Policy = maps.PolicyRandom
	}
	if c.Affinity != nil {
		svc.AffinityTTL = c.Affinity.TTL
	}
	if h := c.Health; h != nil {
		svc.Checks = &maps.Checks{Interval: h.Interval, Timeout: h.Timeout, Rise: uint32(h.Rise), Fall: uint32(h.Fall), Passive: h.Passive}
	}
	svc.NoFailover = !c.Failover
	svc.NoAccounting = !c.Accounting
	for _, sub := range c.Subsets {
		ms := maps.Subset{Name: sub.Name, Weight: sub.Weight, FileWeight: sub.Weight}
		for _, addr := range sub.Endpoints {
			ms.Endpoints = append(ms.Endpoints, maps.Endpoint{Addr: addr})
		}
		svc.Subsets = append(svc.Subsets, ms)
	}
	return svc
}

// findSockets finds the listening socket of every endpoint, for lookup mode.
// With waitOK an endpoint nothing listens on yet is left without a socket
// (the daemon registers it once it listens) instead of refused.
func (t *Target) findSockets(c *config.Service, p *planned, field func(string, int) string, waitOK bool, applied []netip.AddrPort) error {
	for _, sub := range c.Subsets {
		socks := make([]*listener.Socket, len(sub.Endpoints))
		p.sockets = append(p.sockets, socks)
		for j, addr := range sub.Endpoints {
			where := field(fmt.Sprintf(".subsets.%s.endpoints[%d]", sub.Name, j), sub.Line)
			sock, err := listener.Find(t.NS.Handle, addr)
			// An endpoint applied before may be down now: the kernel
			// registers its listener when it is back.
			wait := waitOK || slices.Contains(applied, addr)
			// Another namespace's listener on the address is no use here,
			// but this one's backend may still come: wait, and say so.
			if wait && errors.Is(err, listener.ErrOtherNetns) {
				p.waiting = append(p.waiting, Waiting{addr.String(), err.Error()})
				continue
			}
			if wait && errors.Is(err, listener.ErrNotListening) {
				p.waiting = append(p.waiting, Waiting{Endpoint: addr.String()})
				continue
			}
			if err != nil {
				return fmt.Errorf("%s: %w", where, err)
			}
			socks[j] = sock
			if err := familyFits(c.Listen, sock); err != nil {
				return fmt.Errorf("%s: %w", where, err)
			}
		}
	}
	return nil
}

func closeSockets(p *planned) {
	for _, socks := range p.sockets {
		for _, s := range socks {
			if s != nil {
				s.Close()
			}
		}
	}
	p.sockets = nil
}

// ErrFamily is returned when sk_lookup could never hand a frontend's
// connections to an endpoint's socket because their address families differ.
var ErrFamily = errors.New("address family mismatch")

// familyFits checks that sk_lookup can give the frontend's connections to
// the socket: IPv6 connections need an IPv6 socket; IPv4 ones an IPv4 or a
// dual-stack socket.
func familyFits(frontend netip.AddrPort, s *listener.Socket) error {
	a := frontend.Addr()
	switch {
	case a.Is6() && !a.IsUnspecified() && s.Family == unix.AF_INET:
		return fmt.Errorf("%w: frontend %s is IPv6 but %s listens on IPv4 %s", ErrFamily, frontend, s.Owner(), s.Addr)
	case a.Is4() && s.Family == unix.AF_INET6 && s.V6Only:
		return fmt.Errorf("%w: frontend %s is IPv4 but %s listens on IPv6 only %s", ErrFamily, frontend, s.Owner(), s.Addr)
	}
	return nil
}
