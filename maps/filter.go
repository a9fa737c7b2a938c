package maps

import (
	"fmt"
	"net/netip"

	"github.com/cilium/ebpf"

	"github.com/tcpshift/tcpshift/bpf"
)

// The connect filter (bpf/tcpshift.h, FILTER_BITS): the ports of the
// wildcard connect-mode frontends and the other connect-mode frontends by
// hashed address and port. A connect hook on a frontend port
// (frontend_ports) that finds both bits clear knows the destination is no
// connect-mode frontend without looking the frontends hash up.
// AddFrontendPorts and SyncFrontendPorts (listen.go) write it.
const (
	filterBits    = 15 // FILTER_BITS: bits a part
	filterWords   = 1 << filterBits / 64
	filterParts   = int(bpf.TcpshiftFilterPartFILTER_PARTS)
	filterReady   = 0                  // the word that says the parts are written
	filterHashMul = 0x9e3779b97f4a7c15 // FILTER_HASH_MUL
)

// filterWordsOf is the whole filter: the ready word, then the parts.
type filterWordsOf [1 + filterParts*filterWords]uint64

// filterHash is bpf/select.h's filter_hash: the frontend's bit in the
// address part.
func filterHash(addr netip.Addr, port uint16) uint32 {
	w := addrWords(addr)
	h := (uint64(w[0]^w[1]^w[2]^w[3])<<16 | uint64(port)) * filterHashMul
	return uint32(h >> (64 - filterBits))
}

// filterFor sets the bits of svcs' connect-mode frontends and the ready
// word.
func filterFor(svcs []*Service) *filterWordsOf {
	var f filterWordsOf
	set := func(part bpf.TcpshiftFilterPart, bit uint32) {
		bit &= 1<<filterBits - 1
		f[1+int(part)*filterWords+int(bit>>6)] |= 1 << (bit & 63)
	}
	for _, svc := range svcs {
		if svc.Mode != ModeConnect {
			continue
		}
		addr, port := svc.Frontend.Addr(), svc.Frontend.Port()
		if addr.IsUnspecified() {
			set(bpf.TcpshiftFilterPartFILTER_PORTS, uint32(port))
		} else {
			set(bpf.TcpshiftFilterPartFILTER_ADDRS, filterHash(addr, port))
		}
	}
	f[filterReady] = 1
	return &f
}

// syncBits writes the words of a bitmap (an array map) that differ from
// want or, keeping, lack some of its bits, from the last to the first: the
// filter's ready word, its first, is written once every part is.
func (s *Set) syncBits(m *ebpf.Map, what string, want []uint64, keep bool) error {
	// One batch read, not a lookup per word: this runs on every apply.
	words, err := readArray[uint64](s, m)
	if err != nil {
		return fmt.Errorf("read %s: %w", what, err)
	}
	for i := len(want) - 1; i >= 0; i-- {
		bits := want[i]
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
