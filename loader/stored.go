package loader

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/tcpshift/tcpshift/config"
	"github.com/tcpshift/tcpshift/maps"
)

// ObjectChange is what one apply changes among the stored input objects
// (Istio's, the Gateway API's): the loader keeps them as text, with the
// namespace's state, and never reads them.
type ObjectChange struct {
	Put    []maps.StoredObject
	Delete []maps.ObjectKey
}

func (c *ObjectChange) write(set *maps.Set) error {
	if c == nil {
		return nil
	}
	if set.Stored == nil {
		return errors.New("store objects: the pinned state predates the objects map (run tcpshift down, then apply)")
	}
	for _, k := range c.Delete {
		if err := set.DeleteObject(k); err != nil {
			return err
		}
	}
	for _, o := range c.Put {
		if err := set.PutObject(o); err != nil {
			return err
		}
	}
	return nil
}

// Built is what a Build makes of the state: the whole config, the objects
// behind each derived service, and the change to the stored objects.
type Built struct {
	Config  *config.Config
	Origins map[string]string // service name → the objects behind it
	Objects *ObjectChange
}

// Build turns the stored objects and the services in force into the config
// to apply. It runs under the namespace's writer lock, so what it reads is
// what the change is made over.
type Build func(stored []maps.StoredObject, current []*maps.Service) (*Built, error)

// ApplyBuilt applies what build makes, in one transaction with the change
// to the stored objects: another writer cannot slip in between the read
// of the objects and the write. An endpoint that was applied before and
// has no listener now is waited for (the kernel registers it when it comes
// back) rather than refused; a new one must listen.
func (t *Target) ApplyBuilt(build Build, opts ApplyOptions) ([]Change, error) {
	old, stored, unlock, err := t.inForce(opts, true)
	if err != nil {
		return nil, err
	}
	defer unlock()
	b, err := build(stored, old)
	if err != nil {
		return nil, err
	}
	opts.applied = map[string][]netip.AddrPort{}
	for _, svc := range old {
		if svc.Mode != maps.ModeLookup {
			continue
		}
		for _, sub := range svc.Subsets {
			for _, ep := range sub.Endpoints {
				opts.applied[svc.Name] = append(opts.applied[svc.Name], ep.Addr)
			}
		}
	}
	if b.Objects != nil {
		for _, o := range b.Objects.Put {
			if err := maps.CheckObject(o); err != nil {
				return nil, fmt.Errorf("%s %s/%s: %w", o.Key.Kind, o.Key.Namespace, o.Key.Name, err)
			}
		}
	}
	plans, err := t.plan(b.Config, opts)
	defer closeAll(plans)
	if err != nil {
		return nil, err
	}
	for _, p := range plans {
		p.svc.Origin = b.Origins[p.svc.Name]
	}
	return t.commit(plans, old, opts, b.Objects)
}

// currentStored reads, under the lock, the services in force (refusing
// state that is not this namespace's, or a daemon's) and the stored objects.
// Objects are read whenever the state is loaded, services or none: objects
// that make no service yet (a ServiceEntry and its WorkloadEntries, applied
// on their own as kubectl users do) are what the next apply builds on.
func (t *Target) currentStored(opts ApplyOptions) ([]*maps.Service, []maps.StoredObject, error) {
	old, err := t.current(opts)
	if err != nil {
		return nil, nil, err
	}
	set, err := t.loadedMaps()
	if err != nil {
		return nil, nil, err
	}
	if set == nil {
		// Nothing applied yet, or stale state current removed.
		return old, nil, nil
	}
	defer set.Close()
	stored, err := set.Objects()
	return old, stored, err
}

// Natives returns the services in force that come from tcpshift's own route
// config (not derived from objects), as a config whose weights are the
// file's: applied again with KeepOverrides, they stay as they are.
func Natives(svcs []*maps.Service) *config.Config {
	var own []*maps.Service
	for _, svc := range svcs {
		if svc.Origin == "" {
			own = append(own, svc)
		}
	}
	cfg := Export(own)
	for i, svc := range own {
		for j, sub := range svc.Subsets {
			cfg.Services[i].Subsets[j].Weight = sub.FileWeight
		}
	}
	cfg.Path = "<applied route config>"
	return cfg
}
