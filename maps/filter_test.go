package maps

import (
	"math/bits"
	"net/netip"
	"testing"

	"github.com/tcpshift/tcpshift/bpf"
)

// The filter's layout in Go is the map's in the BPF object.
func TestFilterSizeMatchesMap(t *testing.T) {
	spec, err := bpf.LoadTcpshift()
	if err != nil {
		t.Fatal(err)
	}
	if got := spec.Maps[bpf.TcpshiftMapFrontendFilter].MaxEntries; int(got) != filterReady+1 {
		t.Fatalf("frontend_filter has %d entries, maps expects %d", got, filterReady+1)
	}
}

func TestFilterSetsEachModesBitsOnly(t *testing.T) {
	fe := netip.MustParseAddrPort
	svcs := []*Service{
		{Mode: ModeLookup, Frontend: fe("127.0.0.100:9000")},
		{Mode: ModeConnect, Frontend: fe("10.96.0.10:9000")},
		{Mode: ModeConnect, Frontend: fe("0.0.0.0:80")},
		{Mode: ModeLookup, Frontend: fe("[::]:443")},
		{Mode: ModeProxy, Frontend: fe("127.0.0.101:9000")},
	}
	f := filterFor(svcs)
	isSet := func(part bpf.TcpshiftFilterPart, bit uint32) bool {
		return f[int(part)*filterWords+int(bit>>6)]&(1<<(bit&63)) != 0
	}
	for _, c := range []struct {
		part bpf.TcpshiftFilterPart
		bit  uint32
	}{
		{bpf.TcpshiftFilterPartFILTER_LOOKUP_ADDRS, filterHash(fe("127.0.0.100:9000").Addr(), 9000)},
		{bpf.TcpshiftFilterPartFILTER_CONNECT_ADDRS, filterHash(fe("10.96.0.10:9000").Addr(), 9000)},
		{bpf.TcpshiftFilterPartFILTER_CONNECT_PORTS, 80},
		{bpf.TcpshiftFilterPartFILTER_LOOKUP_PORTS, 443},
	} {
		if !isSet(c.part, c.bit) {
			t.Errorf("part %d: bit %d clear", c.part, c.bit)
		}
	}
	n := 0
	for _, w := range f[:filterReady] {
		n += bits.OnesCount64(w)
	}
	if n != 4 {
		t.Errorf("%d bits set, want 4 (the proxy frontend has none)", n)
	}
	if f[filterReady] != 1 {
		t.Errorf("ready word %d, want 1", f[filterReady])
	}
	// The two port-9000 frontends of different modes must not make the
	// other mode's destination a maybe: that is the filter's point.
	if isSet(bpf.TcpshiftFilterPartFILTER_CONNECT_ADDRS, filterHash(fe("127.0.0.100:9000").Addr(), 9000)) {
		t.Errorf("the lookup frontend's bit is set in the connect part")
	}
}

// filterHash depends on every address word and on the port.
func TestFilterHashSpreads(t *testing.T) {
	seen := map[uint32]bool{}
	for i := range 256 {
		a := netip.AddrFrom4([4]byte{10, 96, 0, byte(i)})
		seen[filterHash(a, 9000)] = true
		seen[filterHash(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(9000+i))] = true
	}
	if len(seen) < 500 {
		t.Errorf("512 frontends hash to %d bits", len(seen))
	}
}
