package maps

import (
	"fmt"
	"net/netip"

	"github.com/cilium/ebpf"

	"github.com/tcpshift/tcpshift/bpf"
)

// The frontend filter (bpf/tcpshift.h, FILTER_WORDS): for each mode the
// hooks serve, a bitmap of the ports of its wildcard frontends and one of
// its other frontends by hashed address and port. A hook on a frontend
// port (frontend_ports) that finds both bits clear knows the destination
// is no frontend of its mode without looking the frontends hash up.
// AddFrontendPorts and SyncFrontendPorts (listen.go) write it.
const (
	filterWords   = 65536 / 64
	filterParts   = int(bpf.TcpshiftFilterPartFILTER_PARTS)
	filterReady   = filterParts * filterWords // the word that says the parts are written
	filterHashMul = 0x9e3779b97f4a7c15        // FILTER_HASH_MUL
)

// filterWordsOf is the whole filter, its parts and the ready word.
type filterWordsOf [filterReady + 1]uint64

// filterHash is bpf/select.h's filter_hash: the frontend's bit in its
// mode's address part.
func filterHash(addr netip.Addr, port uint16) uint32 {
	w := addrWords(addr)
	h := (uint64(w[0]^w[1]^w[2]^w[3])<<16 | uint64(port)) * filterHashMul
	return uint32(h >> 48)
}

// filterFor sets the bits of svcs' frontends and the ready word. Proxy
// frontends get none: no hook steers them.
func filterFor(svcs []*Service) *filterWordsOf {
	var f filterWordsOf
	set := func(part bpf.TcpshiftFilterPart, bit uint32) {
		f[int(part)*filterWords+int(bit>>6)] |= 1 << (bit & 63)
	}
	for _, svc := range svcs {
		var ports, addrs bpf.TcpshiftFilterPart
		switch svc.Mode {
		case ModeLookup:
			ports, addrs = bpf.TcpshiftFilterPartFILTER_LOOKUP_PORTS, bpf.TcpshiftFilterPartFILTER_LOOKUP_ADDRS
		case ModeConnect:
			ports, addrs = bpf.TcpshiftFilterPartFILTER_CONNECT_PORTS, bpf.TcpshiftFilterPartFILTER_CONNECT_ADDRS
		default:
			continue
		}
		addr, port := svc.Frontend.Addr(), svc.Frontend.Port()
		if addr.IsUnspecified() {
			set(ports, uint32(port))
		} else {
			set(addrs, filterHash(addr, port))
		}
	}
	f[filterReady] = 1
	return &f
}

// syncBits writes the words of a bitmap (an array map) that differ from
// want or, keeping, lack some of its bits, in ascending order: the filter's
// ready word, its last, is written once every part is.
func (s *Set) syncBits(m *ebpf.Map, what string, want []uint64, keep bool) error {
	// One batch read, not a lookup per word: this runs on every apply.
	words, err := readArray[uint64](s, m)
	if err != nil {
		return fmt.Errorf("read %s: %w", what, err)
	}
	for i, bits := range want {
		var have uint64
		if i < len(words) {
			have = words[i]
		}
		if keep {
			bits |= have
		}
		if bits == have {
			continue
		}
		if err := s.put(m, uint32(i), bits); err != nil {
			return fmt.Errorf("write %s: %w", what, err)
		}
	}
	return nil
}
