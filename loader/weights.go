package loader

import (
	"errors"
	"fmt"
	"slices"
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
// While a shift holds the service's weights (see ShiftHolds) a change is
// refused with a ShiftingError.
func (t *Target) SetWeights(service string, weights []Weight) (*maps.Service, error) {
	svc, _, err := t.SetWeightsWith(service, weights, SetWeightsOptions{})
	return svc, err
}

// SetWeightsOptions adjust SetWeightsWith.
type SetWeightsOptions struct {
	// Force aborts a shift that holds the service's weights: its weights
	// go back to where they were before the shift, the record says it was
	// aborted by set-weight --force, and the weights given are set over
	// those, all in one change.
	Force bool
}

// SetWeightsWith is SetWeights with options; aborted is what it says of the
// shift it aborted ("" for none).
func (t *Target) SetWeightsWith(service string, weights []Weight, opts SetWeightsOptions) (svc *maps.Service, aborted string, err error) {
	err = t.Update(func(set *maps.Set) error {
		aborted = ""
		var err error
		if svc, err = lookupService(set, service); err != nil {
			return err
		}
		sh, held, err := heldShift(set, svc)
		if err != nil {
			return err
		}
		before := svc.Weights()
		if held && opts.Force {
			if n := len(svc.Subsets); len(sh.Before) >= n {
				for i := range svc.Subsets {
					svc.Subsets[i].Weight = sh.Before[i]
				}
			}
		}
		for _, w := range weights {
			i := svc.Subset(w.Subset)
			if i < 0 {
				return noSubset(svc, w.Subset)
			}
			svc.Subsets[i].Weight = w.Weight
		}
		if held && !slices.Equal(before, svc.Weights()) {
			if !opts.Force {
				return refuseShifting(svc, sh, "set-weight")
			}
			aborted = DescribeShift(svc, sh)
			if err := set.PutShift(svc.ID, abortedBy(sh, "aborted by set-weight --force: "+weightsText(svc))); err != nil {
				return err
			}
		}
		if err := set.SwapTable(svc); err != nil {
			return err
		}
		return set.PutMeta(svc)
	})
	if err != nil {
		return nil, "", err
	}
	return svc, aborted, nil
}

func weightsText(svc *maps.Service) string {
	parts := make([]string, len(svc.Subsets))
	for i, s := range svc.Subsets {
		parts[i] = fmt.Sprintf("%s=%d", s.Name, s.Weight)
	}
	return strings.Join(parts, " ")
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
