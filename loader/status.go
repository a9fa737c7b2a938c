package loader

import (
	"github.com/tcpshift/tcpshift/maps"
)

// Status is what `tcpshift status` reports.
type Status struct {
	// Daemon is the tcpshift run managing the namespace, if one runs.
	Daemon   *Daemon         `json:"daemon,omitempty" yaml:"daemon,omitempty"`
	Services []ServiceStatus `json:"services" yaml:"services"`
	// LiveBytes says how the bytes of open connections were read
	// (LiveBytesIterator or LiveBytesSockDiag); "" when they could not be,
	// and LiveBytesUnavailable says why: the byte counters then hold
	// closed connections only.
	LiveBytes            string `json:"live_bytes" yaml:"live_bytes"`
	LiveBytesUnavailable string `json:"live_bytes_unavailable,omitempty" yaml:"live_bytes_unavailable,omitempty"`
	// Live is the services as the kernel holds them, for export.
	Live []*maps.Service `json:"-" yaml:"-"`
}

// ServiceStatus describes one service.
type ServiceStatus struct {
	Name   string `json:"name" yaml:"name"`
	Listen string `json:"listen" yaml:"listen"`
	Mode   string `json:"mode" yaml:"mode"`
	Reason string `json:"reason" yaml:"reason"` // why this mode
	Policy string `json:"policy" yaml:"policy"`
	// Affinity is how long a client stays on its endpoint, "" when off.
	Affinity string `json:"affinity,omitempty" yaml:"affinity,omitempty"`
	Refused  uint64 `json:"refused" yaml:"refused"`
	// NoSocket counts lookups whose chosen endpoints had no listening
	// socket (lookup mode: a backend that stopped listening).
	NoSocket uint64 `json:"no_socket" yaml:"no_socket"`
	// AffinityRepicked sums its endpoints' Repicked: clients moved off an
	// endpoint with no listener, their affinity now naming another.
	AffinityRepicked uint64 `json:"affinity_repicked" yaml:"affinity_repicked"`
	// Swaps counts table replacements: applies, weight changes, health changes.
	Swaps    uint64 `json:"table_swaps" yaml:"table_swaps"`
	Failover bool   `json:"failover" yaml:"failover"`
	// From names the input objects a derived service comes from (Istio's
	// VirtualService and the rest); empty for the route config's own.
	From string `json:"from,omitempty" yaml:"from,omitempty"`
	// Shift is the service's progressive shift, running or ended, if any.
	Shift *ShiftStatus `json:"shift,omitempty" yaml:"shift,omitempty"`
	// Accounting: sockops counts connections and bytes per endpoint.
	Accounting bool           `json:"accounting" yaml:"accounting"`
	Subsets    []SubsetStatus `json:"subsets" yaml:"subsets"`
}

// SubsetStatus describes one subset; Percent is the share of new
// connections actually in force (after any scaling of the weights).
// The counters are the sums of its endpoints'.
type SubsetStatus struct {
	Name   string `json:"name" yaml:"name"`
	Weight uint64 `json:"weight" yaml:"weight"` // in force
	// FileWeight is the route config's weight; it differs from Weight
	// while a set-weight overrides it (Override), and while a shift's step
	// is in force (not an override: Shift says where it is).
	FileWeight uint64  `json:"file_weight" yaml:"file_weight"`
	Override   bool    `json:"override" yaml:"override"`
	Percent    float64 `json:"percent" yaml:"percent"`
	Counters   `yaml:",inline"`
	Endpoints  []EndpointStatus `json:"endpoints" yaml:"endpoints"`
}

// EndpointStatus describes one endpoint.
type EndpointStatus struct {
	Address string `json:"address" yaml:"address"`
	// Health is up, down (out of the table) or unchecked.
	Health   string `json:"health" yaml:"health"`
	Counters `yaml:",inline"`
	// Registered counts the listeners the kernel put in the socket map as
	// they started listening (lookup mode); RegisterFailed those it could
	// not take (an MPTCP listener, for one).
	Registered     uint64 `json:"registered" yaml:"registered"`
	RegisterFailed uint64 `json:"register_failed" yaml:"register_failed"`
	// Repicked counts clients with affinity to this endpoint that
	// sk_lookup gave another because it had no listening socket.
	Repicked uint64 `json:"repicked" yaml:"repicked"`
}

// Counters count an endpoint's connections: how many it was given since it
// was added, how many are open now, and the bytes they moved towards it (in)
// and from it (out), open connections included.
type Counters struct {
	Connections uint64 `json:"connections" yaml:"connections"`
	Active      uint64 `json:"active" yaml:"active"`
	BytesIn     uint64 `json:"bytes_in" yaml:"bytes_in"`
	BytesOut    uint64 `json:"bytes_out" yaml:"bytes_out"`
	// Failed counts connects to it that never got established (connect
	// and proxy mode), as the passive health checks see them.
	Failed uint64 `json:"failed" yaml:"failed"`
	// Resets counts established connections that ended with a reset.
	Resets uint64 `json:"resets" yaml:"resets"`
	// Rebalanced counts connections tcpshift rebalance closed.
	Rebalanced uint64 `json:"rebalanced" yaml:"rebalanced"`
}

