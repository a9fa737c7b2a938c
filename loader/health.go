package loader

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/tcpshift/tcpshift/maps"
)

// ErrEndpointGone is returned by SetHealth when the endpoint id no longer
// belongs to the service and address the check was made for.
var ErrEndpointGone = errors.New("endpoint no longer in force")

// SetHealth records an endpoint's health and, when that changes who may be
// chosen, swaps the service's table so the next connection follows it. The
// id must still be the service's endpoint at addr: a change made meanwhile
// may have given the id to another endpoint.
func (t *Target) SetHealth(service string, id uint32, addr netip.AddrPort, h maps.Health) error {
	return t.Update(func(set *maps.Set) error {
		svc, err := lookupService(set, service)
		if err != nil {
			return err
		}
		if !hasEndpoint(svc, id, addr) {
			return fmt.Errorf("%w: service %s endpoint %s (id %d)", ErrEndpointGone, service, addr, id)
		}
		if err := set.SetHealth(id, h); err != nil {
			return err
		}
		for i := range svc.Subsets {
			for j := range svc.Subsets[i].Endpoints {
				if svc.Subsets[i].Endpoints[j].ID == id {
					svc.Subsets[i].Endpoints[j].Health = h
				}
			}
		}
		_, err = reconcile(set, []*maps.Service{svc})
		return err
	})
}

// Reconcile swaps the table of every service whose table in force does not
// select as its weights and health say. It looks without the lock and
// writes, checking again, under it.
func (t *Target) Reconcile(set *maps.Set) (swapped []string, err error) {
	svcs, err := set.ServiceList()
	if err != nil {
		return nil, err
	}
	stale := false
	for _, svc := range svcs {
		if ok, err := inStep(set, svc); err != nil || !ok {
			stale = true
			break
		}
	}
	if !stale {
		return nil, nil
	}
	err = t.Update(func(set *maps.Set) error {
		svcs, err := set.ServiceList()
		if err != nil {
			return err
		}
		swapped, err = reconcile(set, svcs)
		return err
	})
	return swapped, err
}

func reconcile(set *maps.Set, svcs []*maps.Service) (swapped []string, err error) {
	for _, svc := range svcs {
		ok, err := inStep(set, svc)
		if err != nil {
			return swapped, err
		}
		if ok {
			continue
		}
		if err := set.SwapTable(svc); err != nil {
			return swapped, fmt.Errorf("reconcile: %w", err)
		}
		swapped = append(swapped, svc.Name)
	}
	return swapped, nil
}

// inStep reports whether a service's table in force selects as its weights
// and health say.
func inStep(set *maps.Set, svc *maps.Service) (bool, error) {
	want, err := svc.Table()
	if err != nil {
		return false, err
	}
	have, err := set.Table(svc.ID)
	if err != nil {
		return false, err
	}
	return have.SameSelection(want), nil
}

func hasEndpoint(svc *maps.Service, id uint32, addr netip.AddrPort) bool {
	for _, sub := range svc.Subsets {
		for _, ep := range sub.Endpoints {
			if ep.ID == id && ep.Addr == addr {
				return true
			}
		}
	}
	return false
}
