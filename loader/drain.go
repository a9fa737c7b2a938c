package loader

import (
	"fmt"
	"strings"

	"github.com/tcpshift/tcpshift/maps"
)

// SubsetLoad is what draining a subset depends on: its weight (new
// connections keep arriving above 0) and the connections its endpoints hold.
type SubsetLoad struct {
	Weight uint64
	Active uint64
}

// Load reads a subset's weight and active connections.
func (t *Target) Load(service, subset string) (load SubsetLoad, err error) {
	err = t.Read(func(set *maps.Set) error {
		load, err = readLoad(set, service, subset)
		return err
	})
	return load, err
}

func readLoad(set *maps.Set, service, subset string) (SubsetLoad, error) {
	svc, err := lookupService(set, service)
	if err != nil {
		return SubsetLoad{}, err
	}
	i := svc.Subset(subset)
	if i < 0 {
		return SubsetLoad{}, noSubset(svc, subset)
	}
	if svc.NoAccounting {
		return SubsetLoad{}, fmt.Errorf("service %s has accounting: false, so nothing counts its active connections; set accounting: true to drain it", svc.Name)
	}
	load := SubsetLoad{Weight: svc.Subsets[i].Weight}
	for _, ep := range svc.Subsets[i].Endpoints {
		st, err := set.EndpointStats(ep.ID)
		if err != nil {
			return load, err
		}
		load.Active += st.Active
	}
	return load, nil
}

func noSubset(svc *maps.Service, subset string) error {
	names := make([]string, len(svc.Subsets))
	for k, s := range svc.Subsets {
		names[k] = s.Name
	}
	return fmt.Errorf("service %s has no subset %q (subsets: %s)", svc.Name, subset, strings.Join(names, ", "))
}
