package loader

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"

	"github.com/tcpshift/tcpshift/config"
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
}

// Apply makes the kernel match cfg: see ApplyWith.
func (t *Target) Apply(cfg *config.Config) ([]Change, error) {
	return t.ApplyWith(cfg, ApplyOptions{})
}

// ApplyWith makes the kernel match cfg: it loads and attaches the programs
// if needed, then adds, updates and removes services. It holds the
// namespace's writer lock from reading the state to the last write. Every
// check that can fail runs before the kernel is touched, and a write that
// fails midway is rolled back, so the namespace is left either exactly as
// cfg says or exactly as it was. Applying the same config twice changes
// nothing (round-robin positions included).
func (t *Target) ApplyWith(cfg *config.Config, opts ApplyOptions) ([]Change, error) {
	plans, err := t.plan(cfg, opts)
	defer closeAll(plans)
	if err != nil {
		return nil, err
	}
	if afterPlan != nil && !opts.DryRun {
		afterPlan()
	}
	old, _, unlock, err := t.inForce(opts, false)
	if err != nil {
		return nil, err
	}
	defer unlock()
	return t.commit(plans, old, opts, nil)
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
	// A shift holds its service's weights (see shiftOwners).
	notices, err := t.shiftOwners(set, d, opts)
	if err != nil {
		return nil, errors.Join(err, undoLoad())
	}
	if err := t.write(set, d); err != nil {
		return nil, errors.Join(err, undoLoad())
	}
	for _, n := range notices {
		if t.Notice != nil {
			t.Notice(n)
		}
	}
	return d.changes, nil
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
	return set.ServiceList()
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
		addRoutes: pd.AddRoutes, delRoutes: pd.DelRoutes}
	for i, a := range pd.Actions {
		ch := Change{Service: a.Service, Action: a.Action, KeptOverride: a.KeptOverride}
		if i < len(plans) {
			ch.Mode, ch.Waiting = plans[i].svc.Mode, plans[i].plan.Waiting
		}
		d.changes = append(d.changes, ch)
	}
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

// write carries a delta out in one transaction: on any error every map,
// route and link is put back as it was.
func (t *Target) write(set *maps.Set, d *delta) (err error) {
	if err := set.Begin(); err != nil {
		return err
	}
	w := &writing{t: t, set: set, d: d}
	defer func() {
		if err != nil {
			err = w.rollBack(err)
		}
	}()
	if err := w.records(); err != nil {
		return err
	}
	var svcs []*maps.Service
	for _, p := range d.plans {
		svcs = append(svcs, p.svc)
	}
	// sockops registers listeners by these tables: ids that go or change
	// address leave them before any endpoint is rewritten, new ones come in
	// once their endpoints are written. Frontend ports are let through
	// before frontends are written and narrowed once old ones are gone.
	listen := maps.Listeners(svcs)
	if err := w.widen(svcs, listen); err != nil {
		return err
	}
	fronts, err := w.services(listen)
	if err != nil {
		return err
	}
	if err := w.narrow(svcs, listen, fronts); err != nil {
		return err
	}
	if err := w.release(); err != nil {
		return err
	}
	return set.Commit()
}

// writing is one write's transaction: the maps, the delta, and how to put
// back the routes it changed so far.
type writing struct {
	t          *Target
	set        *maps.Set
	d          *delta
	undoRoutes []func() error
}

// rollBack puts the maps and the routes back as they were after err.
func (w *writing) rollBack(err error) error {
	errs := []error{w.set.Rollback()}
	for i := len(w.undoRoutes) - 1; i >= 0; i-- {
		errs = append(errs, w.undoRoutes[i]())
	}
	if rerr := errors.Join(errs...); rerr != nil {
		err = fmt.Errorf("%w (and rolling back: %v)", err, rerr)
	}
	return err
}

// records writes the namespace's records: its owner, the daemon that
// follows a file, the stored objects and the shifts the change ends.
func (w *writing) records() error {
	if err := w.t.recordOwner(w.set); err != nil {
		return err
	}
	if w.d.daemonFile != "" {
		if err := claimDaemon(w.set, w.d.daemonFile); err != nil {
			return err
		}
	}
	if err := w.d.objects.write(w.set); err != nil {
		return err
	}
	for id, sh := range w.d.endShifts {
		if err := w.set.PutShift(id, sh); err != nil {
			return err
		}
	}
	return nil
}

