package loader

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/tcpshift/tcpshift/maps"
)

// The executor: a write carries one planned delta out over the maps (a
// maps.Set, over the kernel's maps or memory) and the local routes, as
// one transaction.

// write carries a delta out in one transaction, in named steps (see
// writing.steps): on any error every map and route is put back as it was.
func (t *Target) write(set *maps.Set, d *delta) (err error) {
	if err := set.Begin(); err != nil {
		return err
	}
	set.UseListSlots(t.listSlots(set))
	w := &writing{t: t, set: set, d: d}
	defer func() {
		if err != nil {
			err = w.rollBack(err)
		}
	}()
	for _, step := range w.steps() {
		if t.traceWrite != nil {
			t.traceWrite(step.name)
		}
		if err := step.run(); err != nil {
			return err
		}
	}
	d.slots = set.ListSlots()
	return set.Commit()
}

// writeStep is one step of a write.
type writeStep struct {
	name string
	run  func() error
}

// steps are a write's steps in their order: records (owner, daemon, stored
// objects, ended shifts); widen (listeners that go leave, frontend ports
// and local routes come in); services (sockets registered, tables written
// in groups); narrow (old frontends, listeners, ports and routes nothing
// needs go); release (removed services, released endpoint ids, their
// sockets last, as they cannot be undone).
func (w *writing) steps() []writeStep {
	planned := make([]*maps.Service, 0, len(w.d.plans))
	for _, p := range w.d.plans {
		planned = append(planned, p.svc)
	}
	w.frontsInForce = w.d.frontendsAsInForce()
	// sockops registers listeners by these tables: ids that go or change
	// address leave them before any endpoint is rewritten, new ones come in
	// once their endpoints are written. Frontend ports are let through
	// before frontends are written and narrowed once old ones are gone.
	// Only lookup mode has listeners, and kept services are connect mode
	// (see Target.scope): the planned ones give the whole table.
	listen := maps.Listeners(planned)
	var fronts map[netip.AddrPort]bool
	return []writeStep{
		{"records", w.records},
		{"widen", func() error { return w.widen(listen) }},
		{"services", func() (err error) {
			fronts, err = w.services(listen)
			return err
		}},
		{"narrow", func() error { return w.narrow(listen, fronts) }},
		{"release", w.release},
	}
}

// writing is one write's transaction: the maps, the delta, and how to put
// back the routes it changed so far.
type writing struct {
	t          *Target
	set        *maps.Set
	d          *delta
	undoRoutes []func() error
	// frontsInForce: the change leaves the frontend ports, the connect
	// filter and the listeners as the state in force has them (see
	// delta.frontendsAsInForce), so neither is read or written.
	frontsInForce bool
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
func (w *writing) widen(listen maps.ListenTable) error {
	if !w.frontsInForce {
		if err := w.set.PruneListeners(listen); err != nil {
			return err
		}
		if err := w.set.AddFrontendPorts(w.d.services()); err != nil {
			return err
		}
	}
	return w.changeRoutes(w.d.addRoutes, true)
}

// changeRoutes adds (or deletes) the local routes of addrs, each undone in
// reverse on a rollback.
func (w *writing) changeRoutes(addrs []netip.Addr, add bool) error {
	r := w.t.localRoutes()
	do, undo := r.del, r.add
	if add {
		do, undo = r.add, r.del
	}
	for _, addr := range addrs {
		if err := do(addr); err != nil {
			if add {
				return fmt.Errorf("frontend address of %s: %w", w.d.routeOwner(addr), err)
			}
			return err
		}
		w.undoRoutes = append(w.undoRoutes, func() error { return undo(addr) })
	}
	return nil
}

// services registers the planned services' sockets and writes those that
// changed; it returns the frontends planned.
func (w *writing) services(listen maps.ListenTable) (map[netip.AddrPort]bool, error) {
	fronts := make(map[netip.AddrPort]bool, len(w.d.plans))
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
// nothing needs. fronts holds the planned services' frontends.
func (w *writing) narrow(listen maps.ListenTable, fronts map[netip.AddrPort]bool) error {
	for _, o := range w.d.goneFrontends(fronts) {
		if err := w.set.DeleteFrontend(o); err != nil {
			return err
		}
	}
	if !w.frontsInForce {
		if err := w.set.SyncListeners(listen); err != nil {
			return err
		}
		if err := w.set.SyncFrontendPorts(w.d.services()); err != nil {
			return err
		}
	}
	return w.changeRoutes(w.d.delRoutes, false)
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
