package loader

import (
	"fmt"
	"net/netip"

	"github.com/tcpshift/tcpshift/maps"
)

// Repicked says how often sk_lookup moved a client of a lookup-mode service
// with affinity off an endpoint that had no listening socket (a backend
// re-creating its listener, or gone): it chose for the client again, by the
// weights of the subsets with a listener, and the client's affinity names
// the endpoint it got. Counted on the endpoint the client left
// (endpoint_stats.repicked, 32 bits), from the endpoint's id being given to
// it: an endpoint removed from the service takes its count with it.
type Repicked struct {
	Total     uint64
	Endpoints map[netip.AddrPort]uint64 // the endpoints with a count above 0
}

// AffinityRepicked reads service's repick counts.
func (t *Target) AffinityRepicked(service string) (Repicked, error) {
	var r Repicked
	err := t.Read(func(set *maps.Set) error {
		r = Repicked{Endpoints: map[netip.AddrPort]uint64{}}
		svcs, err := set.ServiceList()
		if err != nil {
			return err
		}
		for _, svc := range svcs {
			if svc.Name != service {
				continue
			}
			for _, sub := range svc.Subsets {
				for _, ep := range sub.Endpoints {
					st, err := set.EndpointStats(ep.ID)
					if err != nil {
						return fmt.Errorf("service %s: %w", service, err)
					}
					if st.Repicked > 0 {
						r.Endpoints[ep.Addr] += uint64(st.Repicked)
						r.Total += uint64(st.Repicked)
					}
				}
			}
			return nil
		}
		return fmt.Errorf("no service %q", service)
	})
	return r, err
}
