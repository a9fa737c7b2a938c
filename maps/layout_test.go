package maps

import (
	"testing"

	"github.com/tcpshift/tcpshift/bpf"
)

// MaxSubsetEndpoints is a copy of MAX_SUBSET_ENDPOINTS: the BPF object
// carries the original.
func TestSubsetEndpointsLimit(t *testing.T) {
	spec, err := bpf.LoadTcpshift()
	if err != nil {
		t.Fatal(err)
	}
	var n uint32
	if err := spec.Variables[bpf.TcpshiftVarMaxSubsetEndpoints].Get(&n); err != nil {
		t.Fatal(err)
	}
	if n != MaxSubsetEndpoints {
		t.Fatalf("MAX_SUBSET_ENDPOINTS is %d, maps.MaxSubsetEndpoints %d", n, MaxSubsetEndpoints)
	}
}
