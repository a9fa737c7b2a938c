package maps

import (
	"reflect"
	"testing"
)

// kernelSet makes a Set over new, unpinned BPF maps shaped as the BPF
// object's (needs root).
func kernelSet(t *testing.T) *Set {
	t.Helper()
	var names []string
	for name := range (&Set{}).fields() {
		names = append(names, name)
	}
	s, err := FromCollection(newKernelMaps(t, names...))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// The same writes over the kernel's maps and over memory leave the same
// services, the same write sequence and the same table counts, committed
// or rolled back: the memory the executor's tests run on behaves as the
// kernel does for every write the Set makes.
func TestKernelAndMemoryAgree(t *testing.T) {
	kern := kernelSet(t)
	mem, _ := newMemory(t)
	first := []*Service{memSvc(0, "a", 80, 0, 3), memSvc(1, "b", 81, 3, 2)}
	second := []*Service{memSvc(0, "a", 80, 5, 4), memSvc(2, "c", 82, 9, 1)}
	steps := []struct {
		name   string
		commit bool
		write  func(s *Set) error
	}{
		{"write two", true, func(s *Set) error { return s.WriteServices(first) }},
		{"rewrite, add, delete, rolled back", false, func(s *Set) error {
			if err := s.WriteServices(second); err != nil {
				return err
			}
			return s.DeleteServices(first[1:])
		}},
		{"rewrite, add, delete", true, func(s *Set) error {
			if err := s.WriteServices(second); err != nil {
				return err
			}
			if err := s.DeleteFrontend(first[1]); err != nil {
				return err
			}
			if err := s.DeleteServices(first[1:]); err != nil {
				return err
			}
			// a's old endpoint ids, as the loader releases them.
			for id := range uint32(3) {
				if err := s.ReleaseEndpoint(id); err != nil {
					return err
				}
			}
			return nil
		}},
	}
	for _, st := range steps {
		for _, s := range []*Set{kern, mem} {
			if err := s.Begin(); err != nil {
				t.Fatal(err)
			}
			if err := st.write(s); err != nil {
				t.Fatalf("%s: %v", st.name, err)
			}
			end := s.Rollback
			if st.commit {
				end = s.Commit
			}
			if err := end(); err != nil {
				t.Fatalf("%s: %v", st.name, err)
			}
		}
		k, err := kern.ServiceList()
		if err != nil {
			t.Fatal(err)
		}
		m, err := mem.ServiceList()
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(k, m) {
			t.Fatalf("%s: the kernel holds\n%+v\nmemory\n%+v", st.name, k, m)
		}
		ko, _ := kern.Owner()
		mo, _ := mem.Owner()
		if ko != mo {
			t.Fatalf("%s: owner %+v in the kernel, %+v in memory", st.name, ko, mo)
		}
		for id := range uint32(3) {
			var kv, mv uint64
			if err := kern.lookup(kern.TableVersions, id, &kv); err != nil {
				t.Fatal(err)
			}
			if err := mem.lookup(mem.TableVersions, id, &mv); err != nil {
				t.Fatal(err)
			}
			ks, _ := kern.Swaps(id)
			ms, _ := mem.Swaps(id)
			if kv != mv || ks != ms {
				t.Fatalf("%s: service %d: versions %d/%d, swaps %d/%d (kernel/memory)", st.name, id, kv, mv, ks, ms)
			}
		}
	}
}
