package plan

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/tcpshift/tcpshift/config"
	"github.com/tcpshift/tcpshift/maps"
)

// chooseMode picks a mode for mode: auto: lookup when every endpoint is a
// local listener; otherwise connect, unless clients on other hosts can reach
// the frontend, which only the proxy can serve for them.
func (s *Service) chooseMode(c *config.Service, field func(string, int) string, host Host, applied []netip.AddrPort) error {
	notLocal := s.findSockets(c, field, host, false, applied)
	if notLocal == nil {
		s.Svc.Mode = maps.ModeLookup
		s.Svc.Reason = "auto: every endpoint is a listener in this network namespace"
		return nil
	}
	// Not lookup mode: no endpoint is waited for, no socket kept.
	s.Sockets, s.Waiting = nil, nil
	where, err := reachableFromOutside(host, c.Listen.Addr())
	if err != nil {
		return fmt.Errorf("%s: %w", field(".listen", c.Line), err)
	}
	if where == "" {
		s.Svc.Mode = maps.ModeConnect
		s.Svc.Reason = "auto: " + notLocal.Error()
		return nil
	}
	s.Svc.Mode = maps.ModeProxy
	s.Svc.Reason = fmt.Sprintf("auto: other hosts can reach %s (%s), connect mode serves only local clients, and %v", c.Listen.Addr(), where, notLocal)
	return nil
}

// reachableFromOutside says how clients on other hosts could reach addr:
// "" when they cannot (a loopback address, or one that no interface but lo
// holds, like a virtual IP), otherwise where it lives.
func reachableFromOutside(host Host, addr netip.Addr) (string, error) {
	switch {
	case addr.IsLoopback():
		return "", nil
	case addr.IsUnspecified():
		return "it is every address of this host", nil
	}
	name, err := host.Interface(addr)
	if err != nil || name == "" {
		return "", err
	}
	return "it is an address of " + name, nil
}

// findSockets finds the listening socket of every endpoint, for lookup mode.
// With wait an endpoint nothing listens on yet is left without a socket
// (the daemon registers it once it listens) instead of refused; so is one
// applied before.
func (s *Service) findSockets(c *config.Service, field func(string, int) string, host Host, wait bool, applied []netip.AddrPort) error {
	for _, sub := range c.Subsets {
		socks := make([]*Listener, len(sub.Endpoints))
		s.Sockets = append(s.Sockets, socks)
		for j, addr := range sub.Endpoints {
			where := field(fmt.Sprintf(".subsets.%s.endpoints[%d]", sub.Name, j), sub.Line)
			l, err := host.Listener(addr)
			// An endpoint applied before may be down now: the kernel
			// registers its listener when it is back.
			waitFor := wait || slices.Contains(applied, addr)
			// Another namespace's listener on the address is no use here,
			// but this one's backend may still come: wait, and say so.
			if waitFor && errors.Is(err, ErrOtherNetns) {
				s.Waiting = append(s.Waiting, Waiting{addr.String(), err.Error()})
				continue
			}
			if waitFor && errors.Is(err, ErrNotListening) {
				s.Waiting = append(s.Waiting, Waiting{Endpoint: addr.String()})
				continue
			}
			if err != nil {
				return fmt.Errorf("%s: %w", where, err)
			}
			socks[j] = l
			if err := familyFits(c.Listen, l); err != nil {
				return fmt.Errorf("%s: %w", where, err)
			}
		}
	}
	return nil
}

// familyFits checks that sk_lookup can give the frontend's connections to
// the socket: IPv6 connections need an IPv6 socket; IPv4 ones an IPv4 or a
// dual-stack socket.
func familyFits(frontend netip.AddrPort, l *Listener) error {
	a := frontend.Addr()
	switch {
	case a.Is6() && !a.IsUnspecified() && !l.IPv6:
		return fmt.Errorf("%w: frontend %s is IPv6 but %s listens on IPv4 %s", ErrFamily, frontend, l.Owner, l.Addr)
	case a.Is4() && l.IPv6 && l.V6Only:
		return fmt.Errorf("%w: frontend %s is IPv4 but %s listens on IPv6 only %s", ErrFamily, frontend, l.Owner, l.Addr)
	}
	return nil
}
