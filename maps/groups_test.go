package maps

import (
	"errors"
	"slices"
	"testing"
)

func TestInGroupsSplitsInOrderAndStopsAtFirstError(t *testing.T) {
	svcs := make([]*Service, 2*TablesPerSwap+1)
	for i := range svcs {
		svcs[i] = &Service{ID: uint32(i)}
	}
	var sizes []int
	var next uint32
	err := inGroups(svcs, func(g []*Service) error {
		sizes = append(sizes, len(g))
		for _, s := range g {
			if s.ID != next {
				t.Fatalf("service %d came where %d was due", s.ID, next)
			}
			next++
		}
		return nil
	})
	if err != nil || !slices.Equal(sizes, []int{TablesPerSwap, TablesPerSwap, 1}) {
		t.Fatalf("groups %v, err %v; want [%d %d 1], nil", sizes, err, TablesPerSwap, TablesPerSwap)
	}

	calls := 0
	boom := errors.New("boom")
	err = inGroups(svcs, func([]*Service) error { calls++; return boom })
	if !errors.Is(err, boom) || calls != 1 {
		t.Fatalf("after a failing group: %d calls, err %v; want 1 call, boom", calls, err)
	}
	if err := inGroups(nil, func([]*Service) error { t.Fatal("called for no services"); return nil }); err != nil {
		t.Fatal(err)
	}
}
