package plan

import (
	"fmt"
	"net/netip"

	"github.com/tcpshift/tcpshift/config"
	"github.com/tcpshift/tcpshift/maps"
)

// Options say what planning may leave for later.
type Options struct {
	// Wait plans a lookup-mode endpoint nothing listens on yet without a
	// socket instead of refusing it (tcpshift run and the agent: the
	// kernel registers its listener once it listens).
	Wait bool
	// Applied lists, per service, the endpoints in force before (see
	// Applied): one of them nothing listens on now is waited for, not
	// refused, as it may only be down for a moment.
	Applied map[string][]netip.AddrPort
	// Only, when not nil, plans only the services it names (the others
	// stay as they are in force: the loader's scoped apply).
	Only map[string]bool
}

// Applied lists the endpoints of the lookup-mode services in force, per
// service, for Options.Applied.
func Applied(old []*maps.Service) map[string][]netip.AddrPort {
	applied := map[string][]netip.AddrPort{}
	for _, svc := range old {
		if svc.Mode != maps.ModeLookup {
			continue
		}
		for _, sub := range svc.Subsets {
			for _, ep := range sub.Endpoints {
				applied[svc.Name] = append(applied[svc.Name], ep.Addr)
			}
		}
	}
	return applied
}

// Services checks cfg against the host and plans each of its services:
// mode, listening sockets, address families. It changes nothing. The
// listeners it found are in the services' Sockets; on an error, or for a
// service that did not keep them (mode auto that chose another mode), the
// host's sockets are no longer the plan's.
func Services(cfg *config.Config, host Host, opts Options) ([]*Service, error) {
	svcs := make([]*Service, 0, len(cfg.Services))
	for i := range cfg.Services {
		if opts.Only != nil && !opts.Only[cfg.Services[i].Name] {
			continue
		}
		s, err := planService(cfg, i, host, opts)
		if err != nil {
			return nil, err
		}
		svcs = append(svcs, s)
	}
	return svcs, nil
}

// fieldNamer names a field of the i-th service of cfg in errors, at a line
// of the file: "FILE:LINE: services[i]FIELD".
func fieldNamer(cfg *config.Config, i int) func(f string, line int) string {
	return func(f string, line int) string {
		return fmt.Sprintf("%s:%d: services[%d]%s", cfg.Path, line, i, f)
	}
}

// planService plans the i-th service of cfg.
func planService(cfg *config.Config, i int, host Host, opts Options) (*Service, error) {
	c := &cfg.Services[i]
	field := fieldNamer(cfg, i)
	s := &Service{Svc: NewService(c), Checked: c.Health != nil}
	applied := opts.Applied[c.Name]
	switch c.Mode {
	case config.ModeLookup:
		if err := s.findSockets(c, field, host, opts.Wait, applied); err != nil {
			return nil, err
		}
		s.Svc.Mode, s.Svc.Reason = maps.ModeLookup, "configured"
	case config.ModeConnect:
		s.Svc.Mode, s.Svc.Reason = maps.ModeConnect, "configured"
	case config.ModeProxy:
		s.Svc.Mode, s.Svc.Reason = maps.ModeProxy, "configured"
	default: // auto
		s.Svc.Auto = true
		if err := s.chooseMode(c, field, host, applied); err != nil {
			return nil, err
		}
	}
	if s.Svc.Mode == maps.ModeConnect {
		if err := connectFamilies(c, field); err != nil {
			return nil, err
		}
	}
	s.ListenField = field(".listen", c.Line)
	return s, nil
}

// NewService is what the config asks of one service, before mode and ids.
func NewService(c *config.Service) *maps.Service {
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
		if len(sub.Endpoints) > 0 {
			ms.Endpoints = make([]maps.Endpoint, 0, len(sub.Endpoints)) // the loader keeps it while in force
		}
		for _, addr := range sub.Endpoints {
			ms.Endpoints = append(ms.Endpoints, maps.Endpoint{Addr: addr})
		}
		svc.Subsets = append(svc.Subsets, ms)
	}
	return svc
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
