package loader

import (
	"fmt"

	"github.com/tcpshift/tcpshift/bpf"
	"github.com/tcpshift/tcpshift/maps"
)

// SetHealth records an endpoint's health and, when that changes who may be
// chosen, swaps the service's table so the next connection follows it.
func (t *Target) SetHealth(service string, id uint32, h maps.Health) error {
	return t.Update(func(set *maps.Set) error {
		if err := set.SetHealth(id, h); err != nil {
			return err
		}
		svc, err := lookupService(set, service)
		if err != nil {
			return err
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
	return sameSelection(have, &want), nil
}

// sameSelection compares what two tables choose, not where their counters
// stand.
func sameSelection(a, b *bpf.TcpshiftTable) bool {
	if a.Len != b.Len || a.Policy != b.Policy || a.AffinityTtl != b.AffinityTtl || a.Seq != b.Seq {
		return false
	}
	for i := range a.Subsets {
		x, y := a.Subsets[i], b.Subsets[i]
		if x.Count != y.Count || x.Positions != y.Positions || x.Endpoints != y.Endpoints {
			return false
		}
	}
	return true
}
