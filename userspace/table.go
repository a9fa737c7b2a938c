// Package userspace is tcpshift's fallback where the kernel hooks cannot
// serve: a TCP proxy that picks endpoints exactly as the BPF programs do and
// forwards from event loops, with read and write for small exchanges and
// splice(2) for bulk transfers.
package userspace

import (
	"math/rand/v2"
	"net/netip"
	"sync/atomic"

	"github.com/tcpshift/tcpshift/maps"
)

// Endpoint is one backend a table can choose.
type Endpoint struct {
	ID         uint32
	Addr       netip.AddrPort
	Generation uint32 // for the accounting tag
}

// Table is one version of a service's weight table with its own position
// counters. Pick follows bpf/select.h step by step, so a table read from the
// kernel, or built in Go by maps.Service.Table, splits exactly as the BPF
// programs split.
type Table struct {
	t         *maps.Table
	endpoints map[uint32]Endpoint
	members   []map[uint32]bool // per subset: the ids it lists
	next      atomic.Uint64
	turns     []atomic.Uint32 // per subset
}

// NewTable wraps a table; endpoints resolves the ids it names.
func NewTable(t *maps.Table, endpoints map[uint32]Endpoint) *Table {
	members := make([]map[uint32]bool, len(t.Subsets))
	for i := range members {
		members[i] = map[uint32]bool{}
		for _, id := range listed(t, i) {
			members[i][id] = true
		}
	}
	return &Table{t: t, endpoints: endpoints, members: members, turns: make([]atomic.Uint32, len(t.Subsets))}
}

// listed returns the ids a subset lists, as the kernel bounds them.
func listed(t *maps.Table, subset int) []uint32 {
	ids := t.Endpoints[subset]
	return ids[:min(int(t.Subsets[subset].Count), len(ids))]
}

// Pick chooses the subset for a new connection and returns it with the
// endpoints to try, in order: the subset's endpoints from its next turn on.
// ok is false when the table refuses every connection.
func (tb *Table) Pick() (subset int, order []Endpoint, ok bool) {
	return tb.pick(nil)
}

// pick is Pick appending the order to buf.
func (tb *Table) pick(buf []Endpoint) (subset int, order []Endpoint, ok bool) {
	t := tb.t
	order = buf
	if t.Len == 0 || int(t.Len) > len(t.Seq) {
		return 0, nil, false
	}
	var pos uint64
	if t.Policy == maps.PolicyRandom {
		pos = uint64(rand.Uint32()) % uint64(t.Len)
	} else {
		pos = (tb.next.Add(1) - 1) % uint64(t.Len)
	}
	subset = int(t.Seq[pos])
	if subset >= len(t.Subsets) {
		return 0, nil, false
	}
	ids := listed(t, subset)
	count := len(ids)
	if count == 0 {
		return subset, nil, false
	}
	var turn uint32
	if t.Policy == maps.PolicyRandom {
		turn = rand.Uint32()
	} else {
		turn = tb.turns[subset].Add(1) - 1
	}
	for i := range count {
		if ep, found := tb.endpoints[ids[(int(turn)+i)%count]]; found {
			order = append(order, ep)
		}
	}
	return subset, order, len(order) > 0
}

// Has reports whether new connections can still reach endpoint id in
// subset: client affinity holds only while that is so, as in the kernel.
func (tb *Table) Has(subset int, id uint32) bool {
	if subset < 0 || subset >= len(tb.t.Subsets) {
		return false
	}
	if tb.t.Subsets[subset].Positions == 0 {
		return false
	}
	return tb.members[subset][id]
}

// Endpoint returns the endpoint with id, if the table names it.
func (tb *Table) Endpoint(id uint32) (Endpoint, bool) {
	ep, ok := tb.endpoints[id]
	return ep, ok
}

// AffinityTTL is how long a client stays on its endpoint; 0 is off.
func (tb *Table) AffinityTTL() uint64 { return tb.t.AffinityTtl }
