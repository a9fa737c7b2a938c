package agent

import (
	"log/slog"
	"reflect"
	"time"

	"github.com/tcpshift/tcpshift/config/istio"
	"github.com/tcpshift/tcpshift/config/kube"
)

// checkEvery is how often a sync derives the whole node again instead of
// only what changed: the consistency check of the incremental derivation
// (kube.Deriver), whose differences are logged and counted.
const checkEvery = 10 * time.Minute

// derivation is the agent's kube.Deriver and when it last derived all.
type derivation struct {
	d        *kube.Deriver
	lastFull time.Time
	// again makes the next sync derive everything (after a failed apply,
	// whatever the Deriver made may not be in force).
	again bool
	// drift counts the services a consistency check found different.
	drift int
}

// derive makes the node's services: everything on the first sync, after a
// failure and every checkEvery; otherwise only what w saw change.
func (dv *derivation) derive(w *watch, opts kube.Options, log *slog.Logger) (*kube.Result, []istio.Rejection, error) {
	ch := w.changes.take()
	if dv.d != nil && !dv.again && time.Since(dv.lastFull) < checkEvery {
		objs, rejected := w.objects()
		res, err := dv.d.Update(w.lookup(objs), ch)
		return res, rejected, err
	}
	snap, rejected := w.snapshot()
	fresh := kube.NewDeriver(opts)
	res, err := fresh.Full(snap)
	if err != nil {
		return nil, nil, err
	}
	if dv.d != nil && !dv.again {
		// The incremental state, brought up to date, against the full one.
		objs, _ := w.objects()
		inc, err := dv.d.Update(w.lookup(objs), ch)
		if err == nil {
			if n := differences(inc, res); n > 0 {
				dv.drift += n
				log.Warn("the incremental derivation differed from a full one; the full one is applied", "services", n)
			}
		}
	}
	dv.d, dv.lastFull, dv.again = fresh, time.Now(), false
	return res, rejected, nil
}

// differences counts the services two derivations make differently.
func differences(a, b *kube.Result) int {
	byName := map[string]int{}
	for i, s := range b.Config.Services {
		byName[s.Name] = i
	}
	n := 0
	for _, s := range a.Config.Services {
		i, ok := byName[s.Name]
		if !ok || !reflect.DeepEqual(s, b.Config.Services[i]) || a.Origins[s.Name] != b.Origins[s.Name] {
			n++
		}
		delete(byName, s.Name)
	}
	return n + len(byName)
}
