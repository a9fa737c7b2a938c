package maps

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/tcpshift/tcpshift/bpf"
)

// MaxListenIDs is how many endpoint ids one listening address can name for
// the kernel to register a listener at (more are left to the userspace
// discovery at apply and in the daemon).
var MaxListenIDs = len(bpf.TcpshiftListenIds{}.Ids)

// ListenTable says, for every address a lookup-mode backend may listen on,
// which endpoint ids a new listener there serves: the endpoint's own address,
// the wildcard of its family on its port, and the dual-stack wildcard [::].
type ListenTable map[netip.AddrPort][]ListenID

// ListenID is an endpoint id a listener serves, with its service.
type ListenID struct {
	ID, Service uint32
	Account     bool // the service counts its connections
}

// Account reports whether a listener on addr is tagged, so that sockops can
// count the connections it accepts.
func (lt ListenTable) Account(addr netip.AddrPort) bool {
	addr = netip.AddrPortFrom(addr.Addr().Unmap(), addr.Port())
	for _, l := range lt[addr] {
		if l.Account {
			return true
		}
	}
	return false
}

var (
	anyV4 = netip.AddrFrom4([4]byte{})
	anyV6 = netip.IPv6Unspecified()
)

// Listeners builds the ListenTable of services: only lookup mode steers to
// listening sockets. Ids are sorted, and cut at MaxListenIDs per address.
func Listeners(svcs []*Service) ListenTable {
	lt := ListenTable{}
	// A wildcard key gathers every endpoint on its port: a set per key
	// keeps thousands of them linear.
	seen := map[netip.AddrPort]map[ListenID]bool{}
	add := func(a netip.Addr, port uint16, id ListenID) {
		k := netip.AddrPortFrom(a, port)
		if seen[k] == nil {
			seen[k] = map[ListenID]bool{}
		}
		if !seen[k][id] {
			seen[k][id] = true
			lt[k] = append(lt[k], id)
		}
	}
	for _, svc := range svcs {
		if svc.Mode != ModeLookup {
			continue
		}
		for _, sub := range svc.Subsets {
			for _, ep := range sub.Endpoints {
				a, port := ep.Addr.Addr().Unmap(), ep.Addr.Port()
				id := ListenID{ID: ep.ID, Service: svc.ID, Account: !svc.NoAccounting}
				add(a, port, id)
				if a.Is4() {
					add(anyV4, port, id)
				}
				add(anyV6, port, id)
			}
		}
	}
	for k, ids := range lt {
		slices.SortFunc(ids, func(a, b ListenID) int { return int(a.ID) - int(b.ID) })
		lt[k] = ids[:min(len(ids), MaxListenIDs)]
	}
	return lt
}

func listenKey(ap netip.AddrPort) bpf.TcpshiftEndpoint { return endpointValue(ap) }

func listenValue(ids []ListenID) bpf.TcpshiftListenIds {
	var v bpf.TcpshiftListenIds
	for i, l := range ids[:min(len(ids), len(v.Ids))] {
		v.Ids[i], v.Services[i] = l.ID, l.Service
		if l.Account {
			v.Account = 1
		}
		v.Count++
	}
	return v
}

// readListeners returns what the listeners map holds now.
func (s *Set) readListeners() (ListenTable, error) {
	lt := ListenTable{}
	var (
		k bpf.TcpshiftEndpoint
		v bpf.TcpshiftListenIds
	)
	it := s.raw().Iterate(bpf.TcpshiftMapListeners)
	for it.Next(&k, &v) {
		n := min(int(v.Count), len(v.Ids))
		ids := make([]ListenID, n)
		for i := range n {
			// Account is per address in the map: each id carries it.
			ids[i] = ListenID{ID: v.Ids[i], Service: v.Services[i], Account: v.Account != 0}
		}
		lt[endpointAddr(k)] = ids
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("read listeners: %w", err)
	}
	return lt, nil
}

