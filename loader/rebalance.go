package loader

import (
	"errors"
	"fmt"
	"io"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/tcpshift/tcpshift/bpf"
	"github.com/tcpshift/tcpshift/features"
	"github.com/tcpshift/tcpshift/loader/sockdiag"
	"github.com/tcpshift/tcpshift/maps"
)

// Rebalancer closes established connections of chosen endpoints, a budget
// at a time: with the kernel's own socket destroy (bpf_sock_destroy, Linux
// ≥ 6.5) run from a TCP socket iterator in the namespace where the kernel
// allows it, otherwise with socket diagnostics (SOCK_DESTROY), choosing the
// connections by the same tags. Either way only connections tcpshift counts
// for those endpoints are closed. Close it.
type Rebalancer struct {
	// Path is how it closes connections: RebalanceIterator or
	// RebalanceSockDiag.
	Path string
	t    *Target
	set  *maps.Set
	ids  map[uint32]bool
	objs struct {
		Prog *ebpf.Program `ebpf:"tcpshift_rebalance"`
		IDs  *ebpf.Map     `ebpf:"rebalance_ids"`
		Runs *ebpf.Map     `ebpf:"rebalance_runs"`
	}
}

// The ways a Rebalancer closes connections.
const (
	RebalanceIterator = "iterator"
	RebalanceSockDiag = "sock_diag"
)

// ErrNoSockDestroy says the kernel can close sockets neither from BPF nor
// through socket diagnostics.
var ErrNoSockDestroy = errors.New("this kernel closes sockets neither from BPF (bpf_sock_destroy, Linux 6.5) nor through sock_diag (CONFIG_INET_DIAG_DESTROY): connections can only drain by themselves (wait-drained)")

// NewRebalancer prepares to close connections of endpoint ids.
func (t *Target) NewRebalancer(ids []uint32) (_ *Rebalancer, err error) {
	set, err := t.Maps()
	if err != nil {
		return nil, err
	}
	r := &Rebalancer{t: t, set: set, ids: map[uint32]bool{}}
	for _, id := range ids {
		r.ids[id] = true
	}
	iterErr := features.Check(features.IterTCP)
	if iterErr == nil {
		if iterErr = r.loadIterator(ids); iterErr == nil {
			r.Path = RebalanceIterator
			return r, nil
		}
	}
	diagErr := errors.Join(features.Check(features.DiagDestroy), features.Check(features.DiagStorage))
	if diagErr == nil {
		r.Path = RebalanceSockDiag
		return r, nil
	}
	set.Close()
	return nil, fmt.Errorf("%w (%v; %v)", ErrNoSockDestroy, iterErr, diagErr)
}

func (r *Rebalancer) loadIterator(ids []uint32) error {
	spec, err := bpf.LoadTcpshift()
	if err != nil {
		return fmt.Errorf("load bpf spec: %w", err)
	}
	err = spec.LoadAndAssign(&r.objs, &ebpf.CollectionOptions{MapReplacements: map[string]*ebpf.Map{
		bpf.TcpshiftMapConns: r.set.Conns, bpf.TcpshiftMapEndpointCounts: r.set.EndpointCounts,
	}})
	if err != nil {
		return fmt.Errorf("load rebalance iterator: %w", err)
	}
	words := map[uint32]uint64{}
	for _, id := range ids {
		words[id>>6] |= 1 << (id & 63)
	}
	for w, bits := range words {
		if err := r.objs.IDs.Put(w, bits); err != nil {
			r.closeIterator()
			return fmt.Errorf("rebalance ids: %w", err)
		}
	}
	return nil
}

// closeIterator unloads the iterator, if loaded (Close takes nil).
func (r *Rebalancer) closeIterator() error {
	err := errors.Join(r.objs.Prog.Close(), r.objs.IDs.Close(), r.objs.Runs.Close())
	r.objs.Prog, r.objs.IDs, r.objs.Runs = nil, nil, nil
	return err
}

// Close releases what the rebalancer holds.
func (r *Rebalancer) Close() error {
	return errors.Join(r.closeIterator(), r.set.Close())
}

// Run closes up to budget connections and returns how many it closed.
func (r *Rebalancer) Run(budget int) (int, error) {
	if budget <= 0 {
		return 0, nil
	}
	if r.Path == RebalanceSockDiag {
		return r.runSockDiag(budget)
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

// runSockDiag does what the iterator does, from user space: the sockets of
// the namespace whose tag names one of the endpoints, counted and of the
// endpoint's current generation, closed with SOCK_DESTROY.
func (r *Rebalancer) runSockDiag(budget int) (int, error) {
	var chosen []sockdiag.Socket
	errFull := errors.New("budget reached")
	err := sockdiag.Walk(r.t.NS.Handle, r.set.Conns, func(s *sockdiag.Socket) error {
		c, ok, err := countedConn(r.set, s)
		if !ok || err != nil || !r.ids[c.Endpoint] {
			return err
		}
		chosen = append(chosen, *s)
		if len(chosen) == budget {
			return errFull
		}
		return nil
	})
	if err != nil && !errors.Is(err, errFull) {
		return 0, fmt.Errorf("rebalance through sock_diag: %w", err)
	}
	closed := 0
	for i := range chosen {
		err := sockdiag.Destroy(r.t.NS.Handle, &chosen[i])
		if errors.Is(err, unix.ENOENT) {
			continue // it closed by itself since the walk
		}
		if err != nil {
			return closed, fmt.Errorf("rebalance through sock_diag: %w", err)
		}
		closed++
	}
	return closed, nil
}
