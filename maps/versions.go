package maps

import (
	"errors"
	"fmt"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/tcpshift/tcpshift/bpf"
)

// writeTables makes a write of services' slots in tables between two bumps
// of each one's version counter, as a seqlock: the count is odd while the
// write is in progress, which tells readers to read the slot itself, and
// even once it is done. A writer killed midway leaves it odd, which costs
// readers a syscall until the next write but never shows them an old table
// as current. Writers hold the namespace's lock, so a lookup and an update
// suffice. State pinned by a build without the counters has none to bump.
func (s *Set) writeTables(ids []uint32, write func() error) error {
	for i, id := range ids {
		if err := s.bumpVersion(id, true); err != nil {
			// The slots counted as being written end their write: an
			// odd count left behind would stay until the next write.
			for _, begun := range ids[:i] {
				err = errors.Join(err, s.bumpVersion(begun, false))
			}
			return err
		}
	}
	err := write()
	for _, id := range ids {
		err = errors.Join(err, s.bumpVersion(id, false))
	}
	return err
}

// bumpVersion moves a table's count on to its next odd value (a write
// begins) or even value (it ended): a count a failed write left odd is
// even again after the next write of the slot, a rollback's included.
func (s *Set) bumpVersion(id uint32, odd bool) error {
	if s.TableVersions == nil {
		return nil
	}
	var n uint64
	if err := s.lookup(s.TableVersions, id, &n); err != nil {
		return fmt.Errorf("read table version of service %d: %w", id, err)
	}
	if n++; (n%2 == 1) != odd {
		n++
	}
	if err := s.raw().Put(bpf.TcpshiftMapTableVersions, id, n); err != nil {
		return fmt.Errorf("count table write of service %d: %w", id, err)
	}
	return nil
}

// ErrNoVersions means the pinned state has no table version counters (it
// was pinned by an older build): read TableVersion instead.
var ErrNoVersions = errors.New("no table version counters")

// Versions is the table version counters mapped into memory: reading one
// is a memory load, no syscall.
type Versions struct {
	mem []byte
}

// Len is how many counters there are (the tables map's size).
func (v *Versions) Len() int { return len(v.mem) / 8 }

// MapVersions maps the counters read-only. Unmap them when done.
func (s *Set) MapVersions() (*Versions, error) {
	if s.TableVersions == nil {
		return nil, ErrNoVersions
	}
	versions, err := s.kernelMap(s.TableVersions)
	if err != nil {
		return nil, err
	}
	size := int(versions.MaxEntries()) * 8
	mem, err := unix.Mmap(versions.FD(), 0, size, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("map table versions: %w", err)
	}
	return &Versions{mem: mem}, nil
}

// Load returns a service's count of table writes, odd while one is in
// progress (see writeTables); ok is false for an id beyond the map.
func (v *Versions) Load(id uint32) (n uint64, ok bool) {
	if int(id) >= len(v.mem)/8 {
		return 0, false
	}
	return (*atomic.Uint64)(unsafe.Pointer(&v.mem[8*id])).Load(), true
}

// Unmap releases the mapping.
func (v *Versions) Unmap() error {
	if v.mem == nil {
		return nil
	}
	err := unix.Munmap(v.mem)
	v.mem = nil
	return err
}
