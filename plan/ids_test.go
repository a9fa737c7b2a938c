package plan

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/tcpshift/tcpshift/maps"
)

var roomy = maps.Capacity{Services: 64, Endpoints: 256}

// sub makes a subset of weight w (the file's too) at the given addresses.
func sub(name string, w uint64, addrs ...string) maps.Subset {
	s := maps.Subset{Name: name, Weight: w, FileWeight: w}
	for _, a := range addrs {
		s.Endpoints = append(s.Endpoints, maps.Endpoint{Addr: netip.MustParseAddrPort(a)})
	}
	return s
}

func svc(name, frontend string, subs ...maps.Subset) *maps.Service {
	return &maps.Service{Name: name, Frontend: netip.MustParseAddrPort(frontend), Mode: maps.ModeLookup, Subsets: subs}
}

// clone copies a service deeply, as the state in force is a copy of what
// was applied.
func clone(s *maps.Service) *maps.Service {
	c := *s
	c.Subsets = nil
	for _, sb := range s.Subsets {
		sb.Endpoints = slices.Clone(sb.Endpoints)
		c.Subsets = append(c.Subsets, sb)
	}
	return &c
}

func wrap(svcs ...*maps.Service) []*Service {
	out := make([]*Service, len(svcs))
	for i, s := range svcs {
		out[i] = &Service{Svc: s}
	}
	return out
}

// ids lists a service's endpoint ids, subset by subset.
func epIDs(s *maps.Service) [][]uint32 {
	var out [][]uint32
	for _, sb := range s.Subsets {
		var ids []uint32
		for _, ep := range sb.Endpoints {
			ids = append(ids, ep.ID)
		}
		out = append(out, ids)
	}
	return out
}

func mustAssign(t *testing.T, svcs []*Service, old []*maps.Service) []uint32 {
	t.Helper()
	released, err := AssignIDs(svcs, old, roomy)
	if err != nil {
		t.Fatal(err)
	}
	return released
}

func TestAssignIDsFresh(t *testing.T) {
	a := svc("a", "10.0.0.1:80", sub("v1", 1, "127.0.0.1:1", "127.0.0.1:2"), sub("v2", 1, "127.0.0.1:3"))
	b := svc("b", "10.0.0.2:80", sub("v1", 1, "127.0.0.1:4"))
	if released := mustAssign(t, wrap(a, b), nil); released != nil {
		t.Errorf("released %v from nothing", released)
	}
	if a.ID != 0 || b.ID != 1 {
		t.Errorf("service ids %d, %d, want 0, 1", a.ID, b.ID)
	}
	if got := epIDs(a); !slices.EqualFunc(got, [][]uint32{{0, 1}, {2}}, slices.Equal) {
		t.Errorf("a's endpoint ids %v", got)
	}
	if got := epIDs(b); !slices.Equal(got[0], []uint32{3}) {
		t.Errorf("b's endpoint ids %v", got)
	}
}

func TestAssignIDsKeepsAndNeverRecycles(t *testing.T) {
	a := svc("a", "10.0.0.1:80", sub("v1", 1, "127.0.0.1:1", "127.0.0.1:2"))
	b := svc("b", "10.0.0.2:80", sub("v1", 1, "127.0.0.1:3"))
	mustAssign(t, wrap(a, b), nil)
	old := []*maps.Service{clone(a), clone(b)}

	// The same again keeps every id.
	a2, b2 := clone(a), clone(b)
	for _, s := range []*maps.Service{a2, b2} {
		s.ID = 99
		for i := range s.Subsets[0].Endpoints {
			s.Subsets[0].Endpoints[i].ID = 99
		}
	}
	if released := mustAssign(t, wrap(a2, b2), old); released != nil {
		t.Errorf("released %v, nothing changed", released)
	}
	if a2.ID != a.ID || b2.ID != b.ID || !slices.Equal(epIDs(a2)[0], epIDs(a)[0]) || !slices.Equal(epIDs(b2)[0], epIDs(b)[0]) {
		t.Errorf("ids changed: %d %v, %d %v", a2.ID, epIDs(a2), b2.ID, epIDs(b2))
	}

	// a goes, c comes: c takes neither a's service id nor its endpoint
	// ids, which tables in force may still reach; a's ids are not
	// released (they go with the service).
	c := svc("c", "10.0.0.3:80", sub("v1", 1, "127.0.0.1:1"))
	b3 := clone(b)
	if released := mustAssign(t, wrap(b3, c), old); released != nil {
		t.Errorf("released %v: a's endpoints go with a", released)
	}
	if c.ID != 2 || epIDs(c)[0][0] != 3 {
		t.Errorf("c got service id %d, endpoint id %d; want 2 and 3 (unused before)", c.ID, epIDs(c)[0][0])
	}
}

