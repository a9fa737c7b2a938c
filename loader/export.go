package loader

import (
	"github.com/tcpshift/tcpshift/config"
	"github.com/tcpshift/tcpshift/maps"
)

// Export turns the services in force back into a route config that applies
// to the same state: the weights in force (overrides included), the mode
// asked for (auto stays auto), health and failover as the file gave them.
func Export(svcs []*maps.Service) *config.Config {
	cfg := &config.Config{Path: "<status>"}
	for _, svc := range svcs {
		c := config.Service{
			Name:       svc.Name,
			Listen:     svc.Frontend,
			Mode:       config.Mode(ModeName(svc.Mode)),
			Policy:     config.Policy(PolicyName(svc.Policy)),
			Failover:   !svc.NoFailover,
			Accounting: !svc.NoAccounting,
			Claim:      svc.Claim,
		}
		if svc.Auto {
			c.Mode = config.ModeAuto
		}
		if svc.AffinityTTL > 0 {
			c.Affinity = &config.Affinity{Key: config.AffinityKeyClient, TTL: svc.AffinityTTL}
		}
		if h := svc.Checks; h != nil {
			c.Health = &config.Health{Interval: h.Interval, Timeout: h.Timeout, Rise: int(h.Rise), Fall: int(h.Fall), Passive: h.Passive}
		}
		for _, sub := range svc.Subsets {
			s := config.Subset{Name: sub.Name, Weight: sub.Weight}
			for _, ep := range sub.Endpoints {
				s.Endpoints = append(s.Endpoints, ep.Addr)
			}
			c.Subsets = append(c.Subsets, s)
		}
		cfg.Services = append(cfg.Services, c)
	}
	return cfg
}
