package maps

import (
	"testing"

	"github.com/cilium/ebpf"

	"github.com/tcpshift/tcpshift/bpf"
)

// newOwnerSet makes a Set with real owner and table swaps maps (needs root).
func newOwnerSet(t *testing.T) *Set {
	t.Helper()
	coll := newKernelMaps(t, bpf.TcpshiftMapOwners, bpf.TcpshiftMapTableSwaps)
	return &Set{Owners: coll.Maps[bpf.TcpshiftMapOwners], TableSwaps: coll.Maps[bpf.TcpshiftMapTableSwaps]}
}

// newKernelMaps makes new, unpinned BPF maps shaped as the BPF object's
// (needs root), closed when the test ends.
func newKernelMaps(t *testing.T, names ...string) *ebpf.Collection {
	t.Helper()
	spec, err := bpf.LoadTcpshift()
	if err != nil {
		t.Fatal(err)
	}
	coll := &ebpf.Collection{Maps: map[string]*ebpf.Map{}}
	for _, name := range names {
		ms := spec.Maps[name].Copy()
		ms.Pinning = ebpf.PinNone
		m, err := ebpf.NewMap(ms)
		if err != nil {
			t.Fatalf("create %s (kernel tests need root): %v", name, err)
		}
		t.Cleanup(func() { m.Close() })
		coll.Maps[name] = m
	}
	return coll
}

func seq(t *testing.T, s *Set) uint64 {
	t.Helper()
	o, err := s.Owner()
	if err != nil {
		t.Fatal(err)
	}
	return o.WriteSeq
}

// The owner record is written inside a transaction without turning the
// write sequence back to a value a reader saw before: odd while the
// transaction writes, even and newer after commit or rollback; a rollback
// puts the values back, a commit keeps them.
func TestOwnerWriteKeepsSequence(t *testing.T) {
	for _, commit := range []bool{true, false} {
		s := newOwnerSet(t)
		if err := s.Begin(); err != nil {
			t.Fatal(err)
		}
		if seq(t, s) != 0 {
			t.Fatal("Begin alone moved the sequence (a refused change must leave it)")
		}
		if err := s.PutOwner(Owner{NetnsCookie: 42}); err != nil {
			t.Fatal(err)
		}
		if err := s.put(s.TableSwaps, uint32(1), uint64(7)); err != nil {
			t.Fatal(err)
		}
		if got := seq(t, s); got != 1 {
			t.Fatalf("commit=%v: sequence %d while writing, want 1", commit, got)
		}
		end := s.Rollback
		if commit {
			end = s.Commit
		}
		if err := end(); err != nil {
			t.Fatal(err)
		}
		if got := seq(t, s); got != 2 {
			t.Fatalf("commit=%v: sequence %d after, want 2", commit, got)
		}
		o, _ := s.Owner()
		var swaps uint64
		if err := s.TableSwaps.Lookup(uint32(1), &swaps); err != nil {
			t.Fatal(err)
		}
		want := map[bool][2]uint64{true: {42, 7}, false: {0, 0}}[commit]
		if o.NetnsCookie != want[0] || swaps != want[1] {
			t.Fatalf("commit=%v: cookie %d swaps %d, want %v", commit, o.NetnsCookie, swaps, want)
		}
	}
}
