package daemon

import (
	"fmt"
	"reflect"
	"strings"

	"github.com/tcpshift/tcpshift/maps"
)

// remember records the state as the daemon leaves it after its own write.
func (d *daemon) remember() {
	svcs, err := d.set.ServiceList()
	if err != nil {
		d.log.Error("read services", "err", err)
		return
	}
	d.written = svcs
}

// noticeOutsideChanges logs what changed since the daemon last wrote or
// looked: a set-weight is a runtime override (it lasts until the service's
// route in the file changes, or SIGHUP); anything else was a forced apply or
// a tool writing the maps.
func (d *daemon) noticeOutsideChanges(now []*maps.Service) {
	if d.written == nil {
		return
	}
	before := map[string]*maps.Service{}
	for _, s := range d.written {
		before[s.Name] = s
	}
	seen := map[string]bool{}
	for _, s := range now {
		seen[s.Name] = true
		b := before[s.Name]
		switch {
		case b == nil:
			d.log.Warn("service added outside the daemon (tcpshift apply --force?)", "service", s.Name)
		case reflect.DeepEqual(b, s):
		case sameButWeights(b, s) && d.shiftChange(s):
		case sameButWeights(b, s) && !s.Overridden():
			d.log.Info("set-weight override ended: the file's weights are in force", "service", s.Name, "weights", weights(s, false))
		case sameButWeights(b, s):
			d.log.Info("runtime override by set-weight: it lasts until the service's route in the file changes, or SIGHUP",
				"service", s.Name, "weights", weights(s, false), "file_weights", weights(s, true))
		default:
			d.log.Warn("service changed outside the daemon (tcpshift apply --force?)", "service", s.Name)
			d.resync = true
		}
		if b == nil {
			d.resync = true
		}
	}
	for name := range before {
		if !seen[name] {
			d.log.Warn("service removed outside the daemon (tcpshift apply --force?)", "service", name)
			d.resync = true
		}
	}
	d.written = now
}

// sameButWeights reports whether two states of a service differ only in
// the weights in force.
func sameButWeights(a, b *maps.Service) bool {
	if len(a.Subsets) != len(b.Subsets) {
		return false
	}
	c := *b
	c.Subsets = append([]maps.Subset(nil), b.Subsets...)
	for i := range c.Subsets {
		c.Subsets[i].Weight = a.Subsets[i].Weight
	}
	return reflect.DeepEqual(a, &c)
}

func weights(s *maps.Service, file bool) string {
	parts := make([]string, len(s.Subsets))
	for i, sub := range s.Subsets {
		w := sub.Weight
		if file {
			w = sub.FileWeight
		}
		parts[i] = fmt.Sprintf("%s=%d", sub.Name, w)
	}
	return strings.Join(parts, " ")
}
