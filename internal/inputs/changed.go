package inputs

import (
	"reflect"
	"slices"

	"github.com/tcpshift/tcpshift/config"
)

// changed names the services whose config or origin differs between two
// builds (those only one of them has included): the rest the loader may
// leave as they are in force (loader.Built.Changed).
func changed(prev *Change, cfg *config.Config, origins map[string]string) map[string]bool {
	was := prev.Config.Services
	out := map[string]bool{}
	differs := func(b, s *config.Service) {
		if !sameService(b, s) || prev.origins[s.Name] != origins[s.Name] {
			out[s.Name] = true
		}
	}
	// The services usually come in the same order as before: compare them
	// in place, and look the others up by name.
	var before map[string]*config.Service
	seen := make([]bool, len(was))
	for i := range cfg.Services {
		s := &cfg.Services[i]
		if i < len(was) && was[i].Name == s.Name {
			seen[i] = true
			differs(&was[i], s)
			continue
		}
		if before == nil {
			before = make(map[string]*config.Service, len(was))
			for j := range was {
				before[was[j].Name] = &was[j]
			}
		}
		if b := before[s.Name]; b != nil {
			differs(b, s)
		} else {
			out[s.Name] = true
		}
	}
	var names map[string]bool
	if before != nil {
		names = make(map[string]bool, len(cfg.Services))
		for i := range cfg.Services {
			names[cfg.Services[i].Name] = true
		}
	}
	for j := range was {
		if !seen[j] && (before == nil || !names[was[j].Name]) {
			out[was[j].Name] = true
		}
	}
	return out
}

// sameService reports whether two services of a config ask for the same,
// lines aside (a service moved in its file is the same service). It
// compares field by field: reflect.DeepEqual costs about 3 µs a service,
// 30 ms for ten thousand. TestSameServiceCoversEveryField keeps it whole.
func sameService(a, b *config.Service) bool {
	if a.Name != b.Name || a.Listen != b.Listen || a.Mode != b.Mode || a.Policy != b.Policy ||
		a.Failover != b.Failover || a.Accounting != b.Accounting || a.Claim != b.Claim ||
		!samePointee(a.Affinity, b.Affinity) || !samePointee(a.Health, b.Health) || !samePointee(a.Shift, b.Shift) ||
		len(a.Subsets) != len(b.Subsets) {
		return false
	}
	for i := range a.Subsets {
		x, y := &a.Subsets[i], &b.Subsets[i]
		if x.Name != y.Name || x.Weight != y.Weight || !slices.Equal(x.Endpoints, y.Endpoints) {
			return false
		}
	}
	return true
}

func samePointee[T any](a, b *T) bool {
	if a == nil || b == nil {
		return a == b
	}
	return reflect.DeepEqual(*a, *b)
}
