package maps

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"

	"github.com/tcpshift/tcpshift/state"
)

// kernelMaps is state.Maps over a Set's BPF maps, by their pinned names.
type kernelMaps struct {
	s      *Set
	fields map[string]**ebpf.Map
	// last is the inner map a lazy Set's OpenInner opened last (lastID),
	// kept open: a weight change reads the table in force, then its
	// journal holds that same table, and the second open is then a dup of
	// the descriptor instead of a lookup by id and a read of its info.
	// Holding it keeps the map alive, so its id names no other meanwhile.
	last   *ebpf.Map
	lastID uint32
}

// name returns the pinned name of one of the Set's maps ("" for none).
func (s *Set) name(m *ebpf.Map) string {
	if n, ok := s.names[m]; ok || m == nil {
		return n
	}
	// Built at the first use, and again if a field was set since.
	s.names = map[*ebpf.Map]string{}
	for n, f := range s.fields() {
		if *f != nil {
			s.names[*f] = n
		}
	}
	return s.names[m]
}

func (k *kernelMaps) get(name string) (*ebpf.Map, error) {
	if k.fields == nil {
		k.fields = k.s.fields()
	}
	if f := k.fields[name]; f != nil && *f != nil {
		if k.s.lazy != nil {
			return k.s.lazy.get(name)
		}
		return *f, nil
	}
	if name == "" {
		return nil, errors.New("a map the Set does not hold")
	}
	return nil, fmt.Errorf("no map %s (the pinned state predates it)", name)
}

// notExist marks the kernel's missing key as state.ErrNotExist too.
type notExist struct{ err error }

func (e notExist) Error() string        { return e.err.Error() }
func (e notExist) Unwrap() error        { return e.err }
func (e notExist) Is(target error) bool { return target == state.ErrNotExist }

func wrapNotExist(err error) error {
	if errors.Is(err, ebpf.ErrKeyNotExist) {
		return notExist{err}
	}
	return err
}

func (k *kernelMaps) Has(name string) bool { _, err := k.get(name); return err == nil }

func (k *kernelMaps) Lookup(name string, key, value any) error {
	m, err := k.get(name)
	if err != nil {
		return err
	}
	return wrapNotExist(m.Lookup(key, value))
}

func (k *kernelMaps) LookupBytes(name string, key any) ([]byte, error) {
	m, err := k.get(name)
	if err != nil {
		return nil, err
	}
	return m.LookupBytes(key)
}

func (k *kernelMaps) Put(name string, key, value any) error {
	m, err := k.get(name)
	if err != nil {
		return err
	}
	return m.Put(key, value)
}

func (k *kernelMaps) Delete(name string, key any) error {
	m, err := k.get(name)
	if err != nil {
		return err
	}
	return wrapNotExist(m.Delete(key))
}

func (k *kernelMaps) PutBatch(name string, keys, values any) error {
	m, err := k.get(name)
	if err != nil {
		return err
	}
	_, err = m.BatchUpdate(keys, values, nil)
	return err
}

func (k *kernelMaps) ReadBatch(name string, c *state.Cursor, keys, values any) (int, error) {
	m, err := k.get(name)
	if err != nil {
		return 0, err
	}
	cursor, ok := c.Impl.(*ebpf.MapBatchCursor)
	if !ok {
		cursor = &ebpf.MapBatchCursor{}
		c.Impl = cursor
	}
	n, err := m.BatchLookup(cursor, keys, values, nil)
	return n, wrapNotExist(err)
}

// failedIterator is the iteration of a map the Set does not hold.
type failedIterator struct{ err error }

func (it failedIterator) Next(key, value any) bool { return false }
func (it failedIterator) Err() error               { return it.err }

func (k *kernelMaps) Iterate(name string) state.Iterator {
	m, err := k.get(name)
	if err != nil {
		return failedIterator{err}
	}
	return m.Iterate()
}

func (k *kernelMaps) MaxEntries(name string) uint32 {
	m, err := k.get(name)
	if err != nil {
		return 0
	}
	return m.MaxEntries()
}

// NewInner makes a table: the only map of maps is tables.
func (k *kernelMaps) NewInner(name string, value any) (state.Inner, error) {
	if name != tablesName {
		return nil, fmt.Errorf("map %s holds no inner maps", name)
	}
	spec, err := innerSpec()
	if err != nil {
		return nil, err
	}
	inner, err := ebpf.NewMap(spec)
	if err != nil {
		return nil, fmt.Errorf("create table: %w", err)
	}
	if err := inner.Put(uint32(0), value); err != nil {
		inner.Close()
		return nil, fmt.Errorf("fill table: %w", err)
	}
	return inner, nil
}

func (k *kernelMaps) OpenInner(id uint32) (state.Inner, error) {
	if k.s.lazy == nil { // a Set that may never be closed keeps nothing
		return ebpf.NewMapFromID(ebpf.MapID(id))
	}
	if k.last == nil || k.lastID != id {
		m, err := ebpf.NewMapFromID(ebpf.MapID(id))
		if err != nil {
			return nil, err
		}
		k.closeLast()
		k.last, k.lastID = m, id
	}
	return k.last.Clone()
}

// closeLast closes the inner map kept by OpenInner, if any.
func (k *kernelMaps) closeLast() error {
	if k.last == nil {
		return nil
	}
	err := k.last.Close()
	k.last = nil
	return err
}

// SwapInner puts the inner maps given in one update, and empties the
// other slots one by one: this kernel has no batch delete for a map of
// maps, and each delete waits for running programs (~9 ms here).
func (k *kernelMaps) SwapInner(name string, keys []uint32, inners []state.Inner) error {
	m, err := k.get(name)
	if err != nil {
		return err
	}
	var put, fds, del []uint32
	for i, key := range keys {
		if inners[i] == nil {
			del = append(del, key)
			continue
		}
		in, ok := inners[i].(*ebpf.Map)
		if !ok {
			return fmt.Errorf("slot %d of %s: an inner map of another kind", key, name)
		}
		put, fds = append(put, key), append(fds, uint32(in.FD()))
	}
	if len(put) > 0 {
		if _, err := m.BatchUpdate(put, fds, nil); err != nil {
			return fmt.Errorf("put %d inner maps: %w", len(put), err)
		}
	}
	for _, key := range del {
		if err := m.Delete(key); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("empty slot %d: %w", key, err)
		}
	}
	return nil
}

// OwnersID returns the id of the owners map, which names the pinned state
// (state removed and made again has a new one); ok is false without one.
// A Set over other maps (OnMaps) keeps one state for its life: id 1.
func (s *Set) OwnersID() (id uint32, ok bool) {
	if _, kernel := s.raw().(*kernelMaps); !kernel {
		return 1, true
	}
	owners, err := s.kernelMap(s.Owners)
	if owners == nil || err != nil {
		return 0, false
	}
	info, err := owners.Info()
	if err != nil {
		return 0, false
	}
	mid, ok := info.ID()
	return uint32(mid), ok
}
