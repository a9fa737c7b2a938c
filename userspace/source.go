package userspace

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/cilium/ebpf"

	"github.com/tcpshift/tcpshift/maps"
)

// Source gives the proxy each service's table in force and takes its
// accounting.
type Source interface {
	// Table returns the service's table in force; after a weight change
	// the very next call returns the new one.
	Table(service uint32) (*Table, error)
	// Tag marks a socket before it connects to ep, for accounting.
	Tag(fd int, ep Endpoint) error
	// Refused counts a connection no endpoint took.
	Refused(service uint32) error
}

// KernelSource reads the tables the loader pinned, so the proxy splits by
// the same tables the BPF programs use and set-weight reaches it at once;
// sockops accounts its connections.
type KernelSource struct {
	set      *maps.Set
	tagger   *maps.Tagger
	versions *maps.Versions // nil: state pinned without the counters
	cache    []atomic.Pointer[versioned]
	mu       sync.Mutex            // serializes reads of a new table, and Refused
	far      map[uint32]*versioned // ids beyond the counters, under mu
}

// versioned is a table with what it was read at: count, the writes the
// counter had seen before it was read; version, the inner map holding it.
type versioned struct {
	count   uint64
	version ebpf.MapID
	table   *Table
}

// NewKernelSource reads from set, which it does not close. The table
// version counters stay mapped until the source is garbage.
func NewKernelSource(set *maps.Set) *KernelSource {
	k := &KernelSource{set: set, tagger: set.Tagger(), far: map[uint32]*versioned{}}
	if v, err := set.MapVersions(); err == nil {
		k.versions = v
		k.cache = make([]atomic.Pointer[versioned], v.Len())
		runtime.AddCleanup(k, func(v *maps.Versions) { v.Unmap() }, v)
	}
	return k
}

// Table returns the cached table while the service's version counter, a
// load from shared memory, shows no write since it was read. Otherwise, or
// while a write is in progress (an odd count), it checks the version in
// force (one map lookup) and reads a table only when that changed: a
// swapped-in table starts at its first position, as in the kernel.
func (k *KernelSource) Table(service uint32) (*Table, error) {
	var count uint64
	counted := false
	if k.versions != nil {
		count, counted = k.versions.Load(service)
		if c := k.cache[service].Load(); counted && count%2 == 0 && c != nil && c.count == count {
			return c.table, nil
		}
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	for tries := 1; ; tries++ {
		tb, err := k.read(service, count, counted)
		// The version read can be swapped out and freed before it is
		// opened: read the version in force again.
		if errors.Is(err, os.ErrNotExist) && tries < 10 {
			continue
		}
		return tb, err
	}
}

// read checks the version in force and reads the table if it changed;
// count is what the counter showed before, so a write racing with this
// read makes the next call check again.
func (k *KernelSource) read(service uint32, count uint64, counted bool) (*Table, error) {
	version, err := k.set.TableVersion(service)
	if err != nil {
		return nil, err
	}
	var prev *versioned
	if counted {
		prev = k.cache[service].Load()
	} else {
		prev = k.far[service]
	}
	var tb *Table
	for tb == nil {
		if prev != nil && prev.version == version {
			tb = prev.table
			break
		}
		if tb, err = k.readTable(version); err != nil {
			return nil, err
		}
		// The ids of a table swapped out meanwhile may have been
		// reused: keep only a table still in force after its ids
		// were read.
		now, err := k.set.TableVersion(service)
		if err != nil {
			return nil, err
		}
		if now != version {
			tb, version = nil, now
		}
	}
	v := &versioned{count: count, version: version, table: tb}
	if counted {
		k.cache[service].Store(v)
	} else {
		k.far[service] = v
	}
	return tb, nil
}

func (k *KernelSource) readTable(version ebpf.MapID) (*Table, error) {
	t, err := k.set.TableAt(version)
	if err != nil {
		return nil, err
	}
	endpoints := map[uint32]Endpoint{}
	for i := range t.Subsets {
		for _, id := range listed(t, i) {
			addr, gen, err := k.set.Endpoint(id)
			if err != nil {
				return nil, err
			}
			endpoints[id] = Endpoint{ID: id, Addr: addr, Generation: gen}
		}
	}
	return NewTable(t, endpoints), nil
}

func (k *KernelSource) Tag(fd int, ep Endpoint) error {
	return k.tagger.Tag(fd, ep.ID, ep.Generation)
}

func (k *KernelSource) Refused(service uint32) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.set.AddRefused(service, 1)
}

// StaticSource serves tables built in Go from the route config, by the same
// code that builds the kernel's (maps.Service.Table): for hosts where BPF
// cannot load. Weights change only with the config.
type StaticSource struct {
	tables  map[uint32]*Table
	mu      sync.Mutex
	refused map[uint32]uint64
}

// NewStaticSource builds the tables of svcs, whose ids must be set.
func NewStaticSource(svcs []*maps.Service) (*StaticSource, error) {
	s := &StaticSource{tables: map[uint32]*Table{}, refused: map[uint32]uint64{}}
	for _, svc := range svcs {
		t, err := svc.Table()
		if err != nil {
			return nil, err
		}
		endpoints := map[uint32]Endpoint{}
		for _, sub := range svc.Subsets {
			for _, ep := range sub.Endpoints {
				endpoints[ep.ID] = Endpoint{ID: ep.ID, Addr: ep.Addr}
			}
		}
		s.tables[svc.ID] = NewTable(t, endpoints)
	}
	return s, nil
}

func (s *StaticSource) Table(service uint32) (*Table, error) {
	t, ok := s.tables[service]
	if !ok {
		return nil, fmt.Errorf("no table for service %d", service)
	}
	return t, nil
}

func (s *StaticSource) Tag(int, Endpoint) error { return nil }

func (s *StaticSource) Refused(service uint32) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refused[service]++
	return nil
}

// RefusedCount returns how many connections to a service were refused.
func (s *StaticSource) RefusedCount(service uint32) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.refused[service]
}
