package loader

import (
	"net/netip"

	"github.com/vishvananda/netlink"
)

// frontendRoutes adds and removes the local routes of frontend addresses:
// netlink in the namespace, or a fake in tests of the executor. A write
// undoes the ones it changed, in reverse, when it rolls back.
type frontendRoutes interface {
	add(addr netip.Addr) error
	del(addr netip.Addr) error
}

// netlinkRoutes are the namespace's own routes.
type netlinkRoutes struct{ h *netlink.Handle }

func (r netlinkRoutes) add(addr netip.Addr) error { return addLocalRoute(r.h, addr) }
func (r netlinkRoutes) del(addr netip.Addr) error { return delLocalRoute(r.h, addr) }

// localRoutes is where the target's writes change local routes.
func (t *Target) localRoutes() frontendRoutes {
	if t.routes != nil {
		return t.routes
	}
	return netlinkRoutes{t.nl}
}