func TestAssignIDsReorderedMovedAndDropped(t *testing.T) {
	a := svc("a", "10.0.0.1:80", sub("v1", 1, "127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"), sub("v2", 1, "127.0.0.1:4"))
	mustAssign(t, wrap(a), nil) // 0, 1, 2 and 3
	old := []*maps.Service{clone(a)}

	// v1 reversed and without :2; :4 set apart in a subset of its own;
	// :5 is new.
	n := svc("a", "10.0.0.1:80", sub("v1", 1, "127.0.0.1:3", "127.0.0.1:1"), sub("v2", 1, "127.0.0.1:5"), sub("old", 0, "127.0.0.1:4"))
	released := mustAssign(t, wrap(n), old)
	want := [][]uint32{{2, 0}, {4}, {3}}
	if got := epIDs(n); !slices.EqualFunc(got, want, slices.Equal) {
		t.Errorf("endpoint ids %v, want %v", got, want)
	}
	if !slices.Equal(released, []uint32{1}) {
		t.Errorf("released %v, want [1] (127.0.0.1:2's)", released)
	}
}

func TestAssignIDsSameAddressTwice(t *testing.T) {
	a := svc("a", "10.0.0.1:80", sub("v1", 1, "127.0.0.1:1"))
	mustAssign(t, wrap(a), nil)
	old := []*maps.Service{clone(a)}
	n := svc("a", "10.0.0.1:80", sub("v1", 1, "127.0.0.1:1", "127.0.0.1:1"))
	mustAssign(t, wrap(n), old)
	if got := epIDs(n)[0]; !slices.Equal(got, []uint32{0, 1}) {
		t.Errorf("endpoint ids %v, want [0 1]: one id serves one endpoint", got)
	}
}

func TestAssignIDsHealthFollowsChecks(t *testing.T) {
	a := svc("a", "10.0.0.1:80", sub("v1", 1, "127.0.0.1:1"), sub("v2", 1, "127.0.0.1:2"))
	mustAssign(t, wrap(a), nil)
	old := clone(a)
	old.Subsets[0].Endpoints[0].Health = maps.HealthDown
	old.Subsets[1].Endpoints[0].Health = maps.HealthUp
	for _, checked := range []bool{true, false} {
		// v2's endpoint moves to v1: it keeps its id, and its health
		// while checked.
		n := svc("a", "10.0.0.1:80", sub("v1", 1, "127.0.0.1:1", "127.0.0.1:2"))
		if _, err := AssignIDs([]*Service{{Svc: n, Checked: checked}}, []*maps.Service{old}, roomy); err != nil {
			t.Fatal(err)
		}
		got := []maps.Health{n.Subsets[0].Endpoints[0].Health, n.Subsets[0].Endpoints[1].Health}
		want := []maps.Health{maps.HealthUnchecked, maps.HealthUnchecked}
		if checked {
			want = []maps.Health{maps.HealthDown, maps.HealthUp}
		}
		if !slices.Equal(got, want) || !slices.Equal(epIDs(n)[0], []uint32{0, 1}) {
			t.Errorf("checked %v: health %v ids %v, want %v [0 1]", checked, got, epIDs(n)[0], want)
		}
	}
}

