package maps

import (
	"errors"
	"fmt"
	"slices"

	"github.com/cilium/ebpf"

	"github.com/tcpshift/tcpshift/bpf"
	"github.com/tcpshift/tcpshift/state"
)

// The lists map holds every table's endpoint ids: a subset's are Count
// slots from its First. Slots a table in force points at never change, so a
// table and its ids read as one state, as they did when the ids were part
// of the table, while a table stays a few KiB whatever its endpoints:
//
//   - a writer (one at a time: the namespace's lock) writes a new table's ids
//     into free slots, then swaps the table in; the old table's slots are
//     free once the swap returned, which the kernel makes wait for every
//     program that may still read the old table (map-in-map updates wait
//     for an RCU grace period);
//   - which slots are free is derived from the tables in force: the CLI is
//     stateless, and a writer killed midway leaves only unreferenced slots;
//   - within a transaction, slots freed by its own swaps are not reused, so
//     a rollback that puts the old tables back finds their ids intact, and
//     the slots it wrote get their old contents back (the state is exactly as
//     it was, free slots included);
//   - only the slots a table needs are read or written: a change of one
//     service costs in proportion to its endpoints.
//   - a table whose ids did not change (a weight change) points at the same
//     slots as the table it replaces: nothing is written.

// listSpace is the lists map as one writer sees it.
type listSpace struct {
	used []bool // slots a table in force points at, or written by this writer
	next int    // where the next search for free slots starts
}

// space returns the writer's view of the lists map. In a transaction it
// lasts until Commit or Rollback; without one, for one call.
func (s *Set) space() *listSpace {
	if s.j != nil {
		if s.j.lists == nil {
			s.j.lists = &listSpace{}
		}
		return s.j.lists
	}
	return &listSpace{}
}

