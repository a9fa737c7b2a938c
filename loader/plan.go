package loader

import (
	"github.com/tcpshift/tcpshift/config"
	"github.com/tcpshift/tcpshift/loader/listener"
	"github.com/tcpshift/tcpshift/maps"
	"github.com/tcpshift/tcpshift/plan"
)

// planned is a service as the plan made it, with the listening sockets the
// host found for it kept beside the plan.
type planned struct {
	svc     *maps.Service        // what the kernel is to hold: plan.Svc
	sockets [][]*listener.Socket // per subset, per endpoint; nil: not listening yet
	plan    *plan.Service
}

// ErrFamily is returned when sk_lookup could never hand a frontend's
// connections to an endpoint's socket because their address families differ.
var ErrFamily = plan.ErrFamily

// ErrForeignAddress is returned for a lookup- or proxy-mode frontend whose
// address this namespace routes to another host today, without claim.
var ErrForeignAddress = plan.ErrForeignAddress

// plan checks the config against this host (see plan.Services): modes,
// listening sockets, address families. It changes nothing and needs no
// lock. The sockets the plan keeps stay open beside it (closeAll closes
// them); every other one it found is closed before it returns.
func (t *Target) plan(cfg *config.Config, opts ApplyOptions) ([]*planned, error) {
	h := &host{t: t}
	svcs, err := plan.Services(cfg, h, plan.Options{Wait: opts.Daemon, Applied: opts.applied, Only: opts.only})
	if err != nil {
		h.closeExcept(nil)
		return nil, err
	}
	return h.beside(svcs), nil
}

// decideRoutes decides, with the state in force read under the lock, which
// frontends need a local route (see plan.Routes).
func (t *Target) decideRoutes(plans []*planned, old []*maps.Service) error {
	return plan.Routes(planServices(plans), old, &host{t: t})
}

// planServices returns the plan of each planned service.
func planServices(plans []*planned) []*plan.Service {
	svcs := make([]*plan.Service, len(plans))
	for i, p := range plans {
		svcs[i] = p.plan
	}
	return svcs
}

// closeSockets closes the sockets a planned service holds.
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
