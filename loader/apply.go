package loader

import (
	"errors"
	"fmt"
	"net/netip"
	"reflect"

	"golang.org/x/sys/unix"

	"github.com/tcpshift/tcpshift/config"
	"github.com/tcpshift/tcpshift/loader/listener"
	"github.com/tcpshift/tcpshift/maps"
)

// Change says what Apply did to one service.
type Change struct {
	Service string
	Action  string    // "added", "updated", "unchanged", "removed"
	Mode    maps.Mode // the mode in force (not set for "removed")
}

// planned is a service of the config with everything that can fail checked
// before the kernel is touched.
type planned struct {
	svc     *maps.Service
	sockets [][]*listener.Socket // per subset, per endpoint
	route   bool                 // the frontend needs a local route
	checked bool                 // the config asks for health checks
}

// Apply makes the kernel match cfg: it loads and attaches the programs if
// needed, then adds, updates and removes services. Every check that can fail
// on the config runs before anything in the kernel changes. Applying the
// same config twice changes nothing (round-robin positions included).
func (t *Target) Apply(cfg *config.Config) (changes []Change, err error) {
	plans, err := t.plan(cfg)
	defer func() {
		for _, p := range plans {
			closeSockets(p)
		}
	}()
	if err != nil {
		return nil, err
	}

	coll, err := t.load()
	if err != nil {
		return nil, err
	}
	defer coll.Close()
	set, err := maps.FromCollection(coll)
	if err != nil {
		return nil, err
	}
	old, err := set.ServiceList()
	if err != nil {
		return nil, err
	}
	released := assignIDs(plans, old)

	// Routes tcpshift added earlier stay as long as a lookup- or proxy-mode
	// service needs them.
	ourRoutes := map[netip.Addr]bool{}
	keepRoutes := map[netip.Addr]bool{}
	oldByName := map[string]*maps.Service{}
	for _, o := range old {
		oldByName[o.Name] = o
		if o.LocalRoute {
			ourRoutes[o.Frontend.Addr()] = true
		}
	}

	planned := map[string]bool{}
	for _, p := range plans {
		planned[p.svc.Name] = true
		addr := p.svc.Frontend.Addr()
		if p.route || (ourRoutes[addr] && p.svc.Mode != maps.ModeConnect) {
			if !ourRoutes[addr] && !keepRoutes[addr] {
				if err := addLocalRoute(t.nl, addr); err != nil {
					return changes, fmt.Errorf("service %s: %w", p.svc.Name, err)
				}
			}
			p.svc.LocalRoute = true
			keepRoutes[addr] = true
		}
		for i, socks := range p.sockets {
			for j, sock := range socks {
				ep := p.svc.Subsets[i].Endpoints[j]
				if err := set.RegisterSocket(ep.ID, int(sock.File.Fd())); err != nil {
					return changes, fmt.Errorf("service %s: register %s (%s): %w", p.svc.Name, ep.Addr, sock.Owner(), err)
				}
			}
		}
		o := oldByName[p.svc.Name]
		if o != nil && reflect.DeepEqual(o, p.svc) {
			changes = append(changes, Change{p.svc.Name, "unchanged", p.svc.Mode})
			continue
		}
		if err := set.WriteService(p.svc); err != nil {
			return changes, err
		}
		if o != nil && o.Frontend != p.svc.Frontend {
			if err := set.DeleteFrontend(o); err != nil {
				return changes, err
			}
		}
		if o == nil {
			changes = append(changes, Change{p.svc.Name, "added", p.svc.Mode})
		} else {
			changes = append(changes, Change{p.svc.Name, "updated", p.svc.Mode})
		}
	}

	for _, o := range old {
		if planned[o.Name] {
			continue
		}
		if err := set.DeleteService(o); err != nil {
			return changes, err
		}
		changes = append(changes, Change{Service: o.Name, Action: "removed"})
	}
	for _, id := range released {
		if err := set.ReleaseEndpoint(id); err != nil {
			return changes, err
		}
	}
	for addr := range ourRoutes {
		if !keepRoutes[addr] {
			if err := delLocalRoute(t.nl, addr); err != nil {
				return changes, err
			}
		}
	}
	return changes, nil
}