func (c *Counters) add(o Counters) {
	c.Connections += o.Connections
	c.Active += o.Active
	c.BytesIn += o.BytesIn
	c.BytesOut += o.BytesOut
	c.Failed += o.Failed
	c.Resets += o.Resets
	c.Rebalanced += o.Rebalanced
}

// ModeName and PolicyName spell kernel values as the config does.
func ModeName(m maps.Mode) string {
	switch m {
	case maps.ModeLookup:
		return "lookup"
	case maps.ModeConnect:
		return "connect"
	case maps.ModeProxy:
		return "proxy"
	}
	return "unknown"
}

func PolicyName(p maps.Policy) string {
	if p == maps.PolicyRandom {
		return "random"
	}
	return "roundrobin"
}

// Status reads the state of every service, or only of the named one, as
// one consistent state (never half of a change).
func (t *Target) Status(service string) (*Status, error) {
	return t.status(service, true)
}

// Counters is Status without the bytes of open connections (LiveBytes ""),
// for what must never depend on an optional kernel facility nor pay for a
// walk of every socket: shift's gates, which count connections, failures
// and resets.
func (t *Target) Counters(service string) (*Status, error) {
	return t.status(service, false)
}

func (t *Target) status(service string, withLive bool) (*Status, error) {
	var st *Status
	err := t.Read(func(set *maps.Set) error {
		var err error
		st, err = t.readStatus(set, service, withLive)
		return err
	})
	return st, err
}

func (t *Target) readStatus(set *maps.Set, service string, withLive bool) (*Status, error) {
	var svcs []*maps.Service
	if service != "" {
		svc, err := lookupService(set, service)
		if err != nil {
			return nil, err
		}
		svcs = []*maps.Service{svc}
	} else {
		var err error
		if svcs, err = set.ServiceList(); err != nil {
			return nil, err
		}
	}
	o, err := set.Owner()
	if err != nil {
		return nil, err
	}
	st := &Status{Daemon: runningDaemon(&o), Services: []ServiceStatus{}, Live: svcs}
	// Live bytes are a nicety: a kernel that refuses both ways to read
	// them costs the figure, never the status.
	var live map[uint32]Bytes
	if withLive {
		var source string
		var why error
		live, source, why = t.liveBytes(set)
		st.LiveBytes = source
		if why != nil {
			st.LiveBytesUnavailable = why.Error()
		}
	}
	for _, svc := range svcs {
		ss, err := serviceStatus(set, svc, live)
		if err != nil {
			return nil, err
		}
		st.Services = append(st.Services, ss)
	}
	return st, nil
}

func serviceStatus(set *maps.Set, svc *maps.Service, live map[uint32]Bytes) (ServiceStatus, error) {
	ss := ServiceStatus{
		Name:       svc.Name,
		Listen:     svc.Frontend.String(),
		Mode:       ModeName(svc.Mode),
		Reason:     svc.Reason,
		From:       svc.Origin,
		Policy:     PolicyName(svc.Policy),
		Failover:   !svc.NoFailover,
		Accounting: !svc.NoAccounting,
		Subsets:    []SubsetStatus{},
	}
	if svc.AffinityTTL > 0 {
		ss.Affinity = svc.AffinityTTL.String()
	}
	shifted := false // the weights in force are a shift's step, not an override
	if sh, ok, err := set.Shift(svc.ID); err != nil {
		return ss, err
	} else if ok {
		ss.Shift = shiftStatus(svc, sh)
		shifted = ShiftOwnsWeights(svc, sh)
	}
	counts, err := set.ServiceStats(svc.ID)
	if err != nil {
		return ss, err
	}
	ss.Refused, ss.NoSocket = counts.Refused, counts.NoSocket
	if ss.Swaps, err = set.Swaps(svc.ID); err != nil {
		return ss, err
	}
	table, err := set.Table(svc.ID)
	if err != nil {
		return ss, err
	}
	percents := maps.Percents(table, len(svc.Subsets))
	for i, sub := range svc.Subsets {
		sst := SubsetStatus{Name: sub.Name, Weight: sub.Weight, FileWeight: sub.FileWeight, Override: sub.Weight != sub.FileWeight && !shifted,
			Percent: percents[i], Endpoints: []EndpointStatus{}}
		for _, ep := range sub.Endpoints {
			n, err := set.EndpointStats(ep.ID)
			if err != nil {
				return ss, err
			}
			c := Counters{
				Connections: n.Connections,
				Active:      n.Active,
				BytesIn:     n.BytesIn + live[ep.ID].In,
				BytesOut:    n.BytesOut + live[ep.ID].Out,
				Failed:      n.Failed,
				Resets:      n.Resets,
				Rebalanced:  n.Rebalanced,
			}
			sst.add(c)
			sst.Endpoints = append(sst.Endpoints, EndpointStatus{Address: ep.Addr.String(), Health: maps.HealthName(ep.Health), Counters: c,
				Registered: n.Registered, RegisterFailed: n.RegisterFailed, Repicked: uint64(n.Repicked)})
			ss.AffinityRepicked += uint64(n.Repicked)
		}
		ss.Subsets = append(ss.Subsets, sst)
	}
	return ss, nil
}
