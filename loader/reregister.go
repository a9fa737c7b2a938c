package loader

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"

	"github.com/tcpshift/tcpshift/loader/listener"
	"github.com/tcpshift/tcpshift/maps"
)

// Reregistered is a lookup-mode endpoint whose new listening socket took the
// place of one that closed.
type Reregistered struct {
	Service string
	Addr    string
	Owner   string // the process holding the new socket
}

// Reregister gives lookup-mode endpoints whose listener closed (the kernel
// drops closed sockets from the socket map) the new listener on the same
// address, if one is there: a backend that restarts gets its connections
// back without another apply.
func (t *Target) Reregister(set *maps.Set, svcs []*maps.Service) ([]Reregistered, error) {
	var done []Reregistered
	for _, svc := range svcs {
		if svc.Mode != maps.ModeLookup {
			continue
		}
		for _, sub := range svc.Subsets {
			for _, ep := range sub.Endpoints {
				var cookie uint64
				err := set.Sockets.Lookup(ep.ID, &cookie)
				if err == nil {
					continue
				}
				if !errors.Is(err, ebpf.ErrKeyNotExist) {
					return done, fmt.Errorf("service %s: read socket of %s: %w", svc.Name, ep.Addr, err)
				}
				sock, err := listener.Find(t.NS.Handle, ep.Addr)
				if err != nil {
					continue // not back yet
				}
				err = set.RegisterSocket(ep.ID, int(sock.File.Fd()))
				owner := sock.Owner()
				sock.Close()
				if err != nil {
					return done, fmt.Errorf("service %s: register %s (%s): %w", svc.Name, ep.Addr, owner, err)
				}
				done = append(done, Reregistered{svc.Name, ep.Addr.String(), owner})
			}
		}
	}
	return done, nil
}
