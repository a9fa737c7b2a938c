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
// back without another apply. sockops, on the cgroup v2 root, registers a
// new listener the moment it listens, wherever its process runs; this is
// for the listeners it could not: one that started listening while its
// address was not in the listeners map yet (an apply in progress), under
// state whose sockops an earlier build attached to --cgroup (until the next
// apply moves it), or with tcpshift in a cgroup namespace, whose root is
// not the host's. It looks for empty slots without the lock and fills them
// under it.
func (t *Target) Reregister(set *maps.Set, svcs []*maps.Service) ([]Reregistered, error) {
	type found struct {
		svc  string
		ep   maps.Endpoint
		sock *listener.Socket
	}
	var todo []found
	defer func() {
		for _, f := range todo {
			f.sock.Close()
		}
	}()
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
					return nil, fmt.Errorf("service %s: read socket of %s: %w", svc.Name, ep.Addr, err)
				}
				sock, err := listener.Find(t.NS.Handle, ep.Addr)
				if err != nil {
					continue // not back yet
				}
				todo = append(todo, found{svc.Name, ep, sock})
			}
		}
	}
	if len(todo) == 0 {
		return nil, nil
	}
	var done []Reregistered
	err := t.Update(func(set *maps.Set) error {
		done = nil
		svcs, err := set.ServiceList()
		if err != nil {
			return err
		}
		listen := maps.Listeners(svcs)
		for _, f := range todo {
			// The endpoint must still be the same one under the lock.
			if addr, _, err := set.Endpoint(f.ep.ID); err != nil || addr != f.ep.Addr {
				continue
			}
			if err := set.RegisterSocket(f.ep.ID, int(f.sock.File.Fd()), false); err != nil {
				return fmt.Errorf("service %s: register %s (%s): %w", f.svc, f.ep.Addr, f.sock.Owner(), err)
			}
			if listen.Account(f.sock.Addr) {
				if err := set.TagListener(int(f.sock.File.Fd()), f.sock.Addr); err != nil {
					return fmt.Errorf("service %s: %w", f.svc, err)
				}
			}
			done = append(done, Reregistered{f.svc, f.ep.Addr.String(), f.sock.Owner()})
		}
		return nil
	})
	return done, err
}
