package loader

import (
	"errors"
	"fmt"
	"strings"

	"github.com/tcpshift/tcpshift/maps"
)

// Weight is a new weight for one subset.
type Weight struct {
	Subset string
	Weight uint64
}

// SetWeights changes subsets' weights live. Subsets not named keep theirs.
// The new table replaces the old one in one map update; connections already
// established are not touched. It holds the writer lock, so two changes to
// one service never lose one another. While a daemon manages the namespace
// the weights are a runtime override of its file's (see Service.Overridden).
func (t *Target) SetWeights(service string, weights []Weight) (*maps.Service, error) {
	var svc *maps.Service
	err := t.Update(func(set *maps.Set) error {
		var err error
		if svc, err = lookupService(set, service); err != nil {
			return err
		}
		for _, w := range weights {
			i := svc.Subset(w.Subset)
			if i < 0 {
				return noSubset(svc, w.Subset)
			}
			svc.Subsets[i].Weight = w.Weight
		}
		if err := set.SwapTable(svc); err != nil {
			return err
		}
		return set.PutMeta(svc)
	})
	if err != nil {
		return nil, err
	}
	return svc, nil
}

// ErrNoService is returned when a named service is not loaded.
var ErrNoService = errors.New("no such service")

func lookupService(set *maps.Set, name string) (*maps.Service, error) {
	svc, ok, err := set.Service(name)
	if err != nil {
		return nil, err
	}
	if !ok {
		all, err := set.ServiceList()
		if err != nil {
			return nil, err
		}
		names := make([]string, len(all))
		for i, s := range all {
			names[i] = s.Name
		}
		return nil, fmt.Errorf("%w %q (loaded: %s)", ErrNoService, name, strings.Join(names, ", "))
	}
	return svc, nil
}
