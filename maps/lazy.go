package maps

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cilium/ebpf"

	"github.com/tcpshift/tcpshift/bpf"
)

// lazyMaps opens a Set's pinned maps when they are first used: a writer
// that changes one service's weights uses 11 of the 21 (12 with
// affinity), and each open is two syscalls (BPF_OBJ_GET,
// BPF_OBJ_GET_INFO_BY_FD).
type lazyMaps struct {
	dir    string
	opened map[string]*ebpf.Map
}

// OpenLazy is Open for writers that use only the Set's methods: its map
// fields are placeholders naming the maps pinned in dir (nil for the
// optional ones that are not), and each map is opened when a method first
// reads or writes it. Under the namespace's writer lock the maps opened
// later are the same state as those opened first.
func OpenLazy(dir string) (_ *Set, err error) {
	entries, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read pin directory: %w", err)
	}
	pinned := make(map[string]bool, len(entries))
	for _, e := range entries {
		pinned[e.Name()] = true
	}
	if !pinned[bpf.TcpshiftMapServices] {
		return nil, ErrNotLoaded
	}
	s := &Set{names: map[*ebpf.Map]string{}, lazy: &lazyMaps{dir: dir, opened: map[string]*ebpf.Map{}}}
	for name, f := range s.fields() {
		if !pinned[name] {
			if optionalMaps[name] {
				continue
			}
			return nil, fmt.Errorf("open pinned map %s: %w", name, os.ErrNotExist)
		}
		*f = &ebpf.Map{}
		s.names[*f] = name
	}
	return s, nil
}

// get returns the map pinned by name, opening it the first time.
func (l *lazyMaps) get(name string) (*ebpf.Map, error) {
	if m := l.opened[name]; m != nil {
		return m, nil
	}
	m, err := ebpf.LoadPinnedMap(filepath.Join(l.dir, name), nil)
	if err != nil {
		return nil, fmt.Errorf("open pinned map %s: %w", name, err)
	}
	l.opened[name] = m
	return m, nil
}

func (l *lazyMaps) close() error {
	var errs []error
	for _, m := range l.opened {
		errs = append(errs, m.Close())
	}
	l.opened = nil
	return errors.Join(errs...)
}

// kernelMap is one of the Set's fields as a map to call directly: the map
// itself, opened now if the Set opens lazily.
func (s *Set) kernelMap(m *ebpf.Map) (*ebpf.Map, error) {
	if s.lazy == nil || m == nil {
		return m, nil
	}
	return s.lazy.get(s.name(m))
}
