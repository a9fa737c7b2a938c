package loader

import (
	"net/netip"

	"github.com/tcpshift/tcpshift/maps"
)

// What a write must look at of the frontends: a change to a few services
// among ten thousand should neither read back nor rebuild the tables of
// every frontend (issue 28).

// services is every service the write leaves in force: the planned ones,
// then the kept ones.
func (d *delta) services() []*maps.Service {
	svcs := make([]*maps.Service, 0, len(d.plans)+len(d.kept))
	for _, p := range d.plans {
		svcs = append(svcs, p.svc)
	}
	return append(svcs, d.kept...)
}

// frontendsAsInForce reports whether the change leaves the frontend ports,
// the connect filter and the listeners exactly as the state in force has
// them, so a write need not read or sync them: the state is the one this
// Target left (there are kept services, see Target.scope; its every write
// synced them), nothing is removed, and every planned service was in force
// with the same frontend and mode, none of them lookup mode (whose
// endpoint ids make the listeners).
func (d *delta) frontendsAsInForce() bool {
	if len(d.kept) == 0 || len(d.removed) > 0 {
		return false
	}
	for _, p := range d.plans {
		o := d.old[p.svc.Name]
		if o == nil || o.Frontend != p.svc.Frontend || o.Mode != p.svc.Mode || o.Mode == maps.ModeLookup {
			return false
		}
	}
	return true
}

// goneFrontends returns the services in force whose frontend no service
// has after the change: planned has the planned services' frontends.
// Only a planned or removed service's can go (a kept one stays as it is),
// so the kept ones are looked at only when one of those may.
func (d *delta) goneFrontends(planned map[netip.AddrPort]bool) []*maps.Service {
	var gone []*maps.Service
	consider := func(o *maps.Service) {
		if o != nil && !planned[o.Frontend] {
			gone = append(gone, o)
		}
	}
	for _, p := range d.plans {
		consider(d.old[p.svc.Name])
	}
	for _, o := range d.removed {
		consider(o)
	}
	if len(gone) == 0 || len(d.kept) == 0 {
		return gone
	}
	kept := make(map[netip.AddrPort]bool, len(d.kept))
	for _, k := range d.kept {
		kept[k.Frontend] = true
	}
	out := gone[:0]
	for _, o := range gone {
		if !kept[o.Frontend] {
			out = append(out, o)
		}
	}
	return out
}
