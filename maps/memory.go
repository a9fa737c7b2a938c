package maps

import (
	"fmt"

	"github.com/cilium/ebpf"

	"github.com/tcpshift/tcpshift/bpf"
	"github.com/tcpshift/tcpshift/state"
)

// OnMaps makes a Set that reads and writes m instead of BPF maps, for
// tests without root: every write of the Set goes through its journal to m.
// Its map fields are placeholders that name the maps; the few methods
// that need a kernel map (mapping the table versions, tagging sockets for
// the proxy) are not for it.
func OnMaps(m state.Maps) *Set {
	s := &Set{names: map[*ebpf.Map]string{}}
	for name, f := range s.fields() {
		if m.Has(name) {
			*f = &ebpf.Map{}
			s.names[*f] = name
		}
	}
	s.log = &state.Journal{Maps: m}
	return s
}

// MemorySpecs describes the BPF object's maps the Set holds, for
// state.NewMemory.
func MemorySpecs() ([]state.Spec, error) {
	spec, err := bpf.LoadTcpshift()
	if err != nil {
		return nil, fmt.Errorf("load bpf spec: %w", err)
	}
	var out []state.Spec
	for name := range (&Set{}).fields() {
		ms := spec.Maps[name]
		if ms == nil {
			return nil, fmt.Errorf("the bpf object has no map %s", name)
		}
		s := state.Spec{Name: name, KeySize: int(ms.KeySize), ValueSize: int(ms.ValueSize), MaxEntries: ms.MaxEntries}
		switch ms.Type {
		case ebpf.Array:
			s.Kind = state.Array
		case ebpf.ArrayOfMaps:
			s.Kind, s.InnerValueSize = state.OfMaps, int(ms.InnerMap.ValueSize)
		case ebpf.SkStorage:
			s.ValueSize = 0 // keyed by a socket's fd, valued as the program sees it
		}
		out = append(out, s)
	}
	return out, nil
}

// NewMemory makes a Set over empty maps in memory, shaped as the BPF
// object's, and returns the memory too (for its faults, log and dump).
func NewMemory() (*Set, *state.Memory, error) {
	specs, err := MemorySpecs()
	if err != nil {
		return nil, nil, err
	}
	mem := state.NewMemory(specs)
	return OnMaps(mem), mem, nil
}
