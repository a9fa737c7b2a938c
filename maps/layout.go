// Package maps is the only package that knows the layout of tcpshift's BPF
// maps: it turns services into keys, values and weight tables and back.
package maps

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"sync"

	"github.com/tcpshift/tcpshift/bpf"
)

// Kernel-side types, generated from bpf/tcpshift.h.
type (
	Mode   = bpf.TcpshiftMode
	Policy = bpf.TcpshiftPolicy
	Health = bpf.TcpshiftHealth
)

const (
	ModeLookup       = bpf.TcpshiftModeMODE_LOOKUP
	ModeConnect      = bpf.TcpshiftModeMODE_CONNECT
	ModeProxy        = bpf.TcpshiftModeMODE_PROXY
	PolicyRoundRobin = bpf.TcpshiftPolicyPOLICY_ROUNDROBIN
	PolicyRandom     = bpf.TcpshiftPolicyPOLICY_RANDOM
	HealthUnchecked  = bpf.TcpshiftHealthHEALTH_UNCHECKED
	HealthUp         = bpf.TcpshiftHealthHEALTH_UP
	HealthDown       = bpf.TcpshiftHealthHEALTH_DOWN
)

// HealthName is how status and metrics name a health state.
func HealthName(h Health) string {
	switch h {
	case HealthUp:
		return "up"
	case HealthDown:
		return "down"
	}
	return "unchecked"
}

// Limits of the map layout.
var (
	TableSlots = len(bpf.TcpshiftTable{}.Seq)
	MaxSubsets = len(bpf.TcpshiftTable{}.Subsets)
	MaxNameLen = len(bpf.TcpshiftServiceMeta{}.Name) - 1
)

// MaxSubsetEndpoints is MAX_SUBSET_ENDPOINTS of bpf/tcpshift.h, which no
// struct or map size carries; TestSubsetEndpointsLimit checks it against the
// BPF object's max_subset_endpoints.
const MaxSubsetEndpoints = 1024

// addrWords lays an address out as the kernel sees it: IPv6 or IPv4-mapped
// IPv6, network byte order in memory.
func addrWords(a netip.Addr) (w [4]uint32) {
	b := a.As16()
	for i := range w {
		w[i] = binary.NativeEndian.Uint32(b[4*i:])
	}
	return w
}

func wordsAddr(w [4]uint32) netip.Addr {
	var b [16]byte
	for i := range w {
		binary.NativeEndian.PutUint32(b[4*i:], w[i])
	}
	return netip.AddrFrom16(b).Unmap()
}

// FrontendKey is the frontends map key for a listen address. 0.0.0.0 becomes
// the IPv4 wildcard ::ffff:0.0.0.0 and :: the dual-stack wildcard.
func FrontendKey(ap netip.AddrPort) bpf.TcpshiftFrontendKey {
	return bpf.TcpshiftFrontendKey{Addr: addrWords(ap.Addr()), Port: ap.Port()}
}

func frontendAddr(k bpf.TcpshiftFrontendKey) netip.AddrPort {
	return netip.AddrPortFrom(wordsAddr(k.Addr), k.Port)
}

func endpointValue(ap netip.AddrPort) bpf.TcpshiftEndpoint {
	return bpf.TcpshiftEndpoint{Addr: addrWords(ap.Addr()), Port: ap.Port()}
}

func endpointAddr(e bpf.TcpshiftEndpoint) netip.AddrPort {
	return netip.AddrPortFrom(wordsAddr(e.Addr), e.Port)
}

func putName(dst *[64]int8, s string) { putString(dst[:], s) }

// putString writes s NUL-terminated, cut to fit.
func putString(dst []int8, s string) {
	clear(dst)
	for i := 0; i < len(s) && i < len(dst)-1; i++ {
		dst[i] = int8(s[i])
	}
}

func getName(src [64]int8) string { return getString(src[:]) }

func getString(src []int8) string {
	b := make([]byte, 0, len(src))
	for _, c := range src {
		if c == 0 {
			break
		}
		b = append(b, byte(c))
	}
	return string(b)
}

// Capacity is how many services, endpoint ids and list slots the maps hold,
// read from the BPF object (MAX_SERVICES, MAX_ENDPOINTS and LIST_SLOTS in
// bpf/tcpshift.h).
type Capacity struct{ Services, Endpoints, ListSlots int }

// Capacities reads the map sizes from the BPF object.
var Capacities = sync.OnceValues(func() (Capacity, error) {
	spec, err := bpf.LoadTcpshift()
	if err != nil {
		return Capacity{}, fmt.Errorf("load bpf spec: %w", err)
	}
	return Capacity{
		Services:  int(spec.Maps[bpf.TcpshiftMapServices].MaxEntries),
		Endpoints: int(spec.Maps[bpf.TcpshiftMapEndpoints].MaxEntries),
		ListSlots: int(spec.Maps[bpf.TcpshiftMapLists].MaxEntries),
	}, nil
})
