package loader

import (
	"errors"
	"fmt"
	"io"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/tcpshift/tcpshift/bpf"
	"github.com/tcpshift/tcpshift/maps"
)

// Rebalancer closes established connections of chosen endpoints, a budget
// at a time, with the kernel's own socket destroy (bpf_sock_destroy, Linux
// ≥ 6.5) run from a TCP socket iterator in the namespace. Close it.
type Rebalancer struct {
	t    *Target
	set  *maps.Set
	objs struct {
		Prog *ebpf.Program `ebpf:"tcpshift_rebalance"`
		IDs  *ebpf.Map     `ebpf:"rebalance_ids"`
		Runs *ebpf.Map     `ebpf:"rebalance_runs"`
	}
}

// ErrNoSockDestroy says the kernel cannot close sockets from BPF.
var ErrNoSockDestroy = errors.New("this kernel has no bpf_sock_destroy (Linux 6.5 or later): connections can only drain by themselves (wait-drained)")

// NewRebalancer loads the iterator for endpoint ids.
func (t *Target) NewRebalancer(ids []uint32) (*Rebalancer, error) {
	set, err := t.Maps()
	if err != nil {
		return nil, err
	}
	r := &Rebalancer{t: t, set: set}
	spec, err := bpf.LoadTcpshift()
	if err != nil {
		set.Close()
		return nil, fmt.Errorf("load bpf spec: %w", err)
	}
	err = spec.LoadAndAssign(&r.objs, &ebpf.CollectionOptions{MapReplacements: map[string]*ebpf.Map{
		bpf.TcpshiftMapConns: set.Conns, bpf.TcpshiftMapEndpointCounts: set.EndpointCounts,
	}})
	if err != nil {
		set.Close()
		if errors.Is(err, ebpf.ErrNotSupported) {
			return nil, ErrNoSockDestroy
		}
		return nil, fmt.Errorf("load rebalance iterator: %w", err)
	}
	words := map[uint32]uint64{}
	for _, id := range ids {
		words[id>>6] |= 1 << (id & 63)
	}
	for w, bits := range words {
		if err := r.objs.IDs.Put(w, bits); err != nil {
			r.Close()
			return nil, fmt.Errorf("rebalance ids: %w", err)
		}
	}
	return r, nil
}

// Close releases the iterator.
func (r *Rebalancer) Close() error {
	return errors.Join(r.objs.Prog.Close(), r.objs.IDs.Close(), r.objs.Runs.Close(), r.set.Close())
}

// Run closes up to budget connections and returns how many it closed.
func (r *Rebalancer) Run(budget int) (int, error) {
	if budget <= 0 {
		return 0, nil
	}
	if err := r.objs.Runs.Put(uint32(0), bpf.TcpshiftRebalanceRun{Budget: uint32(budget)}); err != nil {
		return 0, fmt.Errorf("rebalance budget: %w", err)
	}
	// The iterator walks the sockets of the namespace it is opened in.
	err := r.t.NS.Do(func() error {
		it, err := link.AttachIter(link.IterOptions{Program: r.objs.Prog})
		if err != nil {
			return fmt.Errorf("attach rebalance iterator: %w", err)
		}
		defer it.Close()
		rd, err := it.Open()
		if err != nil {
			return fmt.Errorf("run rebalance iterator: %w", err)
		}
		defer rd.Close()
		_, err = io.Copy(io.Discard, rd)
		return err
	})
	if err != nil {
		return 0, err
	}
	var run bpf.TcpshiftRebalanceRun
	if err := r.objs.Runs.Lookup(uint32(0), &run); err != nil {
		return 0, err
	}
	return int(run.Closed), nil
}