func TestAssignIDsLimits(t *testing.T) {
	small := maps.Capacity{Services: 2, Endpoints: 3}
	a := svc("a", "10.0.0.1:80", sub("v1", 1, "127.0.0.1:1", "127.0.0.1:2"))
	if _, err := AssignIDs(wrap(a), nil, small); err != nil {
		t.Fatal(err)
	}
	old := []*maps.Service{clone(a)}

	b, c := svc("b", "10.0.0.2:80", sub("v1", 1, "127.0.0.1:3")), svc("c", "10.0.0.3:80", sub("v1", 1, "127.0.0.1:4"))
	_, err := AssignIDs(wrap(b, c), old, small)
	want := "service c: 2 services would be loaded at once (the file's and the 1 in force it removes), at most 2 per network namespace: remove services with an apply of their own first"
	if err == nil || err.Error() != want {
		t.Errorf("services past capacity: %v\nwant %s", err, want)
	}

	// Two endpoints in force and two new ones need four ids at once.
	n := svc("a", "10.0.0.1:80", sub("v1", 1, "127.0.0.1:5", "127.0.0.1:6"))
	_, err = AssignIDs(wrap(n), old, small)
	want = "service a subset v1: endpoint 127.0.0.1:6 needs an endpoint id past 3: 2 endpoints in force and 2 new ones, at most 3 per network namespace while both exist: remove services with an apply of their own first"
	if err == nil || err.Error() != want {
		t.Errorf("endpoints past capacity: %v\nwant %s", err, want)
	}

	// A service id in force beyond the capacity (maps of another build)
	// is kept, not indexed.
	big := clone(a)
	big.ID = 7
	n = svc("a", "10.0.0.1:80", sub("v1", 1, "127.0.0.1:1", "127.0.0.1:2"))
	if _, err := AssignIDs(wrap(n), []*maps.Service{big}, small); err != nil {
		t.Fatal(err)
	}
	if n.ID != 7 || !slices.Equal(epIDs(n)[0], []uint32{0, 1}) {
		t.Errorf("ids %d %v, want 7 [0 1]", n.ID, epIDs(n)[0])
	}
}

// An endpoint id in force past the capacity (state written with a larger
// one) is neither kept nor released: its endpoint gets an id within the
// capacity, and nothing is written at the old one. It used to panic.
func TestAssignIDsPastCapacity(t *testing.T) {
	old := svc("a", "10.0.0.1:80", sub("v1", 1, "127.0.0.1:1", "127.0.0.1:2"))
	old.Subsets[0].Endpoints[0].ID = 300 // roomy has 256
	old.Subsets[0].Endpoints[1].ID = 7
	a := clone(old)
	released, err := AssignIDs(wrap(a), []*maps.Service{old}, roomy)
	if err != nil {
		t.Fatal(err)
	}
	if got := epIDs(a)[0]; got[1] != 7 || got[0] >= uint32(roomy.Endpoints) || got[0] == 7 {
		t.Fatalf("endpoint ids %v: want a new id within %d for the first, 7 kept for the second", got, roomy.Endpoints)
	}
	if len(released) != 0 {
		t.Fatalf("released %v, want nothing (300 is past the capacity)", released)
	}
	// A subset moved elsewhere with the out-of-range id: not found as moved.
	b := svc("a", "10.0.0.1:80", sub("v2", 1, "127.0.0.1:1"))
	if _, err := AssignIDs(wrap(b), []*maps.Service{old}, roomy); err != nil || b.Subsets[0].Endpoints[0].ID >= uint32(roomy.Endpoints) {
		t.Fatalf("moved endpoint: id %d, %v", b.Subsets[0].Endpoints[0].ID, err)
	}
}

// Released ids come in the order of the services in force, whatever the
// order of the planned ones, whether the state in force is in name order
// (found by name) or not (walked), and a removed service's go with it.
func TestAssignIDsReleasedInForceOrder(t *testing.T) {
	a := svc("a", "10.0.0.1:80", sub("v1", 1, "127.0.0.1:1", "127.0.0.1:2"))
	b := svc("b", "10.0.0.2:80", sub("v1", 1, "127.0.0.2:1", "127.0.0.2:2"))
	c := svc("c", "10.0.0.3:80", sub("v1", 1, "127.0.0.3:1", "127.0.0.3:2"))
	mustAssign(t, wrap(a, b, c), nil) // a 0 1, b 2 3, c 4 5
	for _, tc := range []struct {
		name string
		old  []*maps.Service
		want []uint32
	}{
		{"in name order", []*maps.Service{clone(a), clone(b), clone(c)}, []uint32{1, 5}},
		{"not in name order", []*maps.Service{clone(c), clone(b), clone(a)}, []uint32{5, 1}},
	} {
		// c and a planned (in that order) each without its second
		// endpoint; b removed.
		na := svc("a", "10.0.0.1:80", sub("v1", 1, "127.0.0.1:1"))
		nc := svc("c", "10.0.0.3:80", sub("v1", 1, "127.0.0.3:1"))
		if got := mustAssign(t, wrap(nc, na), tc.old); !slices.Equal(got, tc.want) {
			t.Errorf("%s: released %v, want %v", tc.name, got, tc.want)
		}
	}
}
