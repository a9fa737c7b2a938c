package loader

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/tcpshift/tcpshift/bpf"
	"github.com/tcpshift/tcpshift/features"
	"github.com/tcpshift/tcpshift/loader/sockdiag"
	"github.com/tcpshift/tcpshift/maps"
)

// Bytes is traffic towards (In) and from (Out) an endpoint.
type Bytes struct{ In, Out uint64 }

// Where status's live bytes come from (Status.LiveBytes).
const (
	LiveBytesIterator = "iterator" // the iter/bpf_sk_storage_map program
	LiveBytesSockDiag = "sock_diag"
)

// liveBytes sums the bytes of the connections open right now per endpoint
// id: sockops adds a connection's bytes to its endpoint's counters only when
// it closes. It runs the BPF iterator over the sockets' tags where the kernel
// allows it, and otherwise asks socket diagnostics for every socket's tag and
// tcp_info. source names the path taken; with neither, live is nil and why
// says what each refused: status then shows closed connections' bytes only.
func (t *Target) liveBytes(set *maps.Set) (live map[uint32]Bytes, source string, why error) {
	iterErr := features.Check(features.IterSkStorage)
	if iterErr == nil {
		live, err := iterBytes(set)
		if err == nil {
			return live, LiveBytesIterator, nil
		}
		iterErr = err
	}
	diagErr := features.Check(features.DiagStorage)
	if diagErr == nil {
		live, err := t.diagBytes(set)
		if err == nil {
			return live, LiveBytesSockDiag, nil
		}
		diagErr = err
	}
	return nil, "", fmt.Errorf("%w; %w", iterErr, diagErr)
}

// iterBytes runs the bytes iterator over the conns map.
func iterBytes(set *maps.Set) (map[uint32]Bytes, error) {
	spec, err := bpf.LoadTcpshift()
	if err != nil {
		return nil, fmt.Errorf("load bpf spec: %w", err)
	}
	var objs struct {
		Prog *ebpf.Program `ebpf:"tcpshift_bytes"`
	}
	if err := spec.LoadAndAssign(&objs, nil); err != nil {
		return nil, fmt.Errorf("load bytes iterator: %w", err)
	}
	defer objs.Prog.Close()
	it, err := link.AttachIter(link.IterOptions{Program: objs.Prog, Map: set.Conns})
	if err != nil {
		return nil, fmt.Errorf("attach bytes iterator: %w", err)
	}
	defer it.Close()
	r, err := it.Open()
	if err != nil {
		return nil, fmt.Errorf("run bytes iterator: %w", err)
	}
	defer r.Close()

	out := map[uint32]Bytes{}
	for {
		var b bpf.TcpshiftConnBytes
		err := binary.Read(r, binary.NativeEndian, &b)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read bytes iterator: %w", err)
		}
		if err := addBytes(set, out, b); err != nil {
			return nil, err
		}
	}
}

// diagBytes reads the same figures through socket diagnostics: each socket's
// tag in conns and its tcp_info counters, as the iterator computes them.
func (t *Target) diagBytes(set *maps.Set) (map[uint32]Bytes, error) {
	out := map[uint32]Bytes{}
	err := sockdiag.Walk(t.NS.Handle, set.Conns, func(s *sockdiag.Socket) error {
		c, ok, err := countedConn(set, s)
		if !ok || err != nil {
			return err
		}
		sent, received := s.BytesSent-s.BytesRetrans, s.BytesReceived
		if s.FinReceived() && received > 0 {
			received-- // the kernel counts the peer's FIN in sequence space
		}
		// Towards the endpoint: what a client sent, what the
		// endpoint's own socket received.
		toward, from := sent, received
		if c.Flags&bpf.TcpshiftConnFlagsCONN_SERVER != 0 {
			toward, from = received, sent
		}
		sum := out[c.Endpoint]
		sum.In += toward
		sum.Out += from
		out[c.Endpoint] = sum
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("live bytes through sock_diag: %w", err)
	}
	return out, nil
}

// addBytes adds one open connection's bytes to its endpoint's sum, unless
// the connection belongs to an endpoint since removed.
func addBytes(set *maps.Set, out map[uint32]Bytes, b bpf.TcpshiftConnBytes) error {
	st, err := set.EndpointStats(b.Endpoint)
	if err != nil {
		return err
	}
	if st.Generation != b.Generation {
		return nil
	}
	sum := out[b.Endpoint]
	sum.In += b.In
	sum.Out += b.Out
	out[b.Endpoint] = sum
	return nil
}

// countedConn reads a socket's tag in conns, as sock_diag returns it, and
// reports whether sockops counts the connection now for an endpoint still
// of the generation it was tagged with: the connections whose bytes status
// adds and that rebalance may close.
func countedConn(set *maps.Set, s *sockdiag.Socket) (c bpf.TcpshiftConn, ok bool, err error) {
	if len(s.Storage) < binary.Size(c) {
		return c, false, nil
	}
	if err := binary.Read(bytes.NewReader(s.Storage), binary.NativeEndian, &c); err != nil {
		return c, false, nil
	}
	if c.Flags&bpf.TcpshiftConnFlagsCONN_COUNTED == 0 {
		return c, false, nil
	}
	st, err := set.EndpointStats(c.Endpoint)
	if err != nil {
		return c, false, err
	}
	return c, st.Generation == c.Generation, nil
}
