package daemon

import (
	"context"
	"errors"

	"github.com/tcpshift/tcpshift/loader"
	"github.com/tcpshift/tcpshift/maps"
	"github.com/tcpshift/tcpshift/userspace"
)

// sync makes the proxy and the health checks follow the services in force.
func (d *daemon) sync() error {
	svcs, err := d.set.ServiceList()
	if err != nil {
		return err
	}
	var proxied []userspace.Service
	for _, svc := range svcs {
		if svc.Mode == maps.ModeProxy {
			proxied = append(proxied, userspace.Service{ID: svc.ID, Name: svc.Name, Frontend: svc.Frontend})
		}
	}
	if err := d.proxy.Sync(proxied); err != nil {
		return err
	}
	d.restartProbes(d.probes, svcs)
	return nil
}

// restartProbes starts one probe loop per checked endpoint. Endpoints kept
// across a reload keep their counts; new ones start from the health the
// kernel holds, so a restarted daemon goes on where the last one stopped.
func (d *daemon) restartProbes(parent context.Context, svcs []*maps.Service) {
	if d.stopProbes != nil {
		d.stopProbes()
	}
	ctx, cancel := context.WithCancel(parent)
	d.stopProbes = cancel
	checks := map[endpointKey]*checkState{}
	for _, svc := range svcs {
		c, ok := d.cfg.Service(svc.Name)
		if !ok || c.Health == nil {
			continue
		}
		for _, sub := range svc.Subsets {
			for _, ep := range sub.Endpoints {
				key := endpointKey{svc.Name, ep.ID, ep.Addr}
				st := d.checks[key]
				if st == nil {
					st = &checkState{subset: sub.Name, health: ep.Health}
					// Connect failures from before count for nothing.
					if n, err := d.set.EndpointStats(ep.ID); err == nil {
						d.failedSeen[key] = n.Failed
					}
				}
				checks[key] = st
				go probeLoop(ctx, key, c.Health, d.o.InNamespace, d.report)
			}
		}
	}
	d.checks = checks
	for key := range d.failedSeen {
		if checks[key] == nil {
			delete(d.failedSeen, key)
		}
	}
}

// observe counts one check of an endpoint and writes a health change to the
// kernel, which swaps the service's table.
func (d *daemon) observe(key endpointKey, success bool, why error) {
	st := d.checks[key]
	c, ok := d.cfg.Service(key.service)
	if st == nil || !ok || c.Health == nil || !st.observe(success, c.Health) {
		return
	}
	err := d.o.Target.SetHealth(key.service, key.id, key.addr, st.health)
	d.remember()
	if errors.Is(err, loader.ErrEndpointGone) {
		d.resync = true // someone else changed the services: probe what is in force
		return
	}
	if err != nil {
		d.log.Error("write endpoint health", "service", key.service, "endpoint", key.addr.String(), "err", err)
		return
	}
	state := maps.HealthName(st.health)
	d.metrics.healthChanges.WithLabelValues(key.service, st.subset, key.addr.String(), state).Inc()
	if st.health == maps.HealthDown {
		d.log.Warn("endpoint down", "service", key.service, "subset", st.subset, "endpoint", key.addr.String(),
			"failed_checks", st.fail, "err", why)
		return
	}
	d.log.Info("endpoint up", "service", key.service, "subset", st.subset, "endpoint", key.addr.String(),
		"passed_checks", st.ok)
}

// report hands a probe's outcome to the loop, which observes it between
// syncs; false once ctx ended.
func (d *daemon) report(ctx context.Context, r result) bool {
	return d.loop.Do(ctx, func(context.Context) error {
		d.observe(r.key, r.err == nil, r.err)
		return nil
	})
}

func (d *daemon) passive(svcs []*maps.Service) {
	for _, svc := range svcs {
		c, ok := d.cfg.Service(svc.Name)
		if !ok || c.Health == nil || !c.Health.Passive {
			continue
		}
		for _, sub := range svc.Subsets {
			for _, ep := range sub.Endpoints {
				key := endpointKey{svc.Name, ep.ID, ep.Addr}
				st, err := d.set.EndpointStats(ep.ID)
				if err != nil || d.checks[key] == nil {
					continue
				}
				seen, known := d.failedSeen[key]
				d.failedSeen[key] = st.Failed
				if !known {
					continue
				}
				for range st.Failed - seen {
					d.observe(key, false, errors.New("connect failed (seen in the kernel)"))
				}
			}
		}
	}
}