// markInForce marks the slots every table in force points at. It reads every
// table, so it runs only when a writer needs free slots.
func (s *Set) markInForce(sp *listSpace) error {
	if sp.used != nil {
		return nil
	}
	sp.used = make([]bool, s.raw().MaxEntries(bpf.TcpshiftMapLists))
	var (
		svc     uint32
		innerID ebpf.MapID
	)
	it := s.raw().Iterate(tablesName)
	for it.Next(&svc, &innerID) {
		head, err := s.tableHead(innerID)
		if errors.Is(err, state.ErrNotExist) {
			continue // swapped out meanwhile: only by this writer, marked below
		}
		if err != nil {
			return err
		}
		for _, sub := range head.Subsets {
			for k := sub.First; k < sub.First+sub.Count && int(k) < len(sp.used); k++ {
				sp.used[k] = true
			}
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("read tables: %w", err)
	}
	return nil
}

// placeLists sets where t's subsets keep their ids: the slots of the table
// in force (prev, nil for none) where its ids are the same, new ones
// written now otherwise. It runs before the table is swapped in.
func (s *Set) placeLists(svc *Service, t *Table, prev *bpf.TcpshiftTable) error {
	sp := s.space()
	for i := range t.Subsets {
		sub, ids := &t.Subsets[i], t.Endpoints[i]
		sub.First = 0
		if len(ids) == 0 {
			continue
		}
		if prev != nil && int(prev.Subsets[i].Count) == len(ids) {
			have, err := s.readIDs(prev.Subsets[i].First, uint32(len(ids)))
			if err != nil {
				return fmt.Errorf("service %s: %w", svc.Name, err)
			}
			if slices.Equal(have, ids) {
				sub.First = prev.Subsets[i].First
				continue
			}
		}
		first, err := s.allocOrRemark(sp, len(ids))
		if err != nil {
			return fmt.Errorf("service %s subset %d: %w", svc.Name, i, err)
		}
		if err := s.writeList(first, ids); err != nil {
			return fmt.Errorf("service %s: write endpoint ids: %w", svc.Name, err)
		}
		sub.First = uint32(first)
	}
	return nil
}

// allocList finds n consecutive free slots, next fit: a change that writes
// many tables fills the map in one sweep instead of searching from the
// start for every table.
func (s *Set) allocList(sp *listSpace, n int) (int, error) {
	if err := s.markInForce(sp); err != nil {
		return 0, err
	}
	size := len(sp.used)
	for tries := 0; tries < 2; tries++ {
		run := 0
		for k := sp.next; k < size; k++ {
			if sp.used[k] {
				run = 0
				continue
			}
			if run++; run == n {
				first := k - n + 1
				for j := first; j <= k; j++ {
					sp.used[j] = true
				}
				sp.next = k + 1
				return first, nil
			}
		}
		sp.next = 0
	}
	inUse := 0
	for _, u := range sp.used {
		if u {
			inUse++
		}
	}
	return 0, fmt.Errorf("no %d free consecutive slots for endpoint ids (%d of %d in use by the tables in force and this change): apply the change in smaller steps", n, inUse, size)
}

// writeList writes ids from slot first on, journaling what was there.
func (s *Set) writeList(first int, ids []uint32) error {
	if err := s.writing(); err != nil {
		return err
	}
	keys := make([]uint32, len(ids))
	for k := range keys {
		keys[k] = uint32(first + k)
	}
	var old []uint32
	if s.j != nil { // what was there matters only to a transaction's undo
		var err error
		if old, err = s.readIDs(uint32(first), uint32(len(ids))); err != nil {
			return err
		}
	}
	return s.tx().PutBatch(bpf.TcpshiftMapLists, keys, ids, old)
}

// writeIndex records where each endpoint id of a service with affinity sits
// in its subset's ids, for sticky clients to find their endpoint in one
// lookup when the ids moved (endpoint_index). Places that are already right
// are not rewritten.
func (s *Set) writeIndex(t *Table) error {
	if t.AffinityTtl == 0 {
		return nil
	}
	for _, ids := range t.Endpoints {
		for k, id := range ids {
			var have uint32
			if err := s.lookup(s.EndpointIndex, id, &have); err != nil {
				return fmt.Errorf("read place of endpoint %d: %w", id, err)
			}
			if have == uint32(k) {
				continue
			}
			if err := s.put(s.EndpointIndex, id, uint32(k)); err != nil {
				return fmt.Errorf("write place of endpoint %d: %w", id, err)
			}
		}
	}
	return nil
}

// readIDs reads n ids from slot first on.
func (s *Set) readIDs(first, n uint32) ([]uint32, error) {
	ids := make([]uint32, n)
	for k := range ids {
		if err := s.lookup(s.Lists, first+uint32(k), &ids[k]); err != nil {
			return nil, fmt.Errorf("read endpoint ids at %d: %w", first+uint32(k), err)
		}
	}
	return ids, nil
}

// tableHead reads the table an inner map holds, without its ids.
func (s *Set) tableHead(version ebpf.MapID) (*bpf.TcpshiftTable, error) {
	inner, err := s.raw().OpenInner(uint32(version))
	if err != nil {
		return nil, fmt.Errorf("open table %d: %w", version, wrapNotExist(err))
	}
	defer inner.Close()
	var t bpf.TcpshiftTable
	if err := inner.Lookup(uint32(0), &t); err != nil {
		return nil, fmt.Errorf("read table %d: %w", version, wrapNotExist(err))
	}
	return &t, nil
}

// readArray reads every entry of one of s's array maps in a few batch calls.
func readArray[V any](s *Set, m *ebpf.Map) ([]V, error) {
	return readArrayUntil[V](s, m, func([]V) bool { return false })
}

// readArrayUntil reads an array map's entries from key 0 on until done says
// the entries read so far suffice or the map ends.
func readArrayUntil[V any](s *Set, m *ebpf.Map, done func([]V) bool) ([]V, error) {
	_, vals, err := readUntil[uint32](s, m, done)
	return vals, err
}

// readAll reads every entry of a map in a few batch calls.
func readAll[K, V any](s *Set, m *ebpf.Map) ([]K, []V, error) {
	return readUntil[K](s, m, func([]V) bool { return false })
}

// readUntil reads a map's entries in batches until done says the values
// read so far suffice or the map ends. Batches grow from 64 entries to
// 4096: a namespace with a few endpoints reads a few, set-weight (which
// reads a service back before and after its write) stays well under a
// millisecond, and a read of service descriptions (kilobytes each) does
// not allocate megabytes for a few services.
func readUntil[K, V any](s *Set, m *ebpf.Map, done func([]V) bool) ([]K, []V, error) {
	const first, most = 64, 4096
	var (
		cursor state.Cursor
		keys   []K
		vals   []V
		kb     []K
		vb     []V
	)
	name := s.name(m)
	for batch := first; ; batch = min(2*batch, most) {
		if len(kb) < batch { // the buffers grow with the batch, once each size
			kb, vb = make([]K, batch), make([]V, batch)
		}
		n, err := s.raw().ReadBatch(name, &cursor, kb, vb)
		keys, vals = append(keys, kb[:n]...), append(vals, vb[:n]...)
		if errors.Is(err, state.ErrNotExist) || err == nil && done(vals) {
			return keys, vals, nil
		}
		if err != nil {
			return nil, nil, fmt.Errorf("map %s: %w", name, err)
		}
	}
}