// plan checks the config against this host: modes, listening sockets,
// address families, routes. It changes nothing.
func (t *Target) plan(cfg *config.Config) ([]*planned, error) {
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
			if err := t.findSockets(c, p, field); err != nil {
				return plans, err
			}
			p.svc.Mode, p.svc.Reason = maps.ModeLookup, "configured"
		case config.ModeConnect:
			p.svc.Mode, p.svc.Reason = maps.ModeConnect, "configured"
		case config.ModeProxy:
			p.svc.Mode, p.svc.Reason = maps.ModeProxy, "configured"
		default: // auto
			p.svc.Auto = true
			if err := t.chooseMode(c, p, field); err != nil {
				return plans, err
			}
		}

		if p.svc.Mode != maps.ModeConnect {
			var err error
			if p.route, err = needsLocalRoute(t.nl, c.Listen.Addr()); err != nil {
				return plans, fmt.Errorf("%s: %w", field(".listen", c.Line), err)
			}
		}
	}
	return plans, nil
}

// chooseMode picks a mode for mode: auto: lookup when every endpoint is a
// local listener; otherwise connect, unless clients on other hosts can reach
// the frontend, which only the proxy can serve for them.
func (t *Target) chooseMode(c *config.Service, p *planned, field func(string, int) string) error {
	notLocal := t.findSockets(c, p, field)
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
	svc := &maps.Service{Name: c.Name, Frontend: c.Listen, Policy: maps.PolicyRoundRobin}
	if c.Policy == config.PolicyRandom {
		svc.Policy = maps.PolicyRandom
	}
	if c.Affinity != nil {
		svc.AffinityTTL = c.Affinity.TTL
	}
	svc.NoFailover = !c.Failover
	for _, sub := range c.Subsets {
		ms := maps.Subset{Name: sub.Name, Weight: sub.Weight}
		for _, addr := range sub.Endpoints {
			ms.Endpoints = append(ms.Endpoints, maps.Endpoint{Addr: addr})
		}
		svc.Subsets = append(svc.Subsets, ms)
	}
	return svc
}

// findSockets finds the listening socket of every endpoint, for lookup mode.
func (t *Target) findSockets(c *config.Service, p *planned, field func(string, int) string) error {
	for _, sub := range c.Subsets {
		var socks []*listener.Socket
		p.sockets = append(p.sockets, nil)
		for j, addr := range sub.Endpoints {
			where := field(fmt.Sprintf(".subsets.%s.endpoints[%d]", sub.Name, j), sub.Line)
			sock, err := listener.Find(t.NS.Handle, addr)
			if err != nil {
				return fmt.Errorf("%s: %w", where, err)
			}
			socks = append(socks, sock)
			p.sockets[len(p.sockets)-1] = socks
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
			s.Close()
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

// assignIDs gives every planned service and endpoint an id: the one it had
// before when it existed, otherwise one nobody used before this apply, so no
// table still in force can reach a new endpoint through a recycled id. It
// returns the endpoint ids that services still planned no longer use. Kept
// endpoints keep their health while the service is checked.
func assignIDs(plans []*planned, old []*maps.Service) (released []uint32) {
	type epKey struct {
		service, subset string
		addr            netip.AddrPort
	}
	oldSvc := map[string]uint32{}
	oldEp := map[epKey]maps.Endpoint{}
	usedSvc := map[uint32]bool{}
	usedEp := map[uint32]bool{}
	for _, o := range old {
		oldSvc[o.Name] = o.ID
		usedSvc[o.ID] = true
		for _, sub := range o.Subsets {
			for _, ep := range sub.Endpoints {
				oldEp[epKey{o.Name, sub.Name, ep.Addr}] = ep
				usedEp[ep.ID] = true
			}
		}
	}
	kept := map[uint32]bool{}
	next := func(used map[uint32]bool) uint32 {
		id := uint32(0)
		for used[id] {
			id++
		}
		used[id] = true
		return id
	}
	for _, p := range plans {
		if id, ok := oldSvc[p.svc.Name]; ok {
			p.svc.ID = id
		} else {
			p.svc.ID = next(usedSvc)
		}
		for i := range p.svc.Subsets {
			sub := &p.svc.Subsets[i]
			for j := range sub.Endpoints {
				ep := &sub.Endpoints[j]
				if o, ok := oldEp[epKey{p.svc.Name, sub.Name, ep.Addr}]; ok {
					ep.ID = o.ID
					// Checks go on where they were; without checks
					// an endpoint is unchecked again.
					if p.checked {
						ep.Health = o.Health
					}
				} else {
					ep.ID = next(usedEp)
				}
				kept[ep.ID] = true
			}
		}
	}
	planned := map[string]bool{}
	for _, p := range plans {
		planned[p.svc.Name] = true
	}
	// Endpoints of removed services go with them (Set.DeleteService).
	for k, ep := range oldEp {
		if planned[k.service] && !kept[ep.ID] {
			released = append(released, ep.ID)
		}
	}
	return released
}
