package maps

import (
	"reflect"
	"testing"
)

// Service reads one service exactly as ServiceList reads it, with its
// endpoints in their places, whatever ids they hold and wherever the
// others' ids lie, a few (one lookup each) or many (batch reads); a name
// not loaded is not found.
func TestServiceReadsOneAsTheListDoes(t *testing.T) {
	mem, _ := newMemory(t)
	for _, s := range []*Set{mem, kernelSet(t)} { // memory, then BPF maps (root)
		readsOneAsTheList(t, s)
	}
}

func readsOneAsTheList(t *testing.T, s *Set) {
	t.Helper()
	a, b, c := memSvc(0, "a", 80, 5, 3), memSvc(1, "b", 81, 0, 2), memSvc(2, "c", 82, 2, 3)
	d := memSvc(3, "d", 83, 20, fewEndpoints+4)
	d.Subsets[0].Endpoints[fewEndpoints].Health = HealthDown
	// b's endpoints in reverse order of their ids, c's unhealthy one.
	b.Subsets[0].Endpoints[0].ID, b.Subsets[0].Endpoints[1].ID = 1, 0
	c.Subsets[0].Endpoints[1].Health = HealthDown
	if err := s.WriteServices([]*Service{a, b, c, d}); err != nil {
		t.Fatal(err)
	}
	all, err := s.ServiceList()
	if err != nil || len(all) != 4 {
		t.Fatalf("list: %d services, %v; want 4", len(all), err)
	}
	for _, want := range all {
		got, ok, err := s.Service(want.Name)
		if err != nil || !ok {
			t.Fatalf("service %s: %v, %v", want.Name, ok, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("service %s read alone %+v, in the list %+v", want.Name, got, want)
		}
	}
	if got := all[2].Subsets[0].Endpoints[1].Health; got != HealthDown {
		t.Fatalf("c's second endpoint health %v, want down", got)
	}
	if got := all[3].Subsets[0].Endpoints[fewEndpoints]; got.Health != HealthDown || got.ID != 20+fewEndpoints || len(all[3].Subsets[0].Endpoints) != fewEndpoints+4 {
		t.Fatalf("d: endpoint %d %+v of %d, want id %d down of %d", fewEndpoints, got, len(all[3].Subsets[0].Endpoints), 20+fewEndpoints, fewEndpoints+4)
	}
	if _, ok, err := s.Service("e"); ok || err != nil {
		t.Fatalf("service e: found %v, %v; want not found", ok, err)
	}
}