// PruneListeners takes out of the listeners map every id that want does not
// give the same address, before a change writes endpoints: sockops must never
// register a listener at an id that is being released or given to another
// address.
func (s *Set) PruneListeners(want ListenTable) error {
	have, err := s.readListeners()
	if err != nil {
		return err
	}
	for addr, ids := range have {
		// An id stays only where want gives it the same address and
		// service; its accounting may change later, in SyncListeners.
		keep := slices.DeleteFunc(slices.Clone(ids), func(l ListenID) bool {
			return !slices.ContainsFunc(want[addr], func(w ListenID) bool { return w.ID == l.ID && w.Service == l.Service })
		})
		if slices.Equal(keep, ids) {
			continue
		}
		if err := s.writeListener(addr, keep); err != nil {
			return err
		}
	}
	return nil
}

// SyncListeners makes the listeners map exactly want, once the endpoints it
// names are written.
func (s *Set) SyncListeners(want ListenTable) error {
	have, err := s.readListeners()
	if err != nil {
		return err
	}
	for addr := range have {
		if _, ok := want[addr]; !ok {
			if err := s.writeListener(addr, nil); err != nil {
				return err
			}
		}
	}
	for addr, ids := range want {
		if !sameListenValue(have[addr], ids) {
			if err := s.writeListener(addr, ids); err != nil {
				return err
			}
		}
	}
	return nil
}

func sameListenValue(a, b []ListenID) bool {
	return listenValue(a) == listenValue(b)
}

func (s *Set) writeListener(addr netip.AddrPort, ids []ListenID) error {
	var err error
	if len(ids) == 0 {
		err = s.del(s.Listeners, listenKey(addr))
	} else {
		err = s.put(s.Listeners, listenKey(addr), listenValue(ids))
	}
	if err != nil {
		return fmt.Errorf("write listener ids of %s: %w", addr, err)
	}
	return nil
}

// TagListener marks a listening socket (by its fd) with the address it
// listens on, as sockops does for listeners it registers: the sockets it
// accepts inherit the tag, and sockops counts those steered to it. A tag is
// not journaled: left on a listener by a change rolled back, it counts
// nothing, for sockops also checks the listeners map and the frontend.
func (s *Set) TagListener(fd int, addr netip.AddrPort) error {
	addr = netip.AddrPortFrom(addr.Addr().Unmap(), addr.Port())
	c := bpf.TcpshiftConn{Flags: bpf.TcpshiftConnFlagsCONN_LISTENER}
	c.Original.Addr, c.Original.Port = addrWords(addr.Addr()), addr.Port()
	if err := s.raw().Put(bpf.TcpshiftMapConns, int32(fd), &c); err != nil {
		return fmt.Errorf("tag listener %s: %w", addr, err)
	}
	return nil
}

// frontendWords is the frontend_ports bitmap: a bit per port.
type frontendWords [65536 / 64]uint64

func portWords(svcs []*Service) *frontendWords {
	var w frontendWords
	for _, svc := range svcs {
		p := svc.Frontend.Port()
		w[p>>6] |= 1 << (p & 63)
	}
	return &w
}

// AddFrontendPorts sets the bits of svcs' frontend ports and of the
// connect filter, before their frontends are written: a hook that tests a
// clear bit never looks further.
func (s *Set) AddFrontendPorts(svcs []*Service) error {
	if err := s.syncBits(s.FrontendPorts, "frontend ports", portWords(svcs)[:], true); err != nil {
		return err
	}
	return s.syncBits(s.ConnectFilter, "connect filter", filterFor(svcs)[:], true)
}

// SyncFrontendPorts leaves exactly svcs' ports and filter bits set, once
// frontends that are gone are deleted.
func (s *Set) SyncFrontendPorts(svcs []*Service) error {
	if err := s.syncBits(s.FrontendPorts, "frontend ports", portWords(svcs)[:], false); err != nil {
		return err
	}
	return s.syncBits(s.ConnectFilter, "connect filter", filterFor(svcs)[:], false)
}
