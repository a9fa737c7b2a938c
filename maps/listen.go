package maps

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/cilium/ebpf"

	"github.com/tcpshift/tcpshift/bpf"
)

// MaxListenIDs is how many endpoint ids one listening address can name for
// the kernel to register a listener at (more are left to the userspace
// discovery at apply and in the daemon).
var MaxListenIDs = len(bpf.TcpshiftListenIds{}.Ids)

// ListenTable says, for every address a lookup-mode backend may listen on,
// which endpoint ids a new listener there serves: the endpoint's own address,
// the wildcard of its family on its port, and the dual-stack wildcard [::].
type ListenTable map[netip.AddrPort][]uint32

var (
	anyV4 = netip.AddrFrom4([4]byte{})
	anyV6 = netip.IPv6Unspecified()
)

// Listeners builds the ListenTable of services: only lookup mode steers to
// listening sockets. Ids are sorted, and cut at MaxListenIDs per address.
func Listeners(svcs []*Service) ListenTable {
	lt := ListenTable{}
	add := func(a netip.Addr, port uint16, id uint32) {
		k := netip.AddrPortFrom(a, port)
		if !slices.Contains(lt[k], id) {
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
				add(a, port, ep.ID)
				if a.Is4() {
					add(anyV4, port, ep.ID)
				}
				add(anyV6, port, ep.ID)
			}
		}
	}
	for k, ids := range lt {
		slices.Sort(ids)
		lt[k] = ids[:min(len(ids), MaxListenIDs)]
	}
	return lt
}

func listenKey(ap netip.AddrPort) bpf.TcpshiftEndpoint { return endpointValue(ap) }

func listenValue(ids []uint32) bpf.TcpshiftListenIds {
	var v bpf.TcpshiftListenIds
	v.Count = uint32(copy(v.Ids[:], ids))
	return v
}

// readListeners returns what the listeners map holds now.
func (s *Set) readListeners() (ListenTable, error) {
	lt := ListenTable{}
	var (
		k bpf.TcpshiftEndpoint
		v bpf.TcpshiftListenIds
	)
	it := s.Listeners.Iterate()
	for it.Next(&k, &v) {
		lt[endpointAddr(k)] = slices.Clone(v.Ids[:min(int(v.Count), len(v.Ids))])
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
		keep := slices.DeleteFunc(slices.Clone(ids), func(id uint32) bool { return !slices.Contains(want[addr], id) })
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
		if !slices.Equal(have[addr], ids) {
			if err := s.writeListener(addr, ids); err != nil {
				return err
			}
		}
	}
	return nil
}

func (s *Set) writeListener(addr netip.AddrPort, ids []uint32) error {
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

// AddFrontendPorts sets the bits of svcs' frontend ports, before their
// frontends are written: a hook that tests a clear bit never looks further.
func (s *Set) AddFrontendPorts(svcs []*Service) error {
	return s.syncPorts(portWords(svcs), true)
}

// SyncFrontendPorts leaves exactly svcs' ports set, once frontends that are
// gone are deleted.
func (s *Set) SyncFrontendPorts(svcs []*Service) error {
	return s.syncPorts(portWords(svcs), false)
}

func (s *Set) syncPorts(want *frontendWords, keep bool) error {
	for i, bits := range want {
		var have uint64
		if err := s.FrontendPorts.Lookup(uint32(i), &have); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("read frontend ports: %w", err)
		}
		if keep {
			bits |= have
		}
		if bits == have {
			continue
		}
		if err := s.put(s.FrontendPorts, uint32(i), bits); err != nil {
			return fmt.Errorf("write frontend ports: %w", err)
		}
	}
	return nil
}
