package loader

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/tcpshift/tcpshift/bpf"
	"github.com/tcpshift/tcpshift/maps"
)

// Bytes is traffic towards (In) and from (Out) an endpoint.
type Bytes struct{ In, Out uint64 }

// liveBytes sums the bytes of the connections open right now per endpoint
// id, by running the bytes iterator over the sockets' tags. sockops adds a
// connection's bytes to its endpoint's counters only when it closes.
func liveBytes(set *maps.Set) (map[uint32]Bytes, error) {
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
		st, err := set.EndpointStats(b.Endpoint)
		if err != nil {
			return nil, err
		}
		if st.Generation != b.Generation {
			continue // a connection of an endpoint since removed
		}
		sum := out[b.Endpoint]
		sum.In += b.In
		sum.Out += b.Out
		out[b.Endpoint] = sum
	}
}
