// Package inputs turns what the user gave (tcpshift's route config and
// Istio or Gateway API objects) into one loader change: the services of
// the route config and those derived from every stored object together,
// and the change to the stored objects. The CLI and the daemon share it.
package inputs

import (
	"fmt"
	"slices"
	"time"

	"github.com/tcpshift/tcpshift/config"
	"github.com/tcpshift/tcpshift/config/istio"
	"github.com/tcpshift/tcpshift/loader"
	"github.com/tcpshift/tcpshift/maps"
)

// Change is what an apply, a delete or the daemon does to the stored
// objects and to tcpshift's own route config.
type Change struct {
	Native *config.Config  // the route config in force from now; nil: keep the one applied
	Put    []*istio.Object // created or updated
	Delete []istio.Key     // removed; one not stored refuses the change
	Exact  bool            // the stored objects become exactly Put, the route config Native (tcpshift run's files)
	// Previous is the change the caller applied last, if known (tcpshift
	// run's last good one): the services it made the same are left out of
	// Built.Changed, so the loader may leave them unplanned.
	Previous *Change

	// Set by Build: settings tcpshift does not apply, and the whole
	// config it made (the last time it ran).
	Notes   []string
	Config  *config.Config
	origins map[string]string
}

// Build is the change as a loader.Build: services are the route config's
// and those derived from every stored object after the change, together.
func (ch *Change) Build(stored []maps.StoredObject, current []*maps.Service) (*loader.Built, error) {
	objs := map[istio.Key]*istio.Object{}
	var order []istio.Key
	change := &loader.ObjectChange{}
	texts := map[istio.Key][]byte{} // for the creation times they keep
	for _, s := range stored {
		k := istio.Key(s.Key)
		texts[k] = s.Text
		if ch.Exact {
			change.Delete = append(change.Delete, s.Key)
			continue
		}
		o, err := istio.DecodeStored(k, s.Text)
		if err != nil {
			return nil, err
		}
		objs[k] = o
		order = append(order, k)
	}
	for _, k := range ch.Delete {
		if _, ok := objs[k]; !ok {
			return nil, fmt.Errorf("%s is not applied: nothing deleted", k)
		}
		delete(objs, k)
		change.Delete = append(change.Delete, maps.ObjectKey(k))
	}
	now := time.Now()
	for _, o := range ch.Put {
		o, err := istio.Stamped(o, texts[o.Key], now)
		if err != nil {
			return nil, err
		}
		if _, ok := objs[o.Key]; !ok {
			order = append(order, o.Key)
		}
		objs[o.Key] = o
		change.Put = append(change.Put, maps.StoredObject{Key: maps.ObjectKey(o.Key), Text: o.Text})
	}
	var list []*istio.Object
	for _, k := range order {
		if o, ok := objs[k]; ok {
			list = append(list, o)
		}
	}
	res, err := istio.Derive(list)
	if err != nil {
		return nil, err
	}
	ch.Notes = res.Notes
	native := ch.Native
	if native == nil && !ch.Exact {
		native = loader.Natives(current)
	}
	cfg, err := combine(native, res)
	if err != nil {
		return nil, err
	}
	ch.Config = cfg
	origins := map[string]string{}
	for name := range res.Origins {
		origins[name] = res.OriginText(name)
	}
	ch.origins = origins
	b := &loader.Built{Config: cfg, Origins: origins, Objects: change}
	// Previous serves one Build: kept, each change would hold every one
	// before it (and a Build run again, after a failure, plans all).
	if p := ch.Previous; p != nil && p.Config != nil {
		b.Changed = changed(p, cfg, origins)
	}
	ch.Previous = nil
	return b, nil
}

// combine is istio.Combine, except that a route config alone (no object
// makes a service) is taken as it is: Combine would check again the ten
// thousand names and frontends the parser checked, at every change of
// tcpshift run's file.
func combine(native *config.Config, res *istio.Result) (*config.Config, error) {
	if native != nil && len(res.Services) == 0 {
		return &config.Config{Path: native.Path, Services: slices.Clip(native.Services)}, nil
	}
	return istio.Combine(native, res)
}
