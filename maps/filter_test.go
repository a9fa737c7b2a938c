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
	if got, want := spec.Maps[bpf.TcpshiftMapConnectFilter].MaxEntries, len(filterWordsOf{}); int(got) != want {
		t.Fatalf("connect_filter has %d entries, maps expects %d", got, want)
	}
}

func TestFilterSetsConnectFrontendsOnly(t *testing.T) {
	fe := netip.MustParseAddrPort
	svcs := []*Service{
		{Mode: ModeLookup, Frontend: fe("127.0.0.100:9000")},
		{Mode: ModeConnect, Frontend: fe("10.96.0.10:9000")},
		{Mode: ModeConnect, Frontend: fe("0.0.0.0:80")},
		{Mode: ModeConnect, Frontend: fe("[::]:443")},
		{Mode: ModeProxy, Frontend: fe("127.0.0.101:9000")},
	}
	f := filterFor(svcs)
	isSet := func(part bpf.TcpshiftFilterPart, bit uint32) bool {
		bit &= 1<<filterBits - 1
		return f[1+int(part)*filterWords+int(bit>>6)]&(1<<(bit&63)) != 0
	}
	for _, c := range []struct {
		part bpf.TcpshiftFilterPart
		bit  uint32
	}{
		{bpf.TcpshiftFilterPartFILTER_ADDRS, filterHash(fe("10.96.0.10:9000").Addr(), 9000)},
		{bpf.TcpshiftFilterPartFILTER_PORTS, 80},
		{bpf.TcpshiftFilterPartFILTER_PORTS, 443},
	} {
		if !isSet(c.part, c.bit) {
			t.Errorf("part %d: bit %d clear", c.part, c.bit)
		}
	}
	n := 0
	for _, w := range f[1:] {
		n += bits.OnesCount64(w)
	}
	if n != 3 {
		t.Errorf("%d bits set, want 3 (lookup and proxy frontends have none)", n)
	}
	if f[filterReady] != 1 {
		t.Errorf("ready word %d, want 1", f[filterReady])
	}
	// The lookup frontend on the connect frontend's port is the filter's
	// point: its connect() must find its bit clear.
	if isSet(bpf.TcpshiftFilterPartFILTER_ADDRS, filterHash(fe("127.0.0.100:9000").Addr(), 9000)) {
		t.Errorf("the lookup frontend's address bit is set")
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
