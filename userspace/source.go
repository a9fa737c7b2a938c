package userspace

import (
	"errors"
	"fmt"
	"os"
	"sync"

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
	set   *maps.Set
	mu    sync.Mutex
	cache map[uint32]versioned
}

type versioned struct {
	version ebpf.MapID
	table   *Table
}

// NewKernelSource reads from set, which it does not close.
func NewKernelSource(set *maps.Set) *KernelSource {
	return &KernelSource{set: set, cache: map[uint32]versioned{}}
}

// Table checks the version in force (one map lookup) and reads a table only
// when it changed: a swapped-in table starts at its first position, as in
// the kernel.
func (k *KernelSource) Table(service uint32) (*Table, error) {
	for tries := 1; ; tries++ {
		tb, err := k.table(service)
		// The version read can be swapped out and freed before it is
		// opened: read the version in force again.
		if errors.Is(err, os.ErrNotExist) && tries < 10 {
			continue
		}
		return tb, err
	}
}

func (k *KernelSource) table(service uint32) (*Table, error) {
	version, err := k.set.TableVersion(service)
	if err != nil {
		return nil, err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if c, ok := k.cache[service]; ok && c.version == version {
		return c.table, nil
	}
	t, err := k.set.TableAt(version)
	if err != nil {
		return nil, err
	}
	endpoints := map[uint32]Endpoint{}
	for _, sub := range t.Subsets {
		for _, id := range sub.Endpoints[:min(int(sub.Count), len(sub.Endpoints))] {
			addr, gen, err := k.set.Endpoint(id)
			if err != nil {
				return nil, err
			}
			endpoints[id] = Endpoint{ID: id, Addr: addr, Generation: gen}
		}
	}
	tb := NewTable(t, endpoints)
	k.cache[service] = versioned{version, tb}
	return tb, nil
}

func (k *KernelSource) Tag(fd int, ep Endpoint) error {
	return k.set.TagProxyConn(fd, ep.ID, ep.Generation)
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
		s.tables[svc.ID] = NewTable(&t, endpoints)
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
