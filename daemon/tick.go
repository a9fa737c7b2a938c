package daemon

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/cilium/ebpf"

	"github.com/tcpshift/tcpshift/bpf"
)

// periodic is the daemon's work every tick, run by the loop between syncs:
// an error (the pinned state is gone) stops the daemon.
func (d *daemon) periodic(context.Context) error {
	d.ticks++
	if err := d.tick(d.ticks%reconcileEvery == 0); err != nil {
		return err
	}
	if d.resync {
		d.resync = false
		if err := d.sync(); err != nil {
			d.log.Error("follow outside changes", "err", err)
		}
	}
	return nil
}

// tick re-registers restarted listeners, counts connect failures the kernel
// saw as failed checks (passive checks) and, when asked, reconciles tables.
func (d *daemon) tick(reconcile bool) error {
	if id, err := pinnedID(d.o.Target.Dir); err != nil || id != d.stateID {
		return fmt.Errorf("the pinned state in %s is gone or was made anew (tcpshift down?): stopping", d.o.Target.Dir)
	}
	svcs, err := d.set.ServiceList()
	if err != nil {
		d.log.Error("read services", "err", err)
		return nil
	}
	d.noticeOutsideChanges(svcs)
	rereg, err := d.o.Target.Reregister(d.set, svcs)
	for _, r := range rereg {
		d.metrics.reregistered.WithLabelValues(r.Service, r.Addr).Inc()
		d.log.Info("listener re-registered", "service", r.Service, "endpoint", r.Addr, "owner", r.Owner)
	}
	if err != nil {
		d.log.Error("re-register listeners", "err", err)
	}
	d.passive(svcs)
	if reconcile {
		swapped, err := d.o.Target.Reconcile(d.set)
		if len(swapped) > 0 {
			d.remember()
		}
		for _, name := range swapped {
			d.log.Warn("table rebuilt: it did not match weights and health", "service", name)
		}
		if err != nil {
			d.log.Error("reconcile tables", "err", err)
		}
	}
	return nil
}

// pinnedID identifies the pinned state: the id of its services map, which
// a down and a new apply replace.
func pinnedID(dir string) (ebpf.MapID, error) {
	m, err := ebpf.LoadPinnedMap(filepath.Join(dir, bpf.TcpshiftMapServices), nil)
	if err != nil {
		return 0, err
	}
	defer m.Close()
	info, err := m.Info()
	if err != nil {
		return 0, err
	}
	id, _ := info.ID()
	return id, nil
}
