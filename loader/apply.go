package loader

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"

	"github.com/tcpshift/tcpshift/maps"
	"github.com/tcpshift/tcpshift/plan"
)

// Change says what Apply did (or, dry, would do) to one service.
type Change struct {
	Service string
	Action  string    // "added", "updated", "unchanged", "removed"
	Mode    maps.Mode // the mode in force (not set for "removed")
	// Waiting lists lookup-mode endpoints nothing listens on yet (the
	// daemon applies them; they get connections once they listen).
	Waiting []Waiting
	// KeptOverride: weights set with set-weight stay, since the file's
	// route for the service did not change.
	KeptOverride bool
}

// Waiting is a lookup-mode endpoint with no listener in the namespace yet.
type Waiting = plan.Waiting

// ApplyOptions adjust Apply.
type ApplyOptions struct {
	DryRun bool // plan and report the changes, change nothing
	Force  bool // apply even while a daemon manages the namespace
	// Daemon is set by tcpshift run: lookup-mode endpoints not listening
	// yet are applied without a socket instead of refused, and the calling
	// process is recorded, in the same change, as the daemon following
	// DaemonFile.
	Daemon     bool
	DaemonFile string
	// KeepOverrides keeps set-weight's weights of every service whose
	// route in the file did not change (the daemon, except on SIGHUP).
	KeepOverrides bool

	// applied lists, per service, the endpoints in force before: one of
	// them that nothing listens on now is waited for, not refused.
	applied map[string][]netip.AddrPort
	// only and kept scope a change (see Target.scope): plan only the
	// services named, keep these in force as they are.
	only map[string]bool
	kept []*maps.Service
}

// Apply is the one way an apply changes what the namespace holds: it
// makes the kernel match what b makes of the state in force, loading and
// attaching the programs if needed, then adding, updating and removing
// services, and storing the input objects' change in the same transaction.
// It holds the namespace's writer lock from reading the state to the last
// write (a Fixed config is planned before, see Fixed). Every check that can
// fail runs before the kernel is touched, and a write that fails midway is
// rolled back, so the namespace is left either exactly as b says or exactly
// as it was. Applying the same config twice changes nothing (round-robin
// positions included). A dry run plans from the state read without the
// lock and stops before the first write.
func (t *Target) Apply(b Build, opts ApplyOptions) ([]Change, error) {
	f, early := b.(fixed)
	var plans []*planned
	defer func() { closeAll(plans) }()
	if early {
		var err error
		if plans, err = t.plan(f.cfg, opts); err != nil {
			return nil, err
		}
		if afterPlan != nil && !opts.DryRun {
			afterPlan()
		}
	}
	old, stored, unlock, err := t.inForce(opts, !early)
	if err != nil {
		return nil, err
	}
	defer unlock()
	var objects *ObjectChange
	if !early {
		if plans, objects, err = t.planBuilt(b, stored, old, &opts); err != nil {
			return nil, err
		}
	}
	return t.commit(plans, old, opts, objects)
}

// inForce reads the services in force and, withObjects, the stored
// objects: for a dry run from one consistent state without the lock, as
// status does (nothing loaded reads as nothing); otherwise under the
// namespace's writer lock, which it returns the release of, refusing state
// that is not this namespace's or that a daemon manages (see current).
func (t *Target) inForce(opts ApplyOptions, withObjects bool) (old []*maps.Service, stored []maps.StoredObject, unlock func(), err error) {
	if opts.DryRun {
		err = t.Read(func(set *maps.Set) (err error) {
			if old, err = set.ServiceList(); err != nil || !withObjects {
				return err
			}
			stored, err = set.Objects()
			return err
		})
		if errors.Is(err, maps.ErrNotLoaded) {
			err = nil
		}
		return old, stored, func() {}, err
	}
	unlock, err = t.lock(true)
	if err != nil {
		return nil, nil, nil, err
	}
	if withObjects {
		old, stored, err = t.currentStored(opts)
	} else {
		old, err = t.current(opts)
	}
	if err != nil {
		unlock()
		return nil, nil, nil, err
	}
	return old, stored, unlock, nil
}

// closeAll closes the sockets planned services hold.
func closeAll(plans []*planned) {
	for _, p := range plans {
		closeSockets(p)
	}
}

// commit carries out planned services over the state in force (old), with
// the stored objects' change, if any; a dry run stops once the change is
// planned and returns what it would be. The caller holds the lock unless
// the run is dry.
func (t *Target) commit(plans []*planned, old []*maps.Service, opts ApplyOptions, objects *ObjectChange) ([]Change, error) {
	if err := t.decideRoutes(plans, old); err != nil {
		return nil, err
	}
	d, err := diff(plans, old, opts)
	if err != nil {
		return nil, err
	}
	if opts.DryRun {
		return d.changes, nil
	}
	set, closeSet, undoLoad, err := t.programs()
	if err != nil {
		return nil, err
	}
	defer closeSet()
	if opts.Daemon {
		d.daemonFile = opts.DaemonFile
	}
	d.objects = objects
	if err := t.execute(set, d, opts); err != nil {
		return nil, errors.Join(err, undoLoad())
	}
	t.remember(set, d)
	return d.changes, nil
}

