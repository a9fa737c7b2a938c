package loader

import (
	"fmt"
	"os"
	"slices"
	"testing"

	tsmaps "github.com/tcpshift/tcpshift/maps"
)

// Each service's change is reported, in plan order, then the removed ones.
func TestWriteReportsChanges(t *testing.T) {
	f := newFake(t)
	f.mustApply(connect("a", "192.0.2.1:80", "10.0.0.1:80"), connect("b", "192.0.2.2:80", "10.0.0.2:80"), lookup("l", "192.0.2.4:80", "127.0.0.1:9001"))
	got := f.mustApply(connect("a", "192.0.2.1:80", "10.0.0.1:80", "10.0.0.9:80"), connect("c", "192.0.2.3:80", "10.0.0.3:80"), lookup("l", "192.0.2.4:80", "127.0.0.1:9001"))
	want := []Change{
		{Service: "a", Action: "updated", Mode: tsmaps.ModeConnect},
		{Service: "c", Action: "added", Mode: tsmaps.ModeConnect},
		{Service: "l", Action: "unchanged", Mode: tsmaps.ModeLookup},
		{Service: "b", Action: "removed"},
	}
	if !slices.EqualFunc(got, want, func(a, b Change) bool {
		return a.Service == b.Service && a.Action == b.Action && a.Mode == b.Mode && a.KeptOverride == b.KeptOverride
	}) {
		t.Fatalf("changes %+v, want %+v", got, want)
	}
	svcs, err := f.set.ServiceList()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range svcs {
		names = append(names, s.Name)
	}
	if !slices.Equal(names, []string{"a", "c", "l"}) || len(svcs[0].Subsets[0].Endpoints) != 2 {
		t.Fatalf("in force: %v, want a (two endpoints), c, l", names)
	}
}

// A running shift keeps the weights it set while the route config leaves
// the service's route as it was: nothing is written for it.
func TestWriteShiftKeepsItsWeights(t *testing.T) {
	f := newFake(t)
	two := svc{name: "echo", front: "192.0.2.1:80", mode: tsmaps.ModeConnect, subsets: []sub{{"v1", 100, []string{"10.0.0.1:80"}}, {"v2", 0, []string{"10.0.0.2:80"}}}}
	f.mustApply(two)
	start, err := processStart(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// The shift's first step, as ShiftUpdate writes it.
	if err := transact(f.set, func(set *tsmaps.Set) error {
		svc, _, err := set.Service("echo")
		if err != nil {
			return err
		}
		svc.Subsets[0].Weight, svc.Subsets[1].Weight = 500, 500
		if err := set.SwapTable(svc); err != nil {
			return err
		}
		if err := set.PutMeta(svc); err != nil {
			return err
		}
		return set.PutShift(svc.ID, tsmaps.Shift{State: tsmaps.ShiftRunning, To: 1, From: []int{0}, Percent: []uint32{50, 100},
			Done: 1, Pid: uint32(os.Getpid()), PidStart: start, Before: []uint64{100, 0}})
	}); err != nil {
		t.Fatal(err)
	}
	before := f.dump()
	changes := f.mustApply(two)
	if len(changes) != 1 || changes[0].Action != "unchanged" || changes[0].KeptOverride {
		t.Fatalf("changes %+v, want echo unchanged (the shift's weights, no override)", changes)
	}
	if d := diffLines(before, f.dump()); len(d) > 0 {
		t.Fatalf("the apply changed a shifting service:\n%v", d)
	}
	svc, _, err := f.set.Service("echo")
	if err != nil || !slices.Equal(svc.Weights(), []uint64{500, 500}) {
		t.Fatalf("weights %v (%v), want the shift's 500/500", svc.Weights(), err)
	}
}

// Fixed builds its config whatever the state in force; BuildFunc is the
// function it wraps.
func TestBuilds(t *testing.T) {
	b, err := Fixed(nil).Build([]tsmaps.StoredObject{{}}, []*tsmaps.Service{{Name: "x"}})
	if err != nil || b.Config != nil || b.Objects != nil || b.Origins != nil {
		t.Fatalf("Fixed(nil) built %+v, %v", b, err)
	}
	if _, early := Fixed(nil).(fixed); !early {
		t.Fatal("Apply would not plan a Fixed config before the lock")
	}
	calls := 0
	fn := BuildFunc(func(stored []tsmaps.StoredObject, current []*tsmaps.Service) (*Built, error) {
		calls++
		return &Built{Origins: map[string]string{"x": current[0].Name}}, nil
	})
	if b, err := fn.Build(nil, []*tsmaps.Service{{Name: "y"}}); err != nil || b.Origins["x"] != "y" || calls != 1 {
		t.Fatalf("BuildFunc built %+v, %v after %d calls", b, err, calls)
	}
	if _, early := Build(fn).(fixed); early {
		t.Fatal("a BuildFunc would be planned before the lock")
	}
}

// A stored object too large for the map is refused, named, before
// anything is planned.
func TestObjectChangeCheck(t *testing.T) {
	var nilChange *ObjectChange
	if err := nilChange.check(); err != nil {
		t.Fatal(err)
	}
	big := &ObjectChange{Put: []tsmaps.StoredObject{{Key: tsmaps.ObjectKey{Kind: "VirtualService", Namespace: "default", Name: "huge"}, Text: make([]byte, tsmaps.MaxObjectText+1)}}}
	err := big.check()
	want := fmt.Sprintf("VirtualService default/huge: %d bytes of YAML, at most %d can be kept", tsmaps.MaxObjectText+1, tsmaps.MaxObjectText)
	if err == nil || err.Error() != want {
		t.Fatalf("check: %v", err)
	}
}
