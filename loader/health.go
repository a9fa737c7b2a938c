package loader

import (
	"fmt"

	"github.com/tcpshift/tcpshift/bpf"
	"github.com/tcpshift/tcpshift/maps"
)

// SetHealth records an endpoint's health and, when that changes who may be
// chosen, swaps the service's table so the next connection follows it.
func SetHealth(set *maps.Set, service string, id uint32, h maps.Health) error {
	if err := set.SetHealth(id, h); err != nil {
		return err
	}
	svc, err := lookupService(set, service)
	if err != nil {
		return err
	}
	_, err = Reconcile(set, []*maps.Service{svc})
	return err
}

// Reconcile swaps the table of every service whose table in force does not
// select as its weights and health say: a set-weight that raced with a
// health change may have written a table built from stale health.
func Reconcile(set *maps.Set, svcs []*maps.Service) (swapped []string, err error) {
	for _, svc := range svcs {
		want, err := svc.Table()
		if err != nil {
			return swapped, err
		}
		have, err := set.Table(svc.ID)
		if err != nil {
			return swapped, err
		}
		if sameSelection(have, &want) {
			continue
		}
		if err := set.SwapTable(svc); err != nil {
			return swapped, fmt.Errorf("reconcile: %w", err)
		}
		swapped = append(swapped, svc.Name)
	}
	return swapped, nil
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