// execute carries a planned delta out over set, the executor's whole job:
// a shift keeps the weights it holds (see shiftOwners), then one write;
// what it did on its own besides is told once the change is made.
func (t *Target) execute(set *maps.Set, d *delta, opts ApplyOptions) error {
	notices, err := t.shiftOwners(set, d, opts)
	if err != nil {
		return err
	}
	if err := t.write(set, d); err != nil {
		return err
	}
	for _, n := range notices {
		if t.Notice != nil {
			t.Notice(n)
		}
	}
	return nil
}

// programs makes sure this build's programs are attached, loading them
// unless they already are, and returns the maps; undo reverts a load.
func (t *Target) programs() (_ *maps.Set, closeSet func() error, undo func() error, err error) {
	if err := checkCgroup(t.Cgroup); err != nil {
		return nil, nil, nil, err
	}
	set, err := t.attached()
	if err != nil || set != nil {
		return set, func() error { return set.Close() }, func() error { return nil }, err
	}
	coll, undoLoad, err := t.load()
	if err != nil {
		return nil, nil, nil, err
	}
	set, err = maps.FromCollection(coll)
	if err != nil {
		coll.Close()
		return nil, nil, nil, errors.Join(err, undoLoad())
	}
	return set, func() error { coll.Close(); return nil }, undoLoad, nil
}

// afterPlan runs between planning and taking the lock, for tests of what
// another writer may change in between; nil outside tests.
var afterPlan func()

// current reads the services in force, refusing state that is not this
// namespace's or that a daemon manages. The caller holds the lock.
func (t *Target) current(opts ApplyOptions) ([]*maps.Service, error) {
	set, err := t.loadedMaps()
	if set == nil {
		return nil, err
	}
	defer set.Close()
	if removed, err := t.dropStale(set); err != nil || removed {
		return nil, err
	}
	switch {
	case opts.Daemon:
		o, err := set.Owner()
		if err != nil {
			return nil, err
		}
		if d := runningDaemon(&o); d != nil && d.Pid != os.Getpid() {
			return nil, fmt.Errorf("%w: %s already manages this network namespace: stop it first", ErrDaemon, d)
		}
	case !opts.Force:
		if err := refuseIfManaged(set, "apply"); err != nil {
			return nil, err
		}
	}
	return t.servicesInForce(set)
}

// delta is one planned change as data: ids assigned, limits checked,
// routes decided. write carries it out.
type delta struct {
	plans      []*planned
	old        map[string]*maps.Service
	removed    []*maps.Service
	released   []uint32 // endpoint ids of kept services that are gone
	write      map[string]bool
	daemonFile string // record the caller as the daemon following it
	objects    *ObjectChange
	addRoutes  []netip.Addr
	delRoutes  []netip.Addr
	changes    []Change
	kept       []*maps.Service // in force, left as they are (see Target.scope)
	slots      *maps.ListSlots // the lists map as the write left it

	// endShifts are shifts a forced change aborts, by service id.
	endShifts map[uint32]maps.Shift
}

// diff plans the whole change: ids, limits, routes, and what each service
// needs (see plan.Diff). It touches nothing.
func diff(plans []*planned, old []*maps.Service, opts ApplyOptions) (*delta, error) {
	limits, err := maps.Capacities()
	if err != nil {
		return nil, err
	}
	pd, err := plan.Diff(planServices(plans), old, limits, opts.KeepOverrides)
	if err != nil {
		return nil, err
	}
	d := &delta{plans: plans, old: pd.Old, removed: pd.Removed, released: pd.Released, write: pd.Write,
		addRoutes: pd.AddRoutes, delRoutes: pd.DelRoutes, changes: make([]Change, 0, len(pd.Actions))}
	for i, a := range pd.Actions {
		ch := Change{Service: a.Service, Action: a.Action, KeptOverride: a.KeptOverride}
		if i < len(plans) {
			ch.Mode, ch.Waiting = plans[i].svc.Mode, plans[i].plan.Waiting
		}
		d.changes = append(d.changes, ch)
	}
	d.keep(opts.kept, len(plans))
	return d, nil
}

// routeOwner names the services whose frontend is addr, for errors.
func (d *delta) routeOwner(addr netip.Addr) string {
	var names []string
	for _, p := range d.plans {
		if p.svc.Frontend.Addr() == addr {
			names = append(names, "service "+p.svc.Name)
		}
	}
	return strings.Join(names, ", ")
}
