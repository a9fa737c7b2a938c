package maps

import (
	"testing"

	"github.com/cilium/ebpf"

	"github.com/tcpshift/tcpshift/bpf"
)

// BenchmarkNewInnerTable is the cost of one new table (create and fill an
// inner map), as a weight change pays it before the swap: with the key and
// value types' BTF, which the library loads into the kernel once per map
// (BPF_BTF_LOAD), and without, as innerSpec makes them (needs root).
func BenchmarkNewInnerTable(b *testing.B) {
	spec, err := bpf.LoadTcpshift()
	if err != nil {
		b.Fatal(err)
	}
	withBTF := spec.Maps[bpf.TcpshiftMapTables].InnerMap.Copy()
	without, err := innerSpec()
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name string
		spec *ebpf.MapSpec
	}{{"btf", withBTF}, {"no-btf", without}} {
		b.Run(c.name, func(b *testing.B) {
			var table bpf.TcpshiftTable
			for b.Loop() {
				m, err := ebpf.NewMap(c.spec)
				if err != nil {
					b.Fatal(err)
				}
				if err := m.Put(uint32(0), &table); err != nil {
					b.Fatal(err)
				}
				m.Close()
			}
		})
	}
}