// widen makes way for the new services before any is written: listeners
// that go leave, frontend ports and local routes come in.
func (w *writing) widen(svcs []*maps.Service, listen maps.ListenTable) error {
	if err := w.set.PruneListeners(listen); err != nil {
		return err
	}
	if err := w.set.AddFrontendPorts(svcs); err != nil {
		return err
	}
	for _, addr := range w.d.addRoutes {
		if err := addLocalRoute(w.t.nl, addr); err != nil {
			return fmt.Errorf("frontend address of %s: %w", w.d.routeOwner(addr), err)
		}
		w.undoRoutes = append(w.undoRoutes, func() error { return delLocalRoute(w.t.nl, addr) })
	}
	return nil
}

// services registers the planned services' sockets and writes those that
// changed; it returns the frontends planned.
func (w *writing) services(listen maps.ListenTable) (map[netip.AddrPort]bool, error) {
	fronts := map[netip.AddrPort]bool{}
	var written []*maps.Service
	for _, p := range w.d.plans {
		fronts[p.svc.Frontend] = true
		if err := w.registerSockets(p, listen); err != nil {
			return nil, err
		}
		if !w.d.write[p.svc.Name] {
			continue
		}
		// Written in groups: the tables of a group are swapped in by
		// one update (see maps.Set.SwapTables).
		if written = append(written, p.svc); len(written) == maps.TablesPerSwap {
			if err := w.set.WriteServices(written); err != nil {
				return nil, err
			}
			written = nil
		}
	}
	return fronts, w.set.WriteServices(written)
}

// registerSockets registers the sockets planned for p's endpoints, and
// tags those sockops accounts listeners of.
func (w *writing) registerSockets(p *planned, listen maps.ListenTable) error {
	oldIDs := endpointIDs(w.d.old[p.svc.Name])
	for i, socks := range p.sockets {
		for j, sock := range socks {
			if sock == nil {
				continue
			}
			ep := p.svc.Subsets[i].Endpoints[j]
			if err := w.set.RegisterSocket(ep.ID, int(sock.File.Fd()), !oldIDs[ep.ID]); err != nil {
				return fmt.Errorf("service %s: register %s (%s; did it stop listening?): %w", p.svc.Name, ep.Addr, sock.Owner(), err)
			}
			if listen.Account(sock.Addr) {
				if err := w.set.TagListener(int(sock.File.Fd()), sock.Addr); err != nil {
					return fmt.Errorf("service %s: %w", p.svc.Name, err)
				}
			}
		}
	}
	return nil
}

// narrow takes away, once the new services are written, the frontends no
// service has any more (a frontend another service took over in this
// change stays), and the listeners, frontend ports and local routes
// nothing needs.
func (w *writing) narrow(svcs []*maps.Service, listen maps.ListenTable, fronts map[netip.AddrPort]bool) error {
	for _, o := range w.d.old {
		if !fronts[o.Frontend] {
			if err := w.set.DeleteFrontend(o); err != nil {
				return err
			}
		}
	}
	if err := w.set.SyncListeners(listen); err != nil {
		return err
	}
	if err := w.set.SyncFrontendPorts(svcs); err != nil {
		return err
	}
	for _, addr := range w.d.delRoutes {
		if err := delLocalRoute(w.t.nl, addr); err != nil {
			return err
		}
		w.undoRoutes = append(w.undoRoutes, func() error { return addLocalRoute(w.t.nl, addr) })
	}
	return nil
}

// release deletes the removed services and the endpoints kept services
// no longer use, then drops their sockets.
func (w *writing) release() error {
	// Counters the kernel keeps updating are reset late: a rollback puts
	// back snapshots of them, so as little as possible may fail after.
	if err := w.set.DeleteServices(w.d.removed); err != nil {
		return err
	}
	var drop []uint32
	for _, o := range w.d.removed {
		for _, sub := range o.Subsets {
			for _, ep := range sub.Endpoints {
				drop = append(drop, ep.ID)
			}
		}
	}
	for _, id := range w.d.released {
		if err := w.set.ReleaseEndpoint(id); err != nil {
			return err
		}
		drop = append(drop, id)
	}
	// Last, as they cannot be undone: released endpoints' sockets.
	for _, id := range drop {
		if err := w.set.DropSocket(id); err != nil {
			return err
		}
	}
	return nil
}

// endpointIDs returns the endpoint ids of a service in force (nil: none).
func endpointIDs(o *maps.Service) map[uint32]bool {
	ids := map[uint32]bool{}
	if o == nil {
		return ids
	}
	for _, sub := range o.Subsets {
		for _, ep := range sub.Endpoints {
			ids[ep.ID] = true
		}
	}
	return ids
}
