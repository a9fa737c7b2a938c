package plan

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"

	"github.com/tcpshift/tcpshift/maps"
)

func mustDiff(t *testing.T, svcs []*Service, old []*maps.Service, keepOverrides bool) *Delta {
	t.Helper()
	d, err := Diff(svcs, old, roomy, keepOverrides)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestDiffActions(t *testing.T) {
	a := svc("a", "10.0.0.1:80", sub("v1", 1, "127.0.0.1:1"))
	b := svc("b", "10.0.0.2:80", sub("v1", 1, "127.0.0.1:2"))
	c := svc("c", "10.0.0.3:80", sub("v1", 1, "127.0.0.1:3"))
	mustDiff(t, wrap(a, b, c), nil, false)
	old := []*maps.Service{clone(a), clone(b), clone(c)}

	// a as it was, b with another weight, c gone, d new.
	a2, b2 := clone(a), clone(b)
	b2.Subsets[0].Weight, b2.Subsets[0].FileWeight = 2, 2
	d := svc("d", "10.0.0.4:80", sub("v1", 1, "127.0.0.1:4"))
	got := mustDiff(t, wrap(a2, b2, d), old, false)
	want := []Action{{Service: "a", Action: "unchanged"}, {Service: "b", Action: "updated"}, {Service: "d", Action: "added"}, {Service: "c", Action: "removed"}}
	if !slices.Equal(got.Actions, want) {
		t.Errorf("actions %v, want %v", got.Actions, want)
	}
	if w := got.Write; w["a"] || !w["b"] || !w["d"] || len(w) != 3 {
		t.Errorf("write %v, want b and d", w)
	}
	if len(got.Removed) != 1 || got.Removed[0].Name != "c" || len(got.Old) != 3 || got.Old["c"] == nil {
		t.Errorf("removed %v, old %v", got.Removed, got.Old)
	}
	if d.ID != 3 {
		t.Errorf("d's id %d, want 3 (ids are assigned first)", d.ID)
	}
}

func TestDiffRoutes(t *testing.T) {
	vip := netip.MustParseAddr("10.0.0.1")
	// Two services on one address that needs a route: added once.
	a := svc("a", "10.0.0.1:80", sub("v1", 1, "127.0.0.1:1"))
	b := svc("b", "10.0.0.1:81", sub("v1", 1, "127.0.0.1:2"))
	got := mustDiff(t, []*Service{{Svc: a, Route: true}, {Svc: b, Route: true}}, nil, false)
	if !slices.Equal(got.AddRoutes, []netip.Addr{vip}) || got.DelRoutes != nil || !a.LocalRoute || !b.LocalRoute {
		t.Errorf("add %v del %v, local route %v %v", got.AddRoutes, got.DelRoutes, a.LocalRoute, b.LocalRoute)
	}
	old := []*maps.Service{clone(a), clone(b)}

	// The route tcpshift added stays while a lookup-mode service is on
	// the address, even one the planning did not ask it for.
	a2 := svc("a", "10.0.0.1:80", sub("v1", 1, "127.0.0.1:1"))
	got = mustDiff(t, wrap(a2), old, false)
	if got.AddRoutes != nil || got.DelRoutes != nil || !a2.LocalRoute {
		t.Errorf("kept route: add %v del %v, local route %v", got.AddRoutes, got.DelRoutes, a2.LocalRoute)
	}

	// A connect-mode service needs none: the route goes.
	a3 := svc("a", "10.0.0.1:80", sub("v1", 1, "127.0.0.1:1"))
	a3.Mode = maps.ModeConnect
	got = mustDiff(t, wrap(a3), old, false)
	if got.AddRoutes != nil || !slices.Equal(got.DelRoutes, []netip.Addr{vip}) || a3.LocalRoute {
		t.Errorf("connect mode: add %v del %v, local route %v", got.AddRoutes, got.DelRoutes, a3.LocalRoute)
	}
	if want := (Action{Service: "a", Action: "updated"}); got.Actions[0] != want {
		t.Errorf("action %v, want %v", got.Actions[0], want)
	}

	// No service on it: the route goes; a route tcpshift did not add is
	// none of its business.
	c := svc("c", "10.0.0.3:80", sub("v1", 1, "127.0.0.1:3"))
	got = mustDiff(t, wrap(c), append(old, clone(c)), false)
	if got.AddRoutes != nil || !slices.Equal(got.DelRoutes, []netip.Addr{vip}) {
		t.Errorf("no service: add %v del %v", got.AddRoutes, got.DelRoutes)
	}
}

func TestDiffKeepsOverrides(t *testing.T) {
	a := svc("a", "10.0.0.1:80", sub("v1", 1, "127.0.0.1:1"), sub("v2", 1, "127.0.0.1:2"))
	mustDiff(t, wrap(a), nil, false)
	inForce := clone(a)
	inForce.Subsets[0].Weight, inForce.Subsets[1].Weight = 9, 1 // set-weight's
	old := []*maps.Service{inForce}

	fresh := func(w1 uint64) *maps.Service {
		return svc("a", "10.0.0.1:80", sub("v1", w1, "127.0.0.1:1"), sub("v2", 1, "127.0.0.1:2"))
	}
	cases := []struct {
		name    string
		keep    bool
		w1      uint64
		weights []uint64
		action  Action
	}{
		{"kept", true, 1, []uint64{9, 1}, Action{Service: "a", Action: "unchanged", KeptOverride: true}},
		{"not asked", false, 1, []uint64{1, 1}, Action{Service: "a", Action: "updated"}},
		{"file changed", true, 3, []uint64{3, 1}, Action{Service: "a", Action: "updated"}},
	}
	for _, c := range cases {
		n := fresh(c.w1)
		got := mustDiff(t, wrap(n), old, c.keep)
		if !slices.Equal(n.Weights(), c.weights) || got.Actions[0] != c.action || got.Write["a"] != (c.action.Action != "unchanged") {
			t.Errorf("%s: weights %v action %v write %v, want %v %v", c.name, n.Weights(), got.Actions[0], got.Write["a"], c.weights, c.action)
		}
	}
}

func TestDiffRefuses(t *testing.T) {
	var subs []maps.Subset
	for i := range maps.MaxSubsets + 1 {
		subs = append(subs, sub(string(rune('a'+i)), 1, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(1+i)).String()))
	}
	ok := svc("ok", "10.0.0.1:80", sub("v1", 1, "127.0.0.1:1"))
	many := svc("many", "10.0.0.2:80", subs...)
	_, err := Diff(wrap(ok, many), nil, roomy, false)
	if want := fmt.Sprintf("service many: %d subsets, at most %d", maps.MaxSubsets+1, maps.MaxSubsets); err == nil || err.Error() != want {
		t.Errorf("got %v, want %s", err, want)
	}
	// Ids past the capacity refuse the change before any table is built.
	_, err = Diff(wrap(svc("x", "10.0.0.3:80", sub("v1", 1, "127.0.0.1:1"))), nil, maps.Capacity{Services: 0, Endpoints: 4}, false)
	if err == nil {
		t.Error("no error for a service past a capacity of 0")
	}
}

func TestSameFileRoute(t *testing.T) {
	a := svc("a", "10.0.0.1:80", sub("v1", 1), sub("v2", 2))
	for _, c := range []struct {
		name string
		n    *maps.Service
		want bool
	}{
		{"same", svc("a", "10.0.0.1:80", sub("v1", 1), sub("v2", 2)), true},
		{"weight", svc("a", "10.0.0.1:80", sub("v1", 1), sub("v2", 3)), false},
		{"name", svc("a", "10.0.0.1:80", sub("v1", 1), sub("v3", 2)), false},
		{"count", svc("a", "10.0.0.1:80", sub("v1", 1)), false},
	} {
		if got := SameFileRoute(a, c.n); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
	// Weights in force (set-weight's) do not count.
	o := svc("a", "10.0.0.1:80", sub("v1", 1), sub("v2", 2))
	o.Subsets[0].Weight = 7
	if !SameFileRoute(o, a) {
		t.Error("an override made the file's route differ")
	}
}
