package maps

import (
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/tcpshift/tcpshift/bpf"
)

// Service is one service as the kernel holds it.
type Service struct {
	ID         uint32
	Name       string
	Frontend   netip.AddrPort
	Mode       Mode
	Policy     Policy
	LocalRoute bool   // tcpshift added a local route for the frontend address
	Auto       bool   // the mode was chosen by mode: auto
	Reason     string // why that mode
	// AffinityTTL keeps a client on its endpoint while it reconnects within
	// this time; 0 turns affinity off.
	AffinityTTL time.Duration
	// NoFailover keeps the share of a subset whose endpoints are all down
	// with that subset (its connections are refused) instead of giving it
	// to the other subsets.
	NoFailover bool
	// NoAccounting: sockops does not count the service's connections.
	NoAccounting bool
	// Claim: the frontend address may shadow a route to another host.
	Claim bool
	// Origin names the input objects a derived service comes from
	// (VirtualService default/tcp-echo, ...); empty for tcpshift's own
	// route config.
	Origin string
	// Checks are the health checks the file asks for, nil for none.
	Checks  *Checks
	Subsets []Subset
}

// Checks are a service's health check settings, as its file gave them.
type Checks struct {
	Interval, Timeout time.Duration
	Rise, Fall        uint32
	Passive           bool
}

// Subset is a version of a service: its relative weight and its endpoints.
type Subset struct {
	Name   string
	Weight uint64 // in force
	// FileWeight is the weight the route config gave; Weight differs from
	// it while a set-weight overrides it.
	FileWeight uint64
	Endpoints  []Endpoint
}

// Endpoint is one backend address; ID indexes the endpoint maps.
type Endpoint struct {
	ID     uint32
	Addr   netip.AddrPort
	Health Health // kept in its own map; down endpoints stay out of tables
}

// Weights returns the subsets' weights in order.
func (s *Service) Weights() []uint64 {
	ws := make([]uint64, len(s.Subsets))
	for i, sub := range s.Subsets {
		ws[i] = sub.Weight
	}
	return ws
}

// Overridden reports whether a subset's weight in force differs from the
// file's (set-weight changed it).
func (s *Service) Overridden() bool {
	for _, sub := range s.Subsets {
		if sub.Weight != sub.FileWeight {
			return true
		}
	}
	return false
}

// Subset returns the index of the named subset, or -1.
func (s *Service) Subset(name string) int {
	for i, sub := range s.Subsets {
		if sub.Name == name {
			return i
		}
	}
	return -1
}

// EffectiveWeights returns the weights a table gives the subsets once health
// is taken into account: a subset whose endpoints are all down gets 0, so
// its share goes to the others, unless NoFailover keeps it there.
func (s *Service) EffectiveWeights() []uint64 {
	ws := s.Weights()
	if s.NoFailover {
		return ws
	}
	for i, sub := range s.Subsets {
		if len(sub.Endpoints) > 0 && len(sub.Healthy()) == 0 {
			ws[i] = 0
		}
	}
	return ws
}

// Healthy returns the endpoints that are not down.
func (sub *Subset) Healthy() []Endpoint {
	var out []Endpoint
	for _, ep := range sub.Endpoints {
		if ep.Health != HealthDown {
			out = append(out, ep)
		}
	}
	return out
}

// Table is a service's selection state: the table as the kernel holds it,
// and each subset's endpoint ids, which the kernel keeps in the lists map
// (from Subsets[i].First, set when the table is written).
type Table struct {
	bpf.TcpshiftTable
	Endpoints [][]uint32 // per subset, MaxSubsets of them
}

// Table builds the service's weight table as the data path reads it. Down
// endpoints are left out: their share goes to their subset's other
// endpoints, or to the other subsets (see EffectiveWeights).
func (s *Service) Table() (*Table, error) {
	t := &Table{Endpoints: make([][]uint32, MaxSubsets)}
	if len(s.Subsets) > MaxSubsets {
		return nil, fmt.Errorf("service %s: %d subsets, at most %d", s.Name, len(s.Subsets), MaxSubsets)
	}
	seq, _ := Sequence(s.EffectiveWeights(), TableSlots)
	t.Len = uint32(len(seq))
	t.Policy = s.Policy
	t.AffinityTtl = uint64(s.AffinityTTL)
	if !s.NoAccounting {
		t.Flags = bpf.TcpshiftTableFlagsTABLE_ACCOUNTING
	}
	copy(t.Seq[:], seq)
	for _, idx := range seq {
		t.Subsets[idx].Positions++
	}
	for i, sub := range s.Subsets {
		if len(sub.Endpoints) > MaxSubsetEndpoints {
			return nil, fmt.Errorf("service %s subset %s: %d endpoints, at most %d", s.Name, sub.Name, len(sub.Endpoints), MaxSubsetEndpoints)
		}
		healthy := sub.Healthy()
		t.Subsets[i].Count = uint32(len(healthy))
		ids := make([]uint32, len(healthy))
		for j, ep := range healthy {
			ids[j] = ep.ID
		}
		t.Endpoints[i] = ids
	}
	return t, nil
}

// SameSelection reports whether two tables choose alike: the same
// positions and endpoints, wherever their ids are kept and whatever their
// counters.
func (t *Table) SameSelection(o *Table) bool {
	if t.Len != o.Len || t.Policy != o.Policy || t.AffinityTtl != o.AffinityTtl || t.Flags != o.Flags || t.Seq != o.Seq {
		return false
	}
	for i := range t.Subsets {
		x, y := t.Subsets[i], o.Subsets[i]
		if x.Count != y.Count || x.Positions != y.Positions || !slices.Equal(t.Endpoints[i], o.Endpoints[i]) {
			return false
		}
	}
	return true
}

func (s *Service) meta() bpf.TcpshiftServiceMeta {
	var m bpf.TcpshiftServiceMeta
	putName(&m.Name, s.Name)
	m.Frontend = FrontendKey(s.Frontend)
	m.Mode = s.Mode
	m.Policy = s.Policy
	if s.LocalRoute {
		m.Flags |= bpf.TcpshiftServiceFlagsSERVICE_LOCAL_ROUTE
	}
	if s.Auto {
		m.Flags |= bpf.TcpshiftServiceFlagsSERVICE_AUTO
	}
	if s.NoFailover {
		m.Flags |= bpf.TcpshiftServiceFlagsSERVICE_NO_FAILOVER
	}
	if s.NoAccounting {
		m.Flags |= bpf.TcpshiftServiceFlagsSERVICE_NO_ACCOUNTING
	}
	m.AffinityTtl = uint64(s.AffinityTTL)
	putString(m.Reason[:], s.Reason)
	m.SubsetCount = uint32(len(s.Subsets))
	for i, sub := range s.Subsets {
		sm := &m.Subsets[i]
		putName(&sm.Name, sub.Name)
		sm.Weight = sub.Weight
		sm.Count = uint32(len(sub.Endpoints))
	}
	return m
}

// Percents returns the share of new connections each subset gets from a
// table, in percent: the weights actually in force, after any scaling.
func Percents(t *Table, subsets int) []float64 {
	out := make([]float64, subsets)
	if t.Len == 0 {
		return out
	}
	for _, s := range t.Seq[:min(int(t.Len), len(t.Seq))] {
		if int(s) < subsets {
			out[s]++
		}
	}
	for i := range out {
		out[i] = out[i] * 100 / float64(t.Len)
	}
	return out
}
