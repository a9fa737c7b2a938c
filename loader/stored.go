package loader

import (
	"errors"
	"fmt"

	"github.com/tcpshift/tcpshift/config"
	"github.com/tcpshift/tcpshift/maps"
	"github.com/tcpshift/tcpshift/plan"
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
	// Changed, when not nil, names the services whose config or origin
	// may differ from what the caller's last apply made (and those it
	// removed): while the state in force is the one this Target's last
	// apply left, the other connect-mode services stay exactly as they
	// are, unplanned (see Target.scope). nil: plan every service.
	Changed map[string]bool
}

// A Build makes what an apply writes from the state in force: the stored
// objects and the services. Apply runs it under the namespace's writer
// lock, so what it reads is what the change is made over.
type Build interface {
	Build(stored []maps.StoredObject, current []*maps.Service) (*Built, error)
}

// BuildFunc is a function as a Build.
type BuildFunc func(stored []maps.StoredObject, current []*maps.Service) (*Built, error)

func (f BuildFunc) Build(stored []maps.StoredObject, current []*maps.Service) (*Built, error) {
	return f(stored, current)
}

// Fixed is the Build of a whole config that does not depend on the state
// in force (tests, the demo, the proxy command). Apply plans it before it
// takes the lock, as finding listening sockets takes a while, and holds
// the lock only to read the state in force and write; what another writer
// changes in between is decided again under the lock (local routes).
func Fixed(cfg *config.Config) Build { return fixed{cfg} }

type fixed struct{ cfg *config.Config }

func (f fixed) Build([]maps.StoredObject, []*maps.Service) (*Built, error) {
	return &Built{Config: f.cfg}, nil
}

// planBuilt runs b over the state in force (under the lock) and plans
// what it makes, returning the plans (also when it fails: their sockets
// are the caller's to close) and the change to the stored objects. It
// completes opts with what the state in force tells: an endpoint that was
// applied before and has no listener now is waited for (the kernel
// registers it when it comes back) rather than refused, a new one must
// listen; and which services the change leaves as they are (see scope).
func (t *Target) planBuilt(b Build, stored []maps.StoredObject, old []*maps.Service, opts *ApplyOptions) ([]*planned, *ObjectChange, error) {
	built, err := b.Build(stored, old)
	if err != nil {
		return nil, nil, err
	}
	if err := built.Objects.check(); err != nil {
		return nil, nil, err
	}
	opts.applied = plan.Applied(old)
	opts.only, opts.kept = t.scope(built, old, *opts)
	plans, err := t.plan(built.Config, *opts)
	if err != nil {
		return plans, nil, err
	}
	for _, p := range plans {
		p.svc.Origin = built.Origins[p.svc.Name]
	}
	return plans, built.Objects, nil
}

// check says why an object of the change cannot be stored, naming it.
func (c *ObjectChange) check() error {
	if c == nil {
		return nil
	}
	for _, o := range c.Put {
		if err := maps.CheckObject(o); err != nil {
			return fmt.Errorf("%s %s/%s: %w", o.Key.Kind, o.Key.Namespace, o.Key.Name, err)
		}
	}
	return nil
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
